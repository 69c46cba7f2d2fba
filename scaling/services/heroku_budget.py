"""Each Heroku account's API pool, shared by all its pairs.

Heroku gives an account a pool of about 4,500 calls, refilled about 75 a minute; an empty
pool answers 429. DynoScaler spends it in order: writes first, then the reads a write
needs, then reconciling reads, and never below a reserve it leaves for the team's own
tools (deploys, CI). After a 429, or when the pool falls below the reserve, the whole
account backs off. This module is the one place those rules live.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from django.conf import settings

from scaling.adapters.errors import AdapterError
from scaling.models import HerokuAccount

POOL = 4500
REFILL_PER_SECOND = 75 / 60  # Heroku refills an account's pool by about 75 calls a minute


class Call(enum.Enum):
    """Why a cycle wants to call Heroku, in the order the pool is spent."""

    WRITE = "a formation change"
    READ_FOR_WRITE = "the read a change needs"
    RECONCILE = "a reconciling read"


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


def pool_estimate(account: HerokuAccount, now: datetime) -> float | None:
    """The pool now: what Heroku last said, refilled since (None until it has said)."""
    if account.pool_remaining is None or account.pool_seen_at is None:
        return None
    refilled = max(0.0, (now - account.pool_seen_at).total_seconds()) * REFILL_PER_SECOND
    return min(float(POOL), account.pool_remaining + refilled)


def why_not_call(account: HerokuAccount | None, purpose: Call, now: datetime) -> str | None:
    """Why the account must not spend a call on ``purpose`` now, if it must not."""
    if account is None:
        return None
    until = account.backing_off_until(now)
    if until is not None:
        wait = int((until - now).total_seconds()) + 1
        return f"the account's Heroku API pool is empty or below its reserve: backing off for {wait} s more"
    if purpose is Call.RECONCILE:
        estimate = pool_estimate(account, now)
        floor = settings.HEROKU_RATE_LIMIT_RESERVE + settings.HEROKU_RECONCILE_HEADROOM
        if estimate is not None and estimate < floor:
            return f"the account's Heroku API pool (≈ {estimate:,.0f}) is kept for formation changes"
    return None


def account_after_calls(account_id: int | None, *, error: AdapterError | None, remaining: int | None, now: datetime) -> None:
    """Record what a cycle's Heroku calls said about the pool. Call inside the cycle's transaction."""
    if account_id is None:
        return
    fields: dict[str, object] = {}
    if remaining is not None:
        fields.update(pool_remaining=remaining, pool_seen_at=now)
    seconds = backoff_seconds(
        error, remaining, reserve=settings.HEROKU_RATE_LIMIT_RESERVE, default=settings.HEROKU_RATE_LIMIT_BACKOFF_SECONDS
    )
    if seconds:
        fields["rate_limited_until"] = now + timedelta(seconds=seconds)
    if fields:
        HerokuAccount.objects.filter(id=account_id).update(**fields)
