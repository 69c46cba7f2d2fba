#!/usr/bin/env python
"""Django's command-line utility for DynoScaler.

A configuration problem (SECRET_KEY missing, a malformed variable) is printed as one line
naming the variable, not as a traceback. Asking for help needs no configuration at all:
help connects to nothing and signs nothing, so with no SECRET_KEY it runs on a throwaway
key that only this process ever sees.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

HELP_FLAGS = frozenset({"-h", "--help"})
HELP_COMMANDS = frozenset({"help", "version", "--version"})
HELP_ONLY_SECRET_KEY = "help-only-key-never-used-to-sign-anything"


def is_help_request(argv: Sequence[str]) -> bool:
    """`manage.py`, `manage.py help [COMMAND]`, `manage.py COMMAND --help`, `manage.py --version`."""
    args = list(argv[1:])
    if "--" in args:
        args = args[: args.index("--")]
    if not args or args[0] in HELP_COMMANDS or args[0] in HELP_FLAGS:
        return True
    return any(arg in HELP_FLAGS for arg in args[1:])


def configuration_problem() -> str | None:
    """Load the settings; return the one-line problem if they cannot be loaded."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # reading it imports the settings, which check every variable
    except ImproperlyConfigured as exc:
        return f"DynoScaler is not configured: {exc}"
    return None


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynoscaler_site.settings")
    if is_help_request(sys.argv) and not os.environ.get("SECRET_KEY", "").strip():
        os.environ["SECRET_KEY"] = HELP_ONLY_SECRET_KEY
    problem = configuration_problem()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        sys.exit(1)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
