"""What the cycle records of a pair's problems (``ScalingPair.conditions``, ``paused_by``),
which the alerts read: seen on real parts (moto_server SQS, the Heroku stand-in)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from scaling import services
from scaling.models import AlertChannel
from scaling.conditions import PERSON_OUTSIDE
from scaling.models import FormationState, HerokuAccount, HerokuApp, ScalingPair
from tests.conftest import HEROKU_TOKEN, cycle, free_port, send_messages
from tests.standins.alert_receivers import WebhookReceiver
from tests.test_alerts import drain, evaluate, events

pytestmark = pytest.mark.django_db


def conditions(pair: ScalingPair) -> dict[str, Any]:
    pair.refresh_from_db()
    return dict(pair.conditions)


def test_a_permanent_error_stays_through_a_passing_one_and_clears_when_fixed(queue_and_app: Any, make_pair: Any) -> None:
    _, heroku = queue_and_app
    pair = make_pair()
    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token="hk-revoked-token-000000")
    cycle(pair)
    first = conditions(pair)["permanent_error"]
    assert "401" in first["detail"] and "hk-revoked-token-000000" not in first["detail"]
    assert first["detail"].endswith("(Heroku account “test”)")  # which token to fix

    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token=HEROKU_TOKEN)
    heroku.fail_next("GET", r"/formation$", 503)  # a hiccup cannot tell whether the token works now
    cycle(pair)
    assert conditions(pair)["permanent_error"] == first  # same since: still one problem

    cycle(pair)
    assert "permanent_error" not in conditions(pair)


def test_a_refused_quantity_is_a_standing_problem_while_it_is_held(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].max_quantity = 1
    pair = make_pair(max_dynos=5)
    send_messages(sqs, "orders", 100)
    cycle(pair)  # 422
    since = conditions(pair)["permanent_error"]["since"]
    held = cycle(pair)
    assert held.outcome == "held"
    assert conditions(pair)["permanent_error"]["since"] == since
    assert "Heroku refused 2" in conditions(pair)["permanent_error"]["detail"]


def test_a_persons_change_is_a_condition_with_who_until_the_hold_ends(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair()
    start = timezone.now()
    cycle(pair, now=start)
    heroku.set_quantity("orders-app", 4)
    seen = start + timedelta(seconds=301)  # no webhooks: the next reconcile sees it
    cycle(pair, now=seen)
    pair.refresh_from_db()
    assert pair.paused_by == PERSON_OUTSIDE and "person_change" in pair.conditions
    assert "paused by a person outside DynoScaler" in cycle(pair, now=seen + timedelta(seconds=15)).reason

    after = cycle(pair, now=seen + timedelta(seconds=pair.manual_hold_seconds + 60))
    assert after.outcome != "paused"
    pair.refresh_from_db()
    assert pair.paused_by == "" and "person_change" not in pair.conditions


def test_waiting_past_the_target_at_max_is_a_condition(queue_and_app: Any, make_pair: Any) -> None:
    sqs, _ = queue_and_app
    pair = make_pair(policy="target_wait", dyno_rate=0.1, min_dynos=1, max_dynos=1)
    send_messages(sqs, "orders", 50)  # 50 messages at 0.1/s: the newest waits ≈ 500 s on the one dyno allowed
    cycle(pair)
    detail = conditions(pair)["wait_over_target_at_max"]["detail"]
    assert "waits ≈ 500 s (target 120 s) at max 1" in detail

    ScalingPair.objects.filter(pk=pair.pk).update(max_dynos=30)
    cycle(pair)  # allowed more dynos, it scales up: no longer stuck at max
    assert "wait_over_target_at_max" not in conditions(pair)


def test_a_wait_held_below_the_max_by_heroku_is_not_told_as_at_max(queue_and_app: Any, make_pair: Any) -> None:
    # Heroku accepts at most two dynos; the pair's max is three. The wait is over the target,
    # but "raise the max" would not help: the refusal is the problem, told as itself.
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].max_quantity = 2
    pair = make_pair(policy="target_wait", dyno_rate=0.1, min_dynos=1, max_dynos=3)
    send_messages(sqs, "orders", 150)
    for _ in range(4):
        cycle(pair)
    assert heroku.quantity("orders-app") == 2
    assert set(conditions(pair)) == {"permanent_error"}


def test_a_persons_change_seen_by_a_real_cycle_reaches_the_alert_channel_once(
    queue_and_app: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    _, heroku = queue_and_app
    pair = make_pair()
    channel = make_channel("webhook")
    start = timezone.now()
    cycle(pair, now=start)
    heroku.set_quantity("orders-app", 3)
    for step in range(1, 4):  # seen at the reconcile after 5 minutes, then held
        cycle(pair, now=start + timedelta(seconds=250 + 60 * step))
        evaluate(start + timedelta(seconds=250 + 60 * step + 1))
        drain(channel, start + timedelta(seconds=250 + 60 * step + 1))
    assert events(receiver) == [("opened", f"person_change:pair:{pair.pk}")]

    later = start + timedelta(seconds=310 + pair.manual_hold_seconds + 60)
    cycle(pair, now=later)
    evaluate(later + timedelta(seconds=1))
    drain(channel, later + timedelta(seconds=1))
    assert events(receiver) == [("opened", f"person_change:pair:{pair.pk}"), ("resolved", f"person_change:pair:{pair.pk}")]


def test_a_pause_says_who_paused_and_resume_forgets_it(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair()
    services.pair_pause(pair=pair, minutes=10, user="alice")
    assert "paused by alice until" in cycle(pair).reason
    services.pair_resume(pair=pair)
    pair.refresh_from_db()
    assert pair.paused_by == "" and pair.paused_until is None


def test_dynos_that_do_not_come_up_are_a_condition_told_once_and_cleared_when_they_are_up(
    queue_and_app: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    _, heroku = queue_and_app
    worker = heroku.apps["orders-app"].processes["worker"]
    worker.boot_seconds = 10_000  # the dyno never comes up (a boot that hangs)
    pair = make_pair()
    channel = make_channel("webhook")
    start = timezone.now()
    cycle(pair, now=start)
    assert "dynos_not_up" not in conditions(pair)  # a boot may take this long: not yet a problem
    for minutes in (5, 6):  # twice the 45 s boot and its minute of grace are long gone
        cycle(pair, now=start + timedelta(minutes=minutes))
        evaluate(start + timedelta(minutes=minutes, seconds=1))
        drain(channel, start + timedelta(minutes=minutes, seconds=1))
    detail = conditions(pair)["dynos_not_up"]["detail"]
    assert detail.startswith("1 of 1 dyno(s) not up, the longest since ") and "crashing, or stuck starting" in detail
    assert events(receiver) == [("opened", f"dynos_not_up:pair:{pair.pk}")]
    assert "heroku logs --ps worker" in receiver.bodies()[0]["problem"]["action"]

    worker.boot_seconds = 0  # it comes up; the next read of the dyno list shows it
    later = start + timedelta(minutes=8)
    cycle(pair, now=later)
    assert "dynos_not_up" not in conditions(pair)
    evaluate(later + timedelta(seconds=1))
    drain(channel, later + timedelta(seconds=1))
    assert events(receiver)[-1] == ("resolved", f"dynos_not_up:pair:{pair.pk}")


def test_a_dyno_restarting_after_a_long_life_is_not_a_problem(queue_and_app: Any, make_pair: Any) -> None:
    # Heroku restarts every dyno daily: the formation changed long ago, but the dyno's own
    # change of state is fresh.
    _, heroku = queue_and_app
    pair = make_pair()
    cycle(pair)
    day_ago = timezone.now() - timedelta(hours=25)
    FormationState.objects.update(changed_at=day_ago)
    HerokuApp.objects.update(reconciled_at=day_ago)  # the next cycle reconciles: it reads the dyno list
    worker = heroku.apps["orders-app"].processes["worker"]
    worker.boot_seconds, worker.dyno_started[1] = 10_000, time.monotonic()  # restarting right now
    decision = cycle(pair)
    assert decision.dynos_starting == 1  # seen restarting
    assert "dynos_not_up" not in conditions(pair)


def test_cycles_that_keep_failing_are_told_once_they_have_lasted_and_cleared_when_one_succeeds(
    queue_and_app: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver, monkeypatch: Any
) -> None:
    # SQS unreachable: each cycle holds and retries, which is right for a minute, but for
    # as long as it lasts nothing is scaled. Before, no alert ever said so.
    pair = make_pair()
    channel = make_channel("webhook")
    AlertChannel.objects.filter(pk=channel.pk).update(kinds=["stalled"])  # it hears of failing pairs too
    good_endpoint = os.environ["AWS_ENDPOINT_URL_SQS"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    services.forget_cached_clients()
    start = timezone.now()
    for minute in range(7):
        at = start + timedelta(minutes=minute)
        assert cycle(pair, now=at).outcome == "error"
        evaluate(at + timedelta(seconds=1))
        drain(channel, at + timedelta(seconds=1))
        told = events(receiver)
        assert told == ([] if minute < 5 else [("opened", f"failing:pair:{pair.pk}")]), minute
    problem = receiver.bodies()[0]["problem"]
    assert "could not read the queues" in problem["summary"] and "SQS" in problem["summary"]
    assert "nothing is scaled until one succeeds" in problem["action"]
    assert conditions(pair)["failing"]["since"] == start.isoformat()

    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", good_endpoint)
    services.forget_cached_clients()
    later = start + timedelta(minutes=8)
    assert cycle(pair, now=later).outcome != "error"
    assert "failing" not in conditions(pair)
    evaluate(later + timedelta(seconds=1))
    drain(channel, later + timedelta(seconds=1))
    assert events(receiver)[-1] == ("resolved", f"failing:pair:{pair.pk}")


def test_a_permanent_error_ends_the_failing_one_and_is_told_as_itself(queue_and_app: Any, make_pair: Any,
                                                                      monkeypatch: Any) -> None:
    pair = make_pair()
    good_endpoint = os.environ["AWS_ENDPOINT_URL_SQS"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    services.forget_cached_clients()
    assert cycle(pair).outcome == "error"
    assert set(conditions(pair)) == {"failing"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", good_endpoint)
    services.forget_cached_clients()
    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token="hk-revoked-token-000000")
    assert cycle(pair).error_permanent is True
    assert set(conditions(pair)) == {"permanent_error"}  # one problem, told as what it is


def test_a_missing_queue_names_its_region_and_the_aws_account(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair(queues=["no-such-queue"])
    cycle(pair)
    assert conditions(pair)["permanent_error"]["detail"] == (
        "SQS: AWS.SimpleQueueService.NonExistentQueue: queue 'no-such-queue' does not exist in us-east-1 for these "
        "credentials (AWS account “test”)")


def test_a_persons_scale_down_seen_by_a_read_drops_the_dynos_it_removed(queue_and_app: Any, make_pair: Any) -> None:
    # Ten dynos up; a person scales to three. The read that finds it had no dyno list, and
    # the removed dynos stayed counted as up: the reasons said "10 up" on a formation of 3,
    # and the next plan counted on them.
    _, heroku = queue_and_app
    worker = heroku.apps["orders-app"].processes["worker"]
    heroku.set_quantity("orders-app", 10)
    worker.dyno_started = {n: time.monotonic() - 100 for n in range(1, 11)}
    pair = make_pair(max_dynos=10)
    start = timezone.now()
    assert cycle(pair, now=start).dynos_running == 10
    heroku.set_quantity("orders-app", 3)
    found = cycle(pair, now=start + timedelta(seconds=15))  # it would remove one: the read before writing finds 3
    assert "changed outside DynoScaler" in found.reason
    held = cycle(pair, now=start + timedelta(seconds=30))
    assert held.quantity_before == 3
    assert held.dynos_running == 3, held.reason
