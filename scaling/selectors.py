"""Reads for the status page, the health check and the pair page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from scaling.models import Decision, ScalingPair

STALL_INTERVALS = 3


@dataclass(frozen=True)
class PairStatus:
    pair: ScalingPair
    last_outcome: str | None
    last_reason: str
    stalled: bool
    paused: bool


def pair_is_stalled(pair: ScalingPair, now: datetime) -> bool:
    """An enabled pair with no cycle for three intervals (counted from its creation when it never ran)."""
    if not pair.enabled:
        return False
    since = pair.last_cycle_at or pair.created_at
    return now - since > timedelta(seconds=STALL_INTERVALS * pair.interval_seconds)


def pairs_status(now: datetime | None = None) -> list[PairStatus]:
    now = now or timezone.now()
    latest = Decision.objects.filter(pair=OuterRef("pk")).order_by("-created_at", "-id")
    pairs = ScalingPair.objects.order_by("name").annotate(
        last_outcome=Subquery(latest.values("outcome")[:1]), last_reason=Subquery(latest.values("reason")[:1])
    )
    return [
        PairStatus(p, p.last_outcome, p.last_reason or "", pair_is_stalled(p, now),
                   bool(p.paused_until and p.paused_until > now))
        for p in pairs
    ]


def unshipped_decision_count() -> int:
    return Decision.objects.filter(shipped_at__isnull=True).count()


def stalled_pair_count(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return sum(pair_is_stalled(p, now) for p in ScalingPair.objects.enabled().only(
        "enabled", "last_cycle_at", "created_at", "interval_seconds"))


def pair_series(pair: ScalingPair, *, hours: float, now: datetime | None = None) -> list[tuple[datetime, int | None, int | None, int | None]]:
    """(when, visible, running, desired) for the pair's decisions in the last ``hours``, at most ~600 points."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    rows = list(Decision.objects.filter(pair=pair, created_at__gte=since).order_by("created_at")
                .values_list("created_at", "visible_messages", "dynos_running", "desired_quantity", "quantity_before"))
    step = max(1, len(rows) // 600)
    return [(c, v, r, d if d is not None else q) for c, v, r, d, q in rows[::step]]
