"""Time-of-day schedules: windows whose min/max replace a pair's while they apply.

Pure: no Django, no clock. The time is always given (seconds since the epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scaling.policy_types import Bounds

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ScheduleWindow:
    """While it applies, its min/max replace the pair's (e.g. weekdays 08:00–18:00 min 3)."""

    weekdays: frozenset[int]  # 0 = Monday
    start: time
    end: time  # exclusive; an end at or before the start runs past midnight
    min_dynos: int
    max_dynos: int
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.weekdays or not all(0 <= d <= 6 for d in self.weekdays):
            raise ValueError("weekdays must name at least one day, 0 (Monday) to 6 (Sunday)")
        Bounds(self.min_dynos, self.max_dynos)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None

    def minutes(self) -> list[tuple[int, int]]:
        """The week-minute ranges [from, to) it covers, Monday 00:00 = 0."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        length = end - start if end > start else end + 1440 - start
        week = 7 * 1440
        spans = []
        for day in sorted(self.weekdays):
            a = day * 1440 + start
            b = a + length
            if b <= week:
                spans.append((a, b))
            else:
                spans += [(a, week), (0, b - week)]
        return spans

    def applies_at(self, at: float) -> bool:
        local = datetime.fromtimestamp(at, tz=ZoneInfo(self.timezone))
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in self.minutes())

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        return f"{days} {self.start:%H:%M}–{self.end:%H:%M} {self.timezone}"


def effective_bounds(bounds: Bounds, windows: Sequence[ScheduleWindow], at: float) -> tuple[Bounds, ScheduleWindow | None]:
    for window in windows:
        if window.applies_at(at):
            return Bounds(window.min_dynos, window.max_dynos), window
    return bounds, None


def first_overlap(windows: Sequence[ScheduleWindow]) -> tuple[ScheduleWindow, ScheduleWindow] | None:
    """Two windows in the same time zone that cover a common minute, if any."""
    for i, a in enumerate(windows):
        for b in windows[i + 1:]:
            if a.timezone != b.timezone:
                continue  # compared in their own zones they may drift with DST; checked live
            if any(x1 < y2 and x2 < y1 for x1, y1 in a.minutes() for x2, y2 in b.minutes()):
                return a, b
    return None
