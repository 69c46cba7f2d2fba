"""The alert channels, the problems they hear about, and each message sent to them.

The alerts' logic is in ``scaling/alerts/``; these are only its tables.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scaling.fields import EncryptedSecretsMixin, EncryptedTextField
from scaling.validators import recipients_validator


class ProblemKind(models.TextChoices):
    STALLED = "stalled", "pair stalled (no cycle for three intervals)"
    PERMANENT_ERROR = "permanent_error", "permanent error (bad token, no access, missing queue, refused quantity)"
    WAIT_OVER_TARGET = "wait_over_target_at_max", "wait over the target while at max dynos"
    NOT_HELPING = "not_helping", "more dynos not helping"
    PERSON_CHANGE = "person_change", "a person changed the formation"
    KILL_SWITCH = "kill_switch", "kill switch engaged"
    RATE_LIMITED = "rate_limited", "Heroku API budget low or backing off"
    AUDIT_BEHIND = "audit_behind", "audit trail behind (Elasticsearch unreachable)"
    WORKERS_SILENT = "workers_silent", "no worker running tasks (told by beat)"
    BEAT_SILENT = "beat_silent", "beat not running (told by a worker)"
    ENV_INVALID = "env_invalid", "the original variables are not applied (malformed or missing)"
    DYNOS_NOT_UP = "dynos_not_up", "dynos not coming up (crashing, or stuck starting)"
    FAILING = "failing", "cycles failing (SQS or Heroku unreachable, or a DynoScaler error)"


# Problems that concern DynoScaler as a whole or an account, not one pair.
GLOBAL_KINDS = frozenset({ProblemKind.KILL_SWITCH, ProblemKind.RATE_LIMITED, ProblemKind.AUDIT_BEHIND,
                          ProblemKind.WORKERS_SILENT, ProblemKind.BEAT_SILENT})
# A channel that asked for stalled pairs hears of their usual cause too.
KINDS_ALSO_SENT_WITH = {ProblemKind.WORKERS_SILENT: ProblemKind.STALLED, ProblemKind.BEAT_SILENT: ProblemKind.STALLED,
                        ProblemKind.FAILING: ProblemKind.STALLED}


class AlertChannel(EncryptedSecretsMixin):
    """Where alerts go: a Slack-compatible incoming webhook, a signed JSON webhook, or email."""

    class Kind(models.TextChoices):
        SLACK = "slack", "Slack-compatible incoming webhook"
        WEBHOOK = "webhook", "JSON webhook signed with HMAC-SHA256"
        EMAIL = "email", "email"

    name = models.CharField(max_length=100, unique=True, help_text="A short label, e.g. “#ops on Slack” or “on-call email”.")
    kind = models.CharField(max_length=16, choices=Kind.choices, help_text="How alerts reach this channel.")
    enabled = models.BooleanField(default=True, help_text="Off: nothing new is queued or sent to this channel.")
    url = EncryptedTextField(
        "webhook URL",
        blank=True,
        help_text="Slack or webhook channels: the URL to POST to (Slack: Apps → Incoming Webhooks; Mattermost and "
        "others accept the same). It is a secret: write-only, never shown again after saving.",
    )
    signing_secret = EncryptedTextField(
        blank=True,
        help_text="Webhook channels: the key of the X-DynoScaler-Signature header (HMAC-SHA256 of "
        "“timestamp.body”); at least 16 characters. Write-only, never shown again after saving.",
    )
    recipients = models.CharField(
        max_length=1000,
        blank=True,
        validators=[recipients_validator],
        help_text="Email channels: addresses, separated by commas. Sent with the SMTP settings from the "
        "environment (EMAIL_HOST and friends).",
    )
    all_pairs = models.BooleanField(
        "every pair",
        default=True,
        help_text="Problems of every pair, those added later included. Untick to choose the pairs below.",
    )
    pairs = models.ManyToManyField(
        "scaling.ScalingPair",
        blank=True,
        related_name="alert_channels",
        help_text="When “every pair” is unticked: the pairs whose problems this channel hears about.",
    )
    include_global = models.BooleanField(
        "global problems too",
        default=True,
        help_text="Also send problems that concern no single pair: the kill switch, a Heroku account's API "
        "budget, the audit trail falling behind, no worker running tasks.",
    )
    kinds = models.JSONField(
        "problems",
        default=list,
        blank=True,
        help_text="Which problems to send. None ticked: all of them.",
    )
    max_per_hour = models.PositiveIntegerField(
        "at most per hour",
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="Messages per rolling hour. Beyond it alerts are held back (recorded, not lost) and sent as "
        "one summary once the hour has room again.",
    )
    # Who is sending this channel's queue now (see delivery.channel_drain): a claim that expires.
    sending_claim = models.UUIDField(null=True, blank=True, editable=False)
    sending_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "alert channel"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind in (self.Kind.SLACK, self.Kind.WEBHOOK):
            if not self.url:
                errors["url"] = "Required for a Slack or webhook channel."
            elif not self.url.startswith(("https://", "http://")) or " " in self.url.strip():
                errors["url"] = "Give the full URL, starting with https:// (or http:// for a receiver on your own network)."
        if self.kind == self.Kind.WEBHOOK and len(self.signing_secret or "") < 16:
            errors["signing_secret"] = "Required for a webhook channel: at least 16 characters, so the receiver can check each message came from DynoScaler."
        if self.kind == self.Kind.EMAIL and not self.recipients.strip():
            errors["recipients"] = "Required for an email channel: at least one address."
        unknown = set(self.kinds or []) - set(ProblemKind.values)
        if unknown:
            errors["kinds"] = f"Unknown problem kinds: {', '.join(sorted(unknown))}."
        if errors:
            raise ValidationError(errors)

    def recipient_list(self) -> list[str]:
        return [a.strip() for a in self.recipients.split(",") if a.strip()]

    def wants(self, *, kind: str, pair_id: int | None, pair_ids: frozenset[int]) -> bool:
        """Whether a problem of ``kind`` (on ``pair_id``, None for a global one) is sent here.
        ``pair_ids`` are the channel's chosen pairs, passed in so callers load them once."""
        if not self.enabled:
            return False
        if self.kinds and kind not in self.kinds and KINDS_ALSO_SENT_WITH.get(ProblemKind(kind)) not in self.kinds:
            return False
        if pair_id is None:
            return self.include_global
        return self.all_pairs or pair_id in pair_ids


class AlertProblemQuerySet(models.QuerySet["AlertProblem"]):
    def open(self) -> AlertProblemQuerySet:
        return self.filter(resolved_at__isnull=True)


class AlertProblem(models.Model):
    """Something wrong, from when DynoScaler noticed it until it cleared. One open row per key."""

    key = models.CharField(max_length=100, help_text="What the problem is about, e.g. stalled:pair:12 or kill_switch.")
    kind = models.CharField(max_length=32, choices=ProblemKind.choices)
    pair = models.ForeignKey("scaling.ScalingPair", null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_problems")
    pair_name = models.CharField(max_length=100, blank=True, help_text="Copied so the record reads after a rename.")
    summary = models.TextField(help_text="What is wrong (secrets scrubbed).")
    action = models.TextField(blank=True, help_text="What DynoScaler does about it.")
    since = models.DateTimeField(help_text="When the condition started, as far as DynoScaler knows (UTC).")
    opened_at = models.DateTimeField(default=timezone.now, help_text="When the alert was raised (UTC).")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When it cleared (UTC); empty while open.")
    resolution = models.TextField(blank=True, help_text="How it cleared, when DynoScaler knows.")

    objects = AlertProblemQuerySet.as_manager()

    class Meta:
        verbose_name = "alert problem"
        ordering = ["-opened_at", "-id"]
        constraints = [
            # Two evaluators at once cannot both open the same problem: the second insert fails.
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at__isnull=True), name="one_open_problem_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'open' if self.resolved_at is None else 'resolved'})"


class AlertDelivery(models.Model):
    """One message to one channel: a problem opened or resolved, a test, or a summary of
    messages held back by the channel's hourly limit. Its attempts are recorded on it."""

    class Event(models.TextChoices):
        OPENED = "opened", "problem"
        RESOLVED = "resolved", "resolved"
        TEST = "test", "test"
        SUMMARY = "summary", "summary of held-back alerts"

    class Status(models.TextChoices):
        PENDING = "pending", "queued"
        RETRYING = "retrying", "failed, will retry"
        SENT = "sent", "sent"
        FAILED = "failed", "failed for good"
        HELD = "held", "held back (hourly limit)"
        SUMMARISED = "summarised", "sent in a summary"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    problem = models.ForeignKey(AlertProblem, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=Event.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    title = models.CharField(max_length=300, help_text="The subject line (secrets scrubbed).")
    text = models.TextField(help_text="The message (secrets scrubbed).")
    payload = models.JSONField(default=dict, help_text="The JSON body a webhook channel receives (secrets scrubbed).")
    attempts = models.PositiveSmallIntegerField(default=0)
    attempt_log = models.JSONField(default=list, help_text="Each attempt: when, and the error if it failed.")
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A failed message is tried again then (UTC).")
    sent_at = models.DateTimeField(null=True, blank=True)
    summary = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="held_deliveries",
        help_text="The summary message this held-back alert was sent in.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "alert delivery"
        verbose_name_plural = "alert deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            # One message per channel, problem and event, whoever queues it.
            models.UniqueConstraint(
                fields=["channel", "problem", "event"], condition=Q(problem__isnull=False), name="one_message_per_problem_event",
            ),
        ]
        indexes = [
            models.Index(fields=["channel", "status", "id"], name="alert_delivery_queue"),
            # What the evaluator looks for every tick: few rows, however long the history grows.
            models.Index(fields=["channel"], condition=Q(status__in=["pending", "retrying", "held"]),
                         name="alert_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} to {self.channel_id}: {self.title}"

    def record_attempt(self, *, at: datetime, error: str | None, receipt: str | None = None) -> None:
        self.attempts += 1
        self.attempt_log = [*self.attempt_log, {"at": at.isoformat(), "error": error, "receipt": receipt}]
        self.last_error = error or ""
