"""What every transport takes and how it fails: one message in, a short receipt out, or an
``AdapterError`` that says whether sending it again unchanged could help."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from scaling.adapters.errors import AdapterError


@dataclass(frozen=True)
class OutgoingMessage:
    delivery_id: int
    event: str
    title: str
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)


class Transport(Protocol):
    def send(self, message: OutgoingMessage) -> str:
        """Deliver the message; return what the other side said (e.g. "HTTP 200").
        Raises AdapterError."""
        ...


# Answers worth trying again: the receiver was busy, rate-limited us, or broke for a while.
RETRYABLE_STATUS = frozenset({408, 425, 429})


def post(system: str, url: str, *, body: bytes, headers: Mapping[str, str], timeout: float) -> str:
    """POST ``body``; errors name the host, never the URL's path or query (they carry the key)."""
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    try:
        response = requests.post(url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise AdapterError(system, f"{host} did not answer within {timeout:g} s", permanent=False) from None
    except requests.ConnectionError:
        raise AdapterError(system, f"could not connect to {host}", permanent=False) from None
    except requests.RequestException as exc:
        raise AdapterError(system, f"request to {host} failed ({type(exc).__name__})", permanent=False) from None
    if 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    said = " ".join(response.text.split())[:200]
    retry_after = response.headers.get("Retry-After", "")
    raise AdapterError(
        system,
        f"{host} answered HTTP {response.status_code}" + (f": {said}" if said else ""),
        permanent=response.status_code < 500 and response.status_code not in RETRYABLE_STATUS,
        status=response.status_code,
        retry_after=float(retry_after) if retry_after.isdigit() else None,
    )
