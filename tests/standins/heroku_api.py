"""A loopback stand-in for the parts of the Heroku Platform API that DynoScaler uses.

It answers as devcenter.heroku.com/articles/platform-api-reference documents: JSON
bodies, ``{"id", "message"}`` errors (401 unauthorized, 403 forbidden, 404 not_found,
422 invalid_params, 429 rate_limit), and ``RateLimit-Remaining`` on every response from
a per-token pool. Tests drive it through its Python attributes and read what it saw.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

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


@dataclass
class FakeApp:
    name: str
    processes: dict[str, Process]
    owner_token: str


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
        self._lock = threading.Lock()

    # --- test controls -------------------------------------------------------------

    def add_app(self, name: str, *, token: str, process_type: str = "worker", quantity: int = 1, **proc: Any) -> FakeApp:
        self.tokens.add(token)
        process = Process(quantity=quantity, **proc)
        now = time.monotonic() - process.boot_seconds
        process.dyno_started = {n: now for n in range(1, quantity + 1)}
        app = FakeApp(name=name, processes={process_type: process}, owner_token=token)
        self.apps[name] = app
        return app

    def quantity(self, app: str, process_type: str = "worker") -> int:
        return self.apps[app].processes[process_type].quantity

    def set_quantity(self, app: str, quantity: int, process_type: str = "worker") -> None:
        with self._lock:
            self._scale(self.apps[app].processes[process_type], quantity)

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

    # --- the API ----------------------------------------------------------------------
    def _scale(self, process: Process, quantity: int) -> None:
        now = time.monotonic()
        numbers = sorted(process.dyno_started)
        # Heroku stops the highest-numbered dynos first and starts new ones numbered upward.
        for n in numbers[quantity:]:
            del process.dyno_started[n]
        for n in range(len(process.dyno_started) + 1, quantity + 1):
            process.dyno_started[n] = now
        process.quantity = quantity

    def _formation(self, app: FakeApp, ptype: str, proc: Process) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app.name}/{ptype}")),
            "type": ptype,
            "quantity": proc.quantity,
            "size": proc.size,
            "command": f"python {ptype}.py",
            "app": {"name": app.name, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, app.name))},
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": _now(),
        }

    def _dynos(self, app: FakeApp) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for ptype, proc in app.processes.items():
            for n, started in sorted(proc.dyno_started.items()):
                state = "up" if now - started >= proc.boot_seconds else "starting"
                out.append({
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app.name}/{ptype}.{n}/{started}")),
                    "name": f"{ptype}.{n}", "type": ptype, "state": state, "size": proc.size,
                    "command": f"python {ptype}.py", "created_at": _now(), "updated_at": _now(),
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
            route = re.fullmatch(r"/apps/([^/]+)/(formation|dynos)(?:/([^/]+))?", path)
            if not route or route.group(1) not in self.apps:
                return 404, {"id": "not_found", "message": "Couldn't find that app.", "resource": "app"}, {}
            app = self.apps[route.group(1)]
            if app.owner_token != token:
                return 403, {"id": "forbidden", "message": "You do not have access to the app."}, {}
            kind, ptype = route.group(2), route.group(3)
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
                    self._scale(proc, quantity)
                    return 200, self._formation(app, ptype, proc), {}
            return 404, {"id": "not_found", "message": "Not found."}, {}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
