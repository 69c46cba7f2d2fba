"""A generic JSON webhook, signed so the receiver can tell DynoScaler sent it.

Headers: ``X-DynoScaler-Timestamp`` (Unix seconds), ``X-DynoScaler-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<raw body>"`` keyed with the channel's
signing secret (signing the timestamp too means an old message cannot be replayed with a
fresh one), ``X-DynoScaler-Delivery`` (the same id on every retry of one message, for
de-duplication) and ``X-DynoScaler-Event`` (opened, resolved, test, summary).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

from scaling.alerts.transports.base import OutgoingMessage, post


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookTransport:
    system = "webhook"

    def __init__(self, *, url: str, secret: str, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock

    def send(self, message: OutgoingMessage) -> str:
        body = json.dumps({**message.payload, "delivery_id": message.delivery_id}, sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "DynoScaler-Alerts",
            "X-DynoScaler-Event": message.event,
            "X-DynoScaler-Delivery": str(message.delivery_id),
            "X-DynoScaler-Timestamp": timestamp,
            "X-DynoScaler-Signature": signature(self.secret, timestamp, body),
        }
        return post(self.system, self.url, body=body, headers=headers, timeout=self.timeout)
