"""The operator's UI: one module per part of the admin, each registering its pages."""

from scaling.admin import accounts, alerts, apps, base, beat, decisions, pairs

__all__ = ["accounts", "alerts", "apps", "base", "beat", "decisions", "pairs"]
