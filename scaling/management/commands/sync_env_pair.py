"""Bring the pair described by the seed's environment variables up to date (release phase)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dynoscaler_site.env import EnvError
from scaling import services
from scaling.seed_env import seed_config_from_env


class Command(BaseCommand):
    help = "Create or update the pair that MY_HEROKU_*, AWS_* and DYNOSCALER_* describe, if they are set."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = seed_config_from_env()
        except EnvError as exc:
            raise CommandError(f"the seed's environment variables: {exc}") from None
        if config is None:
            self.stdout.write("The seed's variables are not set; nothing to do.")
            return
        pair = services.pair_sync_from_env(config=config)
        self.stdout.write(f"Pair {pair.name!r} is up to date with the environment.")
