"""Heroku Platform API: read a process type's formation and dynos, change its quantity.

heroku3 is the chosen client, but on its own it has no request timeouts, hides 429
responses behind a bare exception and hard-codes https://api.heroku.com. This adapter
gives it a ``requests`` session with a timeout and Bearer auth, points it at the
configured base URL, and turns every failure into one ``AdapterError`` that says
whether retrying can help. Per cycle it costs two GETs (formation, dynos) and, only when
the quantity changes, one PATCH: no ``GET /apps/{app}`` and no token check call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
    quantity: int
    size: str
    running: int  # dynos in state "up"
    starting: int  # dynos booting ("starting", "restarting")


class _TimeoutSession(requests.Session):
    """A session whose every request has a timeout unless the caller gave one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class HerokuClient:
    def __init__(self, *, token: str, base_url: str, timeout_seconds: float = 10.0) -> None:
        session = _TimeoutSession(timeout_seconds)
        session.trust_env = False  # never fall back to a ~/.netrc login
        self._api = Heroku(session=session)
        # heroku3 sets its own Accept header and keeps the base URL on the instance.
        session.headers["Accept"] = "application/vnd.heroku+json; version=3"
        session.headers["Authorization"] = f"Bearer {token}"
        self._api._heroku_url = base_url.rstrip("/")
        self._secrets = (token,)

    @property
    def rate_limit_remaining(self) -> int | None:
        raw = self._api._ratelimit_remaining
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    def process_state(self, *, app: str, process_type: str) -> ProcessState:
        handle = self._app(app)
        with _translated(f"reading the formation of {app}", self._secrets):
            formation = [f for f in handle.process_formation() if f.type == process_type]
        if not formation:
            raise AdapterError(
                SYSTEM,
                f"app {app!r} has no process type {process_type!r} in its formation",
                permanent=True,
                status=404,
            )
        with _translated(f"listing the dynos of {app}", self._secrets):
            dynos = [d for d in handle.dynos() if d.type == process_type]
        states = [d.state for d in dynos]
        return ProcessState(
            quantity=int(formation[0].quantity),
            size=str(formation[0].size or ""),
            running=states.count("up"),
            starting=states.count("starting") + states.count("restarting"),
        )

    def scale(self, *, app: str, process_type: str, quantity: int) -> int:
        handle = self._app(app)
        with _translated(f"scaling {app} {process_type} to {quantity}", self._secrets):
            formation = handle.scale_formation_process(process_type, quantity)
        return int(formation.quantity)

    def _app(self, app: str) -> App:
        # Heroku accepts an app's name wherever it takes its id, so no GET /apps/{app}.
        return App.new_from_dict({"name": app, "id": app}, h=self._api)


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
