"""The simulator: a world the policy must find out, showing it only what it would see live."""

from __future__ import annotations

import random
from typing import Any

import pytest

from scaling.baselines import BASELINES
from scaling.policies import Bounds, Observation, TargetWaitPolicy, Verdict
from scaling.simulator import TRACE_EPOCH, World, simulate
from scaling.world import QueueWorld

policy = TargetWaitPolicy()
SETTINGS = {"target_wait_seconds": 120, "dyno_rate": 10, "dyno_concurrency": 4, "boot_seconds": 45,
            "scale_down_window_seconds": 90, "interval_seconds": 30, "lag_seconds": 30}


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


def test_dynos_removed_before_their_boot_ends_are_counted_as_cancelled_boots_and_the_reversal_as_a_flap() -> None:
    # A policy that asks for three dynos, then one a look later, stops two that never served.
    class UpThenDown:
        name = "up_then_down"

        def decide(self, observation: Observation, bounds: Bounds, settings: Any, state: Any) -> Verdict:
            return Verdict(3 if observation.at - TRACE_EPOCH < 30 else 1, {}, "")

    result = simulate([0] * 120, policy=UpThenDown(), settings={}, bounds=Bounds(0, 5), interval=30,
                      world=World(dyno_rate=10, boot_seconds=45, lag_seconds=0, initial_dynos=0))
    assert result.writes == 2 and result.boots_cancelled == 2
    assert result.flaps == 1  # down 30 s after up
    assert result.as_dict()["boots_cancelled"] == 2


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


class Recorder(TargetWaitPolicy):
    """The policy, keeping every observation it was shown."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def decide(self, observation: Observation, *args: Any) -> Any:
        self.seen.append(observation)
        return super().decide(observation, *args)


def test_dynos_work_at_the_worlds_rate_not_the_operators() -> None:
    trace = [10_000] + [0] * 3599
    told_fast = simulate(trace, policy=policy, settings={**SETTINGS, "pin_dyno_rate": True}, bounds=Bounds(2, 2),
                         interval=30, world=World(dyno_rate=5, boot_seconds=0, lag_seconds=0))
    assert told_fast.max_wait == 999  # 10,000 messages at 2 × 5/s, whatever the settings say


def test_in_flight_follows_deletes_times_service_time() -> None:
    qw = QueueWorld(World(dyno_rate=10, dyno_concurrency=4, boot_seconds=0), dynos=5)
    for t in range(60):
        qw.tick(t, 20)
    # 20 deletes a second, each taking 4 / 10 = 0.4 s of a slot: 8 in flight, though 20 slots exist.
    assert qw.in_flight == pytest.approx(8)


def test_each_dyno_boots_in_its_own_time_and_is_reported_once_when_up() -> None:
    world = World(boot_seconds=60, boot_jitter=0.25, seed=3)
    qw = QueueWorld(world)
    qw.set_formation(6, 100)
    assert qw.booted_since_last_look(140) == ()
    early = qw.booted_since_last_look(160)
    late = qw.booted_since_last_look(200)
    assert len(early) + len(late) == 6 and qw.booted_since_last_look(300) == ()
    assert all(45 <= b <= 75 for b in early + late) and len(set(early + late)) > 1
    assert qw.running(130) == 0 < qw.running(170) <= qw.running(180)


def test_cloudwatch_points_are_the_minutes_deletes_and_arrive_one_to_two_minutes_late() -> None:
    recorder = Recorder()
    trace = [12] * 900
    simulate(trace, policy=recorder, settings=SETTINGS, bounds=Bounds(2, 2), interval=15,
             world=World(dyno_rate=10, boot_seconds=0, lag_seconds=0, cloudwatch=True, seed=1))
    for o in recorder.seen:
        now = o.at - TRACE_EPOCH
        for minute, deleted in o.deleted_per_minute:
            age = now - (minute - TRACE_EPOCH + 60)
            assert 60 <= age + 15 and age <= 120 + 600  # readable 1–2 min after the minute ended, kept ten minutes
            assert deleted == 12 * 60
    first = next(o for o in recorder.seen if o.deleted_per_minute)
    assert 120 <= first.at - TRACE_EPOCH <= 195  # minute 0 ended at 60 s and was published 60–120 s later
    assert all(not o.deleted_per_minute for o in simulate_seen(cloudwatch=False))


def simulate_seen(**world: Any) -> list[Observation]:
    recorder = Recorder()
    simulate([5] * 600, policy=recorder, settings=SETTINGS, bounds=Bounds(1, 1), interval=15,
             world=World(boot_seconds=0, **world))
    return recorder.seen


def test_counts_are_up_to_the_lag_stale_and_vary_within_it() -> None:
    recorder = Recorder()
    trace = list(range(1, 301))  # visible grows each second with no dyno: its age shows the staleness
    simulate(trace, policy=recorder, settings=SETTINGS, bounds=Bounds(0, 0), interval=10,
             world=World(lag_seconds=30, lag_min_seconds=0, seed=5))
    truth = [sum(trace[: int(o.at - TRACE_EPOCH) + 1]) for o in recorder.seen[4:]]
    stale = [t - o.visible for t, o in zip(truth, recorder.seen[4:])]
    assert all(s >= 0 for s in stale) and len(set(stale)) > 5


def test_every_policy_in_one_world_meets_the_same_boots_and_count_lags() -> None:
    # A policy that asks for more dynos must not draw different luck for the rest: the
    # first dynos boot in the same times and every look sees counts as stale as the other's.
    world = World(boot_seconds=1_000, boot_jitter=0.1, lag_seconds=30, lag_min_seconds=0, service_noise=0.3, drift=0.1,
                  cloudwatch=True, seed=3)
    few, many = QueueWorld(world), QueueWorld(world)
    few.set_formation(3, 0)
    many.set_formation(40, 0)
    assert few.dynos == many.dynos[:3] and len(set(many.dynos)) == 40
    seen_few, seen_many = [], []
    for t in range(300):  # one message a second, no dyno up yet: only the lags tell the looks apart
        few.tick(t, 1)
        many.tick(t, 1)
        if t % 10 == 9:
            seen_few.append(few.seen()[0])
            seen_many.append(many.seen()[0])
    assert seen_few == seen_many and len({t - v for t, v in zip(range(9, 300, 10), seen_few)}) > 5


def test_bursts_from_zero_are_on_time_with_dynos_half_as_fast_and_boots_twice_as_long_as_said() -> None:
    # Six bursts of 1,500 messages within 30 s, 40 minutes apart, scaled to zero between
    # them; counts up to 30 s stale. From zero a message waits for the counts, a look and a
    # 90 s boot, so the dynos asked for at the first looks must clear the whole burst.
    rng = random.Random(1)
    trace = [0] * (600 + 6 * 2400)
    for k in range(6):
        for _ in range(1500):
            trace[600 + k * 2400 + rng.randrange(30)] += 1
    world = World(dyno_rate=5, dyno_concurrency=4, boot_seconds=90, boot_jitter=0.1, lag_seconds=30, lag_min_seconds=0,
                  service_noise=0.3, cloudwatch=True, seed=1)
    result = simulate(trace, policy=policy, bounds=Bounds(0, 100), interval=15, world=world,
                      settings={"target_wait_seconds": 120, "dyno_rate": 10, "interval_seconds": 15})
    assert result.late_share <= 0.01 and result.max_wait <= 120
    between = [s.formation for s in result.samples if s.second % 2400 == 0 and s.second > 600]
    assert between and set(between) == {0}  # and it went back to zero in between


def test_service_time_noise_keeps_the_mean_rate() -> None:
    noisy = simulate([40] * 7200, policy=policy, settings=SETTINGS, bounds=Bounds(5, 5), interval=30,
                     world=World(dyno_rate=10, boot_seconds=0, service_noise=0.3, drift=0.1, seed=2))
    assert noisy.unfinished == 0 and noisy.p50_wait <= 5


def test_a_downstream_limit_is_found_held_at_and_flagged() -> None:
    world = World(dyno_rate=10, dyno_concurrency=4, boot_seconds=30, lag_seconds=0, throughput_cap=60.0, cloudwatch=True,
                  max_drain_seconds=0)
    trace = [100] * 3600
    result = simulate(trace, policy=policy, settings={**SETTINGS, "interval_seconds": 15}, bounds=Bounds(1, 100),
                      interval=15, world=world, keep_reasons=True)
    assert result.details["not_helping"] and "do not raise the deletes" in result.details["not_helping"]
    assert max(s.formation for s in result.samples) <= 40  # it stopped adding long before max
    assert any("hold, add none" in s.reason for s in result.samples)


def test_the_policy_learns_the_worlds_rate_from_cloudwatch() -> None:
    world = World(dyno_rate=5, dyno_concurrency=4, boot_seconds=30, lag_seconds=30, lag_min_seconds=0,
                  service_noise=0.3, cloudwatch=True, seed=9)
    trace = ([0] * 600 + [8_000] + [0] * 1199) * 4
    result = simulate(trace, policy=policy, settings={"target_wait_seconds": 120, "dyno_rate": 10, "interval_seconds": 15},
                      bounds=Bounds(0, 100), interval=15, world=world)
    rate = result.details["learned"]["rate"]
    # Minutes while dynos come up are counted at the mean of the dynos seen at each end,
    # which errs towards more dyno-seconds: the estimate errs low (safe), within a quarter.
    assert rate["source"] == "learned" and 3.75 <= rate["value"] <= 5.5
