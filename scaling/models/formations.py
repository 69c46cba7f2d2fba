"""What DynoScaler knows of each Heroku app's formation, so a cycle can look at SQS often
and call Heroku only to act and to reconcile.

The knowledge comes from three places: DynoScaler's own writes (the PATCH answer is the
new formation), Heroku's app webhooks (``api:formation`` and ``dyno`` events), and a
reconciling read every few minutes (and while new dynos boot), which catches a missed
webhook or runs in their place.
"""

from __future__ import annotations

import uuid
from django.db import models

from scaling.fields import EncryptedSecretsMixin, EncryptedTextField
from scaling.models.accounts import HerokuAccount
from scaling.validators import app_name_validator

# Dyno states Heroku reports (devcenter: dyno-runtime, webhook-dyno-events).
UP = "up"
BOOTING = ("starting", "restarting")


class HerokuApp(EncryptedSecretsMixin):
    """One Heroku app, shared by the pairs that scale its process types."""

    name = models.CharField(max_length=30, unique=True, validators=[app_name_validator],
                            help_text="The Heroku app's name.")
    account = models.ForeignKey(HerokuAccount, on_delete=models.CASCADE, related_name="apps",
                                help_text="The account whose token reads and scales it.")
    # The webhook subscription: Heroku posts formation and dyno events to
    # /hooks/heroku/<hook_token>/, signed with the secret.
    hook_token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook_id = models.CharField(max_length=64, blank=True, editable=False,
                                  help_text="Heroku's id of the webhook subscription, when subscribed.")
    webhook_secret = EncryptedTextField(blank=True, editable=False)
    webhook_url = models.URLField(max_length=500, blank=True, editable=False)
    webhook_checked = models.TextField(blank=True, editable=False,
                                       help_text="What the last check of the subscription found.")
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False,
                                         help_text="When Heroku last delivered an event for this app (UTC).")
    reconciled_at = models.DateTimeField(null=True, blank=True, editable=False,
                                         help_text="When the formation was last read from Heroku (UTC).")
    dynos_read_at = models.DateTimeField(null=True, blank=True, editable=False,
                                         help_text="When the dyno list was last read from Heroku (UTC).")
    # One reconciling read at a time for all the app's pairs: a conditional UPDATE takes it.
    read_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "Heroku app"

    def __str__(self) -> str:
        return self.name

    @property
    def subscribed(self) -> bool:
        return bool(self.webhook_id)


class FormationState(models.Model):
    """One process type's formation as DynoScaler last knew it, and its dynos' states."""

    app = models.ForeignKey(HerokuApp, on_delete=models.CASCADE, related_name="formations")
    process_type = models.CharField(max_length=64)
    quantity = models.PositiveSmallIntegerField()
    size = models.CharField(max_length=32, blank=True)
    # Heroku's own updated_at for the formation: an older event never overwrites a newer one.
    heroku_updated_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(help_text="When the quantity last changed, as far as DynoScaler knows (UTC).")
    changed_by = models.CharField(max_length=200, blank=True,
                                  help_text="Who changed it: DynoScaler, the person Heroku named, or unknown.")
    # {dyno name: {"state": "up", "at": Heroku's updated_at (ISO)}} for this process type.
    dynos = models.JSONField(default=dict, blank=True)
    # The last boots measured: [[when it came up (ISO), starting → up seconds], ...], newest last.
    boots = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "formation"
        constraints = [models.UniqueConstraint(fields=["app", "process_type"], name="unique_app_formation")]

    def __str__(self) -> str:
        return f"{self.app_id}/{self.process_type}={self.quantity}"

    def dyno_counts(self) -> tuple[int, int]:
        """(up, booting) among the dynos the formation holds now."""
        states = [d.get("state") for d in self.dynos.values()]
        return states.count(UP), sum(states.count(s) for s in BOOTING)


class WebhookEvent(models.Model):
    """An event Heroku delivered, kept a while so a redelivery is recognised and dropped."""

    event_id = models.CharField(max_length=64, unique=True)
    app = models.ForeignKey(HerokuApp, null=True, on_delete=models.SET_NULL, related_name="+")
    resource = models.CharField(max_length=32)
    action = models.CharField(max_length=16)
    received_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.resource} {self.action} {self.event_id}"

