"""Time-of-day schedules: pure."""

from __future__ import annotations

from datetime import time

from scaling.policies import Bounds
from scaling.schedules import ScheduleWindow, effective_bounds, first_overlap
from scaling.simulator import TRACE_EPOCH

MONDAY_9AM = TRACE_EPOCH + 9 * 3600
WEEKDAYS = ScheduleWindow(weekdays=frozenset(range(5)), start=time(8), end=time(18), min_dynos=3, max_dynos=20)


def test_a_schedule_replaces_min_and_max_while_it_applies() -> None:
    assert effective_bounds(Bounds(0, 5), [WEEKDAYS], MONDAY_9AM) == (Bounds(3, 20), WEEKDAYS)
    assert effective_bounds(Bounds(0, 5), [WEEKDAYS], MONDAY_9AM + 10 * 3600) == (Bounds(0, 5), None)
    saturday = MONDAY_9AM + 5 * 86400
    assert effective_bounds(Bounds(0, 5), [WEEKDAYS], saturday)[1] is None


def test_a_schedule_can_run_past_midnight_and_in_its_own_time_zone() -> None:
    night = ScheduleWindow(weekdays=frozenset({0}), start=time(22), end=time(2), min_dynos=1, max_dynos=2,
                           timezone="America/New_York")
    # Monday 23:00 in New York is Tuesday 04:00 UTC.
    assert night.applies_at(TRACE_EPOCH + 24 * 3600 + 4 * 3600)
    assert not night.applies_at(TRACE_EPOCH + 23 * 3600)


def test_a_schedule_ending_at_its_start_lasts_a_whole_day_from_it() -> None:
    # What the end field's help says: Monday 08:00 to Tuesday 08:00.
    day = ScheduleWindow(weekdays=frozenset({0}), start=time(8), end=time(8), min_dynos=2, max_dynos=4)
    assert not day.applies_at(TRACE_EPOCH + 7 * 3600)
    assert day.applies_at(TRACE_EPOCH + 8 * 3600) and day.applies_at(TRACE_EPOCH + 31 * 3600)
    assert not day.applies_at(TRACE_EPOCH + 32 * 3600)


def test_overlapping_schedules_are_found() -> None:
    evening = ScheduleWindow(weekdays=frozenset({4}), start=time(17), end=time(23), min_dynos=0, max_dynos=2)
    late = ScheduleWindow(weekdays=frozenset({5}), start=time(0), end=time(6), min_dynos=0, max_dynos=2)
    assert first_overlap([WEEKDAYS, evening]) == (WEEKDAYS, evening)
    assert first_overlap([WEEKDAYS, late]) is None


def test_windows_in_two_time_zones_that_meet_are_found() -> None:
    # Weekdays 08:00–18:00 in Berlin and 16:00–20:00 UTC meet at 16:00–17:00 UTC in winter
    # (16:00–16:00 in summer: they touch, but share no minute in winter either way).
    berlin = ScheduleWindow(weekdays=frozenset(range(5)), start=time(8), end=time(18), min_dynos=3, max_dynos=4,
                            timezone="Europe/Berlin")
    utc_evening = ScheduleWindow(weekdays=frozenset(range(5)), start=time(16), end=time(20), min_dynos=2, max_dynos=2)
    assert first_overlap([berlin, utc_evening]) == (berlin, utc_evening)
    # 17:00–20:00 UTC is after Berlin's 18:00 in winter (17:00 UTC) and in summer (16:00 UTC).
    later = ScheduleWindow(weekdays=frozenset(range(5)), start=time(17), end=time(20), min_dynos=2, max_dynos=2)
    assert first_overlap([berlin, later]) is None
    # Only in summer: New York 12:00–13:00 is 17:00–18:00 UTC in winter, 16:00–17:00 UTC in summer.
    summer = ScheduleWindow(weekdays=frozenset({0}), start=time(16), end=time(16, 30), min_dynos=1, max_dynos=1)
    new_york = ScheduleWindow(weekdays=frozenset({0}), start=time(12), end=time(13), min_dynos=1, max_dynos=1,
                              timezone="America/New_York")
    assert first_overlap([summer, new_york]) == (summer, new_york)
    # Across the week's end: Sunday 23:00–Monday 01:00 in Tokyo is Sunday 14:00–16:00 UTC.
    tokyo = ScheduleWindow(weekdays=frozenset({6}), start=time(23), end=time(1), min_dynos=1, max_dynos=1,
                           timezone="Asia/Tokyo")
    sunday = ScheduleWindow(weekdays=frozenset({6}), start=time(15), end=time(15, 30), min_dynos=1, max_dynos=1)
    assert first_overlap([tokyo, sunday]) == (tokyo, sunday)
    assert first_overlap([tokyo, WEEKDAYS]) is None
