from __future__ import annotations

from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
import botocore
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scaling.fields import EncryptedTextField
from scaling.policies import POLICIES
from scaling.schedules import ScheduleWindow

HEROKU_MAX_DYNOS_PER_APP = 100

app_name_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$",
    "A Heroku app name is 3–30 characters: lowercase letters, digits and dashes, "
    "starting with a letter and not ending with a dash.",
)
process_type_validator = RegexValidator(
    r"^[A-Za-z0-9_-]{1,64}$",
    "A process type is the Procfile name, e.g. “worker”: letters, digits, “_” and “-”.",
)
_region_shape = RegexValidator(
    r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$",
    "An AWS region looks like “us-east-1” or “eu-west-2”.",
)


@lru_cache(maxsize=1)
def known_sqs_regions() -> frozenset[str]:
    """The regions the installed botocore knows SQS in (read from its bundled data, no network)."""
    session = boto3.session.Session()
    return frozenset(r for p in session.get_available_partitions() for r in session.get_available_regions("sqs", p))


def region_validator(value: str) -> None:
    _region_shape(value)
    if value not in known_sqs_regions():
        raise ValidationError(
            f"“{value}” is not an AWS region with SQS that botocore {botocore.__version__} knows. "
            "Check the spelling; if AWS opened it recently, upgrade boto3."
        )
_QUEUE_NAME = r"[A-Za-z0-9_-]{1,75}(\.fifo)?|[A-Za-z0-9_-]{1,80}"
queue_validator = RegexValidator(
    rf"^(?:{_QUEUE_NAME}|https?://[^/\s]+/\d{{12}}/(?:{_QUEUE_NAME}))$",
    "Give the queue's name (letters, digits, “-”, “_”, up to 80, optionally ending in "
    "“.fifo”) or its full URL, https://sqs.REGION.amazonaws.com/ACCOUNT_ID/NAME.",
)


class HerokuAccount(models.Model):
    description = models.CharField(
        max_length=200,
        help_text="What this authorization is, e.g. the name given to it in Heroku's "
        "Account → Applications page.",
    )
    api_token = EncryptedTextField(
        "API token",
        help_text="A Heroku OAuth authorization token with permission to scale the apps. "
        "Write-only: it is never shown again after saving.",
    )
    managed_by_env = models.BooleanField(
        default=False,
        editable=False,
        help_text="Created from MY_HEROKU_AUTH_TOKEN; restarting with other values updates it.",
    )
    rate_limited_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Heroku answered 429; no call is made for this account until then (UTC).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Heroku account"

    def __str__(self) -> str:
        return self.description


class AwsAccount(models.Model):
    description = models.CharField(max_length=200, help_text="What these credentials are for.")
    use_default_chain = models.BooleanField(
        "use the default AWS credential chain",
        default=False,
        help_text="Let boto3 find credentials itself (IAM role, AWS_PROFILE, AWS_ACCESS_KEY_ID "
        "in the environment). Leave the key fields empty when ticked.",
    )
    access_key_id = models.CharField(
        "access key ID",
        max_length=128,
        blank=True,
        validators=[RegexValidator(r"^[A-Z0-9]{16,128}$", "An access key ID is 16–128 capital letters and digits.")],
        help_text="aws_access_key_id, e.g. AKIA…",
    )
    secret_access_key = EncryptedTextField(
        blank=True,
        help_text="aws_secret_access_key. Write-only: it is never shown again after saving.",
    )
    managed_by_env = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AWS account"

    def __str__(self) -> str:
        return self.description

    def clean(self) -> None:
        if self.use_default_chain:
            if self.access_key_id or self.secret_access_key:
                raise ValidationError(
                    {"use_default_chain": "Either use the default chain or give a key pair, not both."}
                )
            return
        errors = {}
        if not self.access_key_id:
            errors["access_key_id"] = "Required unless the default credential chain is used."
        if not self.secret_access_key:
            errors["secret_access_key"] = "Required unless the default credential chain is used."
        if errors:
            raise ValidationError(errors)


class ScalingPairQuerySet(models.QuerySet["ScalingPair"]):
    def enabled(self) -> ScalingPairQuerySet:
        return self.filter(enabled=True)


class ScalingPair(models.Model):
    """One Heroku app's process type, scaled on the backlog of one or more SQS queues."""

    POLICY_CHOICES = [(name, name) for name in sorted(POLICIES)]

    class Provider(models.TextChoices):
        HEROKU = "heroku", "Heroku + SQS"
        SANDBOX = "sandbox", "Sandbox (simulated queue and formation)"

    name = models.CharField(max_length=100, unique=True, help_text="A short label for this pair, unique.")
    provider = models.CharField(
        max_length=16,
        choices=Provider.choices,
        default=Provider.HEROKU,
        help_text="Heroku + SQS for real apps. Sandbox: a simulated queue and formation for trying DynoScaler "
        "without an account (only where DYNOSCALER_SANDBOX is on).",
    )
    heroku_account = models.ForeignKey(
        HerokuAccount, on_delete=models.PROTECT, related_name="pairs", null=True, blank=True,
        help_text="Whose token scales the app.",
    )
    aws_account = models.ForeignKey(
        AwsAccount, on_delete=models.PROTECT, related_name="pairs", null=True, blank=True,
        help_text="Whose credentials read the queues.",
    )
    app_name = models.CharField(
        "Heroku app", max_length=30, validators=[app_name_validator], help_text="The Heroku app's name."
    )
    process_type = models.CharField(
        max_length=64,
        default="worker",
        validators=[process_type_validator],
        help_text="The process type to scale, as named in the Procfile (e.g. worker).",
    )
    min_dynos = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(HEROKU_MAX_DYNOS_PER_APP)],
        help_text="Dynos, never fewer. 0 lets the process type scale to zero.",
    )
    max_dynos = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(HEROKU_MAX_DYNOS_PER_APP)],
        help_text="Dynos, never more (Heroku allows 100 per app; Performance sizes 10 per type).",
    )
    policy = models.CharField(
        max_length=32,
        choices=POLICY_CHOICES,
        default="target_wait",
        help_text="target_wait: enough dynos that messages start within the target wait (the default). "
        "classic: the original DynoScaler rule (threshold and cycle counters).",
    )
    target_wait_seconds = models.PositiveIntegerField(
        "target wait",
        default=120,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="target_wait policy: seconds a message may wait before a dyno starts on it. Must exceed the boot time.",
    )
    dyno_rate = models.FloatField(
        "messages per second per dyno",
        default=1.0,
        validators=[MinValueValidator(0.0001)],
        help_text="target_wait policy: how many messages one dyno completes per second, measured under load.",
    )
    dyno_concurrency = models.PositiveSmallIntegerField(
        "concurrency per dyno",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text="target_wait policy: messages one dyno works on at once (its worker concurrency). "
        "Used to tell busy dynos from in-flight counts.",
    )
    boot_seconds = models.PositiveIntegerField(
        "boot time",
        default=45,
        validators=[MaxValueValidator(3600)],
        help_text="target_wait policy: seconds from a formation change to a new dyno consuming (Heroku: typically 30–60).",
    )
    scale_down_window_seconds = models.PositiveIntegerField(
        "scale-down window",
        default=90,
        validators=[MaxValueValidator(86400)],
        help_text="target_wait policy: seconds a lower need must hold before dynos are removed.",
    )
    lag_seconds = models.PositiveIntegerField(
        "count staleness",
        default=30,
        validators=[MaxValueValidator(600)],
        help_text="target_wait policy: seconds SQS's approximate counts may lag behind (AWS: up to about a minute).",
    )
    backlog_threshold = models.FloatField(
        default=100.0,
        validators=[MinValueValidator(0.001)],
        help_text="Classic policy: visible messages per running dyno above which it counts toward adding one.",
    )
    up_cycles = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Classic policy: cycles over the threshold (net) before one dyno is added.",
    )
    down_cycles = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Classic policy: cycles at or under the threshold (net) before one dyno is removed.",
    )
    interval_seconds = models.PositiveIntegerField(
        "cycle interval",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Seconds between cycles. Each cycle costs 2 Heroku API calls (of ~4,500/hour per account).",
    )
    enabled = models.BooleanField(default=True, help_text="Off: no cycles run and the formation is left alone.")
    dry_run = models.BooleanField(
        default=False, help_text="Decide and record, but never change the formation."
    )
    paused_until = models.DateTimeField(
        null=True, blank=True,
        help_text="Until then (UTC) cycles observe and record but change nothing. Set by the pause action, "
        "by “scale now”, and when a person changes the formation outside DynoScaler.",
    )
    manual_hold_seconds = models.PositiveIntegerField(
        "hold after a manual change",
        default=900,
        validators=[MaxValueValidator(7 * 86400)],
        help_text="Seconds to hold off when the formation was changed outside DynoScaler (or by “scale now”), "
        "instead of fighting the person who changed it.",
    )
    # What the formation should be if nobody else touched it: observed or applied last cycle.
    expected_quantity = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    policy_state = models.JSONField(
        default=dict, blank=True, editable=False, help_text="What the policy carries from cycle to cycle."
    )
    managed_by_env = models.BooleanField(
        default=False,
        editable=False,
        help_text="Described by the seed's environment variables; a restart with new values updates it.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False, on_delete=models.SET_NULL
    )
    # The claim that lets only one cycle of this pair run at a time (see services.pair_claim).
    cycle_claim = models.UUIDField(null=True, blank=True, editable=False)
    cycle_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_cycle_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when Heroku refused a quantity for good (422): not asked again until it changes.
    blocked_quantity = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    blocked_reason = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScalingPairQuerySet.as_manager()

    class Meta:
        verbose_name = "scaling pair"
        constraints = [
            models.UniqueConstraint(
                fields=["app_name", "process_type"],
                name="unique_app_process",
                violation_error_message="Another pair already scales this app's process type.",
            ),
            models.CheckConstraint(
                condition=Q(min_dynos__lte=models.F("max_dynos")),
                name="min_not_above_max",
                violation_error_message="Min dynos cannot be above max dynos.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Every problem at once, each on its field, so the operator fixes them in one go."""
        errors: dict[str, str] = {}
        if self.min_dynos is not None and self.max_dynos is not None and self.min_dynos > self.max_dynos:
            errors["min_dynos"] = f"Min dynos ({self.min_dynos}) cannot be above max dynos ({self.max_dynos})."
        if self.policy == "target_wait" and None not in (self.target_wait_seconds, self.boot_seconds):
            if self.target_wait_seconds <= self.boot_seconds:
                errors["target_wait_seconds"] = (
                    f"The target wait ({self.target_wait_seconds} s) must exceed the boot time ({self.boot_seconds} s): "
                    "a new dyno cannot help a message that must start before it has booted."
                )
        if self.provider == self.Provider.HEROKU:
            for name in ("heroku_account", "aws_account"):
                if getattr(self, name + "_id") is None:
                    errors[name] = "Required for a Heroku + SQS pair."
        elif not settings.SANDBOX_ENABLED:
            errors["provider"] = "The sandbox is off here (set DYNOSCALER_SANDBOX=1 to allow it)."
        if self.interval_seconds is not None and self.interval_seconds < settings.MIN_INTERVAL_SECONDS:
            errors["interval_seconds"] = (
                f"At least {settings.MIN_INTERVAL_SECONDS} s (DYNOSCALER_MIN_INTERVAL): each cycle spends "
                "Heroku API calls from the account's hourly pool."
            )
        if errors:
            raise ValidationError(errors)

    def policy_settings(self) -> dict[str, Any]:
        """The settings the pair's policy reads, in its own names."""
        if self.policy == "classic":
            return {
                "backlog_threshold": self.backlog_threshold,
                "up_cycles": self.up_cycles,
                "down_cycles": self.down_cycles,
            }
        return {
            "target_wait_seconds": self.target_wait_seconds,
            "dyno_rate": self.dyno_rate,
            "dyno_concurrency": self.dyno_concurrency,
            "boot_seconds": self.boot_seconds,
            "scale_down_window_seconds": self.scale_down_window_seconds,
            "lag_seconds": self.lag_seconds,
            "interval_seconds": self.interval_seconds,
        }

    def schedule_windows(self) -> list[ScheduleWindow]:
        return [s.as_window() for s in self.schedules.all()]


class PairQueue(models.Model):
    pair = models.ForeignKey(ScalingPair, on_delete=models.CASCADE, related_name="queues")
    queue = models.CharField(
        max_length=1024,
        validators=[queue_validator],
        help_text="The SQS queue's name or URL. Visible messages of all the pair's queues are added up.",
    )
    region = models.CharField(max_length=32, validators=[region_validator], help_text="AWS region, e.g. us-east-1.")

    class Meta:
        verbose_name = "SQS queue"
        constraints = [models.UniqueConstraint(fields=["pair", "queue", "region"], name="unique_pair_queue")]

    def __str__(self) -> str:
        return f"{self.queue} ({self.region})"


weekdays_validator = RegexValidator(
    r"^[0-6](,[0-6])*$", "Weekdays are numbers 0 (Monday) to 6 (Sunday), separated by commas, e.g. 0,1,2,3,4."
)


def timezone_validator(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown time zone {value!r}; use a name such as UTC or Europe/Berlin.") from None


class PairSchedule(models.Model):
    """A time-of-day window whose min/max replace the pair's while it applies."""

    pair = models.ForeignKey(ScalingPair, on_delete=models.CASCADE, related_name="schedules")
    weekdays = models.CharField(
        max_length=13,
        default="0,1,2,3,4",
        validators=[weekdays_validator],
        help_text="Days it applies: 0 = Monday … 6 = Sunday, comma-separated (0,1,2,3,4 = weekdays).",
    )
    start_time = models.TimeField(help_text="Local time it starts (HH:MM).")
    end_time = models.TimeField(help_text="Local time it ends (exclusive). At or before the start: runs past midnight.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[timezone_validator], help_text="e.g. UTC, Europe/Berlin.")
    min_dynos = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(HEROKU_MAX_DYNOS_PER_APP)], help_text="Dynos, never fewer, while it applies."
    )
    max_dynos = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(HEROKU_MAX_DYNOS_PER_APP)],
        help_text="Dynos, never more, while it applies.",
    )

    class Meta:
        verbose_name = "schedule window"
        ordering = ["weekdays", "start_time"]

    def __str__(self) -> str:
        return self.as_window().describe() if self.weekdays and self.start_time and self.end_time else "schedule"

    def clean(self) -> None:
        if self.min_dynos is not None and self.max_dynos is not None and self.min_dynos > self.max_dynos:
            raise ValidationError({"min_dynos": "Min dynos cannot be above max dynos."})

    def as_window(self) -> ScheduleWindow:
        return ScheduleWindow(
            weekdays=frozenset(int(d) for d in self.weekdays.split(",")),
            start=self.start_time,
            end=self.end_time,
            min_dynos=self.min_dynos,
            max_dynos=self.max_dynos,
            timezone=self.timezone,
        )


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

    def as_document(self) -> dict[str, Any]:
        """The decision as shipped to Elasticsearch and printed as JSON. No secrets by construction."""
        return {
            "id": str(self.pk),
            "@timestamp": self.created_at.isoformat(),
            "pair": self.pair_name,
            "pair_id": self.pair_id,
            "app": self.app_name,
            "process_type": self.process_type,
            "policy": self.policy,
            "queues": self.queues,
            "visible_messages": self.visible_messages,
            "in_flight_messages": self.in_flight_messages,
            "delayed_messages": self.delayed_messages,
            "dynos_running": self.dynos_running,
            "dynos_starting": self.dynos_starting,
            "quantity_before": self.quantity_before,
            "backlog_per_instance": self.backlog_per_instance,
            "state_before": self.state_before,
            "state_after": self.state_after,
            "desired_quantity": self.desired_quantity,
            "applied_quantity": self.applied_quantity,
            "outcome": self.outcome,
            "reason": self.reason,
            "error": self.error or None,
            "error_permanent": self.error_permanent,
            "dry_run": self.dry_run,
            "duration_ms": self.duration_ms,
            "heroku_rate_limit_remaining": self.heroku_rate_limit_remaining,
        }


class Lease(models.Model):
    """A named, expiring claim, taken with a conditional UPDATE instead of a row lock, so
    no transaction stays open while the holder talks to the network."""

    key = models.CharField(max_length=100, primary_key=True)
    holder = models.UUIDField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class KillSwitch(models.Model):
    """One row: while engaged, DynoScaler changes no formation anywhere."""

    engaged = models.BooleanField(default=False)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "kill switch"

    def __str__(self) -> str:
        return "engaged" if self.engaged else "off"

    @classmethod
    def current(cls) -> KillSwitch:
        switch, _ = cls.objects.get_or_create(pk=1)
        return switch


class SandboxWorld(models.Model):
    """The simulated queue and formation of a sandbox pair (the simulator's world model)."""

    pair = models.OneToOneField(ScalingPair, on_delete=models.CASCADE, related_name="sandbox")
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"sandbox of {self.pair}"
