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
    rate = world.dyno_rate
    queue: deque[list[float]] = deque()  # [arrival second, messages left]
    visible = 0.0
    initial = bounds.min_dynos if world.initial_dynos is None else world.initial_dynos
    dynos: list[float] = [-world.boot_seconds] * initial  # when each became (or becomes) up
    lag = int(world.lag_seconds)
    history: deque[tuple[float, float, float]] = deque(maxlen=lag + 1)  # (visible, in flight, oldest age)
    history.extend([(0.0, 0.0, 0.0)] * lag)  # before second 0 the queue was empty
    waits = _Waits()
    policy_state: Mapping[str, Any] = dict(state or {})
    dyno_seconds = 0.0
    writes = 0
    messages = 0.0
    samples: list[Sample] = []
    next_cycle = 0.0
    carry = 0.0
    end_of_trace = len(trace)
    last_report = -1.0
    t = 0
    while True:
        if t >= end_of_trace and (visible < 1e-6 or t >= end_of_trace + world.max_drain_seconds):
            break
        arrivals = float(trace[t]) if t < end_of_trace else 0.0
        if arrivals > 0:
            queue.append([t, arrivals])
            visible += arrivals
            messages += arrivals

        running = bisect_right(dynos, t)  # sorted: added in time order, removed from the end
        capacity = running * rate + carry
        served = 0.0
        while queue and capacity > 1e-9:
            head = queue[0]
            take = min(head[1], capacity)
            waits.add(int(t - head[0]), take)
            head[1] -= take
            capacity -= take
            served += take
            if head[1] <= 1e-9:
                queue.popleft()
        carry = min(capacity, 0.999) if queue else 0.0  # a part-message carries, idle time does not
        visible = max(0.0, visible - served)
        in_flight = served / rate * world.dyno_concurrency
        oldest = float(t - queue[0][0]) if queue else 0.0
        history.append((visible, in_flight, oldest))
        dyno_seconds += len(dynos)

        if t >= next_cycle:
            seen_visible, seen_in_flight, seen_age = history[0]
            at = TRACE_EPOCH + t
            obs = Observation(
                visible=int(round(seen_visible)), in_flight=int(round(seen_in_flight)), delayed=0,
                quantity=len(dynos), running=running, at=at, oldest_age=seen_age,
            )
            current_bounds, _ = effective_bounds(bounds, windows, at)
            verdict = policy.decide(obs, current_bounds, settings, policy_state)
            policy_state = verdict.state
            if verdict.desired != len(dynos):
                writes += 1
                if verdict.desired > len(dynos):
                    dynos += [t + world.boot_seconds] * (verdict.desired - len(dynos))
                else:
                    del dynos[verdict.desired:]
            samples.append(Sample(t, obs.visible, obs.in_flight, len(dynos), running, verdict.desired, oldest))
            next_cycle += interval

        if progress is not None and end_of_trace and t % 3600 == 0:
            done = min(1.0, t / end_of_trace)
            if done > last_report:
                progress(done)
                last_report = done
        t += 1

    # Whatever never got a dyno waited at least until the simulation stopped.
    for arrival, left in queue:
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
        unfinished=sum(left for _, left in queue),
        dyno_rate=rate,
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
