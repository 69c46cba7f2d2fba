"""Replay an arrival trace through a policy and measure cost and wait.

The world: a FIFO queue fed by a trace of arrivals per second; each dyno, once booted,
completes ``dyno_rate`` messages a second; a dyno added at t consumes from t + boot;
a removed dyno stops at once (Heroku stops the highest-numbered, i.e. newest, first).
Every ``interval`` seconds the policy is consulted and sees only what SQS
GetQueueAttributes and the Heroku formation API would show: visible and in-flight counts
as they were ``lag_seconds`` ago, the formation quantity and the dynos up. Billing counts
every dyno in the formation, booting ones included, per second.

Pure Python, no Django, no clock: the same policies as live, fed simulated observations.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaling.policies import Bounds, Observation, Policy, ScheduleWindow, effective_bounds

# Monday 2026-01-05 00:00 UTC: second 0 of every trace, so schedules line up with weekdays.
TRACE_EPOCH = 1767571200.0


@dataclass(frozen=True)
class World:
    dyno_rate: float = 10.0  # messages per second one dyno completes
    dyno_concurrency: int = 4
    boot_seconds: float = 45.0
    lag_seconds: float = 30.0  # how stale SQS's approximate counts are
    target_wait_seconds: float = 120.0  # for the "late" metric
    initial_dynos: int | None = None  # default: the bounds' min
    max_drain_seconds: int = 4 * 3600  # after the trace, run on until empty or this long

    def __post_init__(self) -> None:
        if not self.dyno_rate > 0:
            raise ValueError("dyno_rate must be greater than 0")
        if self.boot_seconds < 0 or self.lag_seconds < 0:
            raise ValueError("boot_seconds and lag_seconds cannot be negative")


@dataclass
class Sample:
    """The world at one policy cycle."""

    second: int
    visible: int
    in_flight: int
    formation: int
    running: int
    desired: int
    oldest_wait: float


@dataclass
class Result:
    seconds: int
    messages: float
    dyno_seconds: float
    writes: int
    late_share: float
    p50_wait: float
    p95_wait: float
    p99_wait: float
    max_wait: float
    unfinished: float
    dyno_rate: float
    samples: list[Sample] = field(default_factory=list)

    @property
    def dyno_hours(self) -> float:
        return self.dyno_seconds / 3600

    @property
    def floor_hours(self) -> float:
        """The work floor: the dyno-hours the messages need at full use, no idling."""
        return self.messages / self.dyno_rate / 3600

    @property
    def cost_vs_floor(self) -> float:
        return self.dyno_hours / self.floor_hours if self.floor_hours else math.inf

    @property
    def writes_per_hour(self) -> float:
        return self.writes / (self.seconds / 3600) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds, "messages": round(self.messages), "dyno_hours": round(self.dyno_hours, 3),
            "floor_hours": round(self.floor_hours, 3), "cost_vs_floor": round(self.cost_vs_floor, 3),
            "late_share": round(self.late_share, 5), "p50_wait": self.p50_wait, "p95_wait": self.p95_wait,
            "p99_wait": self.p99_wait, "max_wait": self.max_wait, "writes": self.writes,
            "unfinished": round(self.unfinished),
        }


class _Waits:
    """A histogram of waits at one-second resolution, weighted by message count."""

    def __init__(self) -> None:
        self.counts: dict[int, float] = {}
        self.total = 0.0

    def add(self, wait: int, count: float) -> None:
        self.counts[wait] = self.counts.get(wait, 0.0) + count
        self.total += count

    def share_over(self, limit: float) -> float:
        if not self.total:
            return 0.0
        return sum(c for w, c in self.counts.items() if w > limit) / self.total

    def percentile(self, p: float) -> float:
        if not self.total:
            return 0.0
        goal, seen = self.total * p, 0.0
        for wait in sorted(self.counts):
            seen += self.counts[wait]
            if seen >= goal - 1e-9:
                return float(wait)
        return float(max(self.counts))


class QueueWorld:
    """A FIFO queue and a formation, advanced one second at a time.

    ``dynos`` holds when each dyno is (or will be) up, in formation order: new dynos are
    appended with later times and removals take the newest first, so it stays sorted.
    Used by ``simulate`` and, persisted between cycles, by the sandbox provider.
    """

    def __init__(self, world: World, *, dynos: int = 0, now: float = 0.0) -> None:
        self.world = world
        self.queue: deque[list[float]] = deque()  # [arrival second, messages left]
        self.visible = 0.0
        self.in_flight = 0.0
        self.carry = 0.0
        self.dynos: list[float] = [now - world.boot_seconds] * dynos
        lag = int(world.lag_seconds)
        self.history: deque[tuple[float, float, float]] = deque([(0.0, 0.0, 0.0)] * lag, maxlen=lag + 1)

    @property
    def formation(self) -> int:
        return len(self.dynos)

    def running(self, t: float) -> int:
        return bisect_right(self.dynos, t)

    def tick(self, t: float, arrivals: float, waits: _Waits | None = None) -> None:
        """One second: arrivals join the queue, running dynos serve it in order."""
        if arrivals > 0:
            self.queue.append([t, arrivals])
            self.visible += arrivals
        capacity = self.running(t) * self.world.dyno_rate + self.carry
        served = 0.0
        queue = self.queue
        while queue and capacity > 1e-9:
            head = queue[0]
            take = min(head[1], capacity)
            if waits is not None:
                waits.add(int(t - head[0]), take)
            head[1] -= take
            capacity -= take
            served += take
            if head[1] <= 1e-9:
                queue.popleft()
        self.carry = min(capacity, 0.999) if queue else 0.0  # a part-message carries, idle time does not
        self.visible = max(0.0, self.visible - served)
        self.in_flight = served / self.world.dyno_rate * self.world.dyno_concurrency
        self.history.append((self.visible, self.in_flight, self.oldest_wait(t)))

    def oldest_wait(self, t: float) -> float:
        return float(t - self.queue[0][0]) if self.queue else 0.0

    def seen(self) -> tuple[float, float, float]:
        """(visible, in flight, oldest age) as SQS would show them: ``lag_seconds`` ago."""
        return self.history[0]

    def set_formation(self, quantity: int, t: float) -> None:
        if quantity > len(self.dynos):
            self.dynos += [t + self.world.boot_seconds] * (quantity - len(self.dynos))
        else:
            del self.dynos[quantity:]  # Heroku stops the highest-numbered (newest) dynos

    def as_dict(self, *, max_entries: int = 5000) -> dict[str, Any]:
        entries = list(self.queue)
        if len(entries) > max_entries:  # merge the oldest so the saved state stays small
            head = entries[: len(entries) - max_entries + 1]
            entries = [[head[0][0], sum(e[1] for e in head)], *entries[len(head):]]
        return {"queue": entries, "visible": self.visible, "in_flight": self.in_flight, "carry": self.carry,
                "dynos": self.dynos, "history": list(self.history)}

    @classmethod
    def from_dict(cls, world: World, data: dict[str, Any]) -> QueueWorld:
        qw = cls(world)
        qw.queue = deque([float(a), float(n)] for a, n in data.get("queue", []))
        qw.visible = float(data.get("visible", 0.0))
        qw.in_flight = float(data.get("in_flight", 0.0))
        qw.carry = float(data.get("carry", 0.0))
        qw.dynos = sorted(float(d) for d in data.get("dynos", []))
        for item in data.get("history", []):
            qw.history.append((float(item[0]), float(item[1]), float(item[2])))
        return qw


def simulate(
    trace: Sequence[float],
    *,
    policy: Policy,
    settings: Mapping[str, Any],
    bounds: Bounds,
    interval: float,
    world: World = World(),
    windows: Sequence[ScheduleWindow] = (),
    state: Mapping[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
) -> Result:
    if interval <= 0:
        raise ValueError("interval must be greater than 0")
    initial = bounds.min_dynos if world.initial_dynos is None else world.initial_dynos
    qw = QueueWorld(world, dynos=initial)
    waits = _Waits()
    policy_state: Mapping[str, Any] = dict(state or {})
    dyno_seconds = 0.0
    writes = 0
    messages = 0.0
    samples: list[Sample] = []
    next_cycle = 0.0
    end_of_trace = len(trace)
    last_report = -1.0
    t = 0
    while True:
        if t >= end_of_trace and (qw.visible < 1e-6 or t >= end_of_trace + world.max_drain_seconds):
            break
        arrivals = float(trace[t]) if t < end_of_trace else 0.0
        messages += arrivals
        qw.tick(t, arrivals, waits)
        dyno_seconds += qw.formation

        if t >= next_cycle:
            seen_visible, seen_in_flight, seen_age = qw.seen()
            at = TRACE_EPOCH + t
            running = qw.running(t)
            obs = Observation(
                visible=int(round(seen_visible)), in_flight=int(round(seen_in_flight)), delayed=0,
                quantity=qw.formation, running=running, at=at, oldest_age=seen_age,
            )
            current_bounds, _ = effective_bounds(bounds, windows, at)
            verdict = policy.decide(obs, current_bounds, settings, policy_state)
            policy_state = verdict.state
            if verdict.desired != qw.formation:
                writes += 1
                qw.set_formation(verdict.desired, t)
            samples.append(Sample(t, obs.visible, obs.in_flight, qw.formation, running, verdict.desired, qw.oldest_wait(t)))
            next_cycle += interval

        if progress is not None and end_of_trace and t % 3600 == 0:
            done = min(1.0, t / end_of_trace)
            if done > last_report:
                progress(done)
                last_report = done
        t += 1

    # Whatever never got a dyno waited at least until the simulation stopped.
    for arrival, left in qw.queue:
        waits.add(int(t - arrival), left)
    if progress is not None and last_report < 1.0:
        progress(1.0)
    return Result(
        seconds=t,
        messages=messages,
        dyno_seconds=dyno_seconds,
        writes=writes,
        late_share=waits.share_over(world.target_wait_seconds),
        p50_wait=waits.percentile(0.50),
        p95_wait=waits.percentile(0.95),
        p99_wait=waits.percentile(0.99),
        max_wait=waits.percentile(1.0),
        unfinished=sum(left for _, left in qw.queue),
        dyno_rate=world.dyno_rate,
        samples=samples,
    )


def trace_from_history(
    points: Sequence[tuple[float, int, int, int]], *, dyno_rate: float, dyno_concurrency: int
) -> list[float]:
    """Rebuild arrivals per second from recorded cycles: (when, visible, in flight, running).

    Between two cycles, arrivals = the change in visible messages + what the busy dynos
    completed (in flight ÷ concurrency, at most the running dynos, × rate), spread evenly
    over the seconds between them. Approximate, as the counts are; good enough to compare
    settings on last week's shape of traffic.
    """
    if len(points) < 2:
        return []
    start = points[0][0]
    trace = [0.0] * (int(points[-1][0] - start) + 1)
    for (t0, v0, f0, r0), (t1, v1, f1, _) in zip(points, points[1:]):
        dt = t1 - t0
        if dt <= 0:
            continue
        busy = min((f0 + f1) / 2 / dyno_concurrency, max(r0, 0))
        arrivals = max(0.0, v1 - v0 + busy * dyno_rate * dt)
        first, last = int(t0 - start), int(t1 - start)
        per_second = arrivals / max(1, last - first)
        for s in range(first, last):
            trace[s] += per_second
    return trace
