"""One transport per channel kind behind one interface (``base.Transport``); each turns its
failures into an ``AdapterError`` that says whether trying again could help."""

from __future__ import annotations

from django.conf import settings

from scaling.models.alerts import AlertChannel
from scaling.alerts.transports.base import OutgoingMessage, Transport
from scaling.alerts.transports.email import EmailTransport
from scaling.alerts.transports.slack import SlackTransport
from scaling.alerts.transports.webhook import WebhookTransport

__all__ = ["OutgoingMessage", "Transport", "transport_for"]


def transport_for(channel: AlertChannel) -> Transport:
    timeout = float(settings.ALERT_TIMEOUT_SECONDS)
    if channel.kind == AlertChannel.Kind.SLACK:
        return SlackTransport(url=channel.url, timeout=timeout)
    if channel.kind == AlertChannel.Kind.WEBHOOK:
        return WebhookTransport(url=channel.url, secret=channel.signing_secret, timeout=timeout)
    return EmailTransport(recipients=channel.recipient_list(), timeout=timeout)
