"""Compare the problems active now with the open ones: open the new, resolve the gone.

One message per problem per channel, not one per cycle: an open problem that is still
active sends nothing. Races between two evaluators are settled in the database: one at a
time holds a lease (a conditional UPDATE, never a lock across the network: evaluation
makes no network call anyway), at most one open row per key (a unique constraint), a
problem is resolved by the one UPDATE that finds it still open, and at most one message per
channel, problem and event (another unique constraint).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from scaling.alerts.detectors import DETECTORS, ActiveProblem, Detector, active_problems
from scaling.alerts.messages import known_secrets, problem_content, scrub
from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem, ProblemKind
from scaling.models import KillSwitch, Lease

log = logging.getLogger(__name__)

LEASE_KEY = "alerts-evaluator"
SUMMARY_MAX = 1000  # characters of a problem's one-line summary kept
LEASE_SECONDS = 120
# An active problem whose start is this much later than the open one's began again.
REOPEN_AFTER = timedelta(seconds=1)


@dataclass
class Evaluation:
    opened: list[AlertProblem] = field(default_factory=list)
    resolved: list[AlertProblem] = field(default_factory=list)
    channels_due: list[int] = field(default_factory=list)  # channels with messages to send now
    busy: bool = False  # another evaluator was running


@dataclass(frozen=True)
class _Channel:
    channel: AlertChannel
    pair_ids: frozenset[int]

    def wants(self, kind: str, pair_id: int | None) -> bool:
        return self.channel.wants(kind=kind, pair_id=pair_id, pair_ids=self.pair_ids)


def _lease_take(now: datetime) -> uuid.UUID | None:
    holder = uuid.uuid4()
    Lease.objects.get_or_create(key=LEASE_KEY)
    updated = (Lease.objects.filter(key=LEASE_KEY).filter(Q(expires_at__isnull=True) | Q(expires_at__lt=now))
               .update(holder=holder, expires_at=now + timedelta(seconds=LEASE_SECONDS)))
    return holder if updated == 1 else None


def _lease_release(holder: uuid.UUID) -> None:
    Lease.objects.filter(key=LEASE_KEY, holder=holder).update(holder=None, expires_at=None)


def alerts_evaluate(*, now: datetime | None = None, detectors: tuple[Detector, ...] = DETECTORS) -> Evaluation:
    now = now or timezone.now()
    holder = _lease_take(now)
    if holder is None:
        return Evaluation(busy=True, channels_due=channels_due(now))
    try:
        result = Evaluation()
        detected = active_problems(now, detectors)
        active = detected.problems
        open_rows = {p.key: p for p in AlertProblem.objects.open().select_related("pair")}
        # A problem still active but begun again since it was told (a permanent error whose
        # cause changed: the token fixed, the app now missing) is the old one resolved and a
        # new one opened, so on-call is not left fixing what is already fixed.
        # (Only there does a later start mean another problem: an audit trail behind, say, starts
        # later as its oldest decisions leave.)
        changed = sorted(k for k in set(active) & set(open_rows) if active[k].kind == ProblemKind.PERMANENT_ERROR
                         and active[k].since > open_rows[k].since + REOPEN_AFTER)
        # A cause's symptoms (every pair stalled while no worker runs tasks) are neither
        # opened nor resolved while it lasts: told by the cause, and as they are after it.
        covered = [c for p in active.values() for c in p.covers]
        def symptom(key: str) -> bool:
            return any(key == c or (c.endswith(":") and key.startswith(c)) for c in covered)
        # Causes first, so no channel's hourly limit holds one back behind its symptoms:
        # problems about DynoScaler as a whole or an account, then each pair's.
        to_open = sorted((k for k in set(active) - set(open_rows) if not symptom(k)),
                         key=lambda k: (active[k].pair is not None, k)) + changed
        # On a partial view (a detector failed) nothing is taken for cleared.
        to_resolve = sorted(k for k in set(open_rows) - set(active) if not symptom(k)) if detected.complete else []
        if not to_open and not to_resolve:
            result.channels_due = channels_due(now)
            return result
        secrets = known_secrets()
        channels = [_Channel(c, frozenset(p.pk for p in c.pairs.all()))
                    for c in AlertChannel.objects.filter(enabled=True).prefetch_related("pairs")]
        for key in changed:
            resolved = problem_resolve(open_rows[key], now=now, channels=channels, secrets=secrets,
                                       resolution=f"It changed: {active[key].summary}")
            if resolved is not None:
                result.resolved.append(resolved)
        for key in to_open:
            opened = problem_open(active[key], now=now, channels=channels, secrets=secrets)
            if opened is not None:
                result.opened.append(opened)
        for key in to_resolve:
            resolved = problem_resolve(open_rows[key], now=now, channels=channels, secrets=secrets)
            if resolved is not None:
                result.resolved.append(resolved)
        result.channels_due = channels_due(now)
        return result
    finally:
        _lease_release(holder)


def problem_open(problem: ActiveProblem, *, now: datetime, channels: list[_Channel], secrets: list[str]) -> AlertProblem | None:
    """Record the problem and queue its message to every channel that wants it, in one
    transaction. None if it is open already (another evaluator was first)."""
    pair = problem.pair
    try:
        with transaction.atomic():
            row = AlertProblem.objects.create(
                key=problem.key, kind=problem.kind, pair=pair, pair_name=pair.name if pair else "",
                summary=scrub(problem.summary, secrets)[:SUMMARY_MAX], action=scrub(problem.action, secrets),
                since=min(problem.since, now), opened_at=now,
            )
            _queue(row, AlertDelivery.Event.OPENED, [c.channel for c in channels if c.wants(problem.kind, row.pair_id)],
                   now=now, secrets=secrets)
    except IntegrityError:
        return None
    log.warning("alert: %s — %s", row.key, row.summary)
    return row


def problem_resolve(problem: AlertProblem, *, now: datetime, channels: list[_Channel], secrets: list[str],
                    resolution: str | None = None) -> AlertProblem | None:
    """Mark the problem resolved and tell the channels that were told it opened. None if
    another evaluator resolved it first."""
    resolution = scrub(_resolution(problem) if resolution is None else resolution, secrets)[:SUMMARY_MAX]
    with transaction.atomic():
        updated = AlertProblem.objects.filter(pk=problem.pk, resolved_at__isnull=True).update(
            resolved_at=now, resolution=resolution)
        if updated != 1:
            return None
        problem.resolved_at, problem.resolution = now, resolution
        told = set(problem.deliveries.filter(event=AlertDelivery.Event.OPENED).values_list("channel_id", flat=True))
        _queue(problem, AlertDelivery.Event.RESOLVED, [c.channel for c in channels if c.channel.pk in told],
               now=now, secrets=secrets)
    log.info("alert resolved: %s", problem.key)
    return problem


def _resolution(problem: AlertProblem) -> str:
    if problem.kind == ProblemKind.KILL_SWITCH:
        switch = KillSwitch.objects.filter(pk=1).first()
        return f"Released by {switch.changed_by}." if switch and switch.changed_by else ""
    if problem.pair_name and problem.pair is None:
        return "The pair was deleted."
    if problem.pair is not None and not problem.pair.enabled:
        return "The pair was disabled."
    return ""


def _queue(problem: AlertProblem, event: str, channels: list[AlertChannel], *, now: datetime, secrets: list[str]) -> None:
    if not channels:
        return
    content = problem_content(problem, event).scrubbed(secrets)
    AlertDelivery.objects.bulk_create([
        AlertDelivery(channel=channel, problem=problem, event=event, title=content.title, text=content.text,
                      payload=content.payload, created_at=now)
        for channel in channels
    ])


def channels_due(now: datetime) -> list[int]:
    """Channels with something to send: queued messages, retries whose time has come, and
    held-back ones (their drain decides whether the hour has room for the summary)."""
    due = AlertDelivery.objects.filter(
        Q(status=AlertDelivery.Status.PENDING)
        | Q(status=AlertDelivery.Status.RETRYING, next_attempt_at__lte=now)
        | Q(status=AlertDelivery.Status.HELD)
    )
    return sorted(set(due.values_list("channel_id", flat=True)))


def alerts_prune(*, now: datetime | None = None) -> int:
    """Forget problems resolved, and tests and summaries sent, longer ago than the decisions'
    retention (DYNOSCALER_RETENTION_DAYS). Open problems and their messages stay. Returns
    the rows deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.DECISION_RETENTION_DAYS)
    problems = AlertProblem.objects.filter(resolved_at__lt=cutoff).delete()[0]  # their messages go with them
    loose = AlertDelivery.objects.filter(problem__isnull=True, created_at__lt=cutoff).exclude(
        status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.RETRYING, AlertDelivery.Status.HELD]).delete()[0]
    return problems + loose
