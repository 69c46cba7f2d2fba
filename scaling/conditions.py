"""The contract between the scaling cycle and the alert detectors: ``ScalingPair.conditions``.

``{code: {"since": ISO-8601 UTC, "detail": "one line"}}``, one entry per condition the
cycle sees now. The cycle keeps ``since`` while a condition persists and drops the code
when it clears; ``conditions_next`` does exactly that, so a cycle only says what it saw.
Pure: no Django, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

PERMANENT_ERROR = "permanent_error"
WAIT_OVER_TARGET_AT_MAX = "wait_over_target_at_max"
NOT_HELPING = "not_helping"
PERSON_CHANGE = "person_change"
DYNOS_NOT_UP = "dynos_not_up"
# Cycles ending in a passing error (SQS or Heroku unreachable, a timeout, a bug in DynoScaler):
# each alone is retried, but while they go on nothing is scaled. ``since``: the first of them.
FAILING = "failing"
CODES = frozenset({PERMANENT_ERROR, WAIT_OVER_TARGET_AT_MAX, NOT_HELPING, PERSON_CHANGE, DYNOS_NOT_UP, FAILING})

PERSON_OUTSIDE = "a person outside DynoScaler"  # ScalingPair.paused_by for a formation changed by hand


def person_outside(by: str, *, max_length: int) -> str:
    """``ScalingPair.paused_by`` after a formation changed by hand: who, when Heroku named them."""
    return f"{by} (outside DynoScaler)"[:max_length] if by else PERSON_OUTSIDE


def is_person_outside(paused_by: str) -> bool:
    """Whether ``paused_by`` is the hold after a hand change (``person_outside``), not a pause
    asked for in the admin."""
    return paused_by == PERSON_OUTSIDE or paused_by.endswith(" (outside DynoScaler)")


def conditions_next(
    previous: Mapping[str, Any], seen: Mapping[str, str], *, now: datetime, unknown: Iterable[str] = ()
) -> dict[str, dict[str, str]]:
    """The pair's conditions after a cycle.

    ``seen`` maps each code the cycle saw to a one-line detail: present, keeping its
    ``since`` if it was already. Codes in ``unknown`` keep their previous entry (the cycle
    could not tell, e.g. a transient error hid whether the permanent one is still there).
    Every other code clears.
    """
    unknown = set(unknown)
    result: dict[str, dict[str, str]] = {}
    for code, entry in previous.items():
        if code in unknown and code not in seen:
            result[code] = dict(entry)
    stamp = now.astimezone(dt_timezone.utc).isoformat()
    for code, detail in seen.items():
        if code not in CODES:
            raise ValueError(f"unknown condition code {code!r}; expected one of {sorted(CODES)}")
        before = previous.get(code)
        detail = " ".join(detail.split())
        since = before.get("since") if isinstance(before, Mapping) and before.get("since") else stamp
        if code == PERMANENT_ERROR and isinstance(before, Mapping) and _cause(str(before.get("detail") or "")) != _cause(detail):
            since = stamp  # another cause (a 401 fixed, a 404 now): a new problem, told as such
        result[code] = {"since": str(since), "detail": detail}
    return result


def _cause(detail: str) -> str:
    """What a permanent error is, without the words that vary with the call that met it
    ("… while reading the formation of …", "… while listing the dynos of …") nor the
    account named after it (older releases did not name it: the same error, not a new one)."""
    return _ACCOUNT.sub("", detail.split(" while ", 1)[0]).strip()


_ACCOUNT = re.compile(r" \((?:Heroku|AWS) account “[^”]*”\)$")
