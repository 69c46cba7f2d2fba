"""The default policy, target_wait: pure, no database."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from scaling.policies import Bounds, ClassicPolicy, Observation, TargetWaitPolicy, TargetWaitSettings
from scaling.simulator import simulate
from scaling.world import World

policy = TargetWaitPolicy()
SETTINGS = {"target_wait_seconds": 120, "dyno_rate": 10, "dyno_concurrency": 4, "boot_seconds": 45,
            "scale_down_window_seconds": 90, "interval_seconds": 30, "lag_seconds": 30}
BOUNDS = Bounds(0, 100)


def obs(visible: int = 0, in_flight: int = 0, quantity: int = 1, running: int | None = None, at: float = 0.0,
        **measured: Any) -> Observation:
    return Observation(visible=visible, in_flight=in_flight, delayed=0, quantity=quantity,
                       running=quantity if running is None else running, at=at, **measured)


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


def test_a_falling_backlog_releases_the_dynos_that_only_drain_it_and_says_so() -> None:
    # Ten busy dynos of 10/s and a backlog falling 20/s: the arrivals are 80/s, eight dynos
    # keep up, and what is left clears well within the target on eight.
    pinned = {**SETTINGS, "pin_dyno_rate": True}
    state: Any = {}
    verdicts = []
    for i in range(8):
        verdict = policy.decide(obs(visible=6_000 - 600 * i, in_flight=40, quantity=10, at=30.0 * i), BOUNDS, pinned, state)
        state = verdict.state
        verdicts.append(verdict)
    desired = [v.desired for v in verdicts]
    assert desired[:3] == [10, 10, 10]  # the stabilization window still holds
    assert min(desired) == 8 and desired.index(8) <= 6
    down = verdicts[desired.index(8)].reason
    assert "the backlog is falling: arrivals ≈ 80.0/s keep 8 of the 10 busy" in down and "scale down" in down


def test_a_growing_backlog_gets_the_dynos_it_will_need_when_they_come_up_and_says_so() -> None:
    # Five busy dynos of 10/s, the backlog rising 20/s: 3,200 visible five dynos would clear
    # in time today, but a dyno added now (45 s boot, 30 s look) comes up to ≈ 4,700.
    pinned = {**SETTINGS, "pin_dyno_rate": True}
    state: Any = {}
    quantity, verdicts = 5, []
    for i, visible in enumerate([2_000, 2_600, 3_200]):
        verdict = policy.decide(obs(visible=visible, in_flight=20, quantity=quantity, running=5, at=30.0 * i), BOUNDS,
                                pinned, state)
        state, quantity = verdict.state, verdict.desired
        verdicts.append(verdict)
    assert [v.desired for v in verdicts] == [5, 5, 6]
    assert "the backlog grows ≈ 20.0/s beyond what 5 dyno(s) complete: a dyno added now comes up to ≈ 4,700 visible" \
        in verdicts[-1].reason and "needs 6: scale up" in verdicts[-1].reason


def test_a_dyno_added_for_a_growing_backlog_is_not_cancelled_while_it_boots() -> None:
    # The sixth dyno was asked for as the backlog grew; one look later the backlog holds
    # level (arrivals now match the five): a lower arrival figure is one look's noise as
    # often as not, and cancelling a booting dyno wastes its boot and a second write.
    pinned = {**SETTINGS, "pin_dyno_rate": True}
    state: Any = {}
    quantity, desired = 5, []
    for i, visible in enumerate([1_900, 2_500, 3_100, 3_050]):
        verdict = policy.decide(obs(visible=visible, in_flight=20, quantity=quantity, running=5, starting=quantity - 5,
                                    at=30.0 * i), BOUNDS, pinned, state)
        state, quantity = verdict.state, verdict.desired
        desired.append(verdict.desired)
    assert desired == [5, 5, 6, 6]
    assert "needs 5, but keeps 6: the dyno(s) asked for as the backlog grew still boot" in verdict.reason
    check_reason(verdict.reason, 6, 6)


# A pair whose boot could not be timed while it was idle: its bursts from zero are planned
# on the operator's figure.
NEVER_TIMED = {"boot_timing": {"at": -900.0, "dynos": 2, "done": True, "failed": True}}


def cold_start(visibles: list[int], settings: dict[str, Any] = SETTINGS, boots: tuple[float, ...] = ()) -> list[Any]:
    """Looks 30 s apart at a queue with no dyno up, each asking for what the last decided."""
    state: Any = dict(NEVER_TIMED)
    quantity, verdicts = 0, []
    for i, visible in enumerate(visibles):
        verdict = policy.decide(obs(visible=visible, quantity=quantity, running=0, starting=quantity, at=30.0 * i,
                                    boot_durations=boots if i == 0 else ()), BOUNDS, settings, state)
        state, quantity = verdict.state, verdict.desired
        verdicts.append(verdict)
    return verdicts


def test_a_cold_start_asks_for_the_backlog_its_dynos_will_meet_after_their_boot() -> None:
    # Nothing is served until the first boot ends (45 s, the operator's word, never
    # measured), so every arrival until then waits for the dynos asked for now: at 40/s
    # they come up to 1,500 + 40 × 45 = 3,300 visible, which they must clear within the 15 s
    # the cold start leaves them (120 s − 30 s look − 30 s counts − 45 s boot) at 10/s each.
    verdicts = cold_start([0, 300, 1_500])
    assert [v.desired for v in verdicts] == [0, 5, 22]  # what is visible alone would ask for 2, then 10
    assert ("no dyno is up, so until the first boot ends every arrival (≈ 40.0/s) adds to the backlog: dynos added "
            "now come up to ≈ 3,300 visible") in verdicts[-1].reason
    assert "needs 22: scale up → 5 to 22 dynos" in verdicts[-1].reason


def test_no_dyno_booting_for_a_backlog_is_given_up_before_one_is_up() -> None:
    # Counts lag: a lower count with nothing served is not a smaller backlog. Past the
    # 90 s window the needs seen since would allow fewer, but nothing has been served yet.
    verdicts = cold_start([0, 300, 1_500, 1_400, 1_450, 1_480])
    assert [v.desired for v in verdicts] == [0, 5, 22, 22, 22, 22]
    assert "but keeps 22: no dyno is up yet, so nothing has been served" in verdicts[-1].reason
    check_reason(verdicts[-1].reason, 22, 22)


def test_while_dynos_boot_for_a_backlog_no_look_cuts_below_the_dynos_it_sees_busy() -> None:
    # 46 asked for at the first sight of a burst; 30 came up a lag ago and are busy (40 at
    # 4 messages each) while 16 still boot. The needs over the window (before any was
    # busy) were 19.
    verdicts = cold_start([0, 2_735, 2_735, 2_735, 2_735])
    assert [v.desired for v in verdicts] == [0, 46, 46, 46, 46]
    state = verdicts[-1].state
    for at, in_flight in ((150.0, 0), (180.0, 160)):
        verdict = policy.decide(obs(visible=1_996, in_flight=in_flight, quantity=46, running=30, starting=16, at=at),
                                BOUNDS, SETTINGS, state)
        state = verdict.state
    assert verdict.desired == 40 and "needs 40; needed at most 40 over the last 90 s" in verdict.reason
    check_reason(verdict.reason, 46, 40)


def test_no_dyno_is_given_up_on_counts_older_than_the_dynos_that_just_came_up() -> None:
    # 30 of 46 came up since the last look, but the counts (up to 30 s stale) still show
    # the burst as it was before any served: nothing in flight, nothing gone.
    verdicts = cold_start([0, 2_735, 2_735, 2_735, 2_735])
    verdict = policy.decide(obs(visible=2_735, quantity=46, running=30, starting=16, at=150.0), BOUNDS, SETTINGS,
                            verdicts[-1].state)
    assert verdict.desired == 46
    assert "keeps 46: dynos came up within the counts' 30 s lag, so the counts may not show them serving yet" \
        in verdict.reason
    check_reason(verdict.reason, 46, 46)
    # Once the counts are newer than that, they are believed again.
    later = policy.decide(obs(visible=0, quantity=46, running=46, at=300.0), BOUNDS, SETTINGS, verdict.state)
    assert later.desired < 46


def test_a_cold_starts_ask_is_let_go_once_the_counts_show_its_dynos_serving() -> None:
    # 46 asked for a burst on figures never measured; they came up and the counts a lag
    # later show the burst gone and 40 messages in flight (10 dynos' worth): the ask has
    # done its work, so the formation falls to what is busy, not a whole window later.
    verdicts = cold_start([0, 2_735, 2_735])
    state = verdicts[-1].state
    up = policy.decide(obs(visible=2_735, quantity=46, running=46, at=90.0), BOUNDS, SETTINGS, state)
    assert up.desired == 46  # the counts may predate the dynos
    later = policy.decide(obs(visible=0, in_flight=40, quantity=46, running=46, at=120.0), BOUNDS, SETTINGS, up.state)
    assert later.desired == 10
    assert "needs 10; needed at most 10 over the last 90 s" in later.reason
    check_reason(later.reason, 46, 10)


def test_looks_taken_before_the_counts_could_show_a_cold_starts_dynos_are_part_of_its_ask() -> None:
    # The dynos came up, but the next counts (up to a lag old) still show the burst as it
    # arrived: 8,000 waiting, 22 dynos' worth. The first counts that can show the dynos
    # serving find it gone and 10 dynos busy: that stale look is let go with the ask.
    verdicts = cold_start([0, 2_735, 2_735])
    up = policy.decide(obs(visible=8_000, quantity=46, running=46, at=90.0), BOUNDS, SETTINGS, verdicts[-1].state)
    assert up.desired == 46
    later = policy.decide(obs(visible=0, in_flight=40, quantity=46, running=46, at=120.0), BOUNDS, SETTINGS, up.state)
    assert later.desired == 10
    check_reason(later.reason, 46, 10)


def test_a_released_cold_start_still_keeps_a_dyno_a_window_after_the_last_message_seen() -> None:
    # Five asked for 300 messages; by the first counts that can show them serving all is
    # done. The ask is let go, but a pair goes to zero only after a whole window (90 s)
    # with nothing visible or in flight since the last look that saw messages (at 60 s).
    verdicts = cold_start([0, 300])
    state, quantity = verdicts[-1].state, verdicts[-1].desired
    out = []
    for at, visible, running in ((60.0, 300, quantity), (90.0, 0, quantity), (120.0, 0, 1), (150.0, 0, 1)):
        verdict = policy.decide(obs(visible=visible, quantity=quantity, running=running, at=at), BOUNDS, SETTINGS, state)
        state, quantity = verdict.state, verdict.desired
        out.append(quantity)
    assert out == [5, 1, 1, 0]


def probe(*, cloudwatch: bool, boot: float) -> tuple[list[int], str]:
    """Eight dynos holding 32 messages (4 each) with nothing waiting; the rate never seen at saturation."""
    state: Any = {}
    out, reason = [], ""
    for i in range(12):
        points = ((600.0, 2_400.0), (660.0, 2_400.0)) if cloudwatch and i == 4 else ()
        verdict = policy.decide(obs(in_flight=32, quantity=8, at=600.0 + 30 * i, boot_durations=(boot, boot) if i == 0 else (),
                                    deleted_per_minute=points), BOUNDS, SETTINGS, state)
        state, reason = verdict.state, verdict.reason
        out.append(verdict.desired)
    return out, reason


def test_an_unproven_rate_is_probed_deeper_where_cloudwatch_will_prove_it_and_a_boot_is_short() -> None:
    # Without CloudWatch the probing never ends, so it stays shallow (75 %); with it, a
    # saturated minute will end it, and a 20 s boot undoes a probe that went too far.
    shallow, reason = probe(cloudwatch=False, boot=20.0)
    deep, _ = probe(cloudwatch=True, boot=20.0)
    slow_boot, _ = probe(cloudwatch=True, boot=90.0)
    assert shallow[-1] == 6 and deep[-1] == 4 and slow_boot[-1] == 6
    assert shallow[:4] == deep[:4] == [8, 8, 8, 8]  # not before nothing has waited for a whole window
    assert "only 6 of the 8 busy dyno(s) count, to see whether fewer keep up (a probe)" in reason
    check_reason(reason, 8, 6)


def test_a_short_measured_boot_leaves_later_looks_time_so_a_cold_start_asks_only_for_what_it_sees() -> None:
    # Two boots of 20 s measured: a dyno asked for at the next look still comes up in time
    # for the oldest message, so the first look does not guess at the arrivals to come.
    verdicts = cold_start([0, 300], boots=(20.0, 20.0))
    assert [v.desired for v in verdicts] == [0, 1]
    assert "until the first boot ends" not in verdicts[-1].reason


def test_when_slow_boots_end_after_the_oldest_is_due_a_cold_start_counts_what_the_quick_ones_serve() -> None:
    # Ten boots of 81-99 s measured (p90 97 s), looks every 15 s: no dyno added now comes
    # up within the 75 s a cold start leaves, so the plan cannot rest on the p90 boot. The
    # oldest message is usually due in 120 - (30 + 15) / 2 = 97.5 s; over the boots seen a
    # dyno added now serves 7.65 s of that on average (16.5 s for the 81 s boot, 0 for 99 s).
    # The dynos come up to 1,500 + 40/s x 97 s = 5,380 visible: 5,380 / (10/s x 7.65 s) = 71
    # dynos, where counting 15 s for each (the floor of the budget) asked for 36.
    settings = {**SETTINGS, "interval_seconds": 15}
    verdicts = cold_start([0, 300, 1_500], settings, boots=tuple(float(b) for b in range(81, 100, 2)))
    assert verdicts[-1].desired == 71
    assert "only the quickest boots seen end before the oldest message is due: a dyno added now serves ≈ 8 s " \
           "before then" in verdicts[-1].reason
    check_reason(verdicts[-1].reason, verdicts[-2].desired, 71)
    # Boots that all take 97 s leave nothing but luck: half a look each is the most it counts on.
    assert cold_start([0, 300, 1_500], settings, boots=(97.0,) * 10)[-1].desired == 72
    # Boots of 50 s leave 25 s of the 75: a later look still comes in time, so this one asks
    # for what it sees, 1,500 / (10/s x 25 s) = 6.
    short = cold_start([0, 300, 1_500], settings, boots=(50.0,) * 10)[-1]
    assert short.desired == 6 and "quickest boots" not in short.reason


def test_a_backlog_that_holds_level_keeps_its_busy_dynos() -> None:
    # Arrivals match what the ten dynos complete: nothing is falling, nothing is released.
    pinned = {**SETTINGS, "pin_dyno_rate": True}
    levels = [2_000, 2_100, 1_950, 2_050, 2_000, 1_900, 2_100, 2_000, 2_050, 1_950]
    assert set(run([obs(visible=v, in_flight=40, quantity=10, at=30 * i) for i, v in enumerate(levels)],
                   settings=pinned)) == {10}


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



# --- reasons: what was seen, what the rule concluded, what was done -------------------------

FINAL = re.compile(r"→ (?:(\d+) to (\d+) dynos|stay at (\d+))$")


def check_reason(reason: str, quantity: int, desired: int) -> None:
    """The reason ends with what was done, and what it says was done is what was done."""
    match = FINAL.search(reason)
    assert match, reason
    if match.group(3) is not None:
        assert desired == quantity == int(match.group(3)), reason
    else:
        assert (int(match.group(1)), int(match.group(2))) == (quantity, desired) != (desired, desired), reason
    assert ("scale up" in reason) <= (desired > quantity), reason
    assert ("scale down" in reason) <= (desired < quantity), reason


@pytest.mark.parametrize("visible, in_flight, quantity, bounds", list(itertools.product(
    [0, 300, 4_000, 50_000], [0, 12], [0, 3, 4, 12], [Bounds(0, 100), Bounds(4, 10), Bounds(0, 2)])))
def test_every_reason_says_seen_then_rule_then_what_was_done_without_contradiction(
        visible: int, in_flight: int, quantity: int, bounds: Bounds) -> None:
    state: Any = {"at": -30.0, "visible": visible, "in_flight": in_flight, "needs": [[-60.0, 4], [-30.0, 4]]}
    verdict = policy.decide(obs(visible=visible, in_flight=in_flight, quantity=quantity), bounds, SETTINGS, state)
    check_reason(verdict.reason, quantity, verdict.desired)
    seen, rule, action = verdict.reason.split(" → ")[:3]
    assert "visible" in seen and "s are left" in rule and "rate" in rule and "needs" in action


def test_a_need_below_the_formation_inside_the_window_says_why_it_keeps_them() -> None:
    state: Any = {"at": -15.0, "visible": 0, "in_flight": 0, "needs": [[-60.0, 4]]}
    verdict = policy.decide(obs(visible=500, quantity=4), BOUNDS, SETTINGS, state)
    assert verdict.desired == 4
    assert "needs 2, but keeps 4 until a lower need has held for 90 s" in verdict.reason
    assert verdict.reason.endswith("→ stay at 4")


def test_classic_out_of_bounds_says_what_the_step_would_have_been_and_what_the_bounds_did() -> None:
    verdict = ClassicPolicy().decide(obs(visible=0, quantity=3), Bounds(4, 10),
                                     {"backlog_threshold": 10, "up_cycles": 2, "down_cycles": 1}, {})
    assert verdict.desired == 4
    assert "would remove one dyno; the formation (3) is below min 4: raised to min → 3 to 4 dynos" in verdict.reason


def test_both_policies_say_held_at_max_in_the_same_words() -> None:
    ours = policy.decide(obs(visible=50_000, quantity=10), Bounds(1, 10), SETTINGS, {})
    classic = ClassicPolicy().decide(obs(visible=50_000, quantity=10), Bounds(1, 10),
                                     {"backlog_threshold": 10, "up_cycles": 1, "down_cycles": 1}, {})
    assert ours.reason.endswith("held at max 10 → stay at 10") and classic.reason.endswith("held at max 10 → stay at 10")


# --- what was learned, shown, pinned ----------------------------------------------------------

def saturated_minutes(rate_truth: float, settings: dict[str, Any], minutes: int = 8) -> Any:
    """Four dynos with a backlog, CloudWatch reporting what they really delete."""
    state: Any = {}
    verdict: Any = None
    for i in range(minutes * 4 + 1):
        at = 15.0 * i
        points = tuple((60.0 * m, 4 * rate_truth * 60) for m in range(max(0, i // 4 - 2)))
        verdict = policy.decide(obs(visible=6_000, in_flight=16, quantity=4, at=at, deleted_per_minute=points),
                                Bounds(4, 4), settings, state)
        state = verdict.state
    return verdict


def test_what_was_learned_is_in_the_details_and_the_reason_next_to_what_the_operator_said() -> None:
    verdict = saturated_minutes(5.0, {**SETTINGS, "dyno_concurrency": 1})
    rate = verdict.details["learned"]["rate"]
    assert rate["source"] == "learned" and rate["value"] == pytest.approx(5.0, rel=0.05) and rate["operator"] == 10
    assert set(rate) == {"value", "operator", "source", "spread", "samples", "basis"}
    assert "rate 5/s per dyno (learned" in verdict.reason and "operator said 10" in verdict.reason
    assert verdict.details["learned"]["concurrency"]["value"] == pytest.approx(4)
    json.dumps(verdict.state), json.dumps(verdict.details)  # both go to JSON fields


def test_a_pinned_figure_is_used_as_the_operator_gave_it() -> None:
    verdict = saturated_minutes(5.0, {**SETTINGS, "pin_dyno_rate": True, "pin_boot_seconds": "true"})
    assert verdict.details["learned"]["rate"] == {"value": 10, "operator": 10, "source": "pinned", "spread": None,
                                                  "samples": 0, "basis": ""}
    assert "rate 10/s per dyno (pinned)" in verdict.reason and "boot 45 s (pinned)" in verdict.reason


def test_a_slower_learned_rate_asks_for_more_dynos_for_the_same_backlog() -> None:
    told = policy.decide(obs(visible=9_000, quantity=5, in_flight=20), BOUNDS, {**SETTINGS, "pin_dyno_rate": True}, {})
    learned = saturated_minutes(5.0, SETTINGS)
    slower = policy.decide(obs(visible=9_000, quantity=5, in_flight=20, at=10_000.0), BOUNDS, SETTINGS,
                           {"learn": learned.state["learn"]})
    assert slower.desired >= 2 * told.desired - 1


def test_learned_boot_times_shrink_the_budget() -> None:
    state: Any = {}
    for i, boots in enumerate([(88.0, 91.0), (90.0, 89.0, 92.0)]):
        verdict = policy.decide(obs(quantity=2, at=15.0 * i, boot_durations=boots), BOUNDS, SETTINGS, state)
        state = verdict.state
    assert verdict.details["learned"]["boot"]["value"] >= 90
    assert verdict.details["budget_seconds"] == pytest.approx(max(120 - 92 - 22.5, 15), abs=1)


@pytest.mark.parametrize("changes, says", [
    ({"prewarm": "sometimes"}, "prewarm must be one of off, shadow, on"),
])
def test_bad_learning_settings_are_named(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        TargetWaitSettings.from_mapping({**SETTINGS, **changes})


def test_when_more_dynos_do_not_help_it_holds_says_so_and_flags_it() -> None:
    state: Any = {}
    verdict: Any = None
    formation = [4] * 16 + [8] * 24  # 4 dynos for 4 minutes, then 8 for 6: the deletes stay at 2,400 a minute
    for i, q in enumerate(formation):
        at = 15.0 * i
        points = tuple((60.0 * m, 2_400.0) for m in range(max(0, i // 4 - 2)))
        verdict = policy.decide(obs(visible=30_000, in_flight=16, quantity=q, at=at, deleted_per_minute=points),
                                BOUNDS, SETTINGS, state)
        state = verdict.state
    assert verdict.desired == 8
    assert verdict.details["not_helping"] and "more dynos do not raise the deletes" in verdict.details["not_helping"]
    assert "hold, add none" in verdict.reason and verdict.reason.endswith("→ stay at 8")


def test_a_start_from_zero_that_cannot_be_on_time_says_what_would_help() -> None:
    state: Any = {}
    for i, boots in enumerate([(95.0, 97.0), (96.0,)]):
        verdict = policy.decide(obs(quantity=0, running=0, at=15.0 * i, boot_durations=boots), BOUNDS, SETTINGS, state)
        state = verdict.state
    verdict = policy.decide(obs(visible=500, quantity=0, running=0, at=30.0), BOUNDS, SETTINGS, state)
    assert verdict.desired > 0 and "from zero the first messages of a burst may be late" in verdict.reason
    assert "a min of 1 would keep a dyno up" in verdict.reason
    check_reason(verdict.reason, 0, verdict.desired)


# --- timing the boot of a pair that never had a dyno up ----------------------------------

def idle_looks(steps: list[dict[str, Any]], settings: dict[str, Any] = SETTINGS, bounds: Bounds = BOUNDS,
               state: dict[str, Any] | None = None) -> list[Any]:
    """Looks 30 s apart; each step gives what differs from an idle queue, and the formation
    is what the last look decided."""
    past: Any = dict(state or {})
    quantity, verdicts = 0, []
    for i, step in enumerate(steps):
        seen = {"quantity": quantity, "running": 0, "starting": quantity, "at": 30.0 * i, **step}
        verdict = policy.decide(obs(**seen), bounds, settings, past)
        check_reason(verdict.reason, seen["quantity"], verdict.desired)
        past, quantity = verdict.state, verdict.desired
        verdicts.append(verdict)
    return verdicts


def test_a_pair_that_never_had_a_dyno_up_times_its_boot_once_while_nothing_waits() -> None:
    booting: dict[str, Any] = {}
    up = {"running": 2, "starting": 0, "boot_durations": (88.0, 93.0)}
    verdicts = idle_looks([{}, booting, booting, booting, up, {"running": 0, "starting": 0}, {}, {}])
    assert [v.desired for v in verdicts] == [2, 2, 2, 2, 0, 0, 0, 0]
    assert ("needs 0, but no dyno was ever up and no boot measured, and a burst from zero is planned on the boot: "
            "starts 2 dyno(s) while nothing waits, to time their boot") in verdicts[0].reason
    assert "keeps the 2 dyno(s) started at 00:00 UTC to time the boot until they are up" in verdicts[2].reason
    assert ("(the 2 dyno(s) started at 00:00 UTC to time the boot are up: the boot is 93 s (p90 of 2 boots; the "
            "operator said 45))") in verdicts[4].reason
    # What the next burst is planned on is what was measured, and no timing starts again.
    assert "boot 93 s (learned, p90 of 2 boots; operator said 45)" in verdicts[-1].reason
    assert verdicts[-1].details["learned"]["boot"]["value"] == 93.0


def test_the_boot_is_not_timed_when_pinned_measured_or_kept_up_by_min() -> None:
    for settings, bounds, first in (({**SETTINGS, "pin_boot_seconds": True}, BOUNDS, {}),
                                    (SETTINGS, Bounds(1, 100), {}),
                                    (SETTINGS, BOUNDS, {"boot_durations": (50.0, 52.0)})):
        verdicts = idle_looks([first, {}, {}], settings, bounds)
        assert [v.desired for v in verdicts] == [bounds.min_dynos] * 3, (settings, bounds)
        assert not any("time their boot" in v.reason for v in verdicts)


def test_a_pair_that_has_had_a_dyno_up_is_not_timed_when_it_falls_idle() -> None:
    # Its dynos ran (the sandbox's, or a real pair's before a boot was measured): whatever
    # they showed is better than a timing, and the page must not say it was timed.
    up = {"quantity": 1, "running": 1, "starting": 0}
    verdicts = idle_looks([up, up, {"quantity": 0, "starting": 0}, {}, {}])
    assert not any("time their boot" in v.reason for v in verdicts)
    assert verdicts[-1].details["boot_timing"] is None


def test_timing_dynos_that_come_up_without_times_are_said_not_measured() -> None:
    up_untimed = {"quantity": 2, "running": 2, "starting": 0}
    verdicts = idle_looks([{}, {"quantity": 2, "starting": 2}, up_untimed, {}])
    assert ("the 2 dyno(s) started at 00:00 UTC to time the boot are up, but their boot could not be measured: the "
            "boot stays the operator's figure") in verdicts[2].reason
    assert verdicts[2].details["boot_timing"].startswith("not measured: 2 dyno(s) started")
    assert "time their boot" not in verdicts[3].reason


def test_a_burst_during_the_timing_is_served_as_any_burst() -> None:
    verdicts = idle_looks([{}, {"visible": 900}, {"visible": 2_400}])
    assert verdicts[0].desired == 2
    assert verdicts[2].desired > 2 and "time the boot" not in verdicts[2].reason


def test_timing_dynos_that_never_come_up_are_given_up_after_ten_minutes_and_not_tried_again() -> None:
    verdicts = idle_looks([{}] + [{"quantity": 2, "starting": 2}] * 21 + [{}, {}])
    assert [v.desired for v in verdicts[:21]] == [2] * 21  # 0 s … 600 s
    assert verdicts[21].desired == 0
    assert ("the 2 dyno(s) started at 00:00 UTC to time the boot are not up after 630 s: timing given up, the boot "
            "stays the operator's figure") in verdicts[21].reason
    assert [v.desired for v in verdicts[22:]] == [0, 0]
    assert verdicts[-1].details["boot_timing"].startswith("given up: 2 dyno(s) started 1970-01-01 00:00 UTC were not up "
                                                         "after 630 s")


def test_a_timing_the_formation_never_took_is_not_asked_again_and_says_why() -> None:
    # A dry run (or a refused write): the formation stays at zero after the timing's ask.
    verdicts = idle_looks([{}, {"quantity": 0, "starting": 0}, {"quantity": 0, "starting": 0},
                           {"quantity": 0, "starting": 0}])
    assert [v.desired for v in verdicts] == [2, 0, 0, 0]
    assert ("the formation did not take the 2 dyno(s) asked at 00:00 UTC to time the boot (a dry run, or a refused "
            "write): not timed, the boot stays the operator's figure") in verdicts[1].reason
    assert verdicts[1].details["boot_timing"].startswith("not done: the formation did not take the 2 dyno(s)")
    assert not any("to time" in v.reason for v in verdicts[2:])


def test_the_first_burst_from_zero_is_on_time_when_the_boot_was_timed_and_late_when_not() -> None:
    # The operator said 45 s and 10/s; the dynos boot in 90 s and complete 5/s. Counts are fresh.
    world = World(dyno_rate=5, boot_seconds=90, lag_seconds=0, dyno_concurrency=4)
    trace = [0] * 900 + [150] * 10 + [0] * 900
    settings = {**SETTINGS, "interval_seconds": 15}
    timed = simulate(trace, policy=policy, settings=settings, bounds=BOUNDS, interval=15, world=world)
    untimed = simulate(trace, policy=policy, settings={**settings, "pin_boot_seconds": True}, bounds=BOUNDS,
                       interval=15, world=world)
    assert timed.late_share <= 0.01 < 0.5 < untimed.late_share


def test_a_need_the_bounds_overrule_is_not_said_to_scale() -> None:
    # Nothing to do at min 1: the reason must not say "scale down" and then stay.
    verdict = policy.decide(obs(quantity=1, running=1, at=300.0), Bounds(1, 100), SETTINGS,
                            {"at": 270.0, "needs": [[200.0, 0], [270.0, 0]]})
    assert verdict.desired == 1 and "scale down" not in verdict.reason
    assert verdict.reason.endswith("held at min 1 → stay at 1"), verdict.reason


def test_a_steady_backlog_does_not_seem_to_grow_when_the_rate_changes() -> None:
    # Six dynos hold a backlog of 1,850 steady. The arrivals are what the busy dynos
    # complete, so they follow the rate: when the rate is corrected from 10/s to 3.5/s
    # (here by the operator; learning does the same), the arrivals are 21/s, not the 60/s
    # reckoned on the old rate, and nothing grows.
    settings = {**SETTINGS, "interval_seconds": 15, "pin_dyno_rate": True, "pin_dyno_concurrency": True}
    state: Any = {}
    for i in range(6):
        verdict = policy.decide(obs(visible=1_850, in_flight=24, quantity=6, at=15.0 * i), BOUNDS, settings, state)
        state = verdict.state
    assert verdict.details["arrivals_per_second"] == pytest.approx(60)
    corrected = policy.decide(obs(visible=1_850, in_flight=24, quantity=6, at=90.0), BOUNDS,
                              {**settings, "dyno_rate": 3.5}, state)
    assert corrected.details["arrivals_per_second"] == pytest.approx(21)
    assert "grows" not in corrected.reason
    assert corrected.desired <= 12, corrected.reason  # what clears 1,850 at 3.5/s within the target, not 40


def test_the_first_look_after_a_pause_does_not_scale_below_what_it_needs() -> None:
    # Two busy dynos for five minutes; then a pause (held cycles keep no state), during which
    # the load doubled and a person scaled to 4. The looks before the pause say nothing of the
    # load now: the first look after it keeps all four busy dynos, as a first cycle would.
    state: Any = {}
    for t in range(0, 300, 30):
        state = policy.decide(obs(in_flight=8, quantity=2, at=t), BOUNDS, SETTINGS, state).state
    after = policy.decide(obs(in_flight=16, quantity=4, at=270 + 1_800), BOUNDS, SETTINGS, state)
    assert after.desired == 4, after.reason
    assert "needs 4" in after.reason and "scale down" not in after.reason


def test_a_scale_down_below_this_looks_busy_dynos_says_it_goes_by_their_median() -> None:
    # One look's in-flight count jumps to three busy dynos on a formation of three whose
    # recent looks were one busy: the way down goes by the median, and the reason says so
    # rather than "needs 3; needed at most 1".
    state: Any = {}
    verdict = None
    for t, in_flight in zip(range(0, 330, 30), [4] * 10 + [12], strict=True):
        verdict = policy.decide(obs(in_flight=in_flight, quantity=3, at=t), BOUNDS, SETTINGS, state)
        state = verdict.state
    assert verdict is not None and verdict.desired < 3
    assert f"needs 3 on this look's 3 busy; needed at most {verdict.desired} over the last 90 s" in verdict.reason
    assert "counting busy dynos at their median over the last 5 looks: scale down" in verdict.reason


def test_stuck_workers_that_delete_nothing_do_not_stop_the_policy() -> None:
    # Three dynos up on a backlog for five minutes while CloudWatch counts no delete. The
    # policy must go on deciding (before, it learned a rate of 0 and failed on every cycle
    # after, for good), and say why the minutes taught it nothing.
    state: Any = {}
    start = 1_767_571_200.0
    verdicts = []
    for i in range(21):
        at = start + 15 * i
        done = tuple((m, 0.0) for m in range(int(start), int(at) - 60, 60))
        verdict = policy.decide(obs(visible=3_000, in_flight=12, quantity=3, at=at, deleted_per_minute=done),
                                BOUNDS, SETTINGS, state)
        state = verdict.state
        verdicts.append(verdict)
    assert verdicts[-1].details["learned"]["rate"]["value"] > 0
    assert any("no message deleted" in v.reason for v in verdicts)
    assert verdicts[-1].desired >= 3
