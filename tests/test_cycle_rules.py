"""The cycle's own rules, where no I/O is involved: table tests on plain values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scaling.adapters.errors import AdapterError
from scaling.services.cycle import defer_to_people
from scaling.services.formation_writes import within_refusal
from scaling.services.heroku_budget import backoff_seconds

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("found, expected, unconfirmed, paused_until, holds, says", [
    (3, 3, None, None, False, ""),  # as DynoScaler left it
    (3, None, None, None, False, ""),  # a first look expects nothing
    (5, 3, None, None, True, "changed outside DynoScaler (expected 3, found 5)"),
    (4, 3, 4, None, False, "the change to 4 asked for earlier was applied"),  # our lost answer, confirmed
    (3, 3, 4, None, False, ""),  # our lost write was not applied after all
    (6, 3, 4, None, True, "changed outside DynoScaler (expected 3, found 6)"),  # neither: a person
    (3, 3, None, NOW + timedelta(minutes=5), True, "paused until 2026-11-26 12:05 UTC"),
    (5, 3, None, NOW + timedelta(minutes=5), True, "paused until"),  # a pause says so first
    (3, 3, None, NOW - timedelta(minutes=5), False, ""),  # an ended pause holds nothing
])
def test_people_come_first_and_our_own_lost_writes_are_not_theirs(
    found: int, expected: int | None, unconfirmed: int | None, paused_until: datetime | None, holds: bool, says: str
) -> None:
    check = defer_to_people(found=found, expected=expected, unconfirmed=unconfirmed, paused_until=paused_until,
                            hold_seconds=900, now=NOW)
    assert check.holds is holds
    assert says in check.note
    if "outside DynoScaler" in says:
        assert check.hold_until == NOW + timedelta(seconds=900)


@pytest.mark.parametrize("refused, current, desired, ask, keep", [
    (None, 2, 8, 8, False),  # nothing refused: ask what the policy wants
    (14, 2, 10, 10, True),  # below the refusal: ask it, and remember the refusal
    (14, 2, 20, 8, True),  # at or beyond it: halfway between what runs and what was refused
    (14, 8, 20, 11, True),
    (7, 6, 20, None, True),  # nothing left between: hold at the most Heroku accepts
    (14, 6, 6, 6, False),  # the policy wants no more than runs: the refusal is forgotten
    (14, 6, 4, 4, False),
    (2, 5, 2, None, True),  # a refused decrease holds while the policy still wants it
    (2, 5, 3, 3, False),
])
def test_a_refused_quantity_is_never_asked_again_and_the_gap_is_halved(
    refused: int | None, current: int, desired: int, ask: int | None, keep: bool
) -> None:
    assert within_refusal(refused, current=current, desired=desired) == (ask, keep)


HEROKU_429 = AdapterError("Heroku", "rate limit", permanent=False, status=429)


@pytest.mark.parametrize("error, remaining, seconds", [
    (HEROKU_429, None, 60.0),  # a 429: the default back-off
    (AdapterError("Heroku", "rate limit", permanent=False, status=429, retry_after=12), None, 12.0),  # as asked
    (None, 4000, 0.0),  # plenty left
    (None, 40, 48.0),  # 60 below a reserve of 100, refilled at 75 a minute
    (AdapterError("DynoScaler", "backing off", permanent=False), None, 0.0),  # a skipped cycle asked nothing
    (AdapterError("Heroku", "503", permanent=False, status=503), 4000, 0.0),
])
def test_only_herokus_own_answers_set_an_accounts_back_off(
    error: AdapterError | None, remaining: int | None, seconds: float
) -> None:
    assert backoff_seconds(error, remaining, reserve=100, default=60) == pytest.approx(seconds)
