"""Decisions: one row per cycle of one pair, append-only: the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from scaling.models.pairs import ScalingPair


class Decision(models.Model):
    """One cycle of one pair: what it saw, what it decided, what it did. Append-only."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "applied"
        NO_CHANGE = "no_change", "no change"
        DRY_RUN = "dry_run", "dry run"
        HELD = "held", "held"
        ERROR = "error", "error"
        PAUSED = "paused", "paused"

    pair = models.ForeignKey(ScalingPair, null=True, on_delete=models.SET_NULL, related_name="decisions")
    # Copied so the history still reads after a pair is renamed or deleted.
    pair_name = models.CharField(max_length=100)
    app_name = models.CharField(max_length=30)
    process_type = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    policy = models.CharField(max_length=32)
    queues = models.JSONField(default=list, help_text="Per-queue counts: queue, region, visible, in_flight, delayed.")
    visible_messages = models.PositiveIntegerField(null=True)
    in_flight_messages = models.PositiveIntegerField(null=True)
    delayed_messages = models.PositiveIntegerField(null=True)
    dynos_running = models.PositiveSmallIntegerField(null=True)
    dynos_starting = models.PositiveSmallIntegerField(null=True)
    quantity_before = models.PositiveSmallIntegerField(null=True)
    backlog_per_instance = models.FloatField(null=True)
    state_before = models.JSONField(default=dict)
    state_after = models.JSONField(default=dict)
    desired_quantity = models.PositiveSmallIntegerField(null=True)
    applied_quantity = models.PositiveSmallIntegerField(null=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField()
    error = models.TextField(blank=True)
    error_permanent = models.BooleanField(null=True)
    dry_run = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField()
    heroku_rate_limit_remaining = models.IntegerField(null=True)
    heroku_calls = models.PositiveSmallIntegerField(default=0, help_text="Heroku API calls the cycle(s) made.")
    # A row may stand for a run of identical quiet cycles: how many, since when, and the
    # extremes of what they saw (the last cycle's counts are in the fields above).
    cycles = models.PositiveIntegerField(default=1)
    first_cycle_at = models.DateTimeField(null=True, blank=True)
    visible_min = models.PositiveIntegerField(null=True)
    visible_max = models.PositiveIntegerField(null=True)
    shipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["pair", "-created_at"], name="decision_pair_recent"),
            models.Index(fields=["outcome", "-created_at"], name="decision_outcome_recent"),
            models.Index(fields=["id"], condition=Q(shipped_at__isnull=True), name="decision_unshipped"),
        ]

    def __str__(self) -> str:
        return f"{self.pair_name} @ {self.created_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Decisions are append-only; they cannot be changed once written.")
        super().save(*args, **kwargs)

    @classmethod
    def document_name(cls, column: str) -> str:
        return _DOCUMENT_NAMES.get(column, column)

    def as_document(self) -> dict[str, Any]:
        """The decision as shipped to Elasticsearch and printed as JSON. No secrets by construction."""
        doc: dict[str, Any] = {self.document_name(c): getattr(self, c) for c in COLUMNS}
        doc["id"] = str(self.pk)
        doc["@timestamp"] = self.created_at.isoformat()
        doc["error"] = self.error or None
        return doc


# A decision's columns, in the order of the CSV export; the JSON ones go only to documents.
COLUMNS = (
    "id", "created_at", "pair_name", "pair_id", "app_name", "process_type", "policy", "outcome", "queues",
    "visible_messages", "in_flight_messages", "delayed_messages", "dynos_running", "dynos_starting",
    "quantity_before", "backlog_per_instance", "state_before", "state_after", "desired_quantity",
    "applied_quantity", "dry_run", "reason", "error", "error_permanent", "duration_ms", "heroku_rate_limit_remaining",
    "heroku_calls", "cycles", "first_cycle_at", "visible_min", "visible_max",
)
CSV_COLUMNS = tuple(c for c in COLUMNS if c not in ("pair_id", "queues", "state_before", "state_after"))
# Documents keep the names the audit trail has always used.
_DOCUMENT_NAMES = {"created_at": "@timestamp", "pair_name": "pair", "app_name": "app"}


class PairSample(models.Model):
    """What one cycle saw, narrow and short-lived: the chart and ``simulate --from-history``
    keep every cycle's resolution while the decisions table grows only with what happens."""

    pair = models.ForeignKey(ScalingPair, on_delete=models.CASCADE, related_name="samples", db_index=False)
    at = models.DateTimeField()
    visible = models.PositiveIntegerField()
    in_flight = models.PositiveIntegerField()
    running = models.PositiveSmallIntegerField(null=True)
    quantity = models.PositiveSmallIntegerField(null=True)
    desired = models.PositiveSmallIntegerField(null=True)
    # In shadow mode: the quantity pre-warming would have asked for (for the chart).
    shadow = models.PositiveSmallIntegerField(null=True)

    class Meta:
        indexes = [models.Index(fields=["pair", "at"], name="sample_pair_at"),
                   models.Index(fields=["at"], name="sample_at")]

    def __str__(self) -> str:
        return f"{self.pair_id} @ {self.at:%H:%M:%S}"
