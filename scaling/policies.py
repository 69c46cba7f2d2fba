"""Scaling policies: pure decisions.

A policy sees what SQS and the Heroku formation showed this cycle (an ``Observation``),
the pair's bounds and settings, and the state it saved last cycle; it returns a
``Verdict``: the quantity it wants, its new state and a sentence a person can read.

Nothing here imports Django, boto3 or the clock, so the same code runs live, in a
simulator and in table-driven tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from scaling.policy_types import (
    Bounds,
    Observation,
    Policy,
    Verdict,
    backlog_per_instance,
    bounded,
    ceil_count,
    outcome,
)
from scaling.target_wait import TargetWaitPolicy, TargetWaitSettings


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
            rule = f"{comparison} threshold {cfg.backlog_threshold:g} for {cfg.up_cycles} cycle(s): add one dyno"
        elif down >= cfg.down_cycles:
            step, up, down = -1, 0, 0
            rule = f"{comparison} threshold {cfg.backlog_threshold:g} for {cfg.down_cycles} cycle(s): remove one dyno"
        else:
            rule = (f"{comparison} threshold {cfg.backlog_threshold:g}: "
                    f"up {up}/{cfg.up_cycles}, down {down}/{cfg.down_cycles}")

        desired, note = bounded(quantity + step, quantity, bounds)
        if note.startswith("the formation"):
            # Out of bounds, the step does not apply: say what the rule would have done.
            rule = rule.replace(": add one dyno", ": would add one dyno").replace(": remove one dyno", ": would remove one dyno")
        why = f"{load}, {rule}" + (f"; {note}" if note else "") + f" → {outcome(quantity, desired)}"

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


POLICIES: dict[str, Policy] = {p.name: p for p in (ClassicPolicy(), TargetWaitPolicy())}


def setting_names(policy: Policy) -> tuple[list[str], list[str]]:
    """The settings ``policy`` reads, and those of them it has no default for: a peer's
    documented defaults (``scaling.baselines``), or the fields of our policies' settings."""
    defaults: Mapping[str, Any] | None = getattr(policy, "defaults", None)
    if defaults is not None:
        return list(defaults), []
    kind = {ClassicPolicy: ClassicSettings, TargetWaitPolicy: TargetWaitSettings}.get(type(policy))
    if kind is None:
        return [], []
    every = fields(kind)
    return [f.name for f in every], [f.name for f in every if f.default is MISSING and f.default_factory is MISSING]


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None


__all__ = [
    "POLICIES", "Bounds", "ClassicPolicy", "ClassicSettings", "Observation", "Policy", "TargetWaitPolicy",
    "TargetWaitSettings", "Verdict", "backlog_per_instance", "bounded", "ceil_count", "get_policy", "outcome",
    "setting_names",
]
