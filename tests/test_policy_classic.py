"""The seed's rule, as the `classic` policy: pure, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from scaling.policies import Bounds, ClassicPolicy, Observation, get_policy

policy = ClassicPolicy()
SETTINGS = {"backlog_threshold": 10, "up_cycles": 3, "down_cycles": 2}


def decide(visible: int, quantity: int, running: int | None = None, state: dict[str, int] | None = None,
           bounds: Bounds = Bounds(1, 5), settings: dict[str, Any] = SETTINGS) -> Any:
    obs = Observation(visible=visible, in_flight=0, delayed=0, quantity=quantity,
                      running=quantity if running is None else running)
    return policy.decide(obs, bounds, settings, state or {})


@pytest.mark.parametrize(
    "visible, quantity, state, desired, state_after",
    [
        # over the threshold: up +1, down -1 (never below zero)
        (31, 3, {"up_count": 0, "down_count": 1}, 3, {"up_count": 1, "down_count": 0}),
        (31, 3, {"up_count": 1, "down_count": 0}, 3, {"up_count": 2, "down_count": 0}),
        # the third net cycle over: add one and reset both
        (31, 3, {"up_count": 2, "down_count": 0}, 4, {"up_count": 0, "down_count": 0}),
        # at or under the threshold: down +1, up -1
        (30, 3, {"up_count": 2, "down_count": 0}, 3, {"up_count": 1, "down_count": 1}),
        (5, 3, {"up_count": 0, "down_count": 1}, 2, {"up_count": 0, "down_count": 0}),
        # bounds: never above max, never below min, counters still reset
        (500, 5, {"up_count": 2, "down_count": 0}, 5, {"up_count": 0, "down_count": 0}),
        (0, 1, {"up_count": 0, "down_count": 1}, 1, {"up_count": 0, "down_count": 0}),
    ],
)
def test_classic_moves_counters_and_scales_by_one(visible: int, quantity: int, state: dict[str, int],
                                                 desired: int, state_after: dict[str, int]) -> None:
    verdict = decide(visible, quantity, state=state)
    assert verdict.desired == desired
    assert dict(verdict.state) == state_after


def test_scale_up_waits_for_up_cycles() -> None:
    state: dict[str, Any] = {}
    desired = []
    for _ in range(3):
        verdict = decide(100, 2, state=state)
        desired.append(verdict.desired)
        state = dict(verdict.state)
    assert desired == [2, 2, 3]


def test_noisy_backlog_cancels_out_instead_of_scaling() -> None:
    state: dict[str, Any] = {}
    for visible in [100, 0, 100, 0, 100, 0]:
        verdict = decide(visible, 2, state=state)
        assert verdict.desired == 2
        state = dict(verdict.state)


def test_no_running_dyno_with_messages_waiting_counts_as_over_threshold() -> None:
    verdict = decide(1, 0, running=0, state={"up_count": 2}, bounds=Bounds(0, 5))
    assert verdict.desired == 1
    assert verdict.backlog_per_instance is None
    assert "no dyno running" in verdict.reason


def test_no_running_dyno_and_empty_queue_counts_as_under_threshold() -> None:
    verdict = decide(0, 0, running=0, state={"down_count": 1}, bounds=Bounds(0, 5))
    assert verdict.desired == 0
    assert dict(verdict.state) == {"up_count": 0, "down_count": 0}


def test_backlog_per_instance_uses_running_dynos_not_formation_quantity() -> None:
    # 3 in the formation but only 1 up: 25 per running dyno is over 10.
    verdict = decide(25, 3, running=1, state={"up_count": 2})
    assert verdict.backlog_per_instance == 25
    assert verdict.desired == 4


def test_formation_outside_bounds_is_brought_back_at_once() -> None:
    above = decide(0, 9, bounds=Bounds(1, 5))
    assert above.desired == 5 and "above max 5" in above.reason
    assert decide(1000, 0, running=0, bounds=Bounds(2, 5)).desired == 2


def test_reason_tells_a_person_what_happened() -> None:
    verdict = decide(4210, 10, state={"up_count": 2}, bounds=Bounds(1, 20))
    assert verdict.reason.startswith("4,210 visible message(s) / 10 running dyno(s) = 421.0 per dyno")
    assert "add one dyno" in verdict.reason and "10 to 11 dynos" in verdict.reason


def test_reason_says_when_max_holds_it_back() -> None:
    verdict = decide(500, 5, state={"up_count": 2})
    assert verdict.reason.endswith("held at max 5 → stay at 5")


def test_saved_state_from_nothing_starts_at_zero() -> None:
    assert dict(decide(0, 3, state={}).state) == {"up_count": 0, "down_count": 1}


@pytest.mark.parametrize("bad, message", [
    ({"backlog_threshold": 0, "up_cycles": 1, "down_cycles": 1}, "backlog_threshold"),
    ({"backlog_threshold": 5, "up_cycles": 0, "down_cycles": 1}, "up_cycles"),
    ({"backlog_threshold": 5, "up_cycles": 1, "down_cycles": 0}, "down_cycles"),
])
def test_bad_settings_name_the_setting(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(1, 1, settings=bad)


def test_bounds_refuse_min_above_max() -> None:
    with pytest.raises(ValueError, match="max_dynos"):
        Bounds(5, 2)


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: classic"):
        get_policy("magic")
