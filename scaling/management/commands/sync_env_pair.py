"""Bring the pair described by the original tool's environment variables up to date (release phase)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dynoscaler_site.env import EnvError
from scaling.legacy_env import legacy_pair_sync


class Command(BaseCommand):
    help = "Create or update the pair that MY_HEROKU_*, AWS_* and DYNOSCALER_* describe, if they are set."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pair = legacy_pair_sync()
        except EnvError as exc:
            raise CommandError(f"the original DynoScaler variables: {exc}") from None
        if pair is None:
            self.stdout.write("The original DynoScaler variables are not set; nothing to do.")
            return
        self.stdout.write(f"Pair {pair.name!r} is up to date with the environment.")
