"""The small frozen values a cycle passes from step to step, and what it hands to be recorded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaling.adapters.errors import AdapterError
from scaling.adapters.heroku import ProcessState
from scaling.adapters.sqs import QueueCounts
from scaling.conditions import CODES, FAILING, PERMANENT_ERROR
from scaling.models import Decision
from scaling.services.backends import Measured, QueueReading
from scaling.services.formation_writes import Refusal

Outcome = Decision.Outcome


@dataclass(frozen=True)
class Seen:
    """What SQS and Heroku showed this cycle."""

    queues: tuple[QueueReading, ...]
    process: ProcessState
    rate_limit_remaining: int | None

    @property
    def totals(self) -> QueueCounts:
        return sum((q.counts for q in self.queues), QueueCounts(0, 0, 0))


@dataclass(frozen=True)
class CycleResult:
    """A finished cycle, ready to record. ``None`` in the last group leaves the pair's
    field as it is; ``state_after`` None means the policy's state does not move."""

    outcome: str
    reason: str
    queues: tuple[QueueReading, ...] = ()
    process: ProcessState | None = None
    rate_limit_remaining: int | None = None
    error: AdapterError | None = None
    desired: int | None = None
    backlog_per_instance: float | None = None
    applied: int | None = None
    state_after: Mapping[str, Any] | None = None
    state_kept_if_not_applied: bool = False  # ``Verdict.state_kept_if_not_applied``
    refusal: Refusal | None = None
    expected_quantity: int | None = None
    paused_until: datetime | None = None
    # A write whose answer was lost: what was asked. Any cycle that saw the formation
    # settles an earlier one, so this is written whenever ``process`` is known.
    unconfirmed_quantity: int | None = None
    paused_by: str | None = None
    # What is wrong with the pair as this cycle saw it (codes of scaling.conditions, with a
    # line each), and the codes it could not tell either way (they stay as they were).
    conditions: tuple[tuple[str, str], ...] = ()
    unsure: frozenset[str] = frozenset()
    heroku_calls: int = 0
    # What the policy learned and would pre-warm (for the pair page and the chart), and
    # whether CloudWatch was read this cycle (with why it cannot be, if it cannot).
    learned: Mapping[str, Any] | None = None
    shadow: int | None = None
    measured: Measured = Measured()

    @property
    def state_if_not_applied(self) -> Mapping[str, Any] | None:
        """The policy's state to keep if the decision is not carried out (None: it does not move)."""
        return self.state_after if self.state_kept_if_not_applied else None

    @classmethod
    def failed(cls, reason: str, error: AdapterError, *, account: str = "", **seen: Any) -> CycleResult:
        """The formation is held, the policy's state does not move, and the error is on record.
        A permanent error is a condition; a passing one is too (``FAILING``: the pair has
        been failing since its first), and hides whether any other condition holds.
        ``account``: whose credentials met the error, said in the condition (the alert), so
        on-call knows which token or key to fix."""
        said = f"{error} ({account})" if account else str(error)
        if error.permanent:
            return cls(outcome=Outcome.ERROR, reason=reason, error=error, conditions=((PERMANENT_ERROR, said),),
                       unsure=CODES - {PERMANENT_ERROR, FAILING}, **seen)
        return cls(outcome=Outcome.ERROR, reason=reason, error=error, conditions=((FAILING, f"{reason}: {said}"),),
                   unsure=CODES - {FAILING}, **seen)
