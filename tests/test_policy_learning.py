"""What the policy learns about a pair's dynos: table tests of the estimators, pure."""

from __future__ import annotations

import random

import pytest

from scaling.learning import Learner, Look

MINUTE = 60.0
T0 = 1_767_571_200.0  # a whole minute


def feed(learner: Learner, *, minutes: int, running: int | list[int], visible: int | list[int], in_flight: int = 0,
         start: float = T0, expected_late: bool = False) -> None:
    """Looks every 15 s for ``minutes`` minutes; ``running`` and ``visible`` may change per look."""
    previous: Look | None = None
    for i in range(minutes * 4 + 1):
        at = start + 15 * i
        n = running[min(i, len(running) - 1)] if isinstance(running, list) else running
        v = visible[min(i, len(visible) - 1)] if isinstance(visible, list) else visible
        look = Look(at=at, visible=v, in_flight=in_flight, running=n, starting=0, lag=30, expected_late=expected_late)
        learner.observe(look, previous, ())
        previous = look


def deletes(minutes: int, per_minute: float | list[float], start: float = T0) -> list[tuple[float, float]]:
    values = per_minute if isinstance(per_minute, list) else [per_minute] * minutes
    return [(start + MINUTE * m, values[m]) for m in range(minutes)]


def test_the_rate_is_learned_from_minutes_when_every_dyno_had_work() -> None:
    rng = random.Random(7)
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=12, running=4, visible=5_000)
    # Four dynos really doing 5/s each, with ±30 % noise per minute.
    points = [(T0 + MINUTE * m, 4 * 5 * 60 * rng.uniform(0.7, 1.3)) for m in range(12)]
    learner.absorb_cloudwatch(points, [], at=T0 + 720, target=120, rate_now=10)
    rate = learner.rate(pinned=False)
    assert rate.source == "learned" and rate.value == pytest.approx(5, rel=0.15)
    assert rate.operator == 10 and rate.samples >= 11 and "dyno-min" in rate.basis
    assert rate.spread is not None and rate.spread < 0.15
    assert "rate 5.0/s (learned, ±" in rate.describe("rate 5.0/s") and "operator said 10" in rate.describe("x")


def test_idle_minutes_do_not_drag_the_rate_down() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=10, running=4, visible=0)
    learner.absorb_cloudwatch(deletes(10, 4 * 2 * 60), [], at=T0 + 600, target=120, rate_now=10)
    assert learner.rate(pinned=False).value == 10  # 2/s per dyno only says "at least 2"


def test_idle_minutes_that_delete_more_than_believed_raise_the_rate() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=10, running=4, visible=0)
    learner.absorb_cloudwatch(deletes(10, 4 * 16 * 60), [], at=T0 + 600, target=120, rate_now=10)
    assert learner.rate(pinned=False).value >= 15


def test_minutes_around_a_deploy_teach_nothing() -> None:
    learner = Learner({}, operator_rate=10)
    # All four dynos restart: none up for a minute, then back.
    running = [4] * 8 + [0] * 4 + [4] * 12 + [4] * 20
    feed(learner, minutes=10, running=running, visible=5_000)
    slow_restart: list[float] = [4 * 10 * 60, 4 * 10 * 60, 0, 50, 4 * 10 * 60, 4 * 10 * 60, 4 * 10 * 60, 4 * 10 * 60, 4 * 10 * 60, 2400]
    learner.absorb_cloudwatch(deletes(10, slow_restart), [], at=T0 + 600, target=120, rate_now=10)
    assert learner.rate(pinned=False).value == pytest.approx(10, rel=0.02)


def test_each_minute_is_read_once_however_often_it_comes() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=5, running=2, visible=1_000)
    for _ in range(3):
        learner.absorb_cloudwatch(deletes(5, 2 * 6 * 60), [], at=T0 + 300, target=120, rate_now=10)
    assert learner.rate(pinned=False).samples == 5


def test_without_cloudwatch_the_rate_comes_from_how_the_backlog_slope_changes_with_the_formation() -> None:
    learner = Learner({}, operator_rate=10)
    # 30 messages/s arrive. Four dynos at 5/s: the backlog grows 10/s; eight: it falls 10/s.
    visible = [4_000 + 10 * 15 * i for i in range(12)]
    visible += [visible[-1] - 10 * 15 * i for i in range(1, 13)]
    feed(learner, minutes=6, running=[4] * 12 + [8] * 13, visible=visible)
    rate = learner.rate(pinned=False)
    assert rate.value == pytest.approx(5, rel=0.05) and "from counts" in rate.basis
    # With no measured wait to catch a wrong figure, counts move the rate but never prove it.
    assert not learner.proven()


def test_cloudwatch_minutes_with_every_dyno_busy_prove_the_rate() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=5, running=4, visible=5_000)
    assert not learner.proven()
    learner.absorb_cloudwatch(deletes(5, 4 * 5 * 60), [], at=T0 + 300, target=120, rate_now=10)
    assert learner.proven()


def test_a_pinned_rate_is_the_operators_figure_whatever_is_measured() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=10, running=4, visible=5_000)
    learner.absorb_cloudwatch(deletes(10, 4 * 5 * 60), [], at=T0 + 600, target=120, rate_now=10)
    pinned = learner.rate(pinned=True)
    assert (pinned.value, pinned.source) == (10, "pinned")


@pytest.mark.parametrize("boots, operator, expected, source", [
    ([], 45, 45, "operator"),
    ([80], 45, 45, "operator"),  # one boot is not enough to replace the operator's figure
    ([60, 62, 65, 70, 90, 61, 63, 64, 66, 68], 45, 70, "learned"),  # the 90th percentile, not the worst
])
def test_boot_time_is_planned_for_a_slow_boot_not_an_average_one(boots: list[float], operator: float,
                                                                 expected: float, source: str) -> None:
    learner = Learner({}, operator_rate=10)
    learner.observe(Look(at=T0, visible=0, in_flight=0, running=1, starting=0, lag=30, expected_late=False), None, boots)
    boot = learner.boot(operator, pinned=False)
    assert (boot.value, boot.source) == (expected, source)


def test_concurrency_is_at_least_what_the_dynos_were_seen_holding_and_follows_littles_law() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=5, running=4, visible=5_000, in_flight=16)
    assert learner.concurrency(1, 10, pinned=False).value == pytest.approx(4)
    # Little's law: 16 in flight over 40 deletes a second is 0.4 s each; at 10/s per dyno that is 4 at once.
    learner.absorb_cloudwatch(deletes(5, 40 * 60), [], at=T0 + 300, target=120, rate_now=10)
    assert learner.concurrency(1, 10, pinned=False).value == pytest.approx(4, rel=0.05)
    assert learner.concurrency(2, 10, pinned=True).value == 2


def looks(learner: Learner, rows: list[tuple[int, int]], start: float = T0) -> None:
    """One look every 15 s per (running, in flight) row, a backlog waiting throughout."""
    previous: Look | None = None
    for i, (running, in_flight) in enumerate(rows):
        look = Look(at=start + 15 * i, visible=2_000, in_flight=in_flight, running=running, starting=0, lag=30,
                    expected_late=False)
        learner.observe(look, previous, ())
        previous = look


def test_concurrency_is_learned_from_the_first_looks_after_dynos_come_up() -> None:
    # From zero to two dynos holding four messages each: a count older than the rise can
    # only show fewer dynos' work, so in flight per dyno up is a floor from the first look.
    learner = Learner({}, operator_rate=10)
    looks(learner, [(0, 0), (2, 8), (2, 8), (2, 8)])
    assert learner.concurrency(1, 10, pinned=False).value == pytest.approx(4)


def test_in_flight_counts_within_a_lag_of_dynos_stopping_do_not_raise_the_concurrency() -> None:
    # Four dynos holding two each, cut to two: counts up to a lag old still show the
    # stopped dynos' messages, which would make each remaining dyno look like it holds four.
    learner = Learner({}, operator_rate=10)
    looks(learner, [(4, 8)] * 4 + [(2, 8)] * 2 + [(2, 4)] * 3)
    assert learner.concurrency(1, 10, pinned=False).value == pytest.approx(2)


def test_littles_law_waits_for_a_proven_rate_as_a_rate_twice_too_high_would_double_the_concurrency() -> None:
    # Eight idle-ish dynos hold 16 messages while CloudWatch counts 40 deletes a second:
    # 0.4 s each. At the operator's 20/s that would be 8 at once, at a true 10/s it is 4;
    # with the rate never seen at saturation, only what the dynos were seen holding counts.
    learner = Learner({}, operator_rate=20)
    feed(learner, minutes=5, running=8, visible=0, in_flight=16)
    learner.absorb_cloudwatch(deletes(5, 40 * 60), [], at=T0 + 300, target=120, rate_now=20)
    assert not learner.proven()
    estimate = learner.concurrency(1, 20, pinned=False)
    assert estimate.value == pytest.approx(2) and "in flight per dyno" in estimate.basis


def test_more_dynos_that_delete_no_more_are_called_not_helping_and_do_not_lower_the_rate() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=3, running=4, visible=9_000)
    feed(learner, minutes=4, running=8, visible=9_000, start=T0 + 240)
    learner.absorb_cloudwatch(deletes(7, [2400, 2400, 2400, 2420, 2380, 2410, 2400]), [], at=T0 + 420, target=120,
                              rate_now=10)
    assert learner.not_helping is not None and "do not raise the deletes" in learner.not_helping["why"]
    assert learner.rate(pinned=False).value == pytest.approx(10, rel=0.05)  # the 4-dyno minutes, not 2400/8


def test_a_measured_wait_over_the_target_when_the_model_said_it_was_covered_lowers_the_rate() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=3, running=4, visible=100)
    learner.absorb_cloudwatch([], [(T0 + 60, 200.0)], at=T0 + 180, target=120, rate_now=10)
    assert learner.rate(pinned=False).value == pytest.approx(8)
    assert learner.events and "measured a wait of 200 s" in learner.events[0]
    # The same late minute, passed again, does not lower it twice.
    learner.absorb_cloudwatch([], [(T0 + 60, 200.0), (T0 + 120, 190.0)], at=T0 + 195, target=120, rate_now=8)
    assert learner.rate(pinned=False).value == pytest.approx(8)


def test_a_measured_wait_the_policy_saw_coming_changes_nothing() -> None:
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=3, running=0, visible=5_000, expected_late=True)  # booting from zero: known short
    learner.absorb_cloudwatch([], [(T0 + 60, 200.0)], at=T0 + 180, target=120, rate_now=10)
    assert learner.rate(pinned=False).value == 10 and not learner.events


def test_the_learned_state_is_small_json_that_round_trips() -> None:
    import json

    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=30, running=4, visible=5_000, in_flight=16)
    learner.absorb_cloudwatch(deletes(30, 4 * 5 * 60), [], at=T0 + 1800, target=120, rate_now=10)
    text = json.dumps(learner.as_dict())
    again = Learner(json.loads(text), operator_rate=10)
    assert again.rate(pinned=False) == learner.rate(pinned=False)
    assert len(text) < 8_000


def test_a_minute_with_work_waiting_and_nothing_deleted_is_a_stall_not_a_rate() -> None:
    # Four dynos up, a backlog waiting, and CloudWatch counts no delete: the workers are
    # stuck (a hung connection, a deploy that broke deleting). Taken as a rate it would be
    # zero, and a zero rate asks for infinitely many dynos.
    learner = Learner({}, operator_rate=10)
    feed(learner, minutes=6, running=4, visible=5_000)
    learner.absorb_cloudwatch(deletes(6, 0.0), [], at=T0 + 360, target=120, rate_now=10)
    assert learner.rate(pinned=False).value == 10
    assert any("no message deleted" in e and "stuck workers?" in e for e in learner.events)
