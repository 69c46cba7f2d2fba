"""Field validators: what an operator may type for a pair, its queues and its schedules.

Kept apart from the models so that reading a table's shape does not load boto3, and so the
original variables' reader (legacy_env) checks values with exactly the admin's rules.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
import botocore
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, validate_email

HEROKU_MAX_DYNOS_PER_APP = 100

app_name_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$",
    "A Heroku app name is 3–30 characters: lowercase letters, digits and dashes, "
    "starting with a letter and not ending with a dash.",
)
process_type_validator = RegexValidator(
    r"^[A-Za-z0-9_-]{1,64}$",
    "A process type is the Procfile name, e.g. “worker”: letters, digits, “_” and “-”.",
)
_region_shape = RegexValidator(
    r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$",
    "An AWS region looks like “us-east-1” or “eu-west-2”.",
)


@lru_cache(maxsize=1)
def known_sqs_regions() -> frozenset[str]:
    """The regions the installed botocore knows SQS in (read from its bundled data, no network)."""
    session = boto3.session.Session()
    return frozenset(r for p in session.get_available_partitions() for r in session.get_available_regions("sqs", p))


def region_validator(value: str) -> None:
    _region_shape(value)
    if value not in known_sqs_regions():
        raise ValidationError(
            f"“{value}” is not an AWS region with SQS that botocore {botocore.__version__} knows. "
            "Check the spelling; if AWS opened it recently, upgrade boto3."
        )
_QUEUE_NAME = r"[A-Za-z0-9_-]{1,75}(\.fifo)?|[A-Za-z0-9_-]{1,80}"
queue_validator = RegexValidator(
    rf"^(?:{_QUEUE_NAME}|https?://[^/\s]+/\d{{12}}/(?:{_QUEUE_NAME}))$",
    "Give the queue's name (letters, digits, “-”, “_”, up to 80, optionally ending in "
    "“.fifo”) or its full URL, https://sqs.REGION.amazonaws.com/ACCOUNT_ID/NAME.",
)

# The region in an AWS queue URL's host: sqs.REGION.amazonaws.com (also -fips, VPC endpoints
# and China's .com.cn), the older REGION.queue.amazonaws.com, and queue.amazonaws.com for
# us-east-1. A URL of another host (a local endpoint) says nothing of its region.
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_URL_REGION = re.compile(
    rf"(?:^|\.)sqs(?:-fips)?\.(?P<a>{_REGION})\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$"
    rf"|^(?P<b>{_REGION})\.queue\.amazonaws\.com(?:\.cn)?$"
)


def queue_url_region(queue: str) -> str | None:
    """The region an AWS queue URL names, or None for a queue name or a non-AWS endpoint."""
    if not queue.startswith(("https://", "http://")):
        return None
    host = (urlsplit(queue).hostname or "").lower()
    if host == "queue.amazonaws.com":
        return "us-east-1"
    found = _URL_REGION.search(host)
    return (found.group("a") or found.group("b")) if found else None


def queue_region_problem(queue: str, region: str) -> str | None:
    """Why a queue given by URL cannot be read in `region`, or None when it can."""
    named = queue_url_region(queue)
    if named is None or named == region:
        return None
    return f"the queue's URL is in {named}, not {region}: set the region to {named}"


weekdays_validator = RegexValidator(
    r"^[0-6](,[0-6])*$", "Weekdays are numbers 0 (Monday) to 6 (Sunday), separated by commas, e.g. 0,1,2,3,4."
)


def timezone_validator(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown time zone {value!r}; use a name such as UTC or Europe/Berlin.") from None


def recipients_validator(value: str) -> None:
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    bad = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        raise ValidationError(f"Not an email address: {', '.join(bad)}. Separate addresses with commas.")
