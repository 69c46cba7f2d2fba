"""One cycle of one pair, top to bottom: claim → may we call out? → observe → defer to
people → decide → act → record.

Each step takes and returns small frozen values, and every failure becomes a recorded
result, never an exception into the void. No database transaction is open while SQS or
Heroku is called; races between workers (or two beats) are settled by a conditional
UPDATE that claims the pair, with an expiry so a killed worker cannot stall it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from scaling.adapters.errors import AdapterError, redact
from scaling.adapters.heroku import ProcessState
from scaling.adapters.sqs import QueueCounts
from scaling.conditions import (
    CODES,
    NOT_HELPING,
    PERMANENT_ERROR,
    PERSON_CHANGE,
    PERSON_OUTSIDE,
    WAIT_OVER_TARGET_AT_MAX,
    conditions_next,
)
from scaling.fields import SecretUnreadable
from scaling.models import Decision, KillSwitch, ScalingPair
from scaling.policies import Observation, effective_bounds, get_policy
from scaling.services.backends import Backend, QueueReading, open_backend, pair_secrets
from scaling.services.formation_writes import FORGET_REFUSAL, Refusal, within_refusal, write_formation
from scaling.services.heroku_budget import account_after_calls
from scaling.services.history import ASKED_FOR, history_record

log = logging.getLogger(__name__)
Outcome = Decision.Outcome
# A claim outlives the task's hard time limit by this much, no more: a killed worker
# stalls its pair no longer.
CLAIM_MARGIN_SECONDS = 5


# --- the values a cycle passes along --------------------------------------------------


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

    @classmethod
    def failed(cls, reason: str, error: AdapterError, **seen: Any) -> CycleResult:
        """The formation is held, the policy's state does not move, and the error is on record.
        A permanent error is a condition; a passing one hides whether any condition holds."""
        conditions = ((PERMANENT_ERROR, str(error)),) if error.permanent else ()
        return cls(outcome=Outcome.ERROR, reason=reason, error=error, conditions=conditions,
                   unsure=CODES - {PERMANENT_ERROR} if error.permanent else CODES, **seen)


# --- the cycle ------------------------------------------------------------------------


def pair_run_cycle(
    *, pair_id: int, force: bool = False, dry_run: bool = False, now: datetime | None = None, requested_by: str = "",
) -> Decision | None:
    """Run one cycle of one pair and return its recorded decision, or None when the pair
    is gone, disabled, or another cycle of it holds the claim (the loser records nothing and
    changes nothing). ``force`` skips the interval spacing (a person asked for this cycle);
    ``dry_run`` decides without touching the formation; ``requested_by`` names the person who
    asked for it, at the head of its reason (so it is never folded into a quiet run)."""
    started = time.monotonic()
    now = now or timezone.now()
    # Accounts are loaded inside the cycle, where an unreadable secret becomes a recorded error.
    pair = ScalingPair.objects.prefetch_related("queues", "schedules").filter(id=pair_id).first()
    if pair is None or not (pair.enabled or dry_run):
        return None
    claim = pair_claim(pair=pair, now=now, respect_interval=not force)
    if claim is None:
        log.info("cycle of pair %s skipped: another cycle holds it or ran moments ago", pair.name)
        return None
    dry_run = dry_run or pair.dry_run
    with claim_released_if_interrupted(pair, claim):
        result = _cycle(pair, now=now, dry_run=dry_run)
    if requested_by:
        result = replace(result, reason=f"{ASKED_FOR}{requested_by}: {result.reason}")
    return record(pair, claim=claim, now=now, result=result, dry_run=dry_run, started=started)


def _cycle(pair: ScalingPair, *, now: datetime, dry_run: bool) -> CycleResult:
    try:
        cannot = reason_not_to_call_out(pair, now)
        if cannot is not None:
            return cannot
        with open_backend(pair, now) as backend:
            result = _observe_decide_act(pair, backend, now=now, dry_run=dry_run)
            # What the account's pool said, from whichever of the cycle's calls answered last.
            return replace(result, heroku_calls=backend.heroku_calls, rate_limit_remaining=backend.rate_limit_remaining)
    except AdapterError as exc:  # the backend could not be set up
        return CycleResult.failed(f"{exc.message}; formation held", exc)
    except SecretUnreadable as exc:
        return CycleResult.failed("a credential cannot be read; formation held",
                                  AdapterError("DynoScaler", str(exc), permanent=True))
    except Exception as exc:
        # A bug must not stop a pair silently: hold the formation and put it on record.
        log.exception("pair %s: the cycle failed unexpectedly", pair.name)
        return CycleResult.failed("internal error in DynoScaler; formation held",
                                  AdapterError("DynoScaler", f"{type(exc).__name__}: {exc}", permanent=False,
                                               secrets=pair_secrets(pair)))


def reason_not_to_call_out(pair: ScalingPair, now: datetime) -> CycleResult | None:
    """A Heroku pair with no queue has nothing to look at. (While its account backs off it
    still looks at SQS: only Heroku calls wait, see ``heroku_budget``.)"""
    if pair.provider != ScalingPair.Provider.HEROKU:
        return None
    if not pair.queues.all():
        return CycleResult.failed("no SQS queue configured for this pair; formation held",
                                  AdapterError("DynoScaler", "no SQS queue configured", permanent=True))
    return None


def _observe_decide_act(pair: ScalingPair, backend: Backend, *, now: datetime, dry_run: bool) -> CycleResult:
    # 1. Observe. A failed read is never taken for an empty queue: hold and record.
    try:
        queues = tuple(QueueReading(q, r, backend.read_queue(q, r)) for q, r in backend.queues())
    except AdapterError as exc:
        return CycleResult.failed("could not read the queues; formation held", exc)
    try:
        process = backend.process_state()
    except AdapterError as exc:
        return CycleResult.failed("could not read the Heroku formation; formation held", exc, queues=queues,
                                  rate_limit_remaining=backend.rate_limit_remaining)
    seen = Seen(queues, process, backend.rate_limit_remaining)
    observed = CycleResult(outcome=Outcome.PAUSED, reason="", queues=queues, process=process,
                           rate_limit_remaining=seen.rate_limit_remaining, expected_quantity=process.quantity)
    read = f"formation read from Heroku ({backend.read_because}); " if backend.read_because else ""

    # 2. A person's word comes first: a pause, or a formation changed outside DynoScaler.
    people = defer_to_people(
        found=process.quantity, expected=pair.expected_quantity, unconfirmed=pair.unconfirmed_quantity,
        paused_until=pair.paused_until, paused_by=pair.paused_by, hold_seconds=pair.manual_hold_seconds, now=now,
    )
    if people.hold_until is not None:  # a person's change, seen just now
        return person_changed(observed, note=read + people.note, until=people.hold_until)
    if people.holds:  # a pause, or the hold after a person's change, still on: nothing was decided
        return replace(observed, reason=read + people.note, unsure=CODES)

    # 3. Decide, within the bounds (or the schedule window) that apply now.
    observation = Observation(
        visible=seen.totals.visible, in_flight=seen.totals.in_flight, delayed=seen.totals.delayed,
        quantity=process.quantity, running=process.running, at=now.timestamp(),
    )
    bounds, window = effective_bounds(pair.bounds(), pair.schedule_windows(), observation.at)
    verdict = get_policy(pair.policy).decide(observation, bounds, pair.policy_settings(), pair.policy_state or {})
    reason = read + people.note + verdict.reason
    if window is not None:
        reason = f"[schedule {window.describe()}: min {bounds.min_dynos}, max {bounds.max_dynos}] {reason}"
    decided = replace(observed, outcome=Outcome.NO_CHANGE, reason=reason, desired=verdict.desired,
                      backlog_per_instance=verdict.backlog_per_instance, state_after=verdict.state,
                      paused_by="" if pair.paused_by else None,  # a pause or hold that ended
                      conditions=policy_conditions(verdict.details, pair=pair, max_dynos=bounds.max_dynos,
                                                   desired=verdict.desired))

    # 4. Act.
    return act(pair, backend, decided, current=process.quantity, desired=verdict.desired, dry_run=dry_run, now=now)


def policy_conditions(details: Mapping[str, Any], *, pair: ScalingPair, max_dynos: int,
                      desired: int) -> tuple[tuple[str, str], ...]:
    """What the policy's verdict says is wrong: the newest message waiting past the target
    although the pair is at its max, or more dynos not helping."""
    found: list[tuple[str, str]] = []
    wait = details.get("wait_seconds")
    target = pair.target_wait_seconds
    if wait is not None and wait > target and desired >= max_dynos:
        shown = "no dyno running" if wait == float("inf") else f"≈ {wait:,.0f} s"
        found.append((WAIT_OVER_TARGET_AT_MAX, f"the newest message waits {shown} (target {target} s) at max {max_dynos}"))
    if details.get("not_helping"):
        found.append((NOT_HELPING, str(details["not_helping"])))
    return tuple(found)


def person_changed(observed: CycleResult, *, note: str, until: datetime) -> CycleResult:
    """Someone changed the formation outside DynoScaler: hold off instead of undoing it."""
    return replace(observed, outcome=Outcome.PAUSED, reason=note, paused_until=until, paused_by=PERSON_OUTSIDE,
                   state_after=None, conditions=((PERSON_CHANGE, note),), unsure=CODES - {PERSON_CHANGE})


@dataclass(frozen=True)
class PeopleCheck:
    holds: bool
    note: str  # why it holds, or a remark for the decision's reason
    hold_until: datetime | None = None


def defer_to_people(
    *, found: int, expected: int | None, unconfirmed: int | None, paused_until: datetime | None,
    hold_seconds: int, now: datetime, paused_by: str = "",
) -> PeopleCheck:
    """Whether a person's pause or change must be respected this cycle. ``expected`` is what
    DynoScaler last saw or set; ``unconfirmed`` a write whose answer was lost, which the
    formation may now show. Only a quantity that is neither is someone else's change."""
    note = ""
    if unconfirmed is not None and found == unconfirmed != expected:
        note = f"the change to {found} asked for earlier was applied (its answer had been lost); "
    if paused_until is not None and paused_until > now:
        by = f" by {paused_by}" if paused_by else ""
        return PeopleCheck(True, f"{note}paused{by} until {paused_until:%Y-%m-%d %H:%M} UTC; observed only, "
                                 f"formation left at {found}")
    if not note and expected is not None and found != expected:
        until = now + timedelta(seconds=hold_seconds)
        return PeopleCheck(True, f"the formation was changed outside DynoScaler (expected {expected}, found {found}); "
                                 f"holding off until {until:%H:%M} UTC instead of undoing it", until)
    return PeopleCheck(False, note)


def act(pair: ScalingPair, backend: Backend, decided: CycleResult, *, current: int, desired: int,
        dry_run: bool, now: datetime) -> CycleResult:
    """Change the formation if the decision asks for it and nothing stands in the way."""
    if desired == current:
        return decided
    if dry_run:
        return replace(decided, outcome=Outcome.DRY_RUN, reason=decided.reason + " (dry run: formation not changed)")
    if KillSwitch.is_engaged():  # read now, right before the write, so it stops writes at once
        return replace(decided, outcome=Outcome.HELD, state_after=None,
                       reason=decided.reason + " — not sent: the kill switch is on")
    pool = backend.why_not_write()
    if pool is not None:
        return replace(decided, outcome=Outcome.HELD, state_after=None, reason=f"{decided.reason} — not sent: {pool}",
                       unsure=decided.unsure | {PERMANENT_ERROR})
    # Without webhooks, nothing would have told us of a person's change: look right before writing.
    found = backend.quantity_before_write(current)
    if found is not None and found == pair.unconfirmed_quantity:
        return replace(decided, outcome=Outcome.NO_CHANGE, state_after=None, expected_quantity=found,
                       reason=f"{decided.reason} — not sent: the change to {found} asked for earlier was applied after "
                              "all (its answer had been lost); deciding again from it next cycle")
    if found is not None:
        until = now + timedelta(seconds=pair.manual_hold_seconds)
        return person_changed(replace(decided, process=replace(decided.process, quantity=found) if decided.process else None,
                                      expected_quantity=found),
                              note=f"{decided.reason} — not sent: the formation was changed outside DynoScaler "
                                   f"(expected {current}, found {found}, read just before changing it); holding off "
                                   f"until {until:%H:%M} UTC instead of undoing it",
                              until=until)
    ask, keep_refusal = within_refusal(pair.blocked_quantity, current=current, desired=desired)
    if ask is None:
        reason = f"{decided.reason} — not sent: Heroku refused {pair.blocked_quantity} earlier ({pair.blocked_reason})"
        if pair.blocked_quantity is not None and pair.blocked_quantity > current:
            reason += f"; {current} is the most it accepts"
        refused = (PERMANENT_ERROR, f"Heroku refused {pair.blocked_quantity}: {pair.blocked_reason}")
        return replace(decided, outcome=Outcome.HELD, state_after=None, reason=reason,
                       conditions=(*decided.conditions, refused))
    if ask != desired:
        decided = replace(decided, reason=f"{decided.reason} — Heroku refused {pair.blocked_quantity} earlier, "
                                          f"so asking for {ask}")
    written = write_formation(backend, ask=ask, current=current)
    outcome = replace(
        decided,
        outcome=Outcome.APPLIED if written.error is None else Outcome.ERROR,
        reason=decided.reason + written.note,
        applied=written.applied,
        error=written.error,
        refusal=written.refusal or (None if keep_refusal else FORGET_REFUSAL),
        expected_quantity=written.applied if written.applied is not None else decided.expected_quantity,
        unconfirmed_quantity=written.unconfirmed,
        rate_limit_remaining=backend.rate_limit_remaining,
    )
    if written.error is not None:
        # Try again next cycle from the same counters. A refusal is a standing problem; a
        # passing failure hides whether one is.
        problem = ((PERMANENT_ERROR, str(written.error)),) if written.error.permanent else ()
        outcome = replace(outcome, state_after=None, conditions=(*decided.conditions, *problem),
                          unsure=frozenset() if written.error.permanent else frozenset({PERMANENT_ERROR}))
    return outcome


# --- claim and record --------------------------------------------------------------------


def pair_claim(*, pair: ScalingPair, now: datetime, respect_interval: bool) -> uuid.UUID | None:
    """Take this pair's cycle for ourselves, or return None if another holds it.

    One conditional UPDATE decides: of two workers (or two beats' tasks) only one sees a
    row updated. The claim expires just after the task's hard time limit so a killed worker
    cannot stall the pair. With ``respect_interval`` a cycle that comes less than half an
    interval after the last one (a second beat's duplicate) is refused too.
    """
    claim = uuid.uuid4()
    free = ScalingPair.objects.filter(id=pair.pk).filter(
        Q(cycle_claimed_until__isnull=True) | Q(cycle_claimed_until__lt=now)
    )
    if respect_interval:
        too_soon = now - timedelta(seconds=pair.interval_seconds / 2)
        free = free.filter(Q(last_cycle_at__isnull=True) | Q(last_cycle_at__lte=too_soon))
    updated = free.update(
        cycle_claim=claim,
        cycle_claimed_until=now + timedelta(seconds=settings.CYCLE_TIME_LIMIT_SECONDS + CLAIM_MARGIN_SECONDS),
    )
    return claim if updated == 1 else None


def claim_release(pair: ScalingPair, claim: uuid.UUID, **also: Any) -> None:
    ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(cycle_claim=None, cycle_claimed_until=None, **also)


@contextmanager
def claim_released_if_interrupted(pair: ScalingPair, claim: uuid.UUID) -> Iterator[None]:
    """The task's time limit or a shutdown interrupts the cycle: free the pair, let it go."""
    try:
        yield
    except BaseException:
        claim_release(pair, claim)
        raise


def record(
    pair: ScalingPair, *, claim: uuid.UUID, now: datetime, result: CycleResult, dry_run: bool, started: float,
    keep_interval: bool = False,
) -> Decision:
    """Write the decision (or fold it into its quiet run), the pair's new state and the
    account's pool in one transaction. The returned decision is unsaved when folded."""
    state_before = dict(pair.policy_state or {})
    state_after = dict(result.state_after) if result.state_after is not None else state_before
    process, error = result.process, result.error
    totals = sum((q.counts for q in result.queues), QueueCounts(0, 0, 0)) if result.queues else None
    pair_fields: dict[str, Any] = {"policy_state": state_after, "cycle_claim": None, "cycle_claimed_until": None}
    if not keep_interval:
        pair_fields["last_cycle_at"] = now
    if result.refusal is not None:
        pair_fields.update(blocked_quantity=result.refusal.quantity, blocked_reason=result.refusal.reason)
    if result.expected_quantity is not None:
        pair_fields["expected_quantity"] = result.expected_quantity
    if result.paused_until is not None:
        pair_fields["paused_until"] = result.paused_until
    if process is not None:
        pair_fields["unconfirmed_quantity"] = result.unconfirmed_quantity
    if result.paused_by is not None:
        pair_fields["paused_by"] = result.paused_by
    secrets = pair_secrets(pair)
    pair_fields["conditions"] = conditions_next(
        pair.conditions or {}, {code: redact(detail, secrets) for code, detail in result.conditions},
        now=now, unknown=result.unsure)
    with transaction.atomic():
        decision = Decision(
            pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type=pair.process_type,
            created_at=now, policy=pair.policy, queues=[q.as_dict() for q in result.queues],
            visible_messages=totals.visible if totals else None,
            in_flight_messages=totals.in_flight if totals else None,
            delayed_messages=totals.delayed if totals else None,
            dynos_running=process.running if process else None,
            dynos_starting=process.starting if process else None,
            quantity_before=process.quantity if process else None,
            backlog_per_instance=result.backlog_per_instance,
            state_before=state_before, state_after=state_after,
            desired_quantity=result.desired, applied_quantity=result.applied,
            outcome=result.outcome, reason=redact(result.reason, secrets),
            error=str(error) if error else "", error_permanent=error.permanent if error else None,
            dry_run=dry_run, duration_ms=int((time.monotonic() - started) * 1000),
            heroku_rate_limit_remaining=result.rate_limit_remaining, heroku_calls=result.heroku_calls,
        )
        # Stored as a row of its own, or folded into the run of quiet cycles it repeats.
        decision, pair_fields["quiet_run"] = history_record(pair, decision, now=now)
        if ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(**pair_fields) != 1:
            log.warning("pair %s: the cycle outlived its claim; its decision is kept, its state is not", pair.name)
        if result.heroku_calls or (error is not None and error.system == "Heroku"):
            account_after_calls(pair.heroku_account_id, error=error, remaining=result.rate_limit_remaining, now=now)
    level = logging.WARNING if error else logging.INFO
    log.log(level, "pair %s: %s: %s%s", pair.name, decision.outcome, decision.reason, f" [{decision.error}]" if error else "")
    return decision
