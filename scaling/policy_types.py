"""What every policy takes and gives: an observation, bounds, a verdict, and the wording
shared by all policies' reasons. Pure: no Django, no boto3, no clock."""

from __future__ import annotations

import math
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
    at: float = 0.0  # when, in seconds since the epoch (given, never read from a clock)
    # Age of the oldest waiting message, where the source can tell (SQS alone cannot;
    # the simulator can, for baselines that scale on latency).
    oldest_age: float | None = None
    # Measured inputs, each optional (a pair without them falls back to the counts):
    starting: int = 0  # dynos of that type in state "starting" (booting)
    # starting → up durations (seconds) of dynos that came up since the last cycle
    # (from Heroku's dyno webhooks, or the dyno list read while dynos boot).
    boot_durations: tuple[float, ...] = ()
    # CloudWatch points, (minute start in epoch seconds, value), summed over the pair's
    # queues for deletes and the largest over them for the age. They arrive one to two
    # minutes late; passing the same points again is harmless (each minute is read once).
    deleted_per_minute: tuple[tuple[float, float], ...] = ()  # NumberOfMessagesDeleted, Sum
    oldest_age_per_minute: tuple[tuple[float, float], ...] = ()  # ApproximateAgeOfOldestMessage, Maximum

    def __post_init__(self) -> None:
        for name in ("visible", "in_flight", "delayed", "quantity", "running", "starting"):
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
    # Whether ``state`` is kept when the formation is not changed as decided (the kill
    # switch, a refused quantity, a failed write). False: the state does not move, and the
    # same decision comes again (the classic rule's counters). A policy whose state is what
    # it saw (counts, needs, what it measured) keeps it, or what it measured then is lost.
    state_kept_if_not_applied: bool = False


def bounded(wanted: int, quantity: int, bounds: Bounds) -> tuple[int, str]:
    """The quantity within bounds and, when the bounds changed the rule's answer, why.
    One wording for every policy; empty when the bounds did not matter."""
    desired = bounds.clamp(wanted)
    if desired == wanted:
        return desired, ""
    if quantity < bounds.min_dynos:
        return desired, f"the formation ({quantity}) is below min {bounds.min_dynos}: raised to min"
    if quantity > bounds.max_dynos:
        return desired, f"the formation ({quantity}) is above max {bounds.max_dynos}: lowered to max"
    return desired, f"held at {'max' if wanted > desired else 'min'} {desired}"


def outcome(quantity: int, desired: int) -> str:
    return f"{quantity} to {desired} dynos" if desired != quantity else f"stay at {quantity}"


class Policy(Protocol):
    name: str

    def decide(
        self,
        observation: Observation,
        bounds: Bounds,
        settings: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> Verdict: ...


def backlog_per_instance(visible: int, running: int) -> float | None:
    """Visible messages per running dyno; None when no dyno runs (infinite if any wait)."""
    if running == 0:
        return None
    return visible / running



def ceil_count(x: float) -> int:
    """Whole dynos for a fractional need; a hair over a whole number is that number."""
    return max(0, math.ceil(x - 1e-9))
