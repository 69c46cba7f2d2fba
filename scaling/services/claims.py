"""Claiming a pair's cycle: one conditional UPDATE decides which worker (or which beat's
tick) runs it, and the claim expires so a killed worker cannot stall the pair."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q

from scaling.models import ScalingPair

# A claim outlives the task's hard time limit by this much, no more: a killed worker
# stalls its pair no longer.
CLAIM_MARGIN_SECONDS = 5


def pair_claim(*, pair: ScalingPair, now: datetime, respect_interval: bool) -> uuid.UUID | None:
    """Take this pair's cycle for ourselves, or return None if another holds it.

    One conditional UPDATE decides: of two workers (or two beats' tasks) only one sees a
    row updated. The claim expires just after the task's hard time limit so a killed worker
    cannot stall the pair. With ``respect_interval`` a cycle that comes less than half an
    interval after the last one (a second beat's duplicate) is refused too.
    """
    claim = uuid.uuid4()
    free = ScalingPair.objects.filter(id=pair.pk).filter(
        Q(cycle_claimed_until__isnull=True) | Q(cycle_claimed_until__lt=now)
    )
    if respect_interval:
        too_soon = now - timedelta(seconds=pair.interval_seconds / 2)
        free = free.filter(Q(last_cycle_at__isnull=True) | Q(last_cycle_at__lte=too_soon))
    updated = free.update(
        cycle_claim=claim,
        cycle_claimed_until=now + timedelta(seconds=settings.CYCLE_TIME_LIMIT_SECONDS + CLAIM_MARGIN_SECONDS),
    )
    return claim if updated == 1 else None


def claim_release(pair: ScalingPair, claim: uuid.UUID, **also: Any) -> None:
    ScalingPair.objects.filter(id=pair.pk, cycle_claim=claim).update(cycle_claim=None, cycle_claimed_until=None, **also)


@contextmanager
def claim_released_if_interrupted(pair: ScalingPair, claim: uuid.UUID) -> Iterator[None]:
    """The task's time limit or a shutdown interrupts the cycle: free the pair, let it go."""
    try:
        yield
    except BaseException:
        claim_release(pair, claim)
        raise
