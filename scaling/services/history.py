"""The record of a pair's cycles, grown by what happens rather than by the clock.

Every cycle is kept twice, differently:
- a narrow ``PairSample`` (its counts), kept ``DYNOSCALER_SAMPLE_RETENTION_DAYS``, so the
  chart and ``simulate --from-history`` keep every cycle's resolution;
- the ``Decision`` audit trail, where a run of cycles that saw and decided the same thing
  (same outcome, formation, desired quantity, error and kind of reason) is one row after
  its first: "N more cycles like it from … to …", with the extremes of what they saw. A
  run is written when it ends, or every ``DYNOSCALER_DECISION_RUN_SECONDS`` at the most,
  so a quiet pair adds about a hundred rows a day, and every change, error and hold starts
  a row of its own. The open run lives on the pair until it is written.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scaling.adapters.errors import redact
from scaling.adapters.sqs import QueueCounts
from scaling.conditions import conditions_next
from scaling.models import Decision, PairSample, ScalingPair
from scaling.services.backends import pair_secrets
from scaling.services.heroku_budget import account_after_calls
from scaling.services.results import CycleResult

log = logging.getLogger("scaling.services.cycle")

Outcome = Decision.Outcome
# Outcomes whose repeats are quiet time; an applied change is always a row of its own.
_FOLDABLE = {Outcome.NO_CHANGE, Outcome.PAUSED, Outcome.HELD, Outcome.ERROR, Outcome.DRY_RUN}
_NUMBERS = re.compile(r"\d[\d,.]*")
_READ = re.compile(r"^formation read from Heroku \(.*?\); ")  # services.cycle's prefix for a cycle that read it
# How the reason of a cycle a person asked for begins: such a cycle is a row of its own.
ASKED_FOR = "cycle asked for by "
# What a folded cycle updates in its run's summary row: the last cycle's view.
_LAST = ("visible_messages", "in_flight_messages", "delayed_messages", "dynos_running", "dynos_starting",
         "backlog_per_instance", "reason", "heroku_rate_limit_remaining", "queues")


def run_key(decision: Decision) -> list[Any] | None:
    """What a cycle must share with the run's first to be folded into it (None: never folded)."""
    if decision.outcome not in _FOLDABLE or decision.reason.startswith(ASKED_FOR):
        return None
    # The same words, whatever the counts, and whether or not this cycle read the formation
    # (a reconcile read every few minutes that finds what was expected changes nothing; one
    # that finds another formation differs in quantity or outcome and starts a row anyway).
    shape = _NUMBERS.sub("#", _READ.sub("", decision.reason))
    return [decision.outcome, decision.quantity_before, decision.desired_quantity, decision.error, decision.dry_run, shape]


def history_record(pair: ScalingPair, decision: Decision, *, now: datetime,
                   shadow: int | None = None) -> tuple[Decision, dict[str, Any]]:
    """Store one cycle: its sample, and its decision unless it only repeats the open run.
    Returns the decision (unsaved when folded) and the run to keep on the pair. Call inside
    the cycle's transaction."""
    if decision.visible_messages is not None:
        PairSample.objects.create(pair=pair, at=now, visible=decision.visible_messages,
                                  in_flight=decision.in_flight_messages or 0, running=decision.dynos_running,
                                  quantity=decision.quantity_before,
                                  desired=decision.desired_quantity if decision.desired_quantity is not None
                                  else decision.quantity_before, shadow=shadow)
    run = dict(pair.quiet_run or {})
    key = run_key(decision)
    head_at = _time(run.get("head_at"))
    if key is not None and run.get("key") == key and head_at is not None and \
            now - head_at < timedelta(seconds=settings.DECISION_RUN_SECONDS):
        return decision, _extended(run, decision, now)
    if run.get("cycles"):
        _write_run(pair, run)
    decision.save()
    return decision, ({"key": key, "head_at": now.isoformat(), "cycles": 0} if key is not None else {})


def _extended(run: dict[str, Any], decision: Decision, now: datetime) -> dict[str, Any]:
    visible = decision.visible_messages
    seen = [v for v in (run.get("visible_min"), run.get("visible_max"), visible) if v is not None]
    return {
        **run,
        "cycles": int(run.get("cycles", 0)) + 1,
        "first_at": run.get("first_at") or now.isoformat(),
        "last_at": now.isoformat(),
        "visible_min": min(seen, default=None),
        "visible_max": max(seen, default=None),
        "heroku_calls": int(run.get("heroku_calls", 0)) + decision.heroku_calls,
        "duration_ms": int(run.get("duration_ms", 0)) + decision.duration_ms,
        "last": {name: getattr(decision, name) for name in _LAST},
        "state_after": decision.state_after,
        "policy": decision.policy,
        "error_permanent": decision.error_permanent,
        # As the pair was called when its cycles ran (a rename before the row is written
        # must not put them under the new name).
        "names": [decision.pair_name, decision.app_name, decision.process_type],
    }


def _write_run(pair: ScalingPair, run: dict[str, Any]) -> Decision:
    """The run's cycles after its first, as one row."""
    outcome, quantity, desired, error, dry_run, _ = run["key"]
    last = run.get("last") or {}
    first_at, last_at = _time(run.get("first_at")), _time(run.get("last_at"))
    head_at = _time(run.get("head_at"))
    assert first_at is not None and last_at is not None
    cycles = int(run["cycles"])
    like = f" like the one at {head_at:%H:%M:%S}" if head_at else ""
    when = (f"at {last_at:%H:%M:%S} UTC" if cycles == 1 or first_at == last_at
            else f"{first_at:%H:%M:%S}–{last_at:%H:%M:%S} UTC")
    low, high = run.get("visible_min"), run.get("visible_max")
    saw = ("no count (the queue could not be read)" if low is None
           else f"{low} visible" if low == high else f"{low}–{high} visible")
    reason = f"{cycles} more cycle{'s' if cycles != 1 else ''}{like}, {when}, saw {saw}; the last: {last.get('reason', '')}"
    name, app, process = run.get("names") or (pair.name, pair.app_name, pair.process_type)
    return Decision.objects.create(
        pair=pair, pair_name=name, app_name=app, process_type=process,
        created_at=last_at, first_cycle_at=first_at, cycles=cycles, policy=run.get("policy") or pair.policy,
        outcome=outcome, quantity_before=quantity, desired_quantity=desired, error=error or "", dry_run=dry_run,
        error_permanent=run.get("error_permanent"), state_before=run.get("state_after") or {},
        state_after=run.get("state_after") or {}, visible_min=run.get("visible_min"), visible_max=run.get("visible_max"),
        heroku_calls=int(run.get("heroku_calls", 0)), duration_ms=int(run.get("duration_ms", 0)),
        **{name: value for name, value in last.items() if name != "reason"}, reason=reason,
    )


def run_flush(*, pair: ScalingPair) -> Decision | None:
    """Write the pair's open run now (its cycles after the last row), if it has one: before
    the pair goes, or stops cycling, so none of its cycles is off the record."""
    fresh = ScalingPair.objects.filter(pk=pair.pk).values_list("quiet_run", flat=True).first() or {}
    return _take_and_write(pair, fresh) if fresh.get("cycles") and _time(fresh.get("last_at")) else None


def _take_and_write(pair: ScalingPair, run: dict[str, Any]) -> Decision | None:
    """Write ``run`` as a row if it is still the pair's open run (a conditional UPDATE takes
    it, so a cycle or another flush that got there first wins and nothing is written twice)."""
    with transaction.atomic():
        if ScalingPair.objects.filter(pk=pair.pk, quiet_run=run).update(quiet_run={}) == 1:
            return _write_run(pair, run)
    return None


def runs_flush_stale(*, now: datetime | None = None) -> int:
    """Write the open runs of pairs that stopped cycling (disabled, or stalled), so no cycle
    stays off the record. Each pair's run is taken with a conditional UPDATE."""
    now = now or timezone.now()
    written = 0
    for pair in ScalingPair.objects.exclude(quiet_run={}).only("id", "name", "app_name", "process_type", "policy",
                                                                "quiet_run", "interval_seconds", "last_cycle_at"):
        last_at = _time((pair.quiet_run or {}).get("last_at"))
        if not pair.quiet_run.get("cycles") or last_at is None:
            continue
        if now - last_at < timedelta(seconds=max(3 * pair.interval_seconds, settings.DECISION_RUN_SECONDS)):
            continue
        if _take_and_write(pair, pair.quiet_run) is not None:
            written += 1
    return written


def samples_prune(*, now: datetime | None = None, batch: int = 50_000) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=settings.SAMPLE_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(PairSample.objects.filter(at__lt=cutoff).order_by("at").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += PairSample.objects.filter(id__in=ids).delete()[0]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value))


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
    if result.learned is not None:
        pair_fields["learned"] = dict(result.learned)
    if result.measured.cloudwatch_read:
        pair_fields["cloudwatch_read_at"] = now
    if result.measured.cloudwatch_problem is not None:
        pair_fields["cloudwatch_problem"] = redact(result.measured.cloudwatch_problem, pair_secrets(pair))
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
        decision, pair_fields["quiet_run"] = history_record(pair, decision, now=now, shadow=result.shadow)
        if ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(**pair_fields) != 1:
            log.warning("pair %s: the cycle outlived its claim; its decision is kept, its state is not", pair.name)
        if result.heroku_calls or (error is not None and error.system == "Heroku"):
            account_after_calls(pair.heroku_account_id, error=error, remaining=result.rate_limit_remaining, now=now)
    # A quiet cycle folded into its run is on record there; the log says only what happens,
    # except for the original variables' pair with no Elasticsearch: the original tool printed
    # every cycle on the terminal, and its users watch for that line.
    every_cycle = pair.managed_by_env and not settings.ELK_ELASTIC_URL
    level = logging.WARNING if error else logging.INFO if decision.pk is not None or every_cycle else logging.DEBUG
    log.log(level, "pair %s: %s: %s%s", pair.name, decision.outcome, decision.reason, f" [{decision.error}]" if error else "")
    return decision
