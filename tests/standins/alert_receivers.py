"""Loopback receivers for alerts: an HTTP endpoint that records what it is sent (as a Slack
incoming webhook or a team's own webhook would receive it) and a real SMTP server (aiosmtpd).

The webhook receiver checks signatures the way a team's receiver would, written here from
the README's description rather than with DynoScaler's own code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: list[tuple[int, str]] = []  # (status, body) for the next requests, in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, status: int, *, times: int = 1, body: str = "") -> None:
        """The next ``times`` requests answer ``status``; ``{path}`` in ``body`` is replaced by
        the request's path, as a careless receiver that echoes its URL would."""
        with self._lock:
            self._answers.extend([(status, body)] * times)

    def bodies(self) -> list[Any]:
        return [r.json for r in self.received]

    @staticmethod
    def signature_ok(request: Received, secret: str, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
        """What a receiver does: recompute HMAC-SHA256 over "timestamp.body" with the shared
        secret, compare in constant time, and refuse a timestamp too far from now (a replay)."""
        timestamp = request.headers.get("X-DynoScaler-Timestamp", "")
        given = request.headers.get("X-DynoScaler-Signature", "")
        if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance_seconds:
            return False
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given, f"sha256={expected}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    status, text = receiver._answers.pop(0) if receiver._answers else (200, "ok")
                    if status < 300:  # a failed request was not received, as far as the sender can tell
                        receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                data = text.replace("{path}", self.path).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        return Handler


class _Recorder:
    def __init__(self, server: SmtpReceiver) -> None:
        self.server = server

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.server.refused:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.server.lock:
            if self.server.busy_times > 0:
                self.server.busy_times -= 1
                return "451 4.3.0 try again later"
            content = envelope.original_content or b""
            self.server.messages.append(message_from_bytes(content, policy=policy.default))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """A real SMTP server on loopback (aiosmtpd) that keeps every message it accepts."""

    def __init__(self, port: int) -> None:
        self.messages: list[EmailMessage] = []
        self.refused: set[str] = set()
        self.busy_times = 0  # the next N messages are answered 451 (try again later)
        self.lock = threading.Lock()
        self.port = port
        self._controller = Controller(_Recorder(self), hostname="127.0.0.1", port=port)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
