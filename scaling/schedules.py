"""Time-of-day schedules: windows whose min/max replace a pair's while they apply.

Pure: no Django, no clock. The time is always given (seconds since the epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
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
    """Two windows that cover a common minute, if any. In one time zone, compared as they
    are; in two, in UTC at every pair of the offsets the zones take over a year (DST moves
    them), so two windows that meet only in summer are refused too: which one applied would
    otherwise depend on their order."""
    for i, a in enumerate(windows):
        for b in windows[i + 1:]:
            if a.timezone == b.timezone:
                pairs = [(a.minutes(), b.minutes())]
            else:
                pairs = [(_shifted(a.minutes(), -oa), _shifted(b.minutes(), -ob))
                         for oa in _offsets(a.timezone) for ob in _offsets(b.timezone)]
            if any(x1 < y2 and x2 < y1 for sa, sb in pairs for x1, y1 in sa for x2, y2 in sb):
                return a, b
    return None


_WEEK = 7 * 1440


def _offsets(zone: str) -> set[int]:
    """The UTC offsets (minutes) the zone takes over two years, its DST included."""
    tz = ZoneInfo(zone)
    found = set()
    for day in range(0, 731, 7):
        offset = datetime.fromordinal(date(2026, 1, 1).toordinal() + day).replace(tzinfo=tz).utcoffset()
        found.add(int(offset.total_seconds() // 60) if offset is not None else 0)
    return found


def _shifted(spans: list[tuple[int, int]], by: int) -> list[tuple[int, int]]:
    """Week-minute spans moved by ``by`` minutes, wrapped around the week."""
    out = []
    for a, b in spans:
        a, b = a + by, b + by
        shift = -(a // _WEEK) * _WEEK
        a, b = a + shift, b + shift
        if b <= _WEEK:
            out.append((a, b))
        else:
            out += [(a, _WEEK), (0, b - _WEEK)]
    return out
