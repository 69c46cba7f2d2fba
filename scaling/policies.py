"""Scaling policies: pure decisions.

A policy sees what SQS and the Heroku formation showed this cycle (an ``Observation``),
the pair's bounds and settings, and the state it saved last cycle; it returns a
``Verdict``: the quantity it wants, its new state and a sentence a person can read.

Nothing here imports Django, boto3 or the clock, so the same code runs live, in a
simulator and in table-driven tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Observation:
    """What one cycle saw. Counts are SQS's approximate ones, summed over the pair's queues."""

    visible: int
    in_flight: int
    delayed: int
    quantity: int  # the formation quantity for the process type
    running: int  # dynos of that type in state "up"

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


POLICIES: dict[str, Policy] = {ClassicPolicy.name: ClassicPolicy()}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None
