"""Beat's scheduler: every PeriodicTask row stays the truth, dispatch comes from a heap in memory.

django-celery-beat's DatabaseScheduler does database work on every send: it asks whether
the schedule changed, compares every entry with its previous copy, and every three minutes
re-saves every task it sent. At 1,000 pairs every 15 s that is most of a core and pauses of
seconds in which nothing is sent. This scheduler keeps what it does well and drops the rest:

- The rows are the truth. The admin and the services create, change, disable and delete
  PeriodicTask rows as before (``services.pair_schedule_sync``, ``pair_delete``); django-
  celery-beat's ``PeriodicTasks`` marker says when one changed, and is read once every
  ``CHANGE_CHECK_SECONDS``. Then every enabled row is read again (one query) and the heap
  rebuilt, keeping each unchanged task's next due time.
- A send touches no database: the next due task is on top of a heap; sending is one
  publish on a producer kept open. ``last_run_at`` and ``total_run_count`` are written for
  every task sent, in one batched UPDATE every ``FLUSH_SECONDS`` and at shutdown.
- Interval tasks run at fixed phases: a task's phase within its interval comes from its
  name, so 1,000 pairs at 15 s are spread over the 15 s (not all sent in the first second
  after a restart), and a restart keeps each pair's rhythm.
- Pairs' cycles are not queued faster than the workers take them: before sending one,
  beat looks at the broker queue's depth (Redis LLEN, one cheap call, at most every
  ``DEPTH_CHECK_SECONDS`` or when its own sends may have filled it). At ``BEAT_MAX_QUEUED``
  or more it holds the cycles back; they wait on the heap in due order, so when the workers
  catch up the pair that waited longest goes first, and every pair still cycles, less
  often. Other tasks (audit shipping, alerts, pruning) are never held.

Beat also watches the workers: alerts are evaluated and sent by a task the workers run, so
when none has finished a task for a few minutes beat evaluates and sends them itself, with
a "no worker running tasks" problem (``scaling.alerts.watch``), in a thread of its own.

Every minute beat logs what it sent, what it held back and its dispatch lag (due time to
send time, p50 and p99). ``DYNOSCALER_BEAT_DISPATCH_LOG`` names a file that gets one line
per send (due, sent, held, name) for the benchmark.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import cached_property
from typing import IO, Any

from celery.beat import Scheduler
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.db.utils import DatabaseError, InterfaceError
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import ModelEntry
from kombu.exceptions import OperationalError

from scaling.adapters.broker import broker_errors, broker_queue_depth_reader, reuse_one_redis_client
from scaling.alerts import watch
from scaling.beat_tasks import CYCLE_TASK, Stats, Task, task_from_row

__all__ = ["CYCLE_TASK", "DynoScalerScheduler"]

log = logging.getLogger(__name__)

CHANGE_CHECK_SECONDS = 2.0
FLUSH_SECONDS = 300.0
DEPTH_CHECK_SECONDS = 0.5
HOLD_RECHECK_SECONDS = 0.25
SUMMARY_SECONDS = 60.0
# A send later than this (or a quarter of the interval, if shorter) starts the task's rhythm
# again from the send, rather than send again soon after: a cycle that close to its previous
# one would be dropped by the pair's claim anyway.
LATE_RESTART_SECONDS = 1.0


class DynoScalerScheduler(Scheduler):
    """See the module's docstring. Used by the Procfile's ``beat`` with ``--scheduler``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tasks: dict[int, Task] = {}
        self.heaps: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}  # holdable -> (due, seq, id)
        self._seq = 0
        self._change_marker: datetime | None = None
        self._next_change_check = 0.0
        self._next_flush = time.monotonic() + FLUSH_SECONDS
        self._depth_reader: Any = None
        self._depth: int | None = None
        self._depth_checked = 0.0
        self._sent_since_depth = 0
        self._depth_unread = False
        self._broker_errors: tuple[type[BaseException], ...] = (OperationalError,)
        self._sends_failed = 0
        self._stats = Stats()
        self._stats_since = time.monotonic()
        self._dispatch_log: IO[str] | None = None
        self._last_hold_told = -SUMMARY_SECONDS
        self._watching_since = datetime.now(dt_timezone.utc)
        self._next_watch = time.monotonic() + watch.WATCH_SECONDS
        self._stand_in: threading.Thread | None = None
        self._workers_silent = False
        super().__init__(*args, **kwargs)
        self.max_sleep = min(float(self.max_interval or 5.0), 5.0)

    # --- loading ---------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        # The settings' tasks (audit shipping, pruning, alerts) are rows too, as with the
        # DatabaseScheduler, so the admin shows them and one code path sends everything.
        for name, entry in self.app.conf.beat_schedule.items():
            try:
                ModelEntry.from_entry(name, app=self.app, **entry)
            except Exception:
                log.exception("beat: could not store the schedule %r from settings", name)
        self.max_queued: int = settings.BEAT_MAX_QUEUED
        self._depth_reader = broker_queue_depth_reader(self.app)
        if self._depth_reader is None:
            log.info("beat: the broker's queue depth cannot be read here; cycles are never held back")
        # The broker is not touched here: the producer is made at the first send (see producer).
        path = getattr(settings, "BEAT_DISPATCH_LOG", None)
        if path:
            self._dispatch_log = open(path, "a", buffering=1)  # noqa: SIM115  (line by line: a reader sees every send)
        self._reload(time.time())

    def _changed(self) -> bool:
        """Whether a PeriodicTask row changed since we read them (one query)."""
        try:
            close_old_connections()  # a connection the server dropped is replaced, not reused
            marker = PeriodicTasks.last_change()
        except (DatabaseError, InterfaceError) as exc:
            log.warning("beat: could not check the schedule for changes, trying again: %s", exc)
            return False
        if marker == self._change_marker:
            return False
        self._change_marker = marker
        return True

    def _reload(self, now: float) -> None:
        """Read every enabled row; keep each unchanged task's due time; rebuild the heaps."""
        self._change_marker = PeriodicTasks.last_change()
        rows = PeriodicTask.objects.enabled().select_related("interval", "crontab", "solar", "clocked")
        fresh: dict[int, Task] = {}
        for row in rows:
            try:
                task = task_from_row(row)
            except Exception:
                log.exception("beat: the periodic task %r cannot be scheduled; fix or disable it", row.name)
                continue
            old = self.tasks.get(task.id)
            if old is not None and old.fingerprint == task.fingerprint:
                task.due, task.last_run_at = old.due, old.last_run_at
                task.sent_unflushed, task.flush_run_at = old.sent_unflushed, old.flush_run_at
            else:
                if old is not None:
                    task.sent_unflushed, task.flush_run_at, task.last_run_at = (
                        old.sent_unflushed, old.flush_run_at, old.last_run_at)
                task.due = self._first_due(task, now)
            fresh[task.id] = task
        gone = [t for i, t in self.tasks.items() if i not in fresh and t.sent_unflushed]
        self.tasks = fresh
        self._flush(extra=gone)
        self.heaps = {True: [], False: []}
        for task in fresh.values():
            self._push(task)
        log.info("beat: %d periodic tasks scheduled (%d pair cycles)", len(fresh),
                 sum(t.holdable for t in fresh.values()))

    def _first_due(self, task: Task, now: float) -> float:
        if task.every:
            due = task.phase_due(now)
        else:
            due = now + self._not_due_for(task)
        if task.start_time is not None:
            due = max(due, task.start_time.timestamp())
        return due

    def _not_due_for(self, task: Task) -> float:
        """For crontab, solar and clocked schedules: 0 if due now, else seconds until it may be.
        A row that never ran counts from now: its first run is its schedule's next moment."""
        last = task.last_run_at or datetime.now(dt_timezone.utc)
        is_due, next_check = task.schedule.is_due(last.astimezone(self.app.timezone))
        return 0.0 if is_due else max(0.0, float(next_check))

    def _push(self, task: Task) -> None:
        self._seq += 1
        heapq.heappush(self.heaps[task.holdable], (task.due, self._seq, task.id))

    # --- the loop ----------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send everything that is due; return how long beat may sleep."""
        now = time.time()
        mono = time.monotonic()
        if mono >= self._next_change_check:
            self._next_change_check = mono + CHANGE_CHECK_SECONDS
            if self._changed():
                self._reload(now)
        if mono >= self._next_flush:
            self._next_flush = mono + FLUSH_SECONDS
            self._flush()
        if mono - self._stats_since >= SUMMARY_SECONDS:
            self._summarize(mono)
        if mono >= self._next_watch:
            self._next_watch = mono + watch.WATCH_SECONDS
            self._watch_workers()

        self._send_due(self.heaps[False], now, hold=False)
        held = self._send_due(self.heaps[True], now, hold=True)
        if held:
            if self._stats.held_since is None:
                self._stats.held_since = mono
                if mono - self._last_hold_told >= SUMMARY_SECONDS:
                    self._last_hold_told = mono
                    log.warning("beat: holding pair cycles back: %s tasks wait in the queue (the workers are behind); "
                                "pairs will cycle less often, the longest-waiting first", self._depth)
            return HOLD_RECHECK_SECONDS
        if self._stats.held_since is not None:
            self._stats.held_seconds += mono - self._stats.held_since
            self._stats.held_since = None
        soonest = min((heap[0][0] for heap in self.heaps.values() if heap), default=now + self.max_sleep)
        wait = min(soonest - time.time(), self.max_sleep, self._next_change_check - time.monotonic())
        return max(wait, 0.001)

    def _send_due(self, heap: list[tuple[float, int, int]], now: float, *, hold: bool) -> bool:
        """Send the heap's due tasks in due order; True if cycles were held back."""
        while heap and heap[0][0] <= now:
            due, _, task_id = heap[0]
            task = self.tasks.get(task_id)
            if task is None or task.due != due:  # removed, or rescheduled by a reload
                heapq.heappop(heap)
                continue
            if hold and self._workers_behind():
                return True
            heapq.heappop(heap)
            if self._still_valid(task, now):
                if task.every is None and self._not_due_for(task) > 0:
                    task.due = now + self._not_due_for(task)
                else:
                    self._send(task, due)
                    task.due = self._next_due(task, due, time.time())
                self._push(task)
        return False

    def _still_valid(self, task: Task, now: float) -> bool:
        if task.expires is not None and now >= task.expires.timestamp():
            log.info("beat: %s expired at %s; not sent again", task.name, task.expires)
            self.tasks.pop(task.id, None)
            return False
        return True

    def _next_due(self, task: Task, due: float, sent: float) -> float:
        if task.every is None:
            return sent + self._not_due_for(task)
        # On time, a task keeps its phase. While cycles are held back every task counts from
        # when it was sent: a pair that happened to be sent on time must not keep an earlier
        # place than the pairs that waited longer, or it cycles more often than they do.
        holding = task.holdable and self._stats.held_since is not None
        if not holding and sent - due <= min(LATE_RESTART_SECONDS, task.every / 4):
            return due + task.every
        return sent + task.every

    def _send(self, task: Task, due: float) -> None:
        sent = time.time()
        registered = self.app.tasks.get(task.task)
        try:
            if registered is not None:
                registered.apply_async(tuple(task.args), task.kwargs, producer=self.producer, **task.options)
            else:
                self.app.send_task(task.task, task.args, task.kwargs, producer=self.producer, **task.options)
        except self._broker_errors as exc:
            # The broker is down or restarting: one line when it goes, one when it is back,
            # not a traceback per send (Celery's own consumer does the same).
            if not self._sends_failed:
                log.warning("beat: the broker cannot be reached (%s); each task is tried again at its next "
                            "due time", exc)
            self._sends_failed += 1
            return
        except Exception:
            log.exception("beat: could not send %s; it is tried again at its next due time", task.name)
            return
        if self._sends_failed:
            log.info("beat: the broker is reachable again; %d sends failed while it was not", self._sends_failed)
            self._sends_failed = 0
        lag = sent - due
        self._stats.lags.append(lag)
        if task.holdable:
            self._stats.sent_cycles += 1
            self._sent_since_depth += 1
            if task.every and lag > task.every:
                self._stats.late_cycles += 1
        else:
            self._stats.sent_other += 1
        task.last_run_at = datetime.fromtimestamp(sent, dt_timezone.utc)
        task.sent_unflushed += 1
        if self._dispatch_log is not None:
            self._dispatch_log.write(f"{due:.3f} {sent:.3f} {int(self._stats.held_since is not None)} {task.name}\n")
        if task.one_off:
            self.tasks.pop(task.id, None)
            self._flush(extra=[task])
            PeriodicTask.objects.filter(id=task.id).update(enabled=False)
            PeriodicTasks.update_changed()
        elif task.every is None:
            # A crontab's last run must survive a restart, or it would run again: these are rare, write it now.
            self._flush(extra=[], only=[task])

    def _workers_behind(self) -> bool:
        """Whether the broker's queue holds ``max_queued`` or more tasks, counting our own
        sends since we last looked (the queue is read at most every DEPTH_CHECK_SECONDS)."""
        if self._depth_reader is None:
            return False
        mono = time.monotonic()
        estimate = (self._depth or 0) + self._sent_since_depth
        if self._depth is None or mono - self._depth_checked >= DEPTH_CHECK_SECONDS or estimate >= self.max_queued:
            try:
                self._depth = int(self._depth_reader())
                self._depth_unread = False
            except Exception as exc:
                if not self._depth_unread:  # once per outage, as for the sends
                    log.warning("beat: could not read the queue's depth (%s); sending anyway", exc)
                self._depth_unread = True
                self._depth = 0
            self._depth_checked = mono
            self._sent_since_depth = 0
            estimate = self._depth
        return estimate >= self.max_queued

    # --- watching the workers ------------------------------------------------------------------

    def _watch_workers(self) -> None:
        """Say beat runs (the workers watch that), and stand in for the workers' alerts task
        while none finishes a task (see the module)."""
        try:
            close_old_connections()
            watch.beat_seen()
            if self._stand_in is not None and self._stand_in.is_alive():
                return  # the last one is still sending
            silence = watch.silence_of(watch.WORKERS, datetime.now(dt_timezone.utc),
                                       watching_since=self._watching_since)
        except (DatabaseError, InterfaceError) as exc:
            log.warning("beat: could not see whether the workers run tasks (tried again later): %s", exc)
            return
        if silence is None:
            if self._workers_silent:
                log.info("beat: a worker runs tasks again; the alerts are evaluated by the workers again")
                self._workers_silent = False
            return
        if not self._workers_silent:
            log.warning("beat: no worker has finished a task since %s; beat evaluates and sends the alerts "
                        "itself until one does", f"{silence.last:%Y-%m-%d %H:%M:%S} UTC")
            self._workers_silent = True
        self._stand_in = threading.Thread(target=self._stand_in_run, args=(silence, self._broker_state()),
                                          name="alerts-stand-in", daemon=True)
        self._stand_in.start()

    def _broker_state(self) -> str:
        if self._sends_failed:
            return "beat cannot reach the broker either"
        if self._depth:
            return f"{self._depth} tasks wait in the broker's queue"
        return ""

    @staticmethod
    def _stand_in_run(silence: watch.Silence, broker: str) -> None:
        try:
            watch.stand_in(silence, broker=broker)
        except Exception:
            log.exception("beat: could not evaluate or send the alerts in the workers' place")
        finally:
            connection.close()  # this thread's own connection

    # --- writing back --------------------------------------------------------------------------

    def _flush(self, extra: list[Task] | None = None, only: list[Task] | None = None) -> None:
        """Write last_run_at and total_run_count of every task sent since the last flush (or
        of ``only`` those), in one batched UPDATE (no signal: the change marker does not
        move, nothing reloads)."""
        candidates = only if only is not None else [*self.tasks.values(), *(extra or [])]
        sent = [t for t in candidates if t.sent_unflushed]
        if not sent:
            return
        rows = []
        for task in sent:
            row = PeriodicTask(id=task.id)
            row.last_run_at = task.last_run_at
            row.total_run_count = F("total_run_count") + task.sent_unflushed
            rows.append(row)
        try:
            close_old_connections()
            PeriodicTask.objects.bulk_update(rows, ["last_run_at", "total_run_count"])
        except (DatabaseError, InterfaceError) as exc:
            log.warning("beat: could not record when tasks last ran (tried again later): %s", exc)
            return
        for task in sent:
            task.sent_unflushed = 0

    def _summarize(self, mono: float) -> None:
        if self._stats.held_since is not None:
            self._stats.held_seconds += mono - self._stats.held_since
            self._stats.held_since = mono
        log.info(self._stats.line(mono - self._stats_since, self._depth, self.max_queued))
        if self._dispatch_log is not None:
            self._dispatch_log.flush()
        held_since = self._stats.held_since
        self._stats = Stats(held_since=held_since)
        self._stats_since = mono

    # --- celery's Scheduler interface ------------------------------------------------------------

    @cached_property
    def producer(self) -> Any:
        """Made at the first send, not while beat starts: celery's scheduler opened it in its
        setup, retrying up to 100 times with an ERROR line each, and a SIGTERM or Ctrl-C
        meanwhile made its handler build a second scheduler that retried again, so a beat
        started before its broker could not be stopped. A send that cannot connect fails
        as any send to a broker that is away does (one line per outage), and the next
        send tries again."""
        producer = self.app.amqp.Producer(self._ensure_connected(), auto_declare=False)
        reuse_one_redis_client(producer)
        self._broker_errors = broker_errors(producer)
        return producer

    def _ensure_connected(self) -> Any:
        # One attempt; the retrying is the sends' own, each at its due time.
        return self.connection.ensure_connection(max_retries=0)

    def should_sync(self) -> bool:
        return False  # tick flushes on its own clock

    def sync(self) -> None:
        self._flush()
        if self._dispatch_log is not None:
            self._dispatch_log.flush()

    def close(self) -> None:
        self.sync()
        if self._dispatch_log is not None:
            self._dispatch_log.close()
            self._dispatch_log = None

    @property
    def info(self) -> str:
        return (f"    . holds pair cycles back at {settings.BEAT_MAX_QUEUED}+ queued tasks; "
                f"looks for schedule changes every {CHANGE_CHECK_SECONDS:g} s")
