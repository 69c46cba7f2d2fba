"""One cycle of one pair, top to bottom: claim → may we call out? → observe → defer to
people → decide → act → record (the claim in ``claims``, the record in ``history``, the
values passed along in ``results``).

Each step takes and returns small frozen values, and every failure becomes a recorded
result, never an exception into the void. No database transaction is open while SQS or
Heroku is called; races between workers (or two beats) are settled by a conditional
UPDATE that claims the pair, with an expiry so a killed worker cannot stall it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from scaling.adapters.errors import AdapterError
from scaling.adapters.heroku import ProcessState
from scaling.conditions import (
    CODES,
    DYNOS_NOT_UP,
    FAILING,
    NOT_HELPING,
    PERMANENT_ERROR,
    PERSON_CHANGE,
    person_outside,
    WAIT_OVER_TARGET_AT_MAX,
)
from scaling.fields import SecretUnreadable
from scaling.models import Decision, KillSwitch, ScalingPair
from scaling.policies import Observation, get_policy
from scaling.schedules import effective_bounds
from scaling.services.backends import Backend, QueueReading, open_backend, pair_secrets
from scaling.services.claims import claim_released_if_interrupted, pair_claim
from scaling.services.formations import BOOT_GRACE_SECONDS
from scaling.services.formation_writes import FORGET_REFUSAL, within_refusal, write_formation
from scaling.services.history import ASKED_FOR, record
from scaling.services.pair_inputs import pair_inputs
from scaling.services.results import CycleResult, Seen

log = logging.getLogger(__name__)

PAUSED_BY_MAX = ScalingPair._meta.get_field("paused_by").max_length or 150
Outcome = Decision.Outcome


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
    # A secret that cannot be read loads all the same: reading it is the cycle's recorded error.
    try:
        # get(), not first(): an id is unique, and ordering the one row is work for nothing.
        pair = ScalingPair.objects.select_related("heroku_account", "aws_account").defer("learned").get(id=pair_id)
    except ScalingPair.DoesNotExist:
        return None
    if not (pair.enabled or dry_run):
        return None
    claim = pair_claim(pair=pair, now=now, respect_interval=not force)
    if claim is None:
        log.info("cycle of pair %s skipped: another cycle holds it or ran moments ago", pair.name)
        return None
    dry_run = dry_run or pair.dry_run
    # Interrupted (the time limit, a shutdown) or failing to record: free the pair at once.
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
        # What failed is in the error, which goes beside the reason everywhere: not twice.
        return CycleResult.failed(f"a call to {exc.system} failed; formation held", exc)
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
    if not pair_inputs(pair).queues:
        return CycleResult.failed("no SQS queue configured for this pair; formation held",
                                  AdapterError("DynoScaler", "no SQS queue configured", permanent=True))
    return None


def _observe_decide_act(pair: ScalingPair, backend: Backend, *, now: datetime, dry_run: bool) -> CycleResult:
    # 1. Observe. A failed read is never taken for an empty queue: hold and record.
    try:
        queues = tuple(QueueReading(q, r, backend.read_queue(q, r)) for q, r in backend.queues())
    except AdapterError as exc:
        return CycleResult.failed("could not read the queues; formation held", exc,
                                  account=_account("AWS", pair.aws_account))
    try:
        process = backend.process_state()
    except AdapterError as exc:
        return CycleResult.failed("could not read the Heroku formation; formation held", exc, queues=queues,
                                  rate_limit_remaining=backend.rate_limit_remaining,
                                  account=_account("Heroku", pair.heroku_account))
    seen = Seen(queues, process, backend.rate_limit_remaining)
    observed = CycleResult(outcome=Outcome.PAUSED, reason="", queues=queues, process=process,
                           rate_limit_remaining=seen.rate_limit_remaining, expected_quantity=process.quantity)
    read = f"formation read from Heroku ({backend.read_because}); " if backend.read_because else ""

    # 2. A person's word comes first: a pause, or a formation changed outside DynoScaler.
    people = defer_to_people(
        found=process.quantity, expected=pair.expected_quantity, unconfirmed=pair.unconfirmed_quantity,
        paused_until=pair.paused_until, paused_by=pair.paused_by, hold_seconds=pair.manual_hold_seconds, now=now,
        changed_by=process.changed_by,
    )
    if people.hold_until is not None:  # a person's change, seen just now
        return person_changed(observed, note=read + people.note, until=people.hold_until, by=process.changed_by)
    if people.holds:  # a pause, or the hold after a person's change, still on: nothing was decided
        return replace(observed, reason=read + people.note, unsure=CODES)

    # 3. Decide, within the bounds (or the schedule window) that apply now, with what was
    #    measured beyond the counts: boots that ended, and CloudWatch's minutes.
    measured = backend.measure(since=pair.last_cycle_at)
    observation = Observation(
        visible=seen.totals.visible, in_flight=seen.totals.in_flight, delayed=seen.totals.delayed,
        quantity=process.quantity, running=process.running, at=now.timestamp(), starting=process.starting,
        boot_durations=measured.boot_durations, deleted_per_minute=measured.deleted_per_minute,
        oldest_age_per_minute=measured.oldest_age_per_minute,
    )
    bounds, window = effective_bounds(pair.bounds(), pair_inputs(pair).windows, observation.at)
    verdict = get_policy(pair.policy).decide(observation, bounds, pair.policy_settings(), pair.policy_state or {})
    reason = read + people.note + verdict.reason
    if window is not None:
        reason = f"[schedule {window.describe()}: min {bounds.min_dynos}, max {bounds.max_dynos}] {reason}"
    prewarm = verdict.details.get("prewarm") or {}
    decided = replace(observed, outcome=Outcome.NO_CHANGE, reason=reason, desired=verdict.desired,
                      backlog_per_instance=verdict.backlog_per_instance, state_after=verdict.state,
                      state_kept_if_not_applied=verdict.state_kept_if_not_applied,
                      paused_by="" if pair.paused_by else None,  # a pause or hold that ended
                      conditions=(*policy_conditions(verdict.details, pair=pair, max_dynos=bounds.max_dynos,
                                                     desired=verdict.desired, formation=process.quantity),
                                  *dynos_not_up(process, boot=_boot_figure(verdict.details, pair), now=now)),
                      learned=learned_summary(verdict.details), measured=measured,
                      shadow=max(verdict.desired, int(prewarm.get("dynos") or 0)) if pair.prewarm == "shadow" and prewarm
                      else None)

    # 4. Act.
    return act(pair, backend, decided, current=process.quantity, desired=verdict.desired, dry_run=dry_run, now=now)


def _account(kind: str, account: Any) -> str:
    return f"{kind} account “{account.description}”" if account is not None else ""


def learned_summary(details: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the pair page shows of what the policy learned (None: the policy learns nothing)."""
    if "learned" not in details:
        return None
    return {key: details.get(key) for key in ("learned", "prewarm", "patterns", "not_helping", "corrections",
                                              "boot_timing")}


def _boot_figure(details: Mapping[str, Any], pair: ScalingPair) -> float:
    """The boot the pair's dynos take: the larger of the operator's figure and what the
    policy measured this cycle (the pair's stored ``learned`` is not loaded by the cycle)."""
    measured = ((details.get("learned") or {}).get("boot") or {}).get("value")
    return max(float(pair.boot_seconds or 0), float(measured or 0))


def dynos_not_up(process: ProcessState, *, boot: float, now: datetime) -> tuple[tuple[str, str], ...]:
    """Dynos that should be up and have not been for twice a boot and its grace: stuck
    starting, or crashed (a crash loop waits out Heroku's back-off in "crashed"). Scaling
    cannot help: they serve nothing, and only a person looking at the app's logs can."""
    since = process.not_up_since
    allowed = 2 * (boot + BOOT_GRACE_SECONDS)
    if since is None or process.quantity <= process.running or (now - since).total_seconds() < allowed:
        return ()
    missing = process.quantity - process.running
    return ((DYNOS_NOT_UP, f"{missing} of {process.quantity} dyno(s) not up, the longest since {since:%Y-%m-%d %H:%M} "
                           f"UTC (a boot takes ≈ {boot:.0f} s): crashing, or stuck starting"),)


def policy_conditions(details: Mapping[str, Any], *, pair: ScalingPair, max_dynos: int,
                      desired: int, formation: int) -> tuple[tuple[str, str], ...]:
    """What the policy's verdict says is wrong: the newest message waiting past the target
    although the pair is at its max (asked for and in the formation: below it, as when
    Heroku refuses a quantity, raising the max would not help), or more dynos not helping."""
    found: list[tuple[str, str]] = []
    wait = details.get("wait_seconds")
    target = pair.target_wait_seconds
    if wait is not None and wait > target and desired >= max_dynos and formation >= max_dynos:
        if wait == float("inf"):
            said = f"messages wait and no dyno is up to serve them (target {target} s) at max {max_dynos}"
        else:
            said = f"the newest message waits ≈ {wait:,.0f} s (target {target} s) at max {max_dynos}"
        found.append((WAIT_OVER_TARGET_AT_MAX, said))
    if details.get("not_helping"):
        found.append((NOT_HELPING, str(details["not_helping"])))
    return tuple(found)


def person_changed(observed: CycleResult, *, note: str, until: datetime, by: str = "") -> CycleResult:
    """Someone changed the formation outside DynoScaler: hold off instead of undoing it.
    ``by``: the person Heroku named (webhooks), shown as who paused the pair."""
    return replace(observed, outcome=Outcome.PAUSED, reason=note, paused_until=until,
                   paused_by=person_outside(by, max_length=PAUSED_BY_MAX),
                   state_after=None, conditions=((PERSON_CHANGE, note),), unsure=CODES - {PERSON_CHANGE})


@dataclass(frozen=True)
class PeopleCheck:
    holds: bool
    note: str  # why it holds, or a remark for the decision's reason
    hold_until: datetime | None = None


def defer_to_people(
    *, found: int, expected: int | None, unconfirmed: int | None, paused_until: datetime | None,
    hold_seconds: int, now: datetime, paused_by: str = "", changed_by: str = "",
) -> PeopleCheck:
    """Whether a person's pause or change must be respected this cycle. ``expected`` is what
    DynoScaler last saw or set; ``unconfirmed`` a write whose answer was lost, which the
    formation may now show. Only a quantity that is neither is someone else's change;
    ``changed_by`` names its author when Heroku did (a webhook's actor)."""
    note = ""
    if unconfirmed is not None and found == unconfirmed != expected:
        note = f"the change to {found} asked for earlier was applied (its answer had been lost); "
    if paused_until is not None and paused_until > now:
        by = f" by {paused_by}" if paused_by else ""
        return PeopleCheck(True, f"{note}paused{by} until {paused_until:%Y-%m-%d %H:%M} UTC; observed only, "
                                 f"formation left at {found}")
    if not note and expected is not None and found != expected:
        until = now + timedelta(seconds=hold_seconds)
        by = f" by {changed_by}" if changed_by else ""
        return PeopleCheck(True, f"the formation was changed outside DynoScaler{by} (expected {expected}, found {found}); "
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
        return replace(decided, outcome=Outcome.HELD, state_after=decided.state_if_not_applied,
                       reason=decided.reason + " — not sent: the kill switch is on")
    pool = backend.why_not_write()
    if pool is not None:
        return replace(decided, outcome=Outcome.HELD, state_after=decided.state_if_not_applied,
                       reason=f"{decided.reason} — not sent: {pool}",
                       unsure=decided.unsure | {PERMANENT_ERROR})
    # Without webhooks, nothing would have told us of a person's change: look right before writing.
    found = backend.quantity_before_write(current)
    if found is not None and found == pair.unconfirmed_quantity:
        return replace(decided, outcome=Outcome.NO_CHANGE, state_after=decided.state_if_not_applied, expected_quantity=found,
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
        return replace(decided, outcome=Outcome.HELD, state_after=decided.state_if_not_applied, reason=reason,
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
        refusal = written.refusal
        # Worded as the cycles that then hold at the refusal word it: one problem, one cause.
        detail = (f"Heroku refused {refusal.quantity}: {refusal.reason}" if refusal and refusal.quantity is not None
                  else str(written.error))
        problem = (PERMANENT_ERROR, detail) if written.error.permanent else (FAILING, f"could not change the formation: {detail}")
        outcome = replace(outcome, state_after=decided.state_if_not_applied, conditions=(*decided.conditions, problem),
                          unsure=frozenset() if written.error.permanent else frozenset({PERMANENT_ERROR}))
    return outcome
