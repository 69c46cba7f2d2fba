"""What an alert says, and the scrubbing that keeps every secret out of it.

Every text is scrubbed of every secret DynoScaler knows (the accounts' tokens and keys,
every channel's URL and signing secret, the Elasticsearch and SMTP passwords) before it is
stored or sent, so a secret that slipped into a condition's detail or an error text goes
no further than that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import TextField
from django.db.models.functions import Cast

from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem, ProblemKind
from scaling.fields import SecretUnreadable, decrypt
from scaling.models import AwsAccount, HerokuAccount, ScalingPair

MIN_SECRET_LENGTH = 4  # shorter strings are too common in prose to replace
PREFIX = "[DynoScaler]"


def _stored_secrets(model: Any, field: str) -> list[str]:
    # The raw tokens, decrypted one by one: an unreadable one is skipped, not fatal.
    raw = model.objects.exclude(**{field: ""}).annotate(raw=Cast(field, output_field=TextField())).values_list("raw", flat=True)
    values = []
    for token in raw:
        try:
            values.append(decrypt(token))
        except SecretUnreadable:
            continue
    return values


def url_secrets(url: str) -> list[str]:
    """A webhook URL is a secret, and so are its path and query (Slack's key is in the path),
    which error texts may quote without the host."""
    if not url:
        return []
    parts = urlsplit(url)
    return [url, parts.path if parts.path.strip("/") else "", parts.query]


def known_secrets() -> list[str]:
    secrets: list[str] = [
        *_stored_secrets(HerokuAccount, "api_token"),
        *_stored_secrets(AwsAccount, "secret_access_key"),
        *_stored_secrets(AlertChannel, "signing_secret"),
    ]
    for url in _stored_secrets(AlertChannel, "url"):
        secrets.extend(url_secrets(url))
    secrets.extend(s or "" for s in (settings.ELK_ELASTIC_PASS, settings.EMAIL_HOST_PASSWORD, settings.SECRET_KEY))
    secrets.extend(settings.ENCRYPTION_KEYS)
    # Longest first, so a URL is replaced whole before its path is.
    return sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "****")
    return text


def scrub_tree(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: scrub_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_tree(v, secrets) for v in value]
    return value


@dataclass(frozen=True)
class Content:
    title: str
    text: str
    payload: dict[str, Any]

    def scrubbed(self, secrets: list[str]) -> Content:
        return Content(scrub(self.title, secrets)[:300], scrub(self.text, secrets), scrub_tree(self.payload, secrets))


def at(moment: datetime | None) -> str:
    return f"{moment.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC" if moment else "—"


def duration(start: datetime, end: datetime) -> str:
    minutes = int((end - start).total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def public_link(path: str) -> str | None:
    base = settings.DYNOSCALER_PUBLIC_URL
    return f"{base.rstrip('/')}{path}" if base else None


def problem_link(problem: AlertProblem) -> str | None:
    if problem.pair_id is not None:
        return public_link(f"/admin/scaling/scalingpair/{problem.pair_id}/change/")
    return public_link("/admin/status/")


def _pair_line(pair: ScalingPair | None, pair_name: str) -> str | None:
    if pair is not None:
        return f"{pair.name} — Heroku app {pair.app_name}, process type {pair.process_type}"
    return f"{pair_name} (deleted)" if pair_name else None


def problem_content(problem: AlertProblem, event: str) -> Content:
    """The message for a problem opening or resolving."""
    kind_label = ProblemKind(problem.kind).label
    pair = problem.pair
    if pair is not None:
        where = f"{pair.app_name}/{pair.process_type}"
        # A pair named after its app and process (as the env pair is) is not named twice.
        subject = f"{pair.name}: {kind_label}" if where in pair.name else f"{pair.name} ({where}): {kind_label}"
    else:  # a deleted pair's problem keeps the name it had
        subject = f"{problem.pair_name}: {kind_label}" if problem.pair_name else kind_label
    link = problem_link(problem)
    pair_line = _pair_line(pair, problem.pair_name)
    if event == AlertDelivery.Event.RESOLVED:
        assert problem.resolved_at is not None
        title = f"{PREFIX} RESOLVED {subject}"
        lines = [f"Cleared: {at(problem.resolved_at)}, after {duration(problem.since, problem.resolved_at)}."
                 + (f" {problem.resolution}" if problem.resolution else ""),
                 f"Was: {problem.summary}"]
    else:
        title = f"{PREFIX} PROBLEM {subject}"
        lines = [f"What: {problem.summary}"]
        if pair_line:
            lines.append(f"Pair: {pair_line}")
        lines += [f"Since: {at(problem.since)}", f"DynoScaler: {problem.action}"]
    if event == AlertDelivery.Event.RESOLVED and pair_line:
        lines.append(f"Pair: {pair_line}")
    if link:
        lines.append(f"Open: {link}")
    text = "\n".join(lines)
    payload = {
        "event": event,
        "title": title,
        "text": text,
        "problem": {
            "id": problem.pk,
            "key": problem.key,
            "kind": problem.kind,
            "summary": problem.summary,
            "action": problem.action,
            "since": problem.since.isoformat(),
            "opened_at": problem.opened_at.isoformat(),
            "resolved_at": problem.resolved_at.isoformat() if problem.resolved_at else None,
            "resolution": problem.resolution or None,
            "pair": {"id": pair.pk, "name": pair.name, "app": pair.app_name, "process_type": pair.process_type}
            if pair else None,
            "link": link,
        },
    }
    return Content(title, text, payload)


def test_content(channel: AlertChannel, *, user: str, now: datetime) -> Content:
    title = f"{PREFIX} Test alert for “{channel.name}”"
    text = (f"Sent by {user} from DynoScaler at {at(now)}. If you can read this, the channel works: problems, and "
            "a message when each clears, will arrive here.")
    link = public_link("/admin/status/")
    if link:
        text += f"\nOpen: {link}"
    return Content(title, text, {"event": AlertDelivery.Event.TEST, "title": title, "text": text, "problem": None})


SUMMARY_LINES = 30


def summary_content(channel: AlertChannel, held: list[AlertDelivery], still_open: list[AlertProblem]) -> Content:
    """One message standing for the alerts held back by the channel's hourly limit."""
    title = f"{PREFIX} {len(held)} alert(s) held back by this channel's limit of {channel.max_per_hour} an hour"
    lines = [f"• {at(d.created_at)} {d.title.removeprefix(PREFIX).strip()}" for d in held[:SUMMARY_LINES]]
    if len(held) > SUMMARY_LINES:
        lines.append(f"… and {len(held) - SUMMARY_LINES} more (see Alert deliveries in the admin).")
    lines.append("Still open: " + ("; ".join(f"{p.pair_name or 'DynoScaler'}: {ProblemKind(p.kind).label}"
                                              for p in still_open) or "none of them."))
    link = public_link("/admin/scaling/alertproblem/?open=yes")
    if link:
        lines.append(f"Open problems: {link}")
    text = "\n".join(lines)
    payload = {
        "event": AlertDelivery.Event.SUMMARY,
        "title": title,
        "text": text,
        "problem": None,
        "held_back": [{"event": d.event, "title": d.title, "created_at": d.created_at.isoformat(),
                       "problem_key": d.problem.key if d.problem else None} for d in held],
        "still_open": [p.key for p in still_open],
    }
    return Content(title, text, payload)
