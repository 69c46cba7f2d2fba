"""Slack incoming webhooks, and the services that accept the same body (Mattermost, Rocket.Chat,
Discord's /slack endpoint): a JSON object whose ``text`` is the message in Slack's markup."""

from __future__ import annotations

import json

from scaling.alerts.transports.base import OutgoingMessage, post


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions); shown as typed they must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackTransport:
    system = "Slack"

    def __init__(self, *, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, message: OutgoingMessage) -> str:
        body = json.dumps({"text": f"*{_escape(message.title)}*\n{_escape(message.text)}"}).encode()
        return post(self.system, self.url, body=body, headers={"Content-Type": "application/json"}, timeout=self.timeout)
