"""Run one cycle of every enabled pair (or one pair) now, and print each decision."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dynoscaler_site.env import EnvError
from scaling import services
from scaling.models import Decision, ScalingPair
from scaling.legacy_env import legacy_pair_sync


class Command(BaseCommand):
    help = "Run one scaling cycle synchronously for the enabled pairs (or --pair NAME) and print the decisions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pair", metavar="NAME", help="only this pair (its name as shown in the admin)")
        parser.add_argument("--dry-run", action="store_true", help="decide and record, but change no formation")

    def handle(self, *args: Any, pair: str | None = None, dry_run: bool = False, **options: Any) -> None:
        try:
            problem = legacy_pair_sync().problem()
        except EnvError as exc:
            raise CommandError(f"the original DynoScaler variables: {exc}") from None
        if problem:
            self.stderr.write(problem, style_func=self.style.WARNING)
        decisions = [self.run_pair(p, dry_run=dry_run) for p in self.select_pairs(pair, dry_run=dry_run)]
        shipped = services.audit_ship_pending()
        ran = [d for d in decisions if d is not None]
        self.stdout.write(f"{len(ran)} cycle(s) run, {shipped} decision(s) sent to the audit trail")
        if any(d.outcome == Decision.Outcome.ERROR for d in ran):
            raise CommandError("at least one cycle failed; see the decisions above")

    def select_pairs(self, name: str | None, *, dry_run: bool) -> list[ScalingPair]:
        if name is None:
            pairs = list(ScalingPair.objects.enabled().order_by("name"))
            if not pairs:
                self.stdout.write("No enabled pair. Add one in the admin or set the original DynoScaler variables.")
            return pairs
        pair = ScalingPair.objects.filter(name=name).first()
        if pair is None:
            known = ", ".join(ScalingPair.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"--pair: no pair named {name!r} (known: {known})")
        if not pair.enabled and not dry_run:
            raise CommandError(f"--pair: {name!r} is disabled; enable it or add --dry-run")
        return [pair]

    def run_pair(self, pair: ScalingPair, *, dry_run: bool) -> Decision | None:
        decision = services.pair_run_cycle(pair_id=pair.pk, force=True, dry_run=dry_run)
        if decision is None:
            self.stdout.write(f"{pair.name}: skipped, another cycle of this pair is running")
        else:
            self.stdout.write(format_decision(decision))
        return decision


def format_decision(d: Decision) -> str:
    line = f"{d.pair_name}: {d.outcome}: {d.reason}"
    # The error is "System: what it said"; a reason that already says it is not repeated.
    if d.error and d.error.split(": ", 1)[-1] not in d.reason:
        line += f" [{d.error}]"
    return line
