"""Reads for the status page, the health check and the pair page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from scaling.models import Decision, PairSample, ScalingPair
from scaling.models.alerts import ProblemKind

STALL_INTERVALS = 3
# A pair "cycles late" when its last LATE_CYCLES cycles came on average this much slower
# than its interval (and at least LATE_MIN_SECONDS later): beat holds cycles back while
# the workers are behind, so pairs cycle less often rather than pile up expired work.
LATE_CYCLES = 5
LATE_FACTOR = 1.5
LATE_MIN_SECONDS = 5.0


@dataclass(frozen=True)
class PairStatus:
    pair: ScalingPair
    last_outcome: str | None
    last_reason: str
    stalled: bool
    paused: bool
    # Seconds between its recent cycles, when that is well over its interval; else None.
    cycling_every: float | None = None

    @property
    def late(self) -> bool:
        return self.cycling_every is not None

    @property
    def problems(self) -> list[str]:
        """What the pair's last cycles saw wrong (``ScalingPair.conditions``), in words, with since when."""
        if not self.pair.enabled:
            return []
        labels = dict(ProblemKind.choices)
        found = []
        for code, entry in sorted((self.pair.conditions or {}).items()):
            since = str(entry.get("since") or "")[:16].replace("T", " ") if isinstance(entry, dict) else ""
            found.append(f"{labels.get(code, code)}" + (f" since {since} UTC" if since else ""))
        return found

    @property
    def outcome_label(self) -> str:
        """The last outcome as the other pages say it ("no change", not "no_change")."""
        if self.last_outcome is None:
            return "—"
        return str(dict(Decision.Outcome.choices).get(self.last_outcome, self.last_outcome))


class StatusRows(list[PairStatus]):
    """The status page's rows, which also say which pairs cycle late."""

    @property
    def late(self) -> list[PairStatus]:
        return [row for row in self if row.late]


def pair_cycling_every(pair: ScalingPair, *, last: datetime | None, earlier: datetime | None,
                       stalled: bool) -> float | None:
    """The average gap over the pair's last LATE_CYCLES cycles, if it is well over the
    interval. ``earlier`` is the start of the LATE_CYCLES-th cycle before the last."""
    if not pair.enabled or stalled or last is None or earlier is None:
        return None
    every = (last - earlier).total_seconds() / LATE_CYCLES
    interval = pair.interval_seconds
    # Cycles far apart because the pair was off for a while are not late; stalling is shown apart.
    if every > interval * STALL_INTERVALS:
        return None
    if every > interval * LATE_FACTOR and every - interval >= LATE_MIN_SECONDS:
        return every
    return None


def pair_stall_clock(pair: ScalingPair) -> datetime:
    """Since when an enabled pair has been owed cycles: its last cycle (its creation when it
    never ran), or its last edit if later: a pair just enabled again, or given a longer
    interval, has missed nothing yet."""
    return max(pair.last_cycle_at or pair.created_at, pair.updated_at)


def pair_is_stalled(pair: ScalingPair, now: datetime) -> bool:
    """An enabled pair with no cycle for three intervals (see ``pair_stall_clock``)."""
    if not pair.enabled:
        return False
    return now - pair_stall_clock(pair) > timedelta(seconds=STALL_INTERVALS * pair.interval_seconds)


def open_run_last(pair: ScalingPair, *, after: datetime | None) -> dict[str, Any] | None:
    """The latest cycle of the pair's open quiet run (its counts and reason, and ``at``)
    when it is newer than ``after``, the pair's latest decision row. Quiet cycles fold into
    one row written when the run ends; until then that row shows the run's first cycle,
    which may be many minutes older than what the pair sees now."""
    run = pair.quiet_run or {}
    last, at = run.get("last"), run.get("last_at")
    if not run.get("cycles") or not isinstance(last, dict) or not at:
        return None
    moment = datetime.fromisoformat(str(at))
    if after is not None and moment <= after:
        return None
    return {**last, "at": moment}


def pairs_status(now: datetime | None = None) -> StatusRows:
    now = now or timezone.now()
    latest = Decision.objects.filter(pair=OuterRef("pk")).order_by("-created_at", "-id")
    # How often a pair cycles is read from its samples (one per cycle), not its decisions: quiet
    # cycles fold into one decision row, whose gaps would make an on-time pair look late.
    cycles = PairSample.objects.filter(pair=OuterRef("pk")).order_by("-at")
    pairs = ScalingPair.objects.order_by("name").annotate(
        last_outcome=Subquery(latest.values("outcome")[:1]), last_reason=Subquery(latest.values("reason")[:1]),
        last_decision_at=Subquery(latest.values("created_at")[:1]),
        # Read from the (pair, at) index: a few rows per pair, however long the history.
        last_at=Subquery(cycles.values("at")[:1]),
        earlier_at=Subquery(cycles.values("at")[LATE_CYCLES:LATE_CYCLES + 1]),
    )
    rows = StatusRows()
    for p in pairs:
        stalled = pair_is_stalled(p, now)
        newer = open_run_last(p, after=p.last_decision_at)
        reason = str(newer.get("reason") or "") if newer else p.last_reason or ""
        rows.append(PairStatus(p, p.last_outcome, reason, stalled, bool(p.paused_until and p.paused_until > now),
                               pair_cycling_every(p, last=p.last_at, earlier=p.earlier_at, stalled=stalled)))
    return rows


def unshipped_decision_count() -> int:
    return Decision.objects.filter(shipped_at__isnull=True).count()


def stalled_pair_count(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return sum(pair_is_stalled(p, now) for p in ScalingPair.objects.enabled().only(
        "enabled", "last_cycle_at", "created_at", "updated_at", "interval_seconds"))


Point = tuple[datetime, int | None, int | None, int | None, int | None]
CHART_POINTS = 600


def pair_series(pair: ScalingPair, *, hours: float, now: datetime | None = None) -> list[Point]:
    """(when, visible, running, desired, shadow pre-warm) over the last ``hours``, at most
    about 600 points: from every cycle's sample while they are kept, from the decisions
    before. A point stands for its stretch of time with the most that was visible in it, so
    a short burst still shows."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    rows: list[Point] = _samples(pair, since, step=hours * 3600 / CHART_POINTS)
    oldest = rows[0][0] if rows else None
    earlier = Decision.objects.filter(pair=pair, created_at__gte=since)
    if oldest is not None:
        earlier = earlier.filter(created_at__lt=oldest)
    rows[:0] = [(c, v, r, d if d is not None else q, None) for c, v, r, d, q in earlier.order_by("created_at")
                .values_list("created_at", "visible_messages", "dynos_running", "desired_quantity", "quantity_before")]
    step = max(1, -(-len(rows) // CHART_POINTS))
    return [max(rows[i:i + step], key=lambda p: p[1] if p[1] is not None else -1) for i in range(0, len(rows), step)]


def _samples(pair: ScalingPair, since: datetime, *, step: float) -> list[Point]:
    """The pair's samples since ``since``. On PostgreSQL, gathered there into stretches of
    ``step`` seconds (the most seen in each), so a week of 15 s samples is ~600 rows, not 40,000."""
    if connection.vendor != "postgresql":
        return list(PairSample.objects.filter(pair=pair, at__gte=since).order_by("at")
                    .values_list("at", "visible", "running", "desired", "shadow"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(at), max(visible), max(running), max(desired), max(shadow) FROM {PairSample._meta.db_table} "
            "WHERE pair_id = %s AND at >= %s GROUP BY floor(extract(epoch FROM at) / %s) ORDER BY 1",
            [pair.pk, since, max(step, 1.0)],
        )
        return [tuple(row) for row in cursor.fetchall()]


# Below this share of the history a searched word is rare: finding its rows through the
# trigram indexes and sorting them beats walking the history newest first until a page is full.
RARE_SHARE = 0.003


@contextmanager
def search_plan(matches: QuerySet[Decision]) -> Iterator[None]:
    """Run what follows with the plan that suits the search on PostgreSQL. Its planner
    estimates well how many rows a word matches but underrates what reading the history in
    date order costs when few do; so a rare word is looked up in the search indexes only."""
    if connection.vendor != "postgresql":
        yield
        return
    sql, params = matches.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        estimate = float(cursor.fetchone()[0][0]["Plan"]["Plan Rows"])
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [Decision._meta.db_table])
        total = max(1.0, float((cursor.fetchone() or [0])[0]))
        rare = estimate / total < RARE_SHARE
        if rare:
            cursor.execute("SET enable_indexscan = off")
    try:
        yield
    finally:
        if rare:
            with connection.cursor() as cursor:
                cursor.execute("RESET enable_indexscan")
