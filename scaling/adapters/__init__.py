"""One small module per outside system. Each raises only ``AdapterError``."""

from scaling.adapters.errors import AdapterError

__all__ = ["AdapterError"]
