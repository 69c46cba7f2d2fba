"""What beat holds in memory: one ``Task`` per enabled PeriodicTask row, built from the row
in one place, and the ``Stats`` of its summary line. No I/O here."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import schedules
from django_celery_beat.models import PeriodicTask

CYCLE_TASK = "scaling.tasks.run_pair_cycle"


@dataclass
class Task:
    """One enabled PeriodicTask, as beat sends it."""

    id: int
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    schedule: Any  # a celery schedule
    every: float | None  # seconds, for an interval schedule; None for crontab, solar, clocked
    start_time: datetime | None
    expires: datetime | None
    one_off: bool
    fingerprint: tuple[Any, ...]
    last_run_at: datetime | None = None
    due: float = 0.0  # Unix time
    sent_unflushed: int = 0
    flush_run_at: datetime | None = None

    @property
    def holdable(self) -> bool:
        return self.task == CYCLE_TASK

    def phase_due(self, now: float) -> float:
        """The first moment at or after ``now`` that is this task's phase in its interval."""
        assert self.every
        phase = (zlib.crc32(self.name.encode()) % 100_000) / 100_000 * self.every
        return now + (phase - now) % self.every


def task_from_row(row: PeriodicTask) -> Task:
    schedule: Any = row.schedule
    # A plain interval: crontab and solar schedules subclass it but are not intervals.
    run_every: timedelta | None = getattr(schedule, "run_every", None) if type(schedule) is schedules.schedule else None
    every = run_every.total_seconds() if run_every else None
    options: dict[str, Any] = {k: v for k in ("queue", "exchange", "routing_key", "priority")
                               if (v := getattr(row, k)) is not None}
    if row.expire_seconds or row.expires:
        options["expires"] = row.expire_seconds or row.expires
    headers = json.loads(row.headers or "{}")
    headers["periodic_task_name"] = row.name
    options["headers"] = headers
    args, kwargs = json.loads(row.args or "[]"), json.loads(row.kwargs or "{}")
    fingerprint = (row.task, row.args, row.kwargs, repr(schedule), row.queue, row.exchange, row.routing_key,
                   row.priority, row.expire_seconds, row.expires, row.headers, row.start_time, row.one_off)
    return Task(id=row.pk, name=row.name, task=row.task, args=args, kwargs=kwargs, options=options, schedule=schedule,
                every=every, start_time=row.start_time, expires=row.expires, one_off=row.one_off,
                fingerprint=fingerprint, last_run_at=row.last_run_at)


@dataclass
class Stats:
    """What beat did since the last summary line."""

    lags: list[float] = field(default_factory=list)
    sent_cycles: int = 0
    sent_other: int = 0
    held_since: float | None = None
    held_seconds: float = 0.0
    late_cycles: int = 0  # sent more than an interval after they were due

    def line(self, seconds: float, depth: int | None, bound: int) -> str:
        lags = sorted(self.lags)
        p50 = lags[len(lags) // 2] * 1000 if lags else 0.0
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000 if lags else 0.0
        text = (f"beat: {self.sent_cycles:,} pair cycles and {self.sent_other:,} other tasks sent in {seconds:.0f} s; "
                f"dispatch lag p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        if self.held_seconds:
            text += (f"; cycles held back for {self.held_seconds:.0f} s because {bound}+ tasks waited in the queue "
                     f"(the workers are behind; last depth {depth}), {self.late_cycles:,} sent over an interval late")
        return text
