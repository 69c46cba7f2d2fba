"""Who tells of workers that stopped? Alerts are evaluated and sent by tasks the workers
run, so with no worker running tasks nothing would be told at all: every pair would stall
in silence. Beat, which sends those tasks, watches for that instead:

- A worker that finishes a task notes it (``workers_seen``, at most every
  ``SEEN_EVERY_SECONDS`` per process: one UPDATE of one row).
- Beat reads that note every ``WATCH_SECONDS``. When no worker has finished a task for
  ``silent_after()`` (counted from beat's own start at the earliest: while beat was down,
  the workers had nothing to do), beat evaluates the alerts itself, with one more problem,
  ``workers_silent``, and sends the channels' messages, in a thread of its own so its
  sends are not delayed (``stand_in``).
- When a worker runs the alerts task again, its evaluation does not see ``workers_silent``
  (its detector is not among the workers' own), so the problem resolves and the channels
  that were told hear that it cleared.

The other way round, each worker process watches beat (``BeatWatch``, a thread started as
the worker is ready): beat notes every ``WATCH_SECONDS`` that it runs; after
``silent_after()`` without that note, the worker stands in and tells ``beat_silent``, which
clears once beat sends the alerts task again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from scaling.alerts.delivery import channel_drain
from scaling.alerts.detectors import DETECTORS, ActiveProblem, stalled_pairs
from scaling.alerts.evaluation import Evaluation, alerts_evaluate
from scaling.alerts.messages import at, duration
from scaling.models import Heartbeat
from scaling.models.alerts import ProblemKind

log = logging.getLogger(__name__)

WORKERS = "workers"
BEAT = "beat"
SEEN_EVERY_SECONDS = 10.0
WATCH_SECONDS = 30.0
_seen_noted = -SEEN_EVERY_SECONDS


def silent_after() -> timedelta:
    """How long the workers (no finished task) or beat (no note) may be silent before the
    other speaks: DYNOSCALER_ALERT_WORKERS_MINUTES, and at least three alert ticks (the
    alerts task alone keeps a worker heard from)."""
    return timedelta(seconds=max(settings.ALERT_WORKERS_SILENT_MINUTES * 60, 3 * settings.ALERT_EVALUATE_INTERVAL_SECONDS))


def workers_seen(now: datetime | None = None) -> None:
    """A worker finished a task. Written at most every SEEN_EVERY_SECONDS by this process."""
    global _seen_noted
    mono = time.monotonic()
    if mono - _seen_noted < SEEN_EVERY_SECONDS:
        return
    _seen_noted = mono
    now = now or timezone.now()
    if not Heartbeat.objects.filter(key=WORKERS).update(at=now):
        Heartbeat.objects.get_or_create(key=WORKERS, defaults={"at": now})


def workers_last_seen() -> datetime | None:
    return last_seen(WORKERS)


def last_seen(key: str) -> datetime | None:
    return Heartbeat.objects.filter(key=key).values_list("at", flat=True).first()


def beat_seen(now: datetime | None = None) -> None:
    """Beat runs (written by beat every WATCH_SECONDS)."""
    now = now or timezone.now()
    if not Heartbeat.objects.filter(key=BEAT).update(at=now):
        Heartbeat.objects.get_or_create(key=BEAT, defaults={"at": now})


@dataclass(frozen=True)
class Silence:
    last: datetime  # when the watched side was last heard, or when the watch began if later
    heard: bool  # whether it was heard since the watch began


def silence_of(key: str, now: datetime, *, watching_since: datetime) -> Silence | None:
    """``WORKERS``: no worker has finished a task; ``BEAT``: beat has not said it runs; for
    longer than ``silent_after()``. None while they are heard from."""
    seen = last_seen(key)
    heard = seen is not None and seen >= watching_since
    last = seen if seen is not None and heard else watching_since
    return Silence(last, heard) if now - last > silent_after() else None


def workers_silent_problem(silence: Silence, now: datetime, *, broker: str) -> ActiveProblem:
    last = silence.last
    seen = f"the last one finished {at(last)}" if silence.heard else f"none has since beat started, {at(last)}"
    return ActiveProblem(
        key="workers_silent", kind=ProblemKind.WORKERS_SILENT, since=last + silent_after(),
        covers=("stalled:", "audit_behind", "failing:"),  # workers cycle the pairs and ship the audit trail
        summary=f"no worker has finished a task for {duration(last, now)} ({seen}){'; ' + broker if broker else ''}",
        action="no pair cycles and nothing is scaled until a worker runs tasks again: check that the worker "
        "process is running (heroku ps) and reaches the database and the broker (its log); beat sends the "
        "alerts meanwhile",
    )


def beat_silent_problem(silence: Silence, now: datetime) -> ActiveProblem:
    last = silence.last
    seen = f"it was last heard {at(last)}" if silence.heard else f"not heard since this worker started, {at(last)}"
    return ActiveProblem(
        key="beat_silent", kind=ProblemKind.BEAT_SILENT, since=last + silent_after(),
        covers=("stalled:",),  # beat sends the pairs' cycles
        summary=f"beat has not run for {duration(last, now)} ({seen})",
        action="no pair cycles and nothing is scaled until beat runs again: check that the beat process is running "
        "(heroku ps) and reaches the database and the broker (its log); a worker sends the alerts meanwhile",
    )


def stand_in(silence: Silence, *, broker: str = "", now: datetime | None = None,
             problem: ActiveProblem | None = None) -> Evaluation:
    """Evaluate the alerts as the workers' task would, plus ``problem`` (by default
    ``workers_silent``), and send what is due on every channel. Run by beat while no worker
    runs tasks, and by a worker while beat does not run."""
    now = now or timezone.now()
    problem = problem or workers_silent_problem(silence, now, broker=broker)
    stalled = len(stalled_pairs(now))
    if stalled:  # told here, not one by one (``covers``)
        problem = replace(problem, summary=f"{problem.summary}; {stalled} enabled pair(s) have missed their cycles")

    def silent(_: datetime) -> list[ActiveProblem]:
        return [problem]

    result = alerts_evaluate(now=now, detectors=(*DETECTORS, silent))
    for channel_id in result.channels_due:
        channel_drain(channel_id=channel_id)
    return result


class BeatWatch:
    """A worker's watch on beat, in a daemon thread: every WATCH_SECONDS, beat's note is
    read; while it is older than ``silent_after()`` this worker evaluates and sends the
    alerts, with ``beat_silent``."""

    def __init__(self) -> None:
        self.since = timezone.now()
        self.silent = False
        self._stop = threading.Event()

    def start(self) -> BeatWatch:
        threading.Thread(target=self._run, name="beat-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from django.db import connection

        while not self._stop.wait(WATCH_SECONDS):
            try:
                self.look()
            except Exception:
                log.exception("could not see whether beat runs (tried again later)")
            finally:
                connection.close()  # this thread's own; a fresh one next time

    def look(self, now: datetime | None = None) -> Evaluation | None:
        now = now or timezone.now()
        silence = silence_of(BEAT, now, watching_since=self.since)
        if silence is None:
            if self.silent:
                log.info("beat runs again; the alerts are evaluated as beat asks again")
                self.silent = False
            return None
        if not self.silent:
            log.warning("beat has not run since %s; this worker evaluates and sends the alerts until it does",
                        f"{silence.last:%Y-%m-%d %H:%M:%S} UTC")
            self.silent = True
        return stand_in(silence, now=now, problem=beat_silent_problem(silence, now))
