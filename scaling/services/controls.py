"""What an operator does to a pair, or to all of them: pause, resume, scale now, a cycle
now, the kill switch, and a connection check that changes nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from scaling.adapters.errors import AdapterError, redact
from scaling.fields import SecretUnreadable
from scaling.models import HEROKU_MAX_DYNOS_PER_APP, Decision, KillSwitch, ScalingPair
from scaling.services import pair_inputs
from scaling.services.backends import open_backend, pair_secrets
from scaling.services.claims import claim_release, pair_claim
from scaling.services.cycle import pair_run_cycle
from scaling.services.history import record
from scaling.services.results import CycleResult
from scaling.services.formation_writes import FORGET_REFUSAL
from scaling.services.pairs import CYCLE_TASK

log = logging.getLogger(__name__)


def pair_pause(*, pair: ScalingPair, minutes: int, user: str, now: datetime | None = None) -> datetime:
    """Cycles keep observing and recording, change nothing, and say who paused until when."""
    until = (now or timezone.now()) + timedelta(minutes=minutes)
    ScalingPair.objects.filter(pk=pair.pk).update(paused_until=until, paused_by=user)
    return until


def pair_resume(*, pair: ScalingPair) -> None:
    ScalingPair.objects.filter(pk=pair.pk).update(paused_until=None, paused_by="")


def pair_scale_now(*, pair: ScalingPair, quantity: int, user: str, now: datetime | None = None) -> Decision:
    """A person sets the formation to ``quantity`` from DynoScaler. It is recorded like a
    cycle, and the policy then holds off for the pair's manual hold so it does not undo it.
    Raises AdapterError (nothing changed) if the kill switch is on or the change fails."""
    started = time.monotonic()
    now = now or timezone.now()
    if not 0 <= quantity <= HEROKU_MAX_DYNOS_PER_APP:
        raise ValueError(f"quantity must be 0 to {HEROKU_MAX_DYNOS_PER_APP}")
    if KillSwitch.is_engaged():
        raise AdapterError("DynoScaler", "the kill switch is on: no formation changes", permanent=True)
    claim = pair_claim(pair=pair, now=now, respect_interval=False)
    if claim is None:
        raise AdapterError("DynoScaler", "a cycle of this pair is running; try again in a moment", permanent=False)
    try:
        with open_backend(pair, now) as backend:
            before = backend.process_state()
            applied = backend.scale(quantity)
            remaining, calls = backend.rate_limit_remaining, backend.heroku_calls
    except BaseException as exc:
        # A lost answer may have been applied: the next cycle must not blame a person for it.
        lost = isinstance(exc, AdapterError) and exc.outcome_unknown
        claim_release(pair, claim, **({"unconfirmed_quantity": quantity} if lost else {}))
        raise
    hold = now + timedelta(seconds=pair.manual_hold_seconds)
    # A person may go past the bounds (an emergency); the first cycle after the hold will not.
    outside = (f"; {applied} is outside the pair's bounds ({pair.min_dynos}–{pair.max_dynos}), so the first cycle "
               "after that brings it back within them"
               if not pair.min_dynos <= applied <= pair.max_dynos else "")
    result = CycleResult(
        outcome=Decision.Outcome.APPLIED,
        reason=f"scaled by {user} from {before.quantity} to {applied} dynos (scale now); "
        f"the policy holds off until {hold:%H:%M} UTC{outside}",
        process=before, desired=quantity, applied=applied, rate_limit_remaining=remaining,
        expected_quantity=applied, paused_until=hold, paused_by=user, refusal=FORGET_REFUSAL, heroku_calls=calls,
    )
    return record(pair, claim=claim, now=now, result=result, dry_run=False, started=started, keep_interval=True)


@dataclass(frozen=True)
class CycleAsked:
    """What became of a cycle asked for now: queued for a worker, or run here."""

    queued: bool
    # Run here (the task queue could not be reached): its decision, or None when another
    # cycle of the pair held it, or the pair is gone or disabled.
    decision: Decision | None = None


def pair_cycle_ask(*, pair_id: int, requested_by: str = "") -> CycleAsked:
    """One cycle of the pair now, whatever its interval. A worker runs it (a cycle calls SQS
    and Heroku, which no web request should wait on); when the task queue cannot be reached
    it runs here instead, so whoever asked still gets their cycle. ``requested_by`` names
    the person in the cycle's decision."""
    try:
        current_app.send_task(CYCLE_TASK, args=(pair_id,), kwargs={"force": True, "requested_by": requested_by},
                              retry=False)
    except (OperationalError, OSError) as exc:
        log.warning("the task queue is unreachable (%s): the cycle of pair #%s runs here", type(exc).__name__, pair_id)
        return CycleAsked(queued=False, decision=pair_run_cycle(pair_id=pair_id, force=True, requested_by=requested_by))
    return CycleAsked(queued=True)


def pair_first_cycle(*, pair: ScalingPair, then: Callable[[CycleAsked], None] | None = None) -> None:
    """A new pair's first cycle runs at once rather than an interval later: asked for as
    soon as the pair is committed (a worker could not see it before), never if the
    transaction that made it is rolled back. ``then`` hears what became of it."""
    if not pair.enabled:
        return

    def ask() -> None:
        asked = pair_cycle_ask(pair_id=pair.pk)
        if then is not None:
            then(asked)

    transaction.on_commit(ask)


def kill_switch_set(*, engaged: bool, user: str, note: str = "") -> KillSwitch:
    switch = KillSwitch.current()
    switch.engaged, switch.changed_by, switch.changed_at, switch.note = engaged, user, timezone.now(), note[:200]
    switch.save()
    log.warning("kill switch %s by %s", "ENGAGED" if engaged else "released", user)
    return switch


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


def pair_check_connection(*, pair: ScalingPair) -> list[Check]:
    """Read each queue and the formation through the cycle's own backend, change nothing,
    and say exactly what works."""
    checks: list[Check] = []
    pair_inputs.forget(pair)  # what is configured now, not what a worker remembers
    try:
        with open_backend(pair, timezone.now()) as backend:
            for queue, region in backend.queues():
                what = f"SQS queue {queue} ({region})"
                try:
                    counts = backend.read_queue(queue, region)
                    checks.append(Check(what, True, f"readable: {counts.visible} visible, {counts.in_flight} in flight"))
                except AdapterError as exc:
                    checks.append(Check(what, False, exc.message))
            what = f"Heroku app {pair.app_name}, process type {pair.process_type}"
            try:
                state = backend.read_process_state()
                checks.append(Check(what, True, f"formation {state.quantity} ({state.size}), {state.running} up"))
            except AdapterError as exc:
                checks.append(Check(what, False, exc.message))
    except AdapterError as exc:
        checks.append(Check("set-up", False, exc.message))
    except SecretUnreadable as exc:
        checks.append(Check("credentials", False, str(exc)))
    secrets = pair_secrets(pair)
    return [Check(c.what, c.ok, redact(c.detail, secrets)) for c in checks]
