"""One transport per channel kind behind one interface (``base.Transport``); each turns its
failures into an ``AdapterError`` that says whether trying again could help."""

from __future__ import annotations

from django.conf import settings

from scaling.adapters.errors import AdapterError
from scaling.fields import SecretUnreadable
from scaling.models.alerts import AlertChannel
from scaling.alerts.transports.base import OutgoingMessage, Transport
from scaling.alerts.transports.email import EmailTransport
from scaling.alerts.transports.slack import SlackTransport
from scaling.alerts.transports.webhook import WebhookTransport

__all__ = ["OutgoingMessage", "Transport", "transport_for"]


def transport_for(channel: AlertChannel) -> Transport:
    timeout = float(settings.ALERT_TIMEOUT_SECONDS)
    try:
        if channel.kind == AlertChannel.Kind.SLACK:
            return SlackTransport(url=channel.url, timeout=timeout)
        if channel.kind == AlertChannel.Kind.WEBHOOK:
            return WebhookTransport(url=channel.url, secret=channel.signing_secret, timeout=timeout)
    except SecretUnreadable as exc:
        return Unreadable(str(exc))
    return EmailTransport(recipients=channel.recipient_list(), timeout=timeout)


class Unreadable:
    """A channel whose URL or signing secret cannot be decrypted (the encryption key was
    lost): each attempt fails with what to do and is tried again, so the messages wait,
    recorded, until someone enters the secret again."""

    system = "DynoScaler"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, message: OutgoingMessage) -> str:
        raise AdapterError(self.system, self.reason, permanent=False)
