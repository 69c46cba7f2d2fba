"""Scaling policies: pure decisions.

A policy sees what SQS and the Heroku formation showed this cycle (an ``Observation``),
the pair's bounds and settings, and the state it saved last cycle; it returns a
``Verdict``: the quantity it wants, its new state and a sentence a person can read.

Nothing here imports Django, boto3 or the clock, so the same code runs live, in a
simulator and in table-driven tests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Observation:
    """What one cycle saw. Counts are SQS's approximate ones, summed over the pair's queues."""

    visible: int
    in_flight: int
    delayed: int
    quantity: int  # the formation quantity for the process type
    running: int  # dynos of that type in state "up"
    at: float = 0.0  # when, in seconds since the epoch (given, never read from a clock)
    # Age of the oldest waiting message, where the source can tell (SQS alone cannot;
    # the simulator can, for baselines that scale on latency).
    oldest_age: float | None = None

    def __post_init__(self) -> None:
        for name in ("visible", "in_flight", "delayed", "quantity", "running"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")


@dataclass(frozen=True)
class Bounds:
    min_dynos: int
    max_dynos: int

    def __post_init__(self) -> None:
        if self.min_dynos < 0:
            raise ValueError("min_dynos cannot be negative")
        if self.max_dynos < self.min_dynos:
            raise ValueError("max_dynos must be at least min_dynos")

    def clamp(self, quantity: int) -> int:
        return max(self.min_dynos, min(self.max_dynos, quantity))


@dataclass(frozen=True)
class Verdict:
    desired: int
    state: Mapping[str, Any]
    reason: str
    backlog_per_instance: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    name: str

    def decide(
        self,
        observation: Observation,
        bounds: Bounds,
        settings: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> Verdict: ...


# --- classic: the original DynoScaler rule --------------------------------------------


@dataclass(frozen=True)
class ClassicSettings:
    backlog_threshold: float  # visible messages one dyno is expected to handle
    up_cycles: int
    down_cycles: int

    def __post_init__(self) -> None:
        if not self.backlog_threshold > 0:
            raise ValueError("backlog_threshold must be greater than 0")
        if self.up_cycles < 1:
            raise ValueError("up_cycles must be at least 1")
        if self.down_cycles < 1:
            raise ValueError("down_cycles must be at least 1")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ClassicSettings:
        return cls(
            backlog_threshold=float(data["backlog_threshold"]),
            up_cycles=int(data["up_cycles"]),
            down_cycles=int(data["down_cycles"]),
        )


@dataclass(frozen=True)
class ClassicState:
    up_count: int = 0
    down_count: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ClassicState:
        # Saved state from an older release, or none at all, starts the counters at zero.
        return cls(
            up_count=max(0, int(data.get("up_count", 0))),
            down_count=max(0, int(data.get("down_count", 0))),
        )

    def as_dict(self) -> dict[str, int]:
        return {"up_count": self.up_count, "down_count": self.down_count}


def backlog_per_instance(visible: int, running: int) -> float | None:
    """Visible messages per running dyno; None when no dyno runs (infinite if any wait)."""
    if running == 0:
        return None
    return visible / running


class ClassicPolicy:
    """The seed's rule, unchanged.

    Backlog per instance = visible messages / running dynos. Each cycle, over the threshold
    the up-counter rises by one and the down-counter falls by one; otherwise the reverse;
    neither goes below zero. When the up-counter reaches ``up_cycles`` one dyno is added;
    when the down-counter reaches ``down_cycles`` one is removed; either way both counters
    reset. No dynos running while messages wait counts as over the threshold. The result
    always lies within min/max, so a formation found outside them is brought back at once.
    """

    name = "classic"

    def decide(
        self,
        observation: Observation,
        bounds: Bounds,
        settings: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> Verdict:
        cfg = ClassicSettings.from_mapping(settings)
        counters = ClassicState.from_mapping(state)
        bpi = backlog_per_instance(observation.visible, observation.running)
        over = (bpi is None and observation.visible > 0) or (
            bpi is not None and bpi > cfg.backlog_threshold
        )

        if over:
            up, down = counters.up_count + 1, max(0, counters.down_count - 1)
        else:
            up, down = max(0, counters.up_count - 1), counters.down_count + 1

        quantity = observation.quantity
        load = _describe_load(observation.visible, observation.running, bpi)
        comparison = "over" if over else "not over"
        step = 0
        if up >= cfg.up_cycles:
            step, up, down = 1, 0, 0
            why = f"{load}, {comparison} threshold {cfg.backlog_threshold:g} for {cfg.up_cycles} cycle(s): add one dyno"
        elif down >= cfg.down_cycles:
            step, up, down = -1, 0, 0
            why = f"{load}, {comparison} threshold {cfg.backlog_threshold:g} for {cfg.down_cycles} cycle(s): remove one dyno"
        else:
            why = (
                f"{load}, {comparison} threshold {cfg.backlog_threshold:g}: "
                f"up {up}/{cfg.up_cycles}, down {down}/{cfg.down_cycles}"
            )

        wanted = quantity + step
        desired = bounds.clamp(wanted)
        if quantity > bounds.max_dynos:
            why += f"; the formation is above max {bounds.max_dynos}"
        elif quantity < bounds.min_dynos:
            why += f"; the formation is below min {bounds.min_dynos}"
        elif desired != wanted:
            limit = "max" if wanted > bounds.max_dynos else "min"
            why += f"; held at {limit} {desired}"
        if desired != quantity:
            why += f" → {quantity} to {desired} dynos"
        else:
            why += f" → stay at {quantity}"

        return Verdict(
            desired=desired,
            state=ClassicState(up_count=up, down_count=down).as_dict(),
            reason=why,
            backlog_per_instance=bpi,
        )


def _describe_load(visible: int, running: int, bpi: float | None) -> str:
    if bpi is None:
        return f"{visible:,} visible message(s) and no dyno running"
    return f"{visible:,} visible message(s) / {running} running dyno(s) = {bpi:,.1f} per dyno"


# --- target_wait: the default for new pairs ---------------------------------------------


@dataclass(frozen=True)
class TargetWaitSettings:
    """Operator units: how long a message may wait, and what one dyno gets through."""

    dyno_rate: float  # messages per second one dyno completes
    target_wait_seconds: float = 120.0  # a message should start within this long of arriving
    dyno_concurrency: int = 1  # messages one dyno works on at once (its worker concurrency)
    boot_seconds: float = 45.0  # from formation change to the new dyno consuming
    scale_down_window_seconds: float = 90.0  # a lower need must hold this long
    interval_seconds: float = 30.0  # how often the policy is consulted
    lag_seconds: float = 30.0  # how stale SQS's approximate counts may be

    def __post_init__(self) -> None:
        if not self.dyno_rate > 0:
            raise ValueError("dyno_rate must be greater than 0 messages per second")
        if self.dyno_concurrency < 1:
            raise ValueError("dyno_concurrency must be at least 1")
        if self.boot_seconds < 0:
            raise ValueError("boot_seconds cannot be negative")
        if not self.target_wait_seconds > self.boot_seconds:
            raise ValueError(
                f"target_wait_seconds ({self.target_wait_seconds:g}) must exceed boot_seconds "
                f"({self.boot_seconds:g}): a new dyno cannot help a message that must start before it boots"
            )
        if self.scale_down_window_seconds < 0:
            raise ValueError("scale_down_window_seconds cannot be negative")
        if not self.interval_seconds > 0:
            raise ValueError("interval_seconds must be greater than 0")
        if self.lag_seconds < 0:
            raise ValueError("lag_seconds cannot be negative")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TargetWaitSettings:
        if data.get("dyno_rate") is None:
            raise ValueError("dyno_rate is required: how many messages one dyno completes per second")
        values: dict[str, Any] = {k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        if "dyno_concurrency" in values:
            values["dyno_concurrency"] = int(values["dyno_concurrency"])
        return cls(**values)


class TargetWaitPolicy:
    """Enough dynos that a message starts within the target wait, and no more.

    In a FIFO queue the newest visible message waits for everything ahead of it, so with
    N dynos it starts after about visible / (N × rate) seconds; later arrivals do not
    delay it. The need is the largest of
      * backlog: the fewest dynos that clear the visible messages within the wait budget
        (the target less a boot, less how old the backlog may already be: see
        ``drain_seconds``);
      * busy: dynos still working (in-flight ÷ concurrency) are never taken away from
        their messages. Busy dynos cannot exceed the formation, so noise cannot ratchet
        the formation up: only a backlog that really builds adds dynos;
      * one dyno whenever anything is visible (wake from zero on the first message).
    Up: at once, to the need, however far (a burst from 0 to 20,000 gets its dynos in one
    step). Down: only to the highest need over the stabilization window, computed with
    70 % of the budget so that a formation that just suffices is not cut and re-added
    (hysteresis). To zero only when min is 0 and nothing was visible or in flight for the
    window. The queue is allowed to hold a buffer the target can absorb: that is what
    makes it cheaper than keeping the queue empty. Arrivals are estimated (the change in
    visible messages plus what busy dynos complete; median of five) to explain decisions.
    The constants were chosen with bench/policies.py (see bench/RESULTS.md).
    """

    name = "target_wait"
    DOWN_BUDGET = 0.7
    SAMPLES = 5
    MAX_GAP_FACTOR = 10  # a gap longer than this many intervals restarts the rate estimate

    def decide(
        self,
        observation: Observation,
        bounds: Bounds,
        settings: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> Verdict:
        cfg = TargetWaitSettings.from_mapping(settings)
        obs = observation
        rate = cfg.dyno_rate
        samples = self._rate_samples(obs, cfg, state)
        arrivals = statistics.median(samples)

        budget = self.drain_seconds(cfg, cold=obs.running == 0)
        busy = _ceil(obs.in_flight / cfg.dyno_concurrency)
        up_need = max(_ceil(obs.visible / (rate * budget)), busy, 1 if obs.visible else 0)
        down_need = max(
            _ceil(obs.visible / (rate * budget * self.DOWN_BUDGET)), busy, 1 if obs.visible or obs.in_flight else 0
        )
        quantity = obs.quantity
        window = self._window(state.get("needs", []), obs.at, cfg.scale_down_window_seconds, quantity) + [(obs.at, down_need)]
        held_need = max(n for _, n in window)

        if obs.running:
            waits = f"with {obs.running} running the newest message waits ≈ {obs.visible / (obs.running * rate):,.0f} s"
        else:
            waits = "no dyno is running" + (", so nothing is served" if obs.visible else "")
        load = (
            f"{obs.visible:,} visible, {obs.in_flight:,} in flight (≈ {busy} dyno(s) busy), "
            f"arrivals ≈ {arrivals:,.1f}/s; {waits}; budget {budget:.0f} s of the {cfg.target_wait_seconds:g} s target"
        )
        if bounds.clamp(up_need) > quantity:
            desired = bounds.clamp(up_need)
            why = f"{load} → needs {up_need}: scale up"
        elif bounds.clamp(held_need) < quantity:
            desired = bounds.clamp(held_need)
            why = f"{load} → needed at most {held_need} for {cfg.scale_down_window_seconds:g} s: scale down"
        else:
            desired = bounds.clamp(quantity)
            why = f"{load} → needs {up_need} now, {held_need} over the last {cfg.scale_down_window_seconds:g} s"
        if quantity > bounds.max_dynos:
            why += f"; the formation is above max {bounds.max_dynos}"
        elif quantity < bounds.min_dynos:
            why += f"; the formation is below min {bounds.min_dynos}"
        elif desired < up_need:
            why += f"; held at max {bounds.max_dynos}"
        elif held_need < desired == bounds.min_dynos:
            why += f"; held at min {bounds.min_dynos}"
        why += f" → {quantity} to {desired} dynos" if desired != quantity else f" → stay at {quantity}"

        new_state = {
            "at": obs.at,
            "visible": obs.visible,
            "in_flight": obs.in_flight,
            "samples": samples,
            "needs": [[t, n] for t, n in window],
        }
        return Verdict(
            desired=desired,
            state=new_state,
            reason=why,
            backlog_per_instance=backlog_per_instance(obs.visible, obs.running),
            details={"arrivals_per_second": arrivals, "need_now": up_need, "need_window": held_need, "budget_seconds": budget,
                     # How long the newest visible message waits at the current formation.
                     "wait_seconds": obs.visible / (obs.running * rate) if obs.running else (math.inf if obs.visible else 0.0)},
        )

    @staticmethod
    def _window(needs: Sequence[Sequence[float]], at: float, seconds: float, quantity: int) -> list[tuple[float, int]]:
        """Past needs that still count: those within the window, and always the newest
        one (a pair cycling less often than its window still has a past). With no past at
        all (a first cycle, a reset state) the current formation counts as needed, so a
        restart never cuts dynos on one look."""
        past = [(float(t), int(n)) for t, n in needs]
        if not past:
            return [(at, quantity)]
        kept = [(t, n) for t, n in past if at - t < seconds]
        return kept or [past[-1]]

    @staticmethod
    def drain_seconds(cfg: TargetWaitSettings, *, cold: bool) -> float:
        """How soon a backlog seen now must be cleared. New dynos need their boot time
        before they help, and the backlog is older than it looks: counts lag, and it may
        have built since the last cycle. With no dyno running (a cold start) every waiting
        message has aged by up to a lag and a cycle; with dynos consuming, the backlog is a
        moving window whose messages are on average half that old."""
        stale = cfg.interval_seconds + cfg.lag_seconds
        spare = cfg.target_wait_seconds - cfg.boot_seconds - (stale if cold else stale / 2)
        return max(spare, cfg.target_wait_seconds / 8)

    def _rate_samples(self, obs: Observation, cfg: TargetWaitSettings, state: Mapping[str, Any]) -> list[float]:
        completing = min(obs.in_flight / cfg.dyno_concurrency, max(obs.running, 0)) * cfg.dyno_rate
        previous = state.get("at")
        if previous is None:
            return [completing]
        dt = obs.at - float(previous)
        if not 0 < dt <= cfg.interval_seconds * self.MAX_GAP_FACTOR:
            return [completing]
        prev_in_flight = float(state.get("in_flight", obs.in_flight))
        completing = min((obs.in_flight + prev_in_flight) / 2 / cfg.dyno_concurrency, max(obs.running, 0)) * cfg.dyno_rate
        change = (obs.visible - float(state.get("visible", obs.visible))) / dt
        sample = max(0.0, change + completing)
        return [*[float(x) for x in state.get("samples", [])][-(self.SAMPLES - 1):], sample]


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - 1e-9))


# --- time-of-day schedules -------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ScheduleWindow:
    """While it applies, its min/max replace the pair's (e.g. weekdays 08:00–18:00 min 3)."""

    weekdays: frozenset[int]  # 0 = Monday
    start: time
    end: time  # exclusive; an end at or before the start runs past midnight
    min_dynos: int
    max_dynos: int
    timezone: str = "UTC"
    label: str = ""

    def __post_init__(self) -> None:
        if not self.weekdays or not all(0 <= d <= 6 for d in self.weekdays):
            raise ValueError("weekdays must name at least one day, 0 (Monday) to 6 (Sunday)")
        Bounds(self.min_dynos, self.max_dynos)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None

    def minutes(self) -> list[tuple[int, int]]:
        """The week-minute ranges [from, to) it covers, Monday 00:00 = 0."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        length = end - start if end > start else end + 1440 - start
        week = 7 * 1440
        spans = []
        for day in sorted(self.weekdays):
            a = day * 1440 + start
            b = a + length
            if b <= week:
                spans.append((a, b))
            else:
                spans += [(a, week), (0, b - week)]
        return spans

    def applies_at(self, at: float) -> bool:
        local = datetime.fromtimestamp(at, tz=ZoneInfo(self.timezone))
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in self.minutes())

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        return self.label or f"{days} {self.start:%H:%M}–{self.end:%H:%M} {self.timezone}"


def effective_bounds(bounds: Bounds, windows: Sequence[ScheduleWindow], at: float) -> tuple[Bounds, ScheduleWindow | None]:
    for window in windows:
        if window.applies_at(at):
            return Bounds(window.min_dynos, window.max_dynos), window
    return bounds, None


def first_overlap(windows: Sequence[ScheduleWindow]) -> tuple[ScheduleWindow, ScheduleWindow] | None:
    """Two windows in the same time zone that cover a common minute, if any."""
    for i, a in enumerate(windows):
        for b in windows[i + 1:]:
            if a.timezone != b.timezone:
                continue  # compared in their own zones they may drift with DST; checked live
            if any(x1 < y2 and x2 < y1 for x1, y1 in a.minutes() for x2, y2 in b.minutes()):
                return a, b
    return None


POLICIES: dict[str, Policy] = {p.name: p for p in (ClassicPolicy(), TargetWaitPolicy())}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None
