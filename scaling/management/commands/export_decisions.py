"""Print decisions as JSON lines, oldest first, for scripts and audits."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling.models import Decision, ScalingPair


class Command(BaseCommand):
    help = "Write decisions as JSON lines (one object per line), oldest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pair", metavar="NAME", help="only this pair's decisions")
        parser.add_argument("--since", metavar="ISO", help="only decisions at or after this time, e.g. 2026-11-01T00:00:00Z")

    def handle(self, *args: Any, pair: str | None = None, since: str | None = None, **options: Any) -> None:
        try:
            for decision in self.decisions(pair=pair, since=parse_since(since)).iterator(chunk_size=2000):
                self.stdout.write(json.dumps(decision.as_document(), sort_keys=True, default=str))
            self.stdout.flush()
        except BrokenPipeError:
            # The reader has what it wanted (`| head`): stop quietly, as other Unix tools do.
            # What is still buffered goes nowhere, so closing stdout at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def decisions(self, *, pair: str | None, since: datetime | None) -> Any:
        qs = Decision.objects.order_by("created_at", "id")
        if pair is not None:
            if not ScalingPair.objects.filter(name=pair).exists() and not Decision.objects.filter(pair_name=pair).exists():
                raise CommandError(f"--pair: no pair or decisions named {pair!r}")
            qs = qs.filter(pair_name=pair)
        if since is not None:
            qs = qs.filter(created_at__gte=since)
        return qs


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--since: expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
