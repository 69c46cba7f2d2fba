"""Heroku Platform API: read a process type's formation and dynos, change its quantity.

heroku3 is the chosen client, but on its own it has no request timeouts, hides 429
responses behind a bare exception and hard-codes https://api.heroku.com. This adapter
gives it a ``requests`` session with a timeout and Bearer auth, points it at the
configured base URL, and turns every failure into one ``AdapterError`` that says
whether retrying can help. Reads cost one call each for all of an app's process types
(``formation``, ``dynos``); a change is one PATCH; there is no ``GET /apps/{app}`` and no
token check call. Webhook subscriptions, which heroku3 does not know, go through the same
session.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import requests
from heroku3.api import Heroku, RateLimitExceeded
from heroku3.models.app import App

from scaling.adapters.errors import AdapterError

SYSTEM = "Heroku"
_PERMANENT_STATUSES = {400, 401, 402, 403, 404, 422}
# Heroku's 422 on a size's dyno limit: "Cannot update to more than 10 Performance-M size dynos per process type."
_LIMIT_HINT = re.compile(r"more than (\d+)\b")


@dataclass(frozen=True)
class ProcessState:
    """One process type's formation and how many of its dynos are up or booting."""

    quantity: int
    size: str
    running: int  # dynos in state "up"
    starting: int  # dynos booting ("starting", "restarting")
    changed_by: str = ""  # who last changed the quantity, when Heroku named a person (webhooks)
    # Since when the longest-waiting dyno that should be up is not (each dyno's last change of
    # state; the formation's change for dynos not listed yet). None: all are up, or unknown.
    not_up_since: datetime | None = None


@dataclass(frozen=True)
class FormationInfo:
    process_type: str
    quantity: int
    size: str
    updated_at: datetime | None


@dataclass(frozen=True)
class DynoInfo:
    name: str  # e.g. "worker.3"
    process_type: str
    state: str  # "starting", "up", "crashed", "down", ...
    updated_at: datetime | None  # when the process last changed state
    created_at: datetime | None = None  # when the dyno was started


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    url: str
    include: tuple[str, ...]
    level: str


class _TimeoutSession(requests.Session):
    """A session whose every request has a timeout unless the caller gave one, and which
    keeps the account pool's ``RateLimit-Remaining`` from every answer."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.rate_limit_remaining: int | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        response = super().request(method, url, *args, **kwargs)
        raw = response.headers.get("RateLimit-Remaining")
        if raw is not None and raw.strip().isdigit():
            # Heroku's pool holds 4,500; a proxy's odd figure must not overflow what stores it.
            self.rate_limit_remaining = min(int(raw), 1_000_000)
        return response


class HerokuClient:
    def __init__(self, *, token: str, base_url: str, timeout_seconds: float = 10.0) -> None:
        self._session = session = _TimeoutSession(timeout_seconds)
        session.trust_env = False  # never fall back to a ~/.netrc login
        self._api = Heroku(session=session)
        # heroku3 sets its own Accept header and keeps the base URL on the instance.
        session.headers["Accept"] = "application/vnd.heroku+json; version=3"
        session.headers["Authorization"] = f"Bearer {token}"
        self._base = self._api._heroku_url = base_url.rstrip("/")
        self._secrets = (token,)

    @property
    def rate_limit_remaining(self) -> int | None:
        """The account's pool as Heroku's last answer reported it."""
        return self._session.rate_limit_remaining

    def formation(self, *, app: str) -> list[FormationInfo]:
        """Every process type's formation: one call, shared by all the app's pairs."""
        with _translated(f"reading the formation of {app}", self._secrets):
            return [_formation_info(f) for f in self._app(app).process_formation()]

    def dynos(self, *, app: str) -> list[DynoInfo]:
        with _translated(f"listing the dynos of {app}", self._secrets):
            return [DynoInfo(name=str(d.name), process_type=str(d.type), state=str(d.state),
                             updated_at=_aware(getattr(d, "updated_at", None)),
                             created_at=_aware(getattr(d, "created_at", None)))
                    for d in self._app(app).dynos()]

    def process_state(self, *, app: str, process_type: str) -> ProcessState:
        """A process type's formation and dynos, read now (two calls)."""
        formation = [f for f in self.formation(app=app) if f.process_type == process_type]
        if not formation:
            raise AdapterError(SYSTEM, f"app {app!r} has no process type {process_type!r} in its formation",
                               permanent=True, status=404)
        states = [d.state for d in self.dynos(app=app) if d.process_type == process_type]
        return ProcessState(quantity=formation[0].quantity, size=formation[0].size, running=states.count("up"),
                            starting=states.count("starting") + states.count("restarting"))

    def scale(self, *, app: str, process_type: str, quantity: int) -> FormationInfo:
        """Set the quantity; Heroku's answer is the new formation."""
        handle = self._app(app)
        with _translated(f"scaling {app} {process_type} to {quantity}", self._secrets):
            return _formation_info(handle.scale_formation_process(process_type, quantity))

    def webhook_create(self, *, app: str, url: str, secret: str, include: tuple[str, ...]) -> WebhookSubscription:
        """Subscribe ``url`` to the app's events, at level "sync" (Heroku retries failed deliveries)."""
        body = {"include": list(include), "level": "sync", "url": url, "secret": secret}
        return _subscription(self._call("POST", f"/apps/{quote(app)}/webhooks", f"subscribing {app} to webhooks", body))

    def webhook_get(self, *, app: str, webhook_id: str) -> WebhookSubscription:
        return _subscription(self._call("GET", f"/apps/{quote(app)}/webhooks/{quote(webhook_id)}",
                                        f"reading the webhook subscription of {app}"))

    def webhook_delete(self, *, app: str, webhook_id: str) -> None:
        self._call("DELETE", f"/apps/{quote(app)}/webhooks/{quote(webhook_id)}", f"removing the webhook subscription of {app}")

    def _call(self, method: str, path: str, doing: str, body: dict[str, Any] | None = None) -> Any:
        with _translated(doing, self._secrets):
            response = self._session.request(method, self._base + path, json=body)
            response.raise_for_status()
            return response.json() if response.content else None

    def _app(self, app: str) -> App:
        # Heroku accepts an app's name wherever it takes its id, so no GET /apps/{app}.
        return App.new_from_dict({"name": app, "id": app}, h=self._api)


def _formation_info(formation: Any) -> FormationInfo:
    return FormationInfo(process_type=str(formation.type), quantity=int(formation.quantity),
                         size=str(formation.size or ""), updated_at=_aware(getattr(formation, "updated_at", None)))


def _subscription(body: Any) -> WebhookSubscription:
    if not isinstance(body, dict) or not body.get("id"):
        raise AdapterError(SYSTEM, "unexpected answer about a webhook subscription", permanent=False)
    return WebhookSubscription(id=str(body["id"]), url=str(body.get("url", "")),
                               include=tuple(str(i) for i in body.get("include") or ()), level=str(body.get("level", "")))


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


@contextmanager
def _translated(doing: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """Turns whatever heroku3 or requests raised into an AdapterError, scrubbed of the token."""
    try:
        yield
    except RateLimitExceeded:
        raise AdapterError(SYSTEM, f"rate limit reached while {doing} (429)", permanent=False, status=429) from None
    except requests.HTTPError as exc:
        if exc.response is None:
            raise AdapterError(SYSTEM, f"HTTP error while {doing}", permanent=False) from None
        raise _http_error(exc.response, doing, secrets) from None
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise AdapterError(SYSTEM, f"{type(exc).__name__} while {doing}", permanent=False) from None
    except (requests.RequestException, ValueError) as exc:  # heroku3's ResponseError is a ValueError
        raise AdapterError(SYSTEM, f"unexpected answer while {doing}: {type(exc).__name__}", permanent=False) from None


def _http_error(response: requests.Response, doing: str, secrets: tuple[str, ...]) -> AdapterError:
    status = response.status_code
    code, message = "", ""
    try:
        body = json.loads(response.content.decode("utf-8", "replace"))
        if isinstance(body, dict):
            code, message = str(body.get("id", "")), str(body.get("message", ""))
    except ValueError:
        pass
    text = f"{status} {code or response.reason} while {doing}"
    if message:
        text += f": {message}"
    hint = _LIMIT_HINT.search(message) if status == 422 else None
    return AdapterError(
        SYSTEM,
        text,
        permanent=status in _PERMANENT_STATUSES,
        status=status,
        retry_after=_seconds(response.headers.get("Retry-After")),
        accepts_at_most=int(hint.group(1)) if hint else None,
        secrets=secrets,
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
