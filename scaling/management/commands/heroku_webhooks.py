"""Subscribe the apps DynoScaler scales to Heroku's webhooks, check them, or remove them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling import services
from scaling.fields import SecretUnreadable
from scaling.models import ScalingPair


class Command(BaseCommand):
    help = ("Heroku app webhooks keep DynoScaler's view of each formation current, so it reads Heroku only to "
            "reconcile: 'subscribe' each app of the enabled pairs (or --pair NAME) at --url (default "
            "DYNOSCALER_PUBLIC_URL), 'check' them, or 'remove' them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["subscribe", "check", "remove"])
        parser.add_argument("--pair", metavar="NAME", help="only this pair's app")
        parser.add_argument("--url", metavar="URL", help="DynoScaler's public https:// address (default: DYNOSCALER_PUBLIC_URL)")

    def handle(self, *args: Any, action: str, pair: str | None = None, url: str | None = None, **options: Any) -> None:
        pairs = ScalingPair.objects.select_related("heroku_account")
        chosen = list(pairs.filter(name=pair) if pair else pairs.enabled())
        if pair and not chosen:
            raise CommandError(f"--pair: no pair named {pair!r}")
        public_url = url or settings.DYNOSCALER_PUBLIC_URL
        if action == "subscribe" and not public_url:
            raise CommandError("--url: DynoScaler's public address is needed (or set DYNOSCALER_PUBLIC_URL), "
                               "e.g. https://my-dynoscaler.herokuapp.com")
        if public_url and not str(public_url).startswith(("https://", "http://")):
            raise CommandError(f"--url: expected an address starting with https:// (or http:// for a local one), got {public_url!r}")
        try:
            apps = services.apps_of(chosen)
        except SecretUnreadable as exc:
            raise CommandError(str(exc)) from None
        done = services.apps_webhooks(apps=apps, action=action, public_url=public_url)
        for each in done:
            self.stdout.write(each.said)
        failed = sum(not each.ok for each in done)
        if not apps:
            self.stdout.write("No Heroku app to do this for.")
        if failed:
            raise CommandError(f"{failed} app(s) failed; see above")
