"""What a cycle reads of its pair that changes only when an operator edits it: its queues and
its schedule windows. A worker keeps them in memory, read again when the pair's settings
change (every edit path ends in ``pairs.pair_apply_settings``, which stamps ``updated_at``),
so a cycle loads one row for its pair instead of three queries."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from scaling.models import ScalingPair
from scaling.schedules import ScheduleWindow

KEPT = 5000  # pairs a worker process remembers; the least recently used is dropped first


@dataclass(frozen=True)
class PairInputs:
    queues: tuple[tuple[str, str], ...]  # (queue, region)
    windows: tuple[ScheduleWindow, ...]


_kept: OrderedDict[int, tuple[datetime, PairInputs]] = OrderedDict()
_lock = threading.Lock()


def forget(pair: ScalingPair) -> None:
    """Read the pair's queues and schedules afresh next time (a check of what is there now)."""
    with _lock:
        _kept.pop(pair.pk, None)


def pair_inputs(pair: ScalingPair) -> PairInputs:
    with _lock:
        known = _kept.get(pair.pk)
        if known is not None and known[0] == pair.updated_at:
            _kept.move_to_end(pair.pk)
            return known[1]
    inputs = PairInputs(
        queues=tuple(pair.queues.order_by("id").values_list("queue", "region")),
        windows=tuple(s.as_window() for s in pair.schedules.all()),
    )
    with _lock:
        _kept[pair.pk] = (pair.updated_at, inputs)
        _kept.move_to_end(pair.pk)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return inputs
