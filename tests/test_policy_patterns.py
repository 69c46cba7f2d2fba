"""Recurring bursts: found in the pair's own history, pre-warmed for only once they recurred twice."""

from __future__ import annotations

from typing import Any

import pytest

from scaling.patterns import Bursts, plan
from scaling.policies import Bounds, TargetWaitPolicy
from scaling.simulator import TRACE_EPOCH, World, simulate

MONDAY = TRACE_EPOCH  # Monday 00:00 UTC
HOUR, DAY = 3600.0, 86400.0


def bursts_at(times: list[float], work: float = 20_000) -> Bursts:
    """Bursts seen at these times (one look of ``work`` messages each, then calm)."""
    b = Bursts({})
    for at in times:
        b.observe(at - 15, 15, 1.0, level=1.0, visible=0, threshold=600, slack=75)  # a calm look before
        b.observe(at, 15, 1 + work / 15, level=1.0, visible=int(work), threshold=600, slack=75)
        for k in (1, 2, 3):
            b.observe(at + 15 * k, 15, 1.0, level=1.0, visible=0, threshold=600, slack=75)
    return b


def test_a_burst_seen_once_or_twice_is_no_pattern() -> None:
    assert bursts_at([MONDAY + HOUR]).find() == []
    assert bursts_at([MONDAY + HOUR, MONDAY + 1.5 * HOUR]).find() == []


def test_three_bursts_at_one_spacing_make_a_pattern_due_at_the_next() -> None:
    found = bursts_at([MONDAY + 600 + k * 1800 for k in range(3)]).find()
    assert [p.kind for p in found] == ["every 30 min"]
    assert found[0].seen == 3 and found[0].next == pytest.approx(MONDAY + 600 + 3 * 1800)
    assert found[0].work_rate == pytest.approx(20_000 / 75, rel=0.01)  # the whole dump within the target's slack


def test_a_stray_burst_between_a_crons_bursts_does_not_hide_the_cron() -> None:
    times = [MONDAY + 600 + k * 1800 for k in range(3)] + [MONDAY + 600 + 2 * 1800 + 700]
    assert "every 30 min" in [p.kind for p in bursts_at(times).find()]


def test_an_hourly_burst_at_a_minute_and_a_daily_one_at_a_time_are_named_so() -> None:
    hourly = bursts_at([MONDAY + 15 * 60 + k * HOUR for k in range(4)]).find()
    assert hourly[0].kind == "hourly at :15" and hourly[0].seen == 4
    daily = bursts_at([MONDAY + 2 * HOUR + k * DAY for k in range(3)]).find()
    assert daily[0].kind == "daily at 02:00 UTC"


def test_a_weekday_pattern_skips_the_weekend() -> None:
    # Wednesday, Thursday, Friday and Monday at 09:00; nothing on Saturday or Sunday.
    times = [MONDAY + 9 * HOUR + d * DAY for d in (2, 3, 4, 7)]
    found = bursts_at(times).find()
    assert found[0].kind == "weekdays at 09:00 UTC"
    assert found[0].next == pytest.approx(MONDAY + 9 * HOUR + 8 * DAY)  # Tuesday


def test_random_bursts_make_no_pattern() -> None:
    assert bursts_at([MONDAY + t for t in (600, 2900, 7100, 8600, 13000)]).find() == []


def test_a_step_up_in_the_usual_level_is_not_a_burst() -> None:
    b = Bursts({})
    for k in range(80):  # 40/s from the start, for twenty minutes
        b.observe(MONDAY + 15 * k, 15, 40.0, level=40.0 if k > 4 else 0.0, visible=2_000, threshold=600, slack=75)
    assert b.onsets == [] and b.usual == pytest.approx(40.0)


def test_the_plan_warms_up_a_lead_ahead_and_releases_when_the_burst_does_not_come() -> None:
    found = bursts_at([MONDAY + 600 + k * 1800 for k in range(3)]).find()
    due = MONDAY + 600 + 3 * 1800
    latest = MONDAY + 600 + 2 * 1800
    assert plan(found, due - 200, lead=150, latest_burst=latest) is None
    assert plan(found, due - 150, lead=150, latest_burst=latest) is found[0]
    assert plan(found, due + 60, lead=150, latest_burst=latest) is found[0]  # late a little: still ready
    assert plan(found, due + found[0].tolerance + 1, lead=150, latest_burst=latest) is None  # it did not come: release
    assert plan(found, due - 30, lead=150, latest_burst=due - 60) is None  # it came early: the reactive rule has it


# --- through the policy, in the simulator ------------------------------------------------

WORLD = World(dyno_rate=10, dyno_concurrency=1, boot_seconds=45, lag_seconds=0, cloudwatch=True)
SETTINGS = {"target_wait_seconds": 120, "dyno_rate": 10, "interval_seconds": 15, "lag_seconds": 0}


def cron(dumps: int, every: int = 1800, size: int = 20_000, length: int | None = None) -> list[float]:
    trace = [0.0] * (length or 600 + every * dumps + 900)
    for k in range(dumps):
        trace[600 + k * every] = size
    return trace


def formation_at(result: Any, second: int) -> int:
    return max((s for s in result.samples if s.second <= second), key=lambda s: s.second).formation


def test_a_cron_is_prewarmed_for_by_the_learned_boot_once_it_recurred_twice() -> None:
    # Dynos really boot in 70 s; the operator said 45.
    world = World(**{**WORLD.__dict__, "boot_seconds": 70})
    result = simulate(cron(4), policy=TargetWaitPolicy(), settings=SETTINGS, bounds=Bounds(0, 100), interval=15,
                      world=world, keep_reasons=True)
    third, fourth = 600 + 2 * 1800, 600 + 3 * 1800
    assert formation_at(result, third - 1) == 0  # seen twice: nothing yet
    warm = formation_at(result, fourth - 1)
    assert warm >= 20_000 / (10 * 120)  # enough up before the dump to clear it within the target
    first_warm = min(s.second for s in result.samples if fourth - 600 < s.second < fourth and s.formation > 0)
    # A learned boot (70 s), a look (15 s) and a margin (15 s) ahead: the operator's 45 s would be too late.
    assert fourth - 70 - 15 - 15 <= first_warm <= fourth - 70 - 15
    at_dump = [s for s in result.samples if s.second == fourth]
    assert at_dump and at_dump[0].running >= warm  # up when the dump lands
    assert any("pre-warm" in s.reason and "every 30 min, seen 3×" in s.reason and "boot 70 s (learned" in s.reason
               for s in result.samples)


def test_the_prewarmed_cron_is_on_time_and_the_first_ones_are_not() -> None:
    # 40,000 messages: 100 dynos clear them in 40 s, which a look and a 90 s boot from zero
    # leave no room for; pre-warmed dynos are up when the dump lands.
    late_world = World(**{**WORLD.__dict__, "boot_seconds": 90})
    result = simulate(cron(5, size=40_000), policy=TargetWaitPolicy(), settings=SETTINGS, bounds=Bounds(0, 100),
                      interval=15, world=late_world, warmup_seconds=600 + 3 * 1800 - 5)
    assert result.late_share > 0.05  # the first three dumps, before the pattern was trusted
    assert result.late_share_after_warmup == 0.0


def test_a_cron_that_stops_releases_its_dynos() -> None:
    result = simulate(cron(3, length=600 + 3 * 1800 + 1800), policy=TargetWaitPolicy(), settings=SETTINGS,
                      bounds=Bounds(0, 100), interval=15, world=WORLD)
    due = 600 + 3 * 1800
    assert formation_at(result, due - 10) > 0  # warmed up for the fourth that never comes
    assert formation_at(result, due + 600) == 0


def test_shadow_mode_changes_nothing_and_says_what_it_would_have_done() -> None:
    on = simulate(cron(4), policy=TargetWaitPolicy(), settings=SETTINGS, bounds=Bounds(0, 100), interval=15, world=WORLD)
    shadow = simulate(cron(4), policy=TargetWaitPolicy(), settings={**SETTINGS, "prewarm": "shadow"}, bounds=Bounds(0, 100),
                      interval=15, world=WORLD, keep_reasons=True)
    off = simulate(cron(4), policy=TargetWaitPolicy(), settings={**SETTINGS, "prewarm": "off"}, bounds=Bounds(0, 100),
                   interval=15, world=WORLD, keep_reasons=True)
    fourth = 600 + 3 * 1800
    assert formation_at(shadow, fourth - 1) == formation_at(off, fourth - 1) == 0 < formation_at(on, fourth - 1)
    assert [s.formation for s in shadow.samples] == [s.formation for s in off.samples]
    assert any("shadow: would pre-warm" in s.reason for s in shadow.samples)
    assert not any("pre-warm" in s.reason for s in off.samples)


def test_without_cloudwatch_a_prewarm_is_as_big_as_what_the_last_bursts_needed() -> None:
    # Dynos half as fast as the operator said and no CloudWatch: the rate cannot be proven,
    # so the pre-warm is not sized from it alone.
    world = World(dyno_rate=5, dyno_concurrency=1, boot_seconds=60, lag_seconds=0, cloudwatch=False)
    result = simulate(cron(6), policy=TargetWaitPolicy(), settings=SETTINGS, bounds=Bounds(0, 100), interval=15,
                      world=world, warmup_seconds=600 + 3 * 1800 - 5)
    assert result.late_share > 0  # the first dumps, before the pattern was trusted
    assert result.late_share_after_warmup == 0.0
