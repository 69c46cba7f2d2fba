"""Pairs: one Heroku app's process type, the SQS queues that feed it, its time-of-day
schedules, and (for the sandbox) its simulated queue and formation."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from scaling.models.accounts import AwsAccount, HerokuAccount
from scaling.policies import POLICIES, Bounds
from scaling.schedules import ScheduleWindow
from scaling.validators import (
    HEROKU_MAX_DYNOS_PER_APP,
    app_name_validator,
    process_type_validator,
    queue_region_problem,
    queue_validator,
    region_validator,
    timezone_validator,
    weekdays_validator,
)


def accounts_with_unreadable_secrets() -> list[HerokuAccount | AwsAccount]:
    """Accounts holding a secret that no configured key decrypts (the key was lost or changed)."""
    accounts: list[HerokuAccount | AwsAccount] = [*HerokuAccount.objects.order_by("pk"), *AwsAccount.objects.order_by("pk")]
    return [a for a in accounts if a.unreadable_secret_fields()]


class ScalingPairQuerySet(models.QuerySet["ScalingPair"]):
    def enabled(self) -> ScalingPairQuerySet:
        return self.filter(enabled=True)


def interval_floor_problem() -> str:
    """What a cycle interval under the floor (DYNOSCALER_MIN_INTERVAL) is told, whatever its value."""
    return (f"At least {settings.MIN_INTERVAL_SECONDS} s (DYNOSCALER_MIN_INTERVAL): SQS's counts are approximate "
            "and settle over seconds, so a closer look sees nothing new.")


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
        HerokuAccount, verbose_name="Heroku account", on_delete=models.PROTECT, related_name="pairs", null=True, blank=True,
        help_text="Whose token scales the app.",
    )
    aws_account = models.ForeignKey(
        AwsAccount, verbose_name="AWS account", on_delete=models.PROTECT, related_name="pairs", null=True, blank=True,
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
        help_text="target_wait policy: how many messages one dyno completes per second. A starting point: "
        "DynoScaler measures it (from CloudWatch's deleted messages, or the counts) unless pinned.",
    )
    pin_dyno_rate = models.BooleanField(
        "pin the rate", default=False,
        help_text="target_wait policy: use the messages per second per dyno as given; learn nothing.",
    )
    dyno_concurrency = models.PositiveSmallIntegerField(
        "concurrency per dyno",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text="target_wait policy: messages one dyno works on at once (its worker concurrency), used to tell "
        "busy dynos from in-flight counts. A starting point, learned unless pinned.",
    )
    pin_dyno_concurrency = models.BooleanField(
        "pin the concurrency", default=False,
        help_text="target_wait policy: use the concurrency (messages at once) as given.",
    )
    boot_seconds = models.PositiveIntegerField(
        "boot time",
        default=45,
        validators=[MaxValueValidator(3600)],
        help_text="target_wait policy: seconds from a formation change to a new dyno consuming (Heroku: typically "
        "30–60). A starting point: DynoScaler measures it from the dynos' own starting → up times unless pinned.",
    )
    pin_boot_seconds = models.BooleanField(
        "pin the boot time", default=False,
        help_text="target_wait policy: use the boot time (seconds) as given. This also turns off the one-time timing "
        "of the boot (two dynos started while nothing waits) of a pair that never had a dyno up.",
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
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Seconds between looks at the queues. A look reads SQS only; Heroku is called to change the "
        "formation and to reconcile it every few minutes, so a short interval costs no Heroku calls.",
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
    # A formation write whose answer was lost (timeout, dropped connection): the quantity
    # asked for. Seeing it next is our own change confirmed, not a person's.
    unconfirmed_quantity = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    policy_state = models.JSONField(
        default=dict, blank=True, editable=False, help_text="What the policy carries from cycle to cycle."
    )
    # Quiet cycles like the last recorded decision, not yet written as one summary row.
    quiet_run = models.JSONField(default=dict, blank=True, editable=False)
    prewarm = models.CharField(
        "pre-warm for recurring bursts", max_length=8, default="on",
        choices=[("on", "on"), ("shadow", "shadow: say what it would do"), ("off", "off")],
        help_text="target_wait policy: bursts that recur (every N minutes, hourly at :MM, daily at HH:MM UTC, weekdays). "
        "On: once a burst has recurred twice, start dynos a learned boot ahead of it, and release them if it does not "
        "come. Shadow: only say (in the reason and on the chart) what it would do. Off: never.",
    )
    # What the policy has learned, as its last cycle said it (for the pair page).
    learned = models.JSONField(default=dict, blank=True, editable=False)
    # CloudWatch is read at most once a minute; after a refusal (no cloudwatch:GetMetricData),
    # once an hour, and the policy learns from the counts meanwhile.
    cloudwatch_read_at = models.DateTimeField(null=True, blank=True, editable=False)
    cloudwatch_problem = models.TextField(blank=True, editable=False)
    managed_by_env = models.BooleanField(
        default=False,
        editable=False,
        help_text="Described by the original DynoScaler environment variables; a restart with new values updates it.",
    )
    env_problem = models.TextField(
        blank=True, editable=False,
        help_text="Why the original variables were not applied at the last start (malformed or missing ones); the "
        "pair then runs on the values of its last good start. Empty when they were.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False, on_delete=models.SET_NULL
    )
    # The claim that lets only one cycle of this pair run at a time (see services.claims.pair_claim).
    cycle_claim = models.UUIDField(null=True, blank=True, editable=False)
    cycle_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_cycle_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when Heroku refused a quantity for good (422): not asked again until it changes.
    blocked_quantity = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    blocked_reason = models.TextField(blank=True, editable=False)
    # Written by the cycle, read by the alert detectors (scaling/alerts/detectors.py).
    conditions = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="Conditions the cycle sees now, by code (permanent_error, wait_over_target_at_max, not_helping, "
        "person_change, dynos_not_up, failing): {code: {since: ISO-8601 UTC, detail: one line}}. A code goes when its condition clears.",
    )
    paused_by = models.CharField(
        max_length=150, blank=True, editable=False,
        help_text="Who paused the pair: a username, or “a person outside DynoScaler” when the formation was "
        "changed by hand. Empty when not paused.",
    )
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

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        # unique_app_process is checked by clean(), on the app name's field and naming the other
        # pair; the database still enforces it against a race.
        super().validate_constraints(exclude={*(exclude or ()), "process_type"})

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
        else:
            # Kept, they would suggest the pair reads or scales something real (and travel in exports).
            for name in ("heroku_account", "aws_account"):
                if getattr(self, name + "_id") is not None:
                    errors[name] = "A sandbox pair uses no account (its queue and formation are simulated): leave it empty."
        if self.app_name and self.process_type:
            other = (ScalingPair.objects.filter(app_name=self.app_name, process_type=self.process_type)
                     .exclude(pk=self.pk).values_list("name", flat=True).first())
            if other is not None:
                errors["app_name"] = (f"The pair {other!r} already scales this app's {self.process_type} dynos: "
                                      "edit that pair, or choose another app or process type.")
        if self.interval_seconds is not None and self.interval_seconds < settings.MIN_INTERVAL_SECONDS:
            errors["interval_seconds"] = interval_floor_problem()
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
            "pin_dyno_rate": self.pin_dyno_rate,
            "pin_boot_seconds": self.pin_boot_seconds,
            "pin_dyno_concurrency": self.pin_dyno_concurrency,
            "prewarm": self.prewarm,
        }

    def bounds(self) -> Bounds:
        return Bounds(self.min_dynos, self.max_dynos)

    def schedule_windows(self) -> list[ScheduleWindow]:
        return [s.as_window() for s in self.schedules.all()]

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


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

    def clean(self) -> None:
        problem = queue_region_problem(self.queue, self.region) if self.queue and self.region else None
        if problem:
            raise ValidationError({"region": problem[0].upper() + problem[1:] + "."})


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
    end_time = models.TimeField(help_text="Local time it ends (exclusive). Before the start: runs past midnight; "
                                          "equal to the start: a whole day (24 hours from the start).")
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
        # Shown while a form holds invalid values (min above max, an unknown zone): never raises.
        try:
            return self.as_window().describe()
        except (ValueError, TypeError, AttributeError):
            return f"schedule {self.weekdays} {self.start_time or '?'}–{self.end_time or '?'} {self.timezone}"

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


class SandboxState(models.Model):
    """The simulated queue and formation of a sandbox pair, saved between its cycles."""

    pair = models.OneToOneField(ScalingPair, on_delete=models.CASCADE, related_name="sandbox")
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"sandbox of {self.pair}"
