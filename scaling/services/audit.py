"""The audit trail beyond the database: shipping committed decisions to Elasticsearch (or
the terminal), one shipper at a time, and pruning old rows once they were shipped."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from scaling.adapters.audit import AuditSink, ElasticsearchSink, TerminalSink
from scaling.adapters.errors import AdapterError
from scaling.models import Decision, Lease
from scaling.services.history import runs_flush_stale, samples_prune
from scaling.services.webhooks import events_prune

log = logging.getLogger(__name__)
AUDIT_LEASE = "audit-shipper"
OUTAGE_REPEAT_SECONDS = 600.0  # while shipping keeps failing, said again this often


class _Outage:
    """This process's word on shipping: one line when it starts failing, one when it ships
    again, and a reminder every ten minutes between, not a line per attempt (a worker
    tries every few seconds, and the decisions wait safely meanwhile)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.told = 0.0

    def failed(self, what: str) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = self.told = now
            log.warning("audit: %s; decisions wait in the database and are sent when it answers", what)
        elif now - self.told >= OUTAGE_REPEAT_SECONDS:
            self.told = now
            log.warning("audit: still failing after %.0f min: %s", (now - self.since) / 60, what)

    def shipped(self, count: int) -> None:
        if self.since is not None and count:
            log.warning("audit: shipping again after %.0f s; %d decision(s) sent", time.monotonic() - self.since, count)
            self.since = None


_outage = _Outage()


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


def lease_acquire(*, key: str, seconds: float, now: datetime | None = None) -> uuid.UUID | None:
    """Take the named lease if nobody holds it (or their hold expired): a conditional UPDATE,
    so no transaction stays open while the holder talks to the network."""
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
    if sink is None:
        try:
            sink = audit_sink()
        except AdapterError as exc:
            _outage.failed(f"Elasticsearch cannot be used: {exc}")
            return 0
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
                _outage.failed(f"{sink.name} did not take the decisions: {exc}")
                break
            Decision.objects.filter(id__in=[int(i) for i in sent]).update(shipped_at=timezone.now())
            delivered += len(sent)
            if len(sent) < len(decisions):
                break
    finally:
        lease_release(key=AUDIT_LEASE, holder=holder)
    _outage.shipped(delivered)
    return delivered


def decisions_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Hourly upkeep of the record: write the quiet runs of pairs that stopped cycling, drop
    samples and webhook events past their short retention, and delete decisions older than
    the retention, in batches, once they reached the audit sink. Returns decisions deleted."""
    runs_flush_stale(now=now)
    samples_prune(now=now)
    events_prune(now=now)
    cutoff = (now or timezone.now()) - timedelta(days=settings.DECISION_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(Decision.objects.filter(created_at__lt=cutoff, shipped_at__isnull=False)
                   .order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += Decision.objects.filter(id__in=ids).delete()[0]
