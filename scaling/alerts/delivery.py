"""Sending a channel's queued messages, in order, without ever holding a transaction open
while Slack, a webhook or an SMTP server answers.

A channel's queue is sent by one drainer at a time (a claim on the channel row, taken with
a conditional UPDATE, that expires). Messages go oldest first; a failed one is retried with
back-off and the ones behind it wait, so a "resolved" never arrives before its "problem".
After ``ALERT_MAX_ATTEMPTS`` (or at once, when the failure is permanent) a message is marked
failed for good and the queue moves on. Beyond the channel's hourly limit messages are held
back, recorded, and sent later as one summary.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from scaling.adapters.errors import AdapterError
from scaling.alerts.messages import known_secrets, scrub, summary_content, test_content
from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem
from scaling.alerts.transports import OutgoingMessage, Transport, transport_for

log = logging.getLogger(__name__)

Status = AlertDelivery.Status
Event = AlertDelivery.Event
WINDOW = timedelta(hours=1)
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
# A drain stops starting new sends after this long, so it ends well inside the task's time
# limit; the next evaluation tick picks up the rest.
DRAIN_BUDGET_SECONDS = 60


def retry_delay(attempts: int, retry_after: float | None = None) -> timedelta:
    """30 s, 2 min, 8 min, 32 min, then hourly; longer if the receiver asked for it."""
    seconds = min(FIRST_RETRY_SECONDS * 4 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
    return timedelta(seconds=max(seconds, min(retry_after or 0, MAX_RETRY_SECONDS)))


@dataclass(frozen=True)
class DrainResult:
    sent: int = 0
    held: int = 0
    failed: int = 0
    waiting_until: datetime | None = None  # the queue waits for a retry until then
    busy: bool = False  # another drainer holds the channel


def _claim(channel_id: int, now: datetime) -> uuid.UUID | None:
    claim = uuid.uuid4()
    lease = DRAIN_BUDGET_SECONDS + settings.ALERT_TIMEOUT_SECONDS + 60
    updated = (AlertChannel.objects.filter(pk=channel_id)
               .filter(Q(sending_until__isnull=True) | Q(sending_until__lt=now))
               .update(sending_claim=claim, sending_until=now + timedelta(seconds=lease)))
    return claim if updated == 1 else None


def _release(channel_id: int, claim: uuid.UUID) -> None:
    AlertChannel.objects.filter(pk=channel_id, sending_claim=claim).update(sending_claim=None, sending_until=None)


def sent_in_window(channel: AlertChannel, now: datetime) -> int:
    return (channel.deliveries.filter(status=Status.SENT, sent_at__gt=now - WINDOW)
            .exclude(event=Event.TEST).count())


def channel_drain(
    *, channel_id: int, now: datetime | None = None, transports: Callable[[AlertChannel], Transport] = transport_for
) -> DrainResult:
    """Send what is due in one channel's queue. Returns what it did; ``busy`` if another
    drainer holds the channel (it will send these too)."""
    now = now or timezone.now()
    claim = _claim(channel_id, now)
    if claim is None:
        return DrainResult(busy=True)
    try:
        channel = AlertChannel.objects.get(pk=channel_id)
        return _drain(channel, now, transports)
    finally:
        _release(channel_id, claim)


def _queue_head(channel: AlertChannel) -> AlertDelivery | None:
    # Held-back messages are older than anything still queued, so their summary goes first.
    return (channel.deliveries.filter(status__in=[Status.PENDING, Status.RETRYING])
            .annotate(rank=Case(When(event=Event.SUMMARY, then=Value(0)), default=Value(1), output_field=IntegerField()))
            .order_by("rank", "id").first())


def _drain(channel: AlertChannel, now: datetime, transports: Callable[[AlertChannel], Transport]) -> DrainResult:
    secrets = known_secrets()
    if not channel.enabled:
        failed = channel.deliveries.filter(status__in=[Status.PENDING, Status.RETRYING, Status.HELD]).update(
            status=Status.FAILED, last_error="the channel was disabled before this was sent", next_attempt_at=None)
        return DrainResult(failed=failed)
    in_window = sent_in_window(channel, now)
    if in_window < channel.max_per_hour:
        summarise_held(channel, now=now, secrets=secrets)
    transport: Transport | None = None
    sent = held = failed = 0
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_BUDGET_SECONDS:
        delivery = _queue_head(channel)
        if delivery is None:
            break
        if delivery.status == Status.RETRYING and delivery.next_attempt_at and delivery.next_attempt_at > now:
            return DrainResult(sent, held, failed, waiting_until=delivery.next_attempt_at)
        if in_window >= channel.max_per_hour and delivery.event != Event.SUMMARY and not _closes_what_was_told(delivery):
            AlertDelivery.objects.filter(pk=delivery.pk).update(status=Status.HELD, next_attempt_at=None)
            held += 1
            continue
        transport = transport or transports(channel)
        attempt(delivery, transport, now=now, secrets=secrets)
        if delivery.status == Status.SENT:
            sent += 1
            in_window += 1
        elif delivery.status == Status.FAILED:
            failed += 1
        else:
            return DrainResult(sent, held, failed, waiting_until=delivery.next_attempt_at)
    return DrainResult(sent, held, failed)


def attempt(delivery: AlertDelivery, transport: Transport, *, now: datetime, secrets: list[str], retry: bool = True) -> str | None:
    """Send one message once and record the attempt on it. Returns the receipt, or None."""
    message = OutgoingMessage(delivery_id=delivery.pk, event=delivery.event, title=delivery.title,
                              text=delivery.text, payload=delivery.payload)
    try:
        receipt: str | None = transport.send(message)
        error, permanent, retry_after = None, False, None
    except AdapterError as exc:
        receipt = None
        error, permanent, retry_after = scrub(f"{exc.system}: {exc.message}", secrets), exc.permanent, exc.retry_after
    except SoftTimeLimitExceeded:
        raise  # the task is out of time: the message stays queued for the next drain
    except Exception as exc:
        # A bug must not wedge the channel's queue silently: record it and retry like a failure.
        log.exception("alert %s to channel %s: the transport failed unexpectedly", delivery.pk, delivery.channel_id)
        receipt = None
        error, permanent, retry_after = scrub(f"DynoScaler: {type(exc).__name__}: {exc}", secrets)[:500], False, None
    delivery.record_attempt(at=now, error=error, receipt=receipt)
    if error is None:
        delivery.status, delivery.sent_at, delivery.next_attempt_at = Status.SENT, now, None
    elif permanent or not retry or delivery.attempts >= settings.ALERT_MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = Status.FAILED, None
        log.warning("alert %s to channel %s failed for good after %d attempt(s): %s",
                    delivery.pk, delivery.channel_id, delivery.attempts, error)
    else:
        delivery.status = Status.RETRYING
        delivery.next_attempt_at = now + retry_delay(delivery.attempts, retry_after)
        log.info("alert %s to channel %s failed (%s); trying again at %s",
                 delivery.pk, delivery.channel_id, error, delivery.next_attempt_at)
    delivery.save(update_fields=["status", "sent_at", "next_attempt_at", "attempts", "attempt_log", "last_error"])
    return receipt


def _closes_what_was_told(delivery: AlertDelivery) -> bool:
    """A "RESOLVED" whose "PROBLEM" reached the channel is never held back: it closes an
    alarm someone may be paged about. (One whose "PROBLEM" was held waits with it, and the
    summary tells both.)"""
    return delivery.event == Event.RESOLVED and AlertDelivery.objects.filter(
        channel_id=delivery.channel_id, problem_id=delivery.problem_id, event=Event.OPENED, status=Status.SENT).exists()


def summarise_held(channel: AlertChannel, *, now: datetime, secrets: list[str]) -> AlertDelivery | None:
    """Queue one summary of the channel's held-back messages, which it then stands for."""
    with transaction.atomic():
        # Only this channel's drainer (it holds the claim) gets here, so no row lock is needed.
        held = list(channel.deliveries.filter(status=Status.HELD).select_related("problem").order_by("id"))
        if not held:
            return None
        keys = {d.problem.key for d in held if d.problem}
        still_open = list(AlertProblem.objects.open().filter(key__in=keys).order_by("opened_at"))
        content = summary_content(channel, held, still_open).scrubbed(secrets)
        summary = AlertDelivery.objects.create(channel=channel, event=Event.SUMMARY, title=content.title,
                                               text=content.text, payload=content.payload, created_at=now)
        AlertDelivery.objects.filter(pk__in=[d.pk for d in held]).update(status=Status.SUMMARISED, summary=summary)
    return summary


def channel_send_test(*, channel: AlertChannel, user: str, now: datetime | None = None,
                      transports: Callable[[AlertChannel], Transport] = transport_for) -> AlertDelivery:
    """Send a test message to the channel now, outside its queue and its hourly limit, so the
    operator learns at once whether it works. Recorded like any message; not retried."""
    now = now or timezone.now()
    secrets = known_secrets()
    content = test_content(channel, user=user, now=now).scrubbed(secrets)
    delivery = AlertDelivery.objects.create(channel=channel, event=Event.TEST, title=content.title, text=content.text,
                                            payload=content.payload, created_at=now)
    attempt(delivery, transports(channel), now=now, secrets=secrets, retry=False)
    return delivery
