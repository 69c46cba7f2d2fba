"""Replay an arrival trace through a policy and measure cost and wait.

The world: a FIFO queue fed by a trace of arrivals per second; each dyno, once booted,
completes ``dyno_rate`` messages a second (the truth, which the operator's figure in the
settings may miss); a dyno added at t consumes from t + its boot (each dyno's boot drawn
around ``boot_seconds``); a removed dyno stops at once (Heroku stops the newest first).
Service time varies per message (``service_noise``) and drifts over minutes (``drift``);
a downstream limit (``throughput_cap``) can cap what any number of dynos delete.
In flight = the messages being worked on: deletes per second × service time.

Every ``interval`` seconds the policy is consulted and sees only what it would see live:
visible and in-flight counts as they were some seconds ago (between ``lag_min_seconds``
and ``lag_seconds``), the formation quantity, the dynos up and starting, the boot times
of dynos that came up since the last look (Heroku's dyno events), and, when
``cloudwatch`` is on, CloudWatch's per-minute ``NumberOfMessagesDeleted`` and
``ApproximateAgeOfOldestMessage`` points one to two minutes after their minute ended.
Billing counts every dyno in the formation, booting ones included, per second.

Pure Python, no Django, no clock: the same policies as live, fed simulated observations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaling.policy_types import Bounds, Observation, Policy
from scaling.schedules import ScheduleWindow, effective_bounds
from scaling.world import QueueWorld, Waits, World

__all__ = ["FLAP_SECONDS", "TRACE_EPOCH", "QueueWorld", "Result", "Sample", "World", "simulate", "trace_from_history"]

# Monday 2026-01-05 00:00 UTC: second 0 of every trace, so schedules line up with weekdays.
TRACE_EPOCH = 1767571200.0
# A write that reverses the one before within this long is a flap (a minute: four looks at 15 s).
FLAP_SECONDS = 60


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
    reason: str = ""


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
    late_share_after_warmup: float = 0.0  # of the messages that arrived after the warm-up
    boots_cancelled: int = 0  # dynos removed while still booting: paid for, never served
    flaps: int = 0  # writes that reverse the one before within FLAP_SECONDS (up then down, or down then up)
    details: dict[str, Any] = field(default_factory=dict)  # the policy's last details

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
            "boots_cancelled": self.boots_cancelled, "flaps": self.flaps,
            "unfinished": round(self.unfinished),
        }


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
    warmup_seconds: float = 0.0,
    keep_reasons: bool = False,
) -> Result:
    """``warmup_seconds``: messages arriving before then are left out of
    ``late_share_after_warmup`` (the time a policy needs to learn, reported apart)."""
    if interval <= 0:
        raise ValueError("interval must be greater than 0")
    initial = bounds.min_dynos if world.initial_dynos is None else world.initial_dynos
    qw = QueueWorld(world, dynos=initial)
    waits, after_warmup = Waits(), Waits()
    policy_state: Mapping[str, Any] = dict(state or {})
    dyno_seconds = 0.0
    writes = 0
    boots_cancelled = flaps = 0
    last_write: tuple[int, int] | None = None  # (second, direction) of the last formation write
    messages = 0.0
    samples: list[Sample] = []
    details: Mapping[str, Any] = {}
    next_cycle = 0.0
    end_of_trace = len(trace)
    last_report = -1.0
    t = 0
    while True:
        if t >= end_of_trace and (qw.visible < 1e-6 or t >= end_of_trace + world.max_drain_seconds):
            break
        arrivals = float(trace[t]) if t < end_of_trace else 0.0
        messages += arrivals
        qw.tick(t, arrivals, waits, after_warmup, warmup_seconds)
        dyno_seconds += qw.formation

        if t >= next_cycle:
            seen_visible, seen_in_flight, seen_age = qw.seen()
            at = TRACE_EPOCH + t
            running = qw.running(t)
            deleted, ages = qw.metrics(t, TRACE_EPOCH)
            obs = Observation(
                visible=int(round(seen_visible)), in_flight=int(round(seen_in_flight)), delayed=0,
                quantity=qw.formation, running=running, at=at, oldest_age=seen_age,
                starting=qw.formation - running, boot_durations=qw.booted_since_last_look(t),
                deleted_per_minute=deleted, oldest_age_per_minute=ages,
            )
            current_bounds, _ = effective_bounds(bounds, windows, at)
            verdict = policy.decide(obs, current_bounds, settings, policy_state)
            policy_state, details = verdict.state, verdict.details
            if verdict.desired != qw.formation:
                writes += 1
                boots_cancelled += qw.booting_among_removed(verdict.desired, t)
                direction = 1 if verdict.desired > qw.formation else -1
                if last_write is not None and last_write[1] != direction and t - last_write[0] <= FLAP_SECONDS:
                    flaps += 1
                last_write = (t, direction)
                qw.set_formation(verdict.desired, t)
            samples.append(Sample(t, obs.visible, obs.in_flight, qw.formation, running, verdict.desired,
                                  qw.oldest_wait(t), verdict.reason if keep_reasons else ""))
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
        if arrival >= warmup_seconds:
            after_warmup.add(int(t - arrival), left)
    if progress is not None and last_report < 1.0:
        progress(1.0)
    return Result(
        seconds=t,
        messages=messages,
        dyno_seconds=dyno_seconds,
        writes=writes,
        boots_cancelled=boots_cancelled,
        flaps=flaps,
        late_share=waits.share_over(world.target_wait_seconds),
        p50_wait=waits.percentile(0.50),
        p95_wait=waits.percentile(0.95),
        p99_wait=waits.percentile(0.99),
        max_wait=waits.percentile(1.0),
        unfinished=sum(left for _, left in qw.queue),
        dyno_rate=world.dyno_rate,
        samples=samples,
        late_share_after_warmup=after_warmup.share_over(world.target_wait_seconds),
        details=dict(details),
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
