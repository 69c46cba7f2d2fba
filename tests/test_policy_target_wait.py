"""The default policy, schedules and the simulator: pure, no database."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from scaling.baselines import BASELINES
from scaling.policies import (
    Bounds,
    Observation,
    ScheduleWindow,
    TargetWaitPolicy,
    TargetWaitSettings,
    effective_bounds,
    first_overlap,
)
from scaling.simulator import TRACE_EPOCH, World, simulate

policy = TargetWaitPolicy()
SETTINGS = {"target_wait_seconds": 120, "dyno_rate": 10, "dyno_concurrency": 4, "boot_seconds": 45,
            "scale_down_window_seconds": 90, "interval_seconds": 30, "lag_seconds": 30}
BOUNDS = Bounds(0, 100)


def obs(visible: int = 0, in_flight: int = 0, quantity: int = 1, running: int | None = None, at: float = 0.0) -> Observation:
    return Observation(visible=visible, in_flight=in_flight, delayed=0, quantity=quantity,
                       running=quantity if running is None else running, at=at)


def run(observations: list[Observation], bounds: Bounds = BOUNDS, settings: dict[str, Any] = SETTINGS) -> list[int]:
    state: Any = {}
    out = []
    for o in observations:
        verdict = policy.decide(o, bounds, settings, state)
        state = verdict.state
        out.append(verdict.desired)
    return out


def test_a_burst_from_zero_gets_enough_dynos_in_one_cycle() -> None:
    verdict = policy.decide(obs(visible=20_000, quantity=0, running=0), BOUNDS, SETTINGS, {})
    # Cold: 120 s target - 45 s boot - 60 s of possible staleness leaves 15 s: 20,000 / (10/s × 15 s).
    assert verdict.desired == 100
    assert "scale up" in verdict.reason and "0 to 100 dynos" in verdict.reason


def test_with_dynos_running_the_backlog_may_be_younger_so_fewer_are_needed() -> None:
    verdict = policy.decide(obs(visible=9_000, quantity=5, running=5, in_flight=20), BOUNDS, SETTINGS, {})
    assert verdict.desired == 20  # 9,000 / (10/s × 45 s)


def test_the_first_message_wakes_a_pair_scaled_to_zero() -> None:
    assert policy.decide(obs(visible=1, quantity=0, running=0), BOUNDS, SETTINGS, {}).desired == 1


def test_scales_to_zero_only_after_the_window_with_nothing_visible_or_in_flight() -> None:
    desired = run([obs(quantity=2, at=t) for t in (0, 30, 60, 90, 120)])
    assert desired == [2, 2, 2, 0, 0]


def test_a_first_cycle_never_cuts_dynos_on_one_look() -> None:
    assert policy.decide(obs(quantity=8), BOUNDS, SETTINGS, {}).desired == 8


def test_a_pair_cycling_less_often_than_its_window_still_scales_down() -> None:
    slow = {**SETTINGS, "interval_seconds": 300}
    assert run([obs(quantity=3, at=t) for t in (0, 300, 600)], settings=slow) == [3, 0, 0]


def test_dynos_still_working_are_not_removed_under_their_messages() -> None:
    # Queue empty but 12 messages in flight on dynos of concurrency 4: three are busy.
    desired = run([obs(visible=0, in_flight=12, quantity=5, at=t) for t in range(0, 600, 30)])
    assert min(desired) == 3


def test_scale_down_waits_for_the_stabilization_window() -> None:
    # A backlog needed 10; it drains. No dyno goes before the 90 s window has passed.
    observations = [obs(visible=4_500, quantity=10, in_flight=40, at=0)]
    observations += [obs(visible=0, in_flight=8, quantity=10, at=t) for t in (30, 60, 90, 120)]
    desired = run(observations)
    assert desired[:3] == [10, 10, 10]
    assert desired[-1] == 2


def test_noisy_steady_load_does_not_flap() -> None:
    # Visible bounces between 0 and 400 (≈ 1 dyno-minute of work) on 4 busy dynos.
    visible = [0, 400, 0, 350, 50, 400, 0, 300] * 10
    desired = run([obs(visible=v, in_flight=16, quantity=4, at=30 * i) for i, v in enumerate(visible)])
    assert set(desired) == {4}


def test_max_holds_it_back_and_says_so() -> None:
    verdict = policy.decide(obs(visible=50_000, quantity=3), Bounds(1, 10), SETTINGS, {})
    assert verdict.desired == 10 and "held at max 10" in verdict.reason


def test_arrivals_are_estimated_from_visible_change_and_busy_dynos() -> None:
    first = policy.decide(obs(visible=100, in_flight=8, quantity=2, at=0), BOUNDS, SETTINGS, {})
    second = policy.decide(obs(visible=400, in_flight=8, quantity=2, at=30), BOUNDS, SETTINGS, first.state)
    # 300 more visible in 30 s = 10/s, plus 2 busy dynos completing 10/s each = 30/s; median of [20, 30].
    assert second.details["arrivals_per_second"] == pytest.approx(25.0)


@pytest.mark.parametrize("changes, says", [
    ({"target_wait_seconds": 40}, "must exceed boot_seconds"),
    ({"dyno_rate": 0}, "dyno_rate must be greater than 0"),
    ({"dyno_concurrency": 0}, "dyno_concurrency"),
])
def test_bad_settings_are_named(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        TargetWaitSettings.from_mapping({**SETTINGS, **changes})


# --- schedules ------------------------------------------------------------------------

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


def test_overlapping_schedules_are_found() -> None:
    evening = ScheduleWindow(weekdays=frozenset({4}), start=time(17), end=time(23), min_dynos=0, max_dynos=2)
    late = ScheduleWindow(weekdays=frozenset({5}), start=time(0), end=time(6), min_dynos=0, max_dynos=2)
    assert first_overlap([WEEKDAYS, evening]) == (WEEKDAYS, evening)
    assert first_overlap([WEEKDAYS, late]) is None


# --- the simulator ----------------------------------------------------------------------

def test_simulator_serves_every_message_and_bills_every_dyno_second() -> None:
    trace = [100] + [0] * 599
    result = simulate(trace, policy=policy, settings=SETTINGS, bounds=Bounds(1, 1), interval=30,
                      world=World(dyno_rate=10, boot_seconds=0, lag_seconds=0))
    assert result.messages == 100 and result.unfinished == 0
    assert result.max_wait == 9  # the 100th message starts in the tenth second
    assert result.dyno_seconds == 600 and result.writes == 0


def test_new_dynos_boot_before_they_consume_and_bill_while_booting() -> None:
    trace = [1000] + [0] * 299
    result = simulate(trace, policy=policy, settings=SETTINGS, bounds=Bounds(0, 5), interval=30,
                      world=World(dyno_rate=10, boot_seconds=45, lag_seconds=0, initial_dynos=0))
    assert result.p50_wait >= 45  # nobody starts before the first dyno has booted
    assert result.dyno_seconds > 5 * 45  # booting dynos are billed


def test_the_policy_sees_counts_as_late_as_the_lag() -> None:
    seen: list[int] = []

    class Spy(TargetWaitPolicy):
        def decide(self, observation: Observation, *args: Any) -> Any:
            seen.append(observation.visible)
            return super().decide(observation, *args)

    simulate([50] + [0] * 60, policy=Spy(), settings=SETTINGS, bounds=Bounds(0, 0), interval=10,
             world=World(dyno_rate=10, lag_seconds=20))
    assert seen[:4] == [0, 0, 50, 50]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_runs_in_the_simulator(name: str) -> None:
    trace = [20] * 600 + [0] * 600
    result = simulate(trace, policy=BASELINES[name], settings={}, bounds=Bounds(0, 20),
                      interval=BASELINES[name].interval, world=World(dyno_rate=10))  # type: ignore[attr-defined]
    assert result.messages == 12_000 and result.dyno_seconds > 0
