"""Bring the pair described by the original tool's environment variables up to date (release phase)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dynoscaler_site.env import EnvError
from scaling.legacy_env import legacy_pair_sync


class Command(BaseCommand):
    help = ("Create or update the pair that MY_HEROKU_*, AWS_* and DYNOSCALER_* describe, if they are set, and say "
            "in one line which stored secrets cannot be read with DYNOSCALER_ENCRYPTION_KEYS.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = legacy_pair_sync()
        except EnvError as exc:
            raise CommandError(f"the original DynoScaler variables: {exc}") from None
        self.stdout.write(report.said() or "The original DynoScaler variables are not set; nothing to do.")
        problem = report.problem()
        if problem:
            # A warning, not a failure: the release must go out so that the secrets can be
            # entered again in the admin, and every other pair keeps scaling meanwhile.
            self.stderr.write(problem, style_func=self.style.WARNING)
