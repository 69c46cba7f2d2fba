"""Each Heroku account's API pool, shared by all its pairs.

Heroku gives an account a pool of about 4,500 calls, refilled about 75 a minute; an empty
pool answers 429. DynoScaler backs the whole account off after a 429, and also when the
pool falls below a reserve it leaves for the team's own tools (deploys, CI). This module is
the one place that rule lives: whether an account may call now, and what a cycle's calls
taught us about it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from scaling.adapters.errors import AdapterError
from scaling.models import HerokuAccount

REFILL_PER_SECOND = 75 / 60  # Heroku refills an account's pool by about 75 calls a minute


def backoff_seconds(error: AdapterError | None, remaining: int | None, *, reserve: int, default: float) -> float:
    """How long an account's pairs should make no call after Heroku answered: after a 429
    (as long as Heroku asked, or ``default``), or while the pool is below the reserve (as
    long as it takes to refill to it). Only Heroku's own answers count: a cycle that made
    no call has neither an error from Heroku nor a pool reading, so it cannot extend this."""
    if error is not None and error.system == "Heroku" and error.rate_limited:
        return error.retry_after or default
    if remaining is not None and remaining < reserve:
        return (reserve - remaining) / REFILL_PER_SECOND
    return 0.0


def account_wait_reason(account: HerokuAccount | None, now: datetime) -> str | None:
    """Why the account's pairs must not call Heroku now, if they must not."""
    until = account.backing_off_until(now) if account is not None else None
    if until is None:
        return None
    wait = int((until - now).total_seconds()) + 1
    return f"the account's Heroku API pool is empty or below its reserve: backing off for {wait} s more"


def account_after_calls(account_id: int | None, *, error: AdapterError | None, remaining: int | None, now: datetime) -> None:
    """Record what a cycle's Heroku calls said about the pool. Call inside the cycle's transaction."""
    seconds = backoff_seconds(
        error, remaining, reserve=settings.HEROKU_RATE_LIMIT_RESERVE, default=settings.HEROKU_RATE_LIMIT_BACKOFF_SECONDS
    )
    if seconds and account_id is not None:
        HerokuAccount.objects.filter(id=account_id).update(rate_limited_until=now + timedelta(seconds=seconds))
