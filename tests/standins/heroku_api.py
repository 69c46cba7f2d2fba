"""A loopback stand-in for the parts of the Heroku Platform API that DynoScaler uses.

It answers as devcenter.heroku.com/articles/platform-api-reference documents: JSON
bodies, ``{"id", "message"}`` errors (401 unauthorized, 403 forbidden, 404 not_found,
422 invalid_params, 429 rate_limit), and ``RateLimit-Remaining`` on every response from
a per-token pool. Apps can be subscribed to webhooks (``POST /apps/{app}/webhooks``):
then every formation change and every dyno's life (starting, up after its boot time,
destroyed) is posted to the subscription's URL as Heroku does (devcenter: app-webhooks),
signed with ``Heroku-Webhook-Hmac-SHA256`` = base64(HMAC-SHA256(secret, raw body)), from
a background thread. Tests drive it through its Python attributes and read what it saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests

from tests.standins.base import DROP, LoopbackServer

ACCEPT = "application/vnd.heroku+json; version=3"


@dataclass
class Process:
    quantity: int
    size: str = "Standard-1X"
    max_quantity: int = 100  # above this PATCH answers 422, as a size limit would
    limit_message: str = ""  # the 422's message; by default Heroku's wording, which names the limit
    boot_seconds: float = 0.0
    dyno_started: dict[int, float] = field(default_factory=dict)  # dyno number -> when it was started
    updated_at: str = "2026-01-01T00:00:00.000Z"  # when the formation last changed


@dataclass
class FakeApp:
    name: str
    processes: dict[str, Process]
    owner_token: str
    owner_email: str = "ops@example.com"


@dataclass
class Subscription:
    id: str
    app: str
    url: str
    secret: str
    include: list[str]
    level: str


@dataclass
class Delivery:
    """One post of one event to one subscription, as sent (and answered)."""

    url: str
    body: bytes
    headers: dict[str, str]
    event: dict[str, Any]
    status: int | None = None  # the receiver's answer; None if it could not be reached


@dataclass
class Seen:
    method: str
    path: str
    body: Any
    authorized: bool


class HerokuStandIn(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.apps: dict[str, FakeApp] = {}
        self.tokens: set[str] = set()
        self.rate_limit_pool = 4500
        self.requests: list[Seen] = []
        self.delay_seconds = 0.0  # every response waits this long (to hold a cycle open)
        self._failures: list[tuple[str, str, int, dict[str, Any], dict[str, str]]] = []
        self._lost_answers: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.drop_webhooks = False  # events are lost before delivery, as a missed webhook would be
        self._outbox: queue.Queue[Delivery | None] = queue.Queue()
        self._timers: list[threading.Timer] = []
        self._sender = threading.Thread(target=self._send_forever, daemon=True)

    def start(self) -> HerokuStandIn:
        super().start()
        if not self._sender.is_alive():
            self._sender.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        super().stop()

    # --- test controls -------------------------------------------------------------

    def add_app(self, name: str, *, token: str, process_type: str = "worker", quantity: int = 1,
                owner_email: str = "ops@example.com", **proc: Any) -> FakeApp:
        self.tokens.add(token)
        process = Process(quantity=quantity, **proc)
        now = time.monotonic() - process.boot_seconds
        process.dyno_started = {n: now for n in range(1, quantity + 1)}
        app = FakeApp(name=name, processes={process_type: process}, owner_token=token, owner_email=owner_email)
        self.apps[name] = app
        return app

    def add_process(self, app: str, process_type: str, *, quantity: int = 1, **proc: Any) -> Process:
        process = Process(quantity=quantity, **proc)
        now = time.monotonic() - process.boot_seconds
        process.dyno_started = {n: now for n in range(1, quantity + 1)}
        self.apps[app].processes[process_type] = process
        return process

    def quantity(self, app: str, process_type: str = "worker") -> int:
        return self.apps[app].processes[process_type].quantity

    def set_quantity(self, app: str, quantity: int, process_type: str = "worker", *,
                     actor: str = "alice@example.com") -> None:
        """A person scales the formation (the dashboard, the CLI): Heroku tells the webhooks."""
        with self._lock:
            self._scale(self.apps[app], process_type, quantity, actor=actor)

    def flush(self, seconds: float = 10) -> None:
        """Wait until every event so far has been posted to its subscription."""
        deadline = time.monotonic() + seconds
        while self._outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def sign(self, subscription: Subscription, body: bytes) -> str:
        return base64.b64encode(hmac.new(subscription.secret.encode(), body, hashlib.sha256).digest()).decode()

    def post(self, delivery: Delivery) -> int:
        """Post a delivery (again, or crafted by a test) as Heroku would; returns the answer's status."""
        return requests.post(delivery.url, data=delivery.body, headers=delivery.headers, timeout=10).status_code

    def fail_next(self, method: str, path_pattern: str, status: int, *, times: int = 1,
                  headers: dict[str, str] | None = None, message: str | None = None) -> None:
        """The next ``times`` requests matching method and regex answer ``status``."""
        ids = {401: "unauthorized", 403: "forbidden", 404: "not_found", 422: "invalid_params",
               429: "rate_limit", 500: "internal_server_error", 503: "service_unavailable"}
        body = {"id": ids.get(status, "error"), "message": message or f"Stand-in failure {status}."}
        for _ in range(times):
            self._failures.append((method, path_pattern, status, body, headers or {}))

    def lose_answer_next(self, method: str, path_pattern: str) -> None:
        """The next matching request is carried out, then the connection drops before the
        answer is sent: the client cannot know whether it was applied."""
        self._lost_answers.append((method, path_pattern))

    def writes(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "PATCH"]

    # --- webhooks ---------------------------------------------------------------------
    def _emit(self, app: FakeApp, *, resource: str, action: str, data: dict[str, Any], actor: str) -> None:
        include = "api:formation" if resource == "formation" else resource
        for sub in [s for s in self.subscriptions.values() if s.app == app.name and include in s.include]:
            event = {
                "id": str(uuid.uuid4()), "action": action, "resource": resource, "data": data,
                "actor": {"email": actor, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, actor))},
                "created_at": _now(), "published_at": _now(), "previous_data": {}, "sequence": None,
                "version": "application/vnd.heroku+json; version=3",
                "webhook_metadata": {"webhook": {"id": sub.id}, "event": {"include": include},
                                     "delivery": {"id": str(uuid.uuid4())}, "attempt": {"id": str(uuid.uuid4())}},
            }
            body = json.dumps(event).encode()
            headers = {"Content-Type": "application/json", "Heroku-Webhook-Hmac-SHA256": self.sign(sub, body),
                       "Heroku-Webhook-Id": event["webhook_metadata"]["delivery"]["id"]}  # type: ignore[index]
            if not self.drop_webhooks:
                self._outbox.put(Delivery(url=sub.url, body=body, headers=headers, event=event))

    def _send_forever(self) -> None:
        while True:
            delivery = self._outbox.get()
            try:
                if delivery is not None:
                    try:
                        delivery.status = self.post(delivery)
                    except requests.RequestException:
                        delivery.status = None
                    self.deliveries.append(delivery)
            finally:
                self._outbox.task_done()

    def _dyno_event(self, app: FakeApp, ptype: str, n: int, action: str, state: str) -> None:
        proc = app.processes.get(ptype)
        started = proc.dyno_started.get(n) if proc else None
        data = {"name": f"{ptype}.{n}", "type": ptype, "state": state, "size": proc.size if proc else "",
                "app": {"name": app.name}, "updated_at": _now(),
                "created_at": _iso(time.time() - (time.monotonic() - started)) if started is not None else _now()}
        self._emit(app, resource="dyno", action=action, data=data, actor=app.owner_email)

    def _boot(self, app: FakeApp, ptype: str, n: int, started: float) -> None:
        with self._lock:
            proc = app.processes.get(ptype)
            if proc is not None and proc.dyno_started.get(n) == started:
                self._dyno_event(app, ptype, n, "update", "up")

    # --- the API ----------------------------------------------------------------------
    def _scale(self, app: FakeApp, ptype: str, quantity: int, *, actor: str) -> None:
        process = app.processes[ptype]
        now = time.monotonic()
        numbers = sorted(process.dyno_started)
        # Heroku stops the highest-numbered dynos first and starts new ones numbered upward.
        for n in numbers[quantity:]:
            del process.dyno_started[n]
            self._dyno_event(app, ptype, n, "destroy", "down")
        for n in range(len(process.dyno_started) + 1, quantity + 1):
            process.dyno_started[n] = now
            self._dyno_event(app, ptype, n, "create", "starting")
            timer = threading.Timer(process.boot_seconds, self._boot, args=(app, ptype, n, now))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        if quantity != process.quantity:
            process.updated_at = _now()
        process.quantity = quantity
        self._emit(app, resource="formation", action="update", data=self._formation(app, ptype, process), actor=actor)

    def _formation(self, app: FakeApp, ptype: str, proc: Process) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app.name}/{ptype}")),
            "type": ptype,
            "quantity": proc.quantity,
            "size": proc.size,
            "command": f"python {ptype}.py",
            "app": {"name": app.name, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, app.name))},
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": proc.updated_at,
        }

    def _dynos(self, app: FakeApp) -> list[dict[str, Any]]:
        now = time.monotonic()
        wall = time.time()
        out = []
        for ptype, proc in app.processes.items():
            for n, started in sorted(proc.dyno_started.items()):
                up = now - started >= proc.boot_seconds
                created = wall - (now - started)
                # As Heroku: created_at is when the dyno started, updated_at its last change of state.
                out.append({
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app.name}/{ptype}.{n}/{started}")),
                    "name": f"{ptype}.{n}", "type": ptype, "state": "up" if up else "starting", "size": proc.size,
                    "command": f"python {ptype}.py", "created_at": _iso(created),
                    "updated_at": _iso(created + proc.boot_seconds if up else created),
                })
        return out

    def answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        status, payload, extra = self._answer(method, path, headers, raw)
        with self._lock:
            for i, (verb, pattern) in enumerate(self._lost_answers):
                if verb == method and re.search(pattern, path):
                    del self._lost_answers[i]
                    return DROP, None, {}
        # Heroku sends the pool's remaining calls and a request id on every response.
        return status, payload, {"RateLimit-Remaining": str(max(self.rate_limit_pool, 0)),
                                 "Request-Id": str(uuid.uuid4()), **extra}

    def _answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(Seen(method, path, body, token in self.tokens))
            for i, (verb, pattern, status, err, extra) in enumerate(self._failures):
                if verb == method and re.search(pattern, path):
                    del self._failures[i]
                    return status, err, extra
            if ACCEPT not in (headers.get("Accept") or ""):
                return 400, {"id": "bad_request", "message": "Accept must name version=3."}, {}
            if token not in self.tokens:
                return 401, {"id": "unauthorized", "message": "Invalid credentials provided."}, {}
            if self.rate_limit_pool <= 0:
                return 429, {"id": "rate_limit", "message": "Your account reached the API rate limit."}, {}
            self.rate_limit_pool -= 1
            if path == "/account/rate-limits":
                return 200, {"remaining": self.rate_limit_pool}, {}
            route = re.fullmatch(r"/apps/([^/]+)/(formation|dynos|webhooks)(?:/([^/]+))?", path)
            if not route or route.group(1) not in self.apps:
                return 404, {"id": "not_found", "message": "Couldn't find that app.", "resource": "app"}, {}
            app = self.apps[route.group(1)]
            if app.owner_token != token:
                return 403, {"id": "forbidden", "message": "You do not have access to the app."}, {}
            kind, ptype = route.group(2), route.group(3)
            if kind == "webhooks":
                return self._webhooks(app, method, ptype, body)
            if kind == "dynos" and method == "GET" and ptype is None:
                return 200, self._dynos(app), {}
            if kind == "formation" and method == "GET" and ptype is None:
                return 200, [self._formation(app, t, p) for t, p in app.processes.items()], {}
            if kind == "formation" and ptype is not None:
                proc = app.processes.get(ptype)
                if proc is None:
                    return 404, {"id": "not_found", "message": "Couldn't find that formation."}, {}
                if method == "GET":
                    return 200, self._formation(app, ptype, proc), {}
                if method == "PATCH":
                    quantity = (body or {}).get("quantity")
                    if not isinstance(quantity, int) or quantity < 0:
                        return 422, {"id": "invalid_params", "message": "Quantity must be a non-negative integer."}, {}
                    if quantity > proc.max_quantity:
                        message = proc.limit_message or (
                            f"Cannot update to more than {proc.max_quantity} {proc.size} size dynos per process type.")
                        return 422, {"id": "invalid_params", "message": message}, {}
                    self._scale(app, ptype, quantity, actor=app.owner_email)
                    return 200, self._formation(app, ptype, proc), {}
            return 404, {"id": "not_found", "message": "Not found."}, {}


    def _webhooks(self, app: FakeApp, method: str, webhook_id: str | None, body: Any) -> tuple[int, Any, dict[str, str]]:
        def shown(sub: Subscription) -> dict[str, Any]:  # never the secret
            return {"id": sub.id, "url": sub.url, "include": sub.include, "level": sub.level,
                    "app": {"name": sub.app}, "created_at": _now(), "updated_at": _now()}

        if webhook_id is None and method == "POST":
            body = body or {}
            include, level, url = body.get("include"), body.get("level"), body.get("url")
            if not isinstance(include, list) or level not in ("notify", "sync") or not str(url).startswith("http"):
                return 422, {"id": "invalid_params", "message": "include, level and url are required."}, {}
            sub = Subscription(id=str(uuid.uuid4()), app=app.name, url=str(url), secret=str(body.get("secret") or ""),
                               include=[str(i) for i in include], level=str(level))
            self.subscriptions[sub.id] = sub
            return 201, shown(sub), {}
        if webhook_id is None and method == "GET":
            return 200, [shown(s) for s in self.subscriptions.values() if s.app == app.name], {}
        sub_found = self.subscriptions.get(webhook_id or "")
        if sub_found is None or sub_found.app != app.name:
            return 404, {"id": "not_found", "message": "Couldn't find that webhook."}, {}
        if method == "DELETE":
            del self.subscriptions[sub_found.id]
        return 200, shown(sub_found), {}


def _now() -> str:
    return _iso(time.time())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
