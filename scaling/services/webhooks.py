"""Heroku app webhooks: subscribing an app to its ``api:formation`` and ``dyno`` events, and
taking in what Heroku delivers so the formation store stays current without polling.

Each subscription has its own secret and its own unguessable path on the web dyno
(``/hooks/heroku/<token>/``). A delivery is taken only if its ``Heroku-Webhook-Hmac-SHA256``
header is the base64 HMAC-SHA256 of the raw body under that secret; an event seen before
(Heroku redelivers, level "sync") is dropped by its id; one older than what we know
changes nothing (events can arrive out of order).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from scaling.adapters.errors import AdapterError
from scaling.adapters.heroku import HerokuClient
from scaling.fields import SecretUnreadable
from scaling.models import HerokuApp, ScalingPair, WebhookEvent
from scaling.services import formations

log = logging.getLogger(__name__)
EVENTS = ("api:formation", "dyno")
EVENT_RETENTION_DAYS = 7  # Heroku retries a delivery for up to about 72 hours


@dataclass(frozen=True)
class Received:
    status: int  # the HTTP status to answer Heroku with
    note: str


def hook_path(app: HerokuApp) -> str:
    return f"/hooks/heroku/{app.hook_token}/"


def webhook_receive(*, token: uuid.UUID, body: bytes, signature: str | None, now: datetime | None = None) -> Received:
    """Take in one delivery. 2xx tells Heroku it was handled (a duplicate too); anything else
    makes a "sync" subscription retry it, which is right only for our own failures."""
    now = now or timezone.now()
    app = HerokuApp.objects.filter(hook_token=token).first()
    if app is None:
        return Received(404, "no app has this webhook address")
    try:
        secret = app.webhook_secret
    except SecretUnreadable:
        return Received(503, "the subscription's secret cannot be read: subscribe the app again")
    if not secret or not _signed(body, secret, signature):
        log.warning("webhook for %s refused: the signature does not match", app.name)
        return Received(403, "signature does not match")
    try:
        event = json.loads(body)
        event_id, resource, action = str(event["id"]), str(event["resource"]), str(event.get("action", ""))
        data = event.get("data") or {}
        assert isinstance(data, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        return Received(400, "not a Heroku webhook event")
    # The event is marked handled in the same transaction that handles it: if handling
    # fails, nothing is kept and Heroku's retry of the delivery is handled afresh.
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookEvent.objects.create(event_id=event_id[:64], app=app, resource=resource[:32],
                                            action=action[:16], received_at=now)
        except IntegrityError:
            return Received(200, "already handled")
        note = _handle(app, event, resource=resource, action=action, data=data, now=now)
    HerokuApp.objects.filter(pk=app.pk).update(last_event_at=now)
    return Received(200, note)


def _handle(app: HerokuApp, event: dict[str, Any], *, resource: str, action: str, data: dict[str, Any],
            now: datetime) -> str:
    if resource == "formation":
        actor = event.get("actor")
        email = actor.get("email") if isinstance(actor, dict) else None
        moved = formations.store_formation_event(app, data=data, actor=str(email or "someone Heroku did not name"),
                                                 now=now)
        return "formation changed" if moved else "formation unchanged"
    if resource == "dyno":
        formations.store_dyno_event(app, data=data, action=action)
        return "dyno state"
    return f"ignored: {resource}"


def _signed(body: bytes, secret: str, signature: str | None) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return signature is not None and hmac.compare_digest(expected, signature.strip())


def events_prune(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=EVENT_RETENTION_DAYS)
    return WebhookEvent.objects.filter(received_at__lt=cutoff).delete()[0]


# --- subscriptions ---------------------------------------------------------------------


def apps_of(pairs: list[ScalingPair]) -> list[HerokuApp]:
    """The Heroku apps the pairs scale, each once (made on first use)."""
    apps: dict[str, HerokuApp] = {}
    for pair in pairs:
        if pair.provider == ScalingPair.Provider.HEROKU and pair.heroku_account is not None:
            apps.setdefault(pair.app_name, formations.app_for(name=pair.app_name, account=pair.heroku_account))
    return list(apps.values())


def _client(app: HerokuApp) -> HerokuClient:
    return HerokuClient(token=app.account.api_token, base_url=settings.HEROKU_API_URL,
                        timeout_seconds=settings.HEROKU_TIMEOUT_SECONDS)


def app_subscribe(*, app: HerokuApp, public_url: str) -> str:
    """Subscribe the app to its formation and dyno events at DynoScaler's public URL, with a
    fresh secret (an earlier subscription of ours is replaced). Raises AdapterError."""
    url = public_url.rstrip("/") + hook_path(app)
    secret = secrets.token_urlsafe(32)
    client = _client(app)
    if app.webhook_id:
        try:
            client.webhook_delete(app=app.name, webhook_id=app.webhook_id)
        except AdapterError as exc:
            if exc.status != 404:
                raise
    subscription = client.webhook_create(app=app.name, url=url, secret=secret, include=EVENTS)
    checked = f"subscribed at {timezone.now():%Y-%m-%d %H:%M} UTC to {', '.join(subscription.include)}"
    # The secret first, then the id: a delivery that arrives in between is refused, not trusted.
    app.webhook_secret, app.webhook_id, app.webhook_url, app.webhook_checked = secret, subscription.id, url, checked
    app.save(update_fields=["webhook_secret", "webhook_id", "webhook_url", "webhook_checked"])
    return f"{app.name}: subscribed to {', '.join(EVENTS)} at {url}"


def app_check(*, app: HerokuApp) -> str:
    """Whether Heroku still has the subscription as DynoScaler made it."""
    return _check(app).said


def _check(app: HerokuApp) -> Done:
    """``app_check``, and whether all is well: a subscription that cannot be read or must be
    made again is not (no subscription at all is: the formation is then read instead)."""
    ok = True
    if not app.webhook_id:
        found = f"{app.name}: not subscribed (the formation is read every {settings.RECONCILE_SECONDS} s and before changes)"
    else:
        try:
            subscription = _client(app).webhook_get(app=app.name, webhook_id=app.webhook_id)
        except AdapterError as exc:
            ok, found = False, f"{app.name}: the subscription cannot be read: {exc.message}"
        else:
            problems = []
            if subscription.url != app.webhook_url:
                problems.append(f"it posts to {subscription.url}")
            missing = set(EVENTS) - set(subscription.include)
            if missing:
                problems.append(f"it lacks {', '.join(sorted(missing))}")
            last = f"; last event {app.last_event_at:%Y-%m-%d %H:%M} UTC" if app.last_event_at else "; no event yet"
            ok = not problems
            found = f"{app.name}: " + ("; ".join(problems) + ": subscribe again" if problems else "subscribed" + last)
    HerokuApp.objects.filter(pk=app.pk).update(webhook_checked=found[:1000])
    return Done(ok, found)


def app_unsubscribe(*, app: HerokuApp) -> str:
    if not app.webhook_id:
        return f"{app.name}: was not subscribed"
    try:
        _client(app).webhook_delete(app=app.name, webhook_id=app.webhook_id)
    except AdapterError as exc:
        if exc.status != 404:
            raise
    app.webhook_id, app.webhook_secret, app.webhook_url = "", "", ""
    app.webhook_checked = f"unsubscribed at {timezone.now():%Y-%m-%d %H:%M} UTC"
    app.save(update_fields=["webhook_id", "webhook_secret", "webhook_url", "webhook_checked"])
    return f"{app.name}: unsubscribed; its formation is read every {settings.RECONCILE_SECONDS} s and before changes"


@dataclass(frozen=True)
class Done:
    ok: bool
    said: str


def apps_webhooks(*, apps: list[HerokuApp], action: str, public_url: str | None = None) -> list[Done]:
    """``action`` (subscribe, check or remove) for each app, each saying what happened; a
    failure of one (Heroku refused, a secret cannot be read) does not stop the others."""
    done = []
    for app in apps:
        try:
            if action == "subscribe":
                done.append(Done(True, app_subscribe(app=app, public_url=str(public_url))))
            elif action == "check":
                done.append(_check(app))
            else:
                done.append(Done(True, app_unsubscribe(app=app)))
        except AdapterError as exc:
            done.append(Done(False, f"{app.name}: {exc.message}"))
        except SecretUnreadable as exc:
            done.append(Done(False, f"{app.name}: {exc}"))
    return done
