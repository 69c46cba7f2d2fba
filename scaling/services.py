"""Writes: one cycle of one pair, keeping beat in step with pairs, the seed's env pair,
and shipping decisions to the audit sink.

The rule everywhere: no database transaction is open while we talk to SQS, Heroku or
Elasticsearch. Races are settled with conditional UPDATEs (a claim that expires), and a
failure is saved on a row instead of being raised into the void.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scaling.adapters.audit import AuditSink, ElasticsearchSink, TerminalSink
from scaling.adapters.errors import AdapterError, redact
from scaling.adapters.heroku import HerokuClient, ProcessState
from scaling.adapters.sandbox import DEMO_SETTINGS as SANDBOX_DEMO_SETTINGS
from scaling.adapters.sandbox import SandboxSource
from scaling.adapters.sqs import AwsCredentials, QueueCounts, SqsReader
from scaling.fields import SecretUnreadable
from scaling.models import HEROKU_MAX_DYNOS_PER_APP, AwsAccount, Decision, HerokuAccount, KillSwitch, Lease, PairQueue, SandboxWorld, ScalingPair
from scaling.policies import Bounds, Observation, effective_bounds, get_policy
from scaling.seed_env import SeedConfig

log = logging.getLogger(__name__)

CYCLE_TASK = "scaling.tasks.run_pair_cycle"
# A claim or lease outlives the task's hard time limit by this much, no more: a killed
# worker stalls nothing for longer.
CLAIM_MARGIN_SECONDS = 5
Outcome = Decision.Outcome


# --- the outside world, built from settings --------------------------------------------

_sqs_reader: SqsReader | None = None


def sqs_reader() -> SqsReader:
    global _sqs_reader
    if _sqs_reader is None:
        _sqs_reader = SqsReader(timeout_seconds=settings.AWS_TIMEOUT_SECONDS)
    return _sqs_reader


def heroku_client(account: HerokuAccount) -> HerokuClient:
    return HerokuClient(
        token=account.api_token,
        base_url=settings.HEROKU_API_URL,
        timeout_seconds=settings.HEROKU_TIMEOUT_SECONDS,
    )


def aws_credentials(account: AwsAccount) -> AwsCredentials | None:
    if account.use_default_chain:
        return None
    return AwsCredentials(account.access_key_id, account.secret_access_key)


def audit_sink() -> AuditSink:
    if settings.ELK_ELASTIC_URL:
        return ElasticsearchSink(
            url=settings.ELK_ELASTIC_URL,
            index=settings.ELK_INDEX_AS,
            user=settings.ELK_ELASTIC_USER,
            password=settings.ELK_ELASTIC_PASS,
            index_type=settings.ELK_INDEX_TYPE_AS,
        )
    return TerminalSink()


def _pair_secrets(pair: ScalingPair) -> list[str]:
    """The pair's secrets, to scrub from texts we store; none if they cannot be read."""
    try:
        return [
            pair.heroku_account.api_token if pair.heroku_account else "",
            pair.aws_account.secret_access_key if pair.aws_account else "",
        ]
    except SecretUnreadable:
        return []


# --- one cycle of one pair -----------------------------------------------------------


@dataclass
class _CycleResult:
    outcome: str
    reason: str
    queues: list[dict[str, Any]] = field(default_factory=list)
    totals: QueueCounts | None = None
    running: int | None = None
    starting: int | None = None
    quantity: int | None = None
    backlog_per_instance: float | None = None
    desired: int | None = None
    applied: int | None = None
    state_after: Mapping[str, Any] | None = None  # None: the counters do not move
    error: AdapterError | None = None
    rate_limit_remaining: int | None = None
    # A quantity Heroku refused for good and why: None leaves the pair's record as it is,
    # (None, "") clears it. Only a cycle that reached the act step may change it.
    block: tuple[int | None, str] | None = None
    expected_quantity: int | None = None  # what the formation should be next cycle
    # A write whose answer was lost: the quantity asked for, which the next observation may
    # show (it was applied) without anyone else having touched the formation.
    unconfirmed_quantity: int | None = None
    paused_until: datetime | None = None  # set when a person's change is noticed


class _Source(Protocol):
    """What one cycle reads and changes: a pair's queues and its process type's formation."""

    def read_queues(self) -> list[tuple[str, str, QueueCounts]]: ...
    def process_state(self) -> ProcessState: ...
    def scale(self, quantity: int) -> int: ...
    @property
    def rate_limit_remaining(self) -> int | None: ...


class _HerokuSqsSource:
    def __init__(self, pair: ScalingPair) -> None:
        self.pair = pair
        self.client = heroku_client(pair.heroku_account)  # type: ignore[arg-type]

    def read_queues(self) -> list[tuple[str, str, QueueCounts]]:
        return [(q.queue, q.region, self.read_queue(q)) for q in self.pair.queues.all()]

    def read_queue(self, queue: PairQueue) -> QueueCounts:
        credentials = aws_credentials(self.pair.aws_account)  # type: ignore[arg-type]
        return sqs_reader().counts(queue=queue.queue, region=queue.region, credentials=credentials)

    def process_state(self) -> ProcessState:
        return self.client.process_state(app=self.pair.app_name, process_type=self.pair.process_type)

    def scale(self, quantity: int) -> int:
        return self.client.scale(app=self.pair.app_name, process_type=self.pair.process_type, quantity=quantity)

    @property
    def rate_limit_remaining(self) -> int | None:
        return self.client.rate_limit_remaining


class _SandboxSource:
    """The sandbox world of a pair, loaded for one cycle and saved after it."""

    def __init__(self, pair: ScalingPair, now: datetime) -> None:
        self.row, _ = SandboxWorld.objects.get_or_create(pair=pair)
        self.world = SandboxSource(self.row.state, now=now.timestamp())

    def read_queues(self) -> list[tuple[str, str, QueueCounts]]:
        return [("sandbox-queue", "simulated", self.world.counts())]

    def process_state(self) -> ProcessState:
        return self.world.process_state()

    def scale(self, quantity: int) -> int:
        return self.world.scale(quantity)

    @property
    def rate_limit_remaining(self) -> int | None:
        return None

    def save(self) -> None:
        SandboxWorld.objects.filter(pk=self.row.pk).update(state=self.world.state())


def pair_claim(*, pair: ScalingPair, now: datetime, respect_interval: bool) -> uuid.UUID | None:
    """Take this pair's cycle for ourselves, or return None if another holds it.

    One conditional UPDATE decides: of two workers (or two beats' tasks) only one sees a
    row updated. The claim expires after the task's hard time limit so a killed worker
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


def pair_run_cycle(
    *, pair_id: int, force: bool = False, dry_run: bool = False, now: datetime | None = None
) -> Decision | None:
    """Run one cycle of one pair: observe, decide, act, record.

    Returns the recorded decision, or None when the pair is gone, disabled, or another
    cycle of it holds the claim (the loser records nothing and changes nothing).
    ``force`` skips the interval spacing (a person asked for this cycle); ``dry_run``
    decides without touching the formation.
    """
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
    try:
        result = _cycle(pair, now=now, dry_run=dry_run or pair.dry_run)
    except SecretUnreadable as exc:
        result = _CycleResult(outcome=Outcome.ERROR, reason="a credential cannot be read; formation held",
                              error=AdapterError("DynoScaler", str(exc), permanent=True))
    except Exception as exc:
        # A bug must not stop a pair silently: hold the formation and put it on record.
        log.exception("pair %s: the cycle failed unexpectedly", pair.name)
        result = _CycleResult(
            outcome=Outcome.ERROR,
            reason="internal error in DynoScaler; formation held",
            error=AdapterError("DynoScaler", f"{type(exc).__name__}: {exc}", permanent=False),
        )
    except BaseException:  # the task's time limit, a shutdown: let it go, free the pair
        ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(cycle_claim=None, cycle_claimed_until=None)
        raise
    return _record(pair, claim=claim, now=now, result=result, dry_run=dry_run or pair.dry_run, started=started)


@contextmanager
def _source(pair: ScalingPair, now: datetime) -> Iterator[_Source]:
    if pair.provider == ScalingPair.Provider.SANDBOX:
        if not settings.SANDBOX_ENABLED:
            raise AdapterError("DynoScaler", "sandbox pairs do not run here (DYNOSCALER_SANDBOX is off)", permanent=True)
        sandbox = _SandboxSource(pair, now)
        try:
            yield sandbox
        finally:
            sandbox.save()
        return
    if pair.heroku_account is None or pair.aws_account is None:
        raise AdapterError("DynoScaler", "the pair has no Heroku or AWS account", permanent=True)
    yield _HerokuSqsSource(pair)


def _cycle(pair: ScalingPair, *, now: datetime, dry_run: bool) -> _CycleResult:
    held = _heroku_holds(pair, now) if pair.provider == ScalingPair.Provider.HEROKU else None
    if held is not None:
        return held
    try:
        with _source(pair, now) as source:
            return _observe_decide_act(pair, source, now=now, dry_run=dry_run)
    except AdapterError as exc:  # the source could not be set up (its calls are handled inside)
        return _CycleResult(outcome=Outcome.ERROR, reason=f"{exc.message}; formation held", error=exc)


def _heroku_holds(pair: ScalingPair, now: datetime) -> _CycleResult | None:
    """Why a Heroku pair must not call out this cycle, if it must not."""
    account = pair.heroku_account
    if account is not None and account.rate_limited_until and account.rate_limited_until > now:
        wait = int((account.rate_limited_until - now).total_seconds()) + 1
        # Not a Heroku error: nothing was asked of Heroku, so this cycle cannot extend the back-off.
        return _CycleResult(
            outcome=Outcome.ERROR,
            reason=f"the account's Heroku API pool is empty or below its reserve: backing off for {wait} s more; formation held",
            error=AdapterError("DynoScaler", f"Heroku API pool low; no call until {account.rate_limited_until:%H:%M:%S} UTC",
                               permanent=False),
        )
    if not pair.queues.all():
        return _CycleResult(
            outcome=Outcome.ERROR,
            reason="no SQS queue configured for this pair; formation held",
            error=AdapterError("DynoScaler", "no SQS queue configured", permanent=True),
        )
    return None


def _observe_decide_act(pair: ScalingPair, source: _Source, *, now: datetime, dry_run: bool) -> _CycleResult:
    # Observe. A failed read is never taken for an empty queue: hold and record.
    try:
        read = source.read_queues()
    except AdapterError as exc:
        return _CycleResult(outcome=Outcome.ERROR, reason="could not read the queues; formation held", error=exc)
    per_queue = [{"queue": q, "region": r, **c.__dict__} for q, r, c in read]
    totals = sum((c for _, _, c in read), QueueCounts(0, 0, 0))
    try:
        process = source.process_state()
    except AdapterError as exc:
        return _CycleResult(
            outcome=Outcome.ERROR, reason="could not read the Heroku formation; formation held", error=exc,
            queues=per_queue, totals=totals, rate_limit_remaining=source.rate_limit_remaining,
        )
    seen = _CycleResult(
        outcome=Outcome.PAUSED, reason="", queues=per_queue, totals=totals, running=process.running,
        starting=process.starting, quantity=process.quantity, state_after=None,
        rate_limit_remaining=source.rate_limit_remaining, expected_quantity=process.quantity,
    )

    # Our own write whose answer was lost, now seen applied: not a person's change.
    confirmed = ""
    if pair.unconfirmed_quantity is not None and process.quantity == pair.unconfirmed_quantity != pair.expected_quantity:
        confirmed = f"the change to {process.quantity} asked for earlier was applied (its answer had been lost); "
    # A person's word comes first: a pause, or a formation changed outside DynoScaler.
    if pair.paused_until and pair.paused_until > now:
        seen.reason = f"{confirmed}paused until {pair.paused_until:%Y-%m-%d %H:%M} UTC; observed only, formation left at {process.quantity}"
        return seen
    if not confirmed and pair.expected_quantity is not None and process.quantity != pair.expected_quantity:
        seen.paused_until = now + timedelta(seconds=pair.manual_hold_seconds)
        seen.reason = (
            f"the formation was changed outside DynoScaler (expected {pair.expected_quantity}, found "
            f"{process.quantity}); holding off until {seen.paused_until:%H:%M} UTC instead of undoing it"
        )
        return seen

    # Decide.
    observation = Observation(
        visible=totals.visible, in_flight=totals.in_flight, delayed=totals.delayed,
        quantity=process.quantity, running=process.running, at=now.timestamp(),
    )
    bounds, window = effective_bounds(Bounds(pair.min_dynos, pair.max_dynos), pair.schedule_windows(), observation.at)
    verdict = get_policy(pair.policy).decide(observation, bounds, pair.policy_settings(), pair.policy_state or {})
    result = seen
    result.outcome = Outcome.NO_CHANGE
    result.reason = confirmed + verdict.reason
    if window is not None:
        result.reason = f"[schedule {window.describe()}: min {bounds.min_dynos}, max {bounds.max_dynos}] {result.reason}"
    result.backlog_per_instance = verdict.backlog_per_instance
    result.desired = verdict.desired
    result.state_after = verdict.state

    # Act.
    if verdict.desired == process.quantity:
        return result
    if dry_run:
        result.outcome = Outcome.DRY_RUN
        result.reason += " (dry run: formation not changed)"
        return result
    if kill_switch_engaged():  # read now, right before the write, so it stops writes at once
        result.outcome = Outcome.HELD
        result.state_after = None
        result.reason += " — not sent: the kill switch is on"
        return result
    ask, keep_refusal = within_refusal(pair.blocked_quantity, current=process.quantity, desired=verdict.desired)
    if ask is None:
        result.outcome = Outcome.HELD
        result.state_after = None
        result.reason += f" — not sent: Heroku refused {pair.blocked_quantity} earlier ({pair.blocked_reason})"
        if pair.blocked_quantity is not None and pair.blocked_quantity > process.quantity:
            result.reason += f"; {process.quantity} is the most it accepts"
        return result
    if ask != verdict.desired:
        result.reason += f" — Heroku refused {pair.blocked_quantity} earlier, so asking for {ask}"
    result.block = None if keep_refusal else (None, "")
    _write(result, source, ask=ask, current=process.quantity)
    result.rate_limit_remaining = source.rate_limit_remaining
    return result


def _write(result: _CycleResult, source: _Source, *, ask: int, current: int) -> None:
    """Change the formation to ``ask``. A refusal is remembered so it is not asked again; when
    Heroku says what it accepts (a size's dyno limit), that is asked for once, at once."""
    error = _scale(result, source, ask)
    if error is not None and error.permanent:
        result.block = (ask, error.message)
        limit = error.accepts_at_most
        if limit is not None and current < limit < ask:
            result.block = (limit + 1, error.message)
            result.reason += f" — Heroku refused {ask} ({error.message}); asking for {limit}, the most it accepts"
            error = _scale(result, source, limit)
    if error is not None:
        result.state_after = None  # try again next cycle from the same counters
        result.reason += " — the formation change failed"


def _scale(result: _CycleResult, source: _Source, quantity: int) -> AdapterError | None:
    try:
        result.applied = source.scale(quantity)
    except AdapterError as exc:
        result.outcome, result.error, result.applied = Outcome.ERROR, exc, None
        if exc.outcome_unknown:
            result.unconfirmed_quantity = quantity
        return exc
    result.outcome, result.error, result.expected_quantity = Outcome.APPLIED, None, result.applied
    return None


HEROKU_REFILL_PER_SECOND = 75 / 60  # Heroku refills an account's pool by about 75 calls a minute


def _heroku_backoff_seconds(error: AdapterError | None, remaining: int | None) -> float:
    """How long the account's pairs should make no call: after a 429, or when the pool
    has fallen below the reserve (as long as it takes to refill to the reserve)."""
    if error is not None and error.system == "Heroku" and error.rate_limited:
        return error.retry_after or settings.HEROKU_RATE_LIMIT_BACKOFF_SECONDS
    reserve = settings.HEROKU_RATE_LIMIT_RESERVE
    if remaining is not None and remaining < reserve:
        return (reserve - remaining) / HEROKU_REFILL_PER_SECOND
    return 0.0


def kill_switch_engaged() -> bool:
    return KillSwitch.objects.filter(pk=1, engaged=True).exists()


def within_refusal(refused: int | None, *, current: int, desired: int) -> tuple[int | None, bool]:
    """What to ask Heroku for after it refused ``refused`` for good (a 422), and whether the
    refusal still stands: (quantity to ask, or None to hold; keep the refusal on record).

    A refused increase is never asked again; while the policy wants it or more, DynoScaler
    asks halfway between what runs and what was refused, so the pair ends up at the most
    Heroku accepts, not stuck where it was. When the policy wants no more than what runs,
    the refusal is forgotten. A refused decrease holds while the policy still wants it."""
    if refused is None:
        return desired, False
    if refused > current:
        if desired < refused:
            return desired, desired > current
        if refused - current <= 1:
            return None, True
        return (current + refused) // 2, True
    if desired <= refused:
        return None, True
    return desired, False


def _record(
    pair: ScalingPair, *, claim: uuid.UUID, now: datetime, result: _CycleResult, dry_run: bool, started: float,
    keep_interval: bool = False,
) -> Decision:
    secrets = _pair_secrets(pair)
    error = result.error
    state_before = dict(pair.policy_state or {})
    state_after = dict(result.state_after) if result.state_after is not None else state_before
    totals = result.totals
    with transaction.atomic():
        decision = Decision.objects.create(
            pair=pair,
            pair_name=pair.name,
            app_name=pair.app_name,
            process_type=pair.process_type,
            created_at=now,
            policy=pair.policy,
            queues=result.queues,
            visible_messages=totals.visible if totals else None,
            in_flight_messages=totals.in_flight if totals else None,
            delayed_messages=totals.delayed if totals else None,
            dynos_running=result.running,
            dynos_starting=result.starting,
            quantity_before=result.quantity,
            backlog_per_instance=result.backlog_per_instance,
            state_before=state_before,
            state_after=state_after,
            desired_quantity=result.desired,
            applied_quantity=result.applied,
            outcome=result.outcome,
            reason=redact(result.reason, secrets),
            error=redact(str(error), secrets) if error else "",
            error_permanent=error.permanent if error else None,
            dry_run=dry_run,
            duration_ms=int((time.monotonic() - started) * 1000),
            heroku_rate_limit_remaining=result.rate_limit_remaining,
        )
        updated = ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(
            policy_state=state_after,
            **({} if keep_interval else {"last_cycle_at": now}),
            cycle_claim=None,
            cycle_claimed_until=None,
            **({"blocked_quantity": result.block[0], "blocked_reason": result.block[1]} if result.block else {}),
            **({"expected_quantity": result.expected_quantity} if result.expected_quantity is not None else {}),
            # Any cycle that saw the formation settles an earlier lost answer, one way or the other.
            **({"unconfirmed_quantity": result.unconfirmed_quantity} if result.quantity is not None else {}),
            **({"paused_until": result.paused_until} if result.paused_until is not None else {}),
        )
        if updated != 1:
            log.warning("pair %s: the cycle outlived its claim; its decision is kept, its state is not", pair.name)
        backoff = _heroku_backoff_seconds(error, result.rate_limit_remaining)
        if backoff and pair.heroku_account_id is not None:
            HerokuAccount.objects.filter(id=pair.heroku_account_id).update(
                rate_limited_until=now + timedelta(seconds=backoff)
            )
    level = logging.WARNING if error else logging.INFO
    log.log(level, "pair %s: %s: %s%s", pair.name, decision.outcome, decision.reason, f" [{decision.error}]" if error else "")
    return decision


# --- what an operator does ----------------------------------------------------------------


def pair_pause(*, pair: ScalingPair, minutes: int, now: datetime | None = None) -> datetime:
    until = (now or timezone.now()) + timedelta(minutes=minutes)
    ScalingPair.objects.filter(pk=pair.pk).update(paused_until=until)
    return until


def pair_resume(*, pair: ScalingPair) -> None:
    ScalingPair.objects.filter(pk=pair.pk).update(paused_until=None)


def pair_scale_now(*, pair: ScalingPair, quantity: int, user: str, now: datetime | None = None) -> Decision:
    """A person sets the formation to ``quantity`` from DynoScaler. It is recorded like a
    cycle, and the policy then holds off for the pair's manual hold so it does not undo it.
    Raises AdapterError (nothing changed) if the kill switch is on or the change fails."""
    started = time.monotonic()
    now = now or timezone.now()
    if not 0 <= quantity <= HEROKU_MAX_DYNOS_PER_APP:
        raise ValueError(f"quantity must be 0 to {HEROKU_MAX_DYNOS_PER_APP}")
    if kill_switch_engaged():
        raise AdapterError("DynoScaler", "the kill switch is on: no formation changes", permanent=True)
    claim = pair_claim(pair=pair, now=now, respect_interval=False)
    if claim is None:
        raise AdapterError("DynoScaler", "a cycle of this pair is running; try again in a moment", permanent=False)
    try:
        with _source(pair, now) as source:
            before = source.process_state()
            applied = source.scale(quantity)
            remaining = source.rate_limit_remaining
    except BaseException as exc:
        lost = isinstance(exc, AdapterError) and exc.outcome_unknown
        ScalingPair.objects.filter(pk=pair.pk, cycle_claim=claim).update(
            cycle_claim=None, cycle_claimed_until=None, **({"unconfirmed_quantity": quantity} if lost else {}))
        raise
    hold = now + timedelta(seconds=pair.manual_hold_seconds)
    result = _CycleResult(
        outcome=Outcome.APPLIED,
        reason=f"scaled by {user} from {before.quantity} to {applied} dynos (scale now); "
        f"the policy holds off until {hold:%H:%M} UTC",
        running=before.running, starting=before.starting, quantity=before.quantity, desired=quantity,
        applied=applied, rate_limit_remaining=remaining, expected_quantity=applied, paused_until=hold,
        block=(None, ""),
    )
    return _record(pair, claim=claim, now=now, result=result, dry_run=False, started=started, keep_interval=True)


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
    """Read each queue and the formation, change nothing, and say exactly what works."""
    now = timezone.now()
    checks: list[Check] = []
    try:
        with _source(pair, now) as source:
            if isinstance(source, _HerokuSqsSource):
                for q in pair.queues.all():
                    what = f"SQS queue {q.queue} ({q.region})"
                    try:
                        counts = source.read_queue(q)
                        checks.append(Check(what, True, f"readable: {counts.visible} visible, {counts.in_flight} in flight"))
                    except AdapterError as exc:
                        checks.append(Check(what, False, exc.message))
            else:
                counts = source.read_queues()[0][2]
                checks.append(Check("sandbox queue", True, f"simulated: {counts.visible} visible"))
            what = f"Heroku app {pair.app_name}, process type {pair.process_type}"
            try:
                state = source.process_state()
                checks.append(Check(what, True, f"formation {state.quantity} ({state.size}), {state.running} up"))
            except AdapterError as exc:
                checks.append(Check(what, False, exc.message))
    except AdapterError as exc:
        checks.append(Check("set-up", False, exc.message))
    except SecretUnreadable as exc:
        checks.append(Check("credentials", False, str(exc)))
    secrets = _pair_secrets(pair)
    return [Check(c.what, c.ok, redact(c.detail, secrets)) for c in checks]


def decisions_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete decisions older than the retention, in batches, once they reached the audit sink."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.DECISION_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(Decision.objects.filter(created_at__lt=cutoff, shipped_at__isnull=False)
                   .order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += Decision.objects.filter(id__in=ids).delete()[0]


SANDBOX_DEMO_NAME = "Sandbox demo (simulated, no account)"


def sandbox_demo_ensure() -> ScalingPair | None:
    """On a laptop with nothing configured, a demo pair whose queue and formation are
    simulated, so a newcomer sees a pair scale. Never where real credentials exist."""
    if not settings.SANDBOX_ENABLED or HerokuAccount.objects.exists() or AwsAccount.objects.exists():
        return None
    if ScalingPair.objects.exclude(provider=ScalingPair.Provider.SANDBOX).exists():
        return None
    pair, created = ScalingPair.objects.get_or_create(
        name=SANDBOX_DEMO_NAME,
        defaults={"provider": ScalingPair.Provider.SANDBOX, "app_name": "sandbox-app", "process_type": "worker",
                  **SANDBOX_DEMO_SETTINGS},
    )
    if created:
        pair_saved(pair=pair)
    return pair


# --- keeping beat in step with pairs ---------------------------------------------------


def pair_schedule_sync(*, pair: ScalingPair) -> PeriodicTask:
    """Create or update the pair's periodic task so it matches the pair.

    Called by every write path (admin, env sync) after a pair is saved. A disabled pair's
    task stays, disabled; ``pair_delete`` removes it. A queued cycle older than one
    interval expires instead of running late behind a backlog of its own.
    """
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=pair.interval_seconds, period=IntervalSchedule.SECONDS
    )
    fields = {
        "task": CYCLE_TASK,
        "interval": schedule,
        "args": json.dumps([pair.pk]),
        "enabled": pair.enabled,
        "expire_seconds": pair.interval_seconds,
        "description": f"Scaling cycle of {pair.app_name}/{pair.process_type}. Managed by DynoScaler: edit the pair, not this task.",
    }
    task = pair.periodic_task
    if task is None:
        task, _ = PeriodicTask.objects.update_or_create(name=f"dynoscaler pair {pair.pk}", defaults=fields)
        ScalingPair.objects.filter(id=pair.pk).update(periodic_task=task)
        pair.periodic_task = task
    else:
        changed = [name for name, value in fields.items() if getattr(task, name) != value]
        if changed:
            for name in changed:
                setattr(task, name, fields[name])
            task.save()
    return task


def pair_saved(*, pair: ScalingPair, repointed: bool = False) -> None:
    """After any edit of a pair: its schedule follows, and a refused quantity is forgotten
    (the operator may have raised a limit on Heroku or changed the bounds). A pair pointed
    at another app, process type or provider also forgets the formation it expected, or
    its first cycle there would take the new app's formation for a person's change."""
    reset: dict[str, Any] = {"blocked_quantity": None, "blocked_reason": ""}
    if repointed:
        reset["expected_quantity"] = None
    ScalingPair.objects.filter(id=pair.pk).update(**reset)
    pair_schedule_sync(pair=pair)


@transaction.atomic
def pair_delete(*, pair: ScalingPair) -> None:
    task = pair.periodic_task
    pair.delete()
    if task is not None:
        task.delete()


# --- the seed's environment variables ---------------------------------------------------


def pair_sync_from_env(*, config: SeedConfig) -> ScalingPair:
    """Make the env-described pair and its credentials match the variables.

    Idempotent and safe to race (worker and beat both call it at start-up): the loser of
    a simultaneous first creation retries and finds the winner's rows.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                pair, changed = _upsert_env_pair(config)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    if changed:
        pair_saved(pair=pair)
    else:
        # Same variables as last start: nothing the operator changed, so a quantity Heroku
        # refused stays refused (every scale_once would otherwise send it again).
        pair_schedule_sync(pair=pair)
    return pair


def _upsert_env_pair(config: SeedConfig) -> tuple[ScalingPair, bool]:
    """The env pair, created or brought in line with ``config``; and whether anything changed."""
    heroku, _ = HerokuAccount.objects.update_or_create(
        managed_by_env=True,
        defaults={"description": config.heroku_description, "api_token": config.heroku_token},
    )
    aws, _ = AwsAccount.objects.update_or_create(
        managed_by_env=True,
        defaults={
            "description": "from AWS_KEY / AWS_SECRET" if config.aws_key else "default AWS credential chain (env)",
            "use_default_chain": config.aws_key is None,
            "access_key_id": config.aws_key or "",
            "secret_access_key": config.aws_secret or "",
        },
    )
    values = {
        "name": config.pair_name,
        "heroku_account": heroku,
        "aws_account": aws,
        "app_name": config.app_name,
        "process_type": config.process_type,
        "min_dynos": config.min_dynos,
        "max_dynos": config.max_dynos,
        "policy": "classic",
        "backlog_threshold": config.backlog_threshold,
        "up_cycles": config.up_cycles,
        "down_cycles": config.down_cycles,
        "interval_seconds": config.interval_seconds,
    }
    pair = ScalingPair.objects.filter(managed_by_env=True).first()
    if pair is None:
        # A pair made in the admin for the same app/process is adopted, not duplicated.
        pair = ScalingPair.objects.filter(app_name=config.app_name, process_type=config.process_type).first()
    if pair is None:
        pair = ScalingPair.objects.create(managed_by_env=True, enabled=True, **values)
        changed = True
    else:
        changed = not pair.managed_by_env or any(getattr(pair, name) != value for name, value in values.items())
        if (pair.app_name, pair.process_type) != (config.app_name, config.process_type):
            pair.expected_quantity = None  # another app now: nothing is expected of its formation
        if changed:
            for name, value in values.items():
                setattr(pair, name, value)
            pair.managed_by_env = True
            pair.save()
    removed, _ = pair.queues.exclude(queue=config.queue, region=config.region).delete()
    _, added = PairQueue.objects.get_or_create(pair=pair, queue=config.queue, region=config.region)
    return pair, changed or bool(removed) or added


# --- the audit trail --------------------------------------------------------------------


def lease_acquire(*, key: str, seconds: float, now: datetime | None = None) -> uuid.UUID | None:
    now = now or timezone.now()
    holder = uuid.uuid4()
    Lease.objects.get_or_create(key=key)
    updated = (
        Lease.objects.filter(key=key)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=now + timedelta(seconds=seconds))
    )
    return holder if updated == 1 else None


def lease_renew(*, key: str, holder: uuid.UUID, seconds: float, now: datetime | None = None) -> bool:
    """Extend a lease we still hold; False if it lapsed and someone else may have taken it."""
    until = (now or timezone.now()) + timedelta(seconds=seconds)
    return Lease.objects.filter(key=key, holder=holder).update(expires_at=until) == 1


def lease_release(*, key: str, holder: uuid.UUID) -> None:
    Lease.objects.filter(key=key, holder=holder).update(holder=None, expires_at=None)


AUDIT_LEASE = "audit-shipper"


def audit_ship_pending(
    *, sink: AuditSink | None = None, batch_size: int | None = None, max_batches: int = 20, now: datetime | None = None
) -> int:
    """Send committed, unsent decisions to the audit sink, oldest first.

    A decision is marked sent only after the sink confirmed it, so when Elasticsearch is
    down decisions wait in the database; documents carry the decision id as their own,
    so a retry cannot duplicate one. One shipper at a time: a short lease, renewed before
    each batch, so a shipper killed mid-batch holds the trail up for one lease at most.
    Returns how many were delivered.
    """
    sink = sink or audit_sink()
    batch_size = batch_size or settings.AUDIT_SHIP_BATCH
    lease_seconds = settings.AUDIT_LEASE_SECONDS
    holder = lease_acquire(key=AUDIT_LEASE, seconds=lease_seconds, now=now)
    if holder is None:
        return 0
    # Stop starting batches well within the task's time limit, so the task ends by itself.
    stop_at = time.monotonic() + settings.CYCLE_TIME_LIMIT_SECONDS / 2
    delivered = 0
    try:
        for _ in range(max_batches):
            if time.monotonic() > stop_at or not lease_renew(key=AUDIT_LEASE, holder=holder, seconds=lease_seconds, now=now):
                break
            decisions = list(Decision.objects.filter(shipped_at__isnull=True).order_by("id")[:batch_size])
            if not decisions:
                break
            try:
                sent = sink.send([d.as_document() for d in decisions])
            except AdapterError as exc:
                log.warning("audit: %d decision(s) wait for %s: %s", len(decisions), sink.name, exc)
                break
            Decision.objects.filter(id__in=[int(i) for i in sent]).update(shipped_at=timezone.now())
            delivered += len(sent)
            if len(sent) < len(decisions):
                break
    finally:
        lease_release(key=AUDIT_LEASE, holder=holder)
    return delivered
