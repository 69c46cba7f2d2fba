"""One cycle of one pair against real moto_server SQS and the Heroku API stand-in."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scaling import services
from scaling.models import Decision, HerokuAccount, PairSample, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN, at_once, cycle, free_port, send_messages

pytestmark = pytest.mark.django_db




def test_scale_up_waits_for_up_cycles_then_adds_one_dyno(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=2, backlog_threshold=10)
    send_messages(sqs, "orders", 50)

    first = cycle(pair)
    assert first.outcome == Decision.Outcome.NO_CHANGE
    assert (first.visible_messages, first.dynos_running, first.quantity_before) == (50, 1, 1)
    assert first.state_after == {"up_count": 1, "down_count": 0}
    assert heroku.quantity("orders-app") == 1

    second = cycle(pair)
    assert second.outcome == Decision.Outcome.APPLIED
    assert (second.desired_quantity, second.applied_quantity) == (2, 2)
    assert heroku.quantity("orders-app") == 2
    assert [w.body for w in heroku.writes()] == [{"quantity": 2}]
    assert "add one dyno" in second.reason


def test_scale_down_after_queue_drains(queue_and_app: Any, make_pair: Any) -> None:
    _, heroku = queue_and_app
    heroku.set_quantity("orders-app", 3)
    pair = make_pair(down_cycles=1)
    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.APPLIED
    assert heroku.quantity("orders-app") == 2


def test_steady_load_at_the_threshold_makes_no_api_write(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(min_dynos=1, max_dynos=1)
    send_messages(sqs, "orders", 30)
    for _ in range(3):
        assert cycle(pair).outcome == Decision.Outcome.NO_CHANGE
    assert heroku.writes() == []


def test_dry_run_records_the_decision_but_leaves_the_formation(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(dry_run=True)
    send_messages(sqs, "orders", 100)
    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.DRY_RUN
    assert decision.desired_quantity == 2 and decision.applied_quantity is None
    assert decision.dry_run is True
    assert heroku.quantity("orders-app") == 1 and heroku.writes() == []


def test_visible_messages_are_summed_over_the_pairs_queues(queue_and_app: Any, make_pair: Any) -> None:
    sqs, _ = queue_and_app
    url = sqs.create_queue(QueueName="orders-priority")["QueueUrl"]
    pair = make_pair(queues=["orders", url])
    send_messages(sqs, "orders", 7)
    send_messages(sqs, "orders-priority", 5)
    decision = cycle(pair)
    assert decision.visible_messages == 12
    assert sorted((q["queue"], q["visible"]) for q in decision.queues) == sorted([("orders", 7), (url, 5)])


def test_in_flight_and_delayed_messages_are_recorded(queue_and_app: Any, make_pair: Any) -> None:
    sqs, _ = queue_and_app
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    send_messages(sqs, "orders", 4)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=300)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    decision = cycle(make_pair())
    assert (decision.visible_messages, decision.in_flight_messages, decision.delayed_messages) == (1, 3, 1)


def test_unreachable_sqs_is_not_an_empty_queue(queue_and_app: Any, make_pair: Any, monkeypatch: Any) -> None:
    _, heroku = queue_and_app
    heroku.set_quantity("orders-app", 3)
    pair = make_pair(down_cycles=1)
    ScalingPair.objects.filter(pk=pair.pk).update(policy_state={"up_count": 0, "down_count": 0})
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    services.forget_cached_clients()

    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.ERROR
    assert decision.error.startswith("SQS:") and decision.error_permanent is False
    assert "formation held" in decision.reason
    assert decision.state_after == decision.state_before == {"up_count": 0, "down_count": 0}
    assert heroku.quantity("orders-app") == 3
    assert heroku.requests == []  # no Heroku call is spent on a cycle that cannot decide


def test_missing_queue_is_a_permanent_error_that_names_it(queue_and_app: Any, make_pair: Any) -> None:
    decision = cycle(make_pair(queues=["no-such-queue"]))
    assert decision.outcome == Decision.Outcome.ERROR
    assert decision.error_permanent is True
    assert "'no-such-queue' does not exist" in decision.error


@pytest.mark.parametrize("status, permanent", [(401, True), (403, True), (404, True), (500, False), (503, False)])
def test_heroku_errors_hold_the_formation_and_the_counters(queue_and_app: Any, make_pair: Any, status: int, permanent: bool) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair()
    send_messages(sqs, "orders", 100)
    heroku.fail_next("GET", r"/formation$", status)
    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.ERROR
    assert decision.error_permanent is permanent
    assert f"{status}" in decision.error
    assert decision.state_after == decision.state_before
    assert heroku.writes() == []


def test_wrong_token_is_reported_without_the_token(queue_and_app: Any, make_pair: Any, caplog: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair()
    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token="hk-wrong-token-9999")
    caplog.set_level(logging.DEBUG)
    decision = cycle(pair)
    assert decision.error_permanent is True and "401 unauthorized" in decision.error
    everything = json.dumps(decision.as_document()) + caplog.text
    for secret in ("hk-wrong-token-9999", HEROKU_TOKEN, AWS_SECRET):
        assert secret not in everything


def test_missing_process_type_is_a_permanent_error(queue_and_app: Any, make_pair: Any) -> None:
    decision = cycle(make_pair(process_type="urgentworker"))
    assert decision.error_permanent is True
    assert "no process type 'urgentworker'" in decision.error


def test_rate_limit_backs_off_the_whole_account(queue_and_app: Any, make_pair: Any, settings: Any) -> None:
    sqs, heroku = queue_and_app
    settings.HEROKU_RATE_LIMIT_BACKOFF_SECONDS = 90
    pair = make_pair()
    heroku.rate_limit_pool = 0  # the account's pool is empty: Heroku answers 429
    first = cycle(pair)
    assert first.outcome == Decision.Outcome.ERROR and first.error_permanent is False
    assert "429" in first.error
    account = HerokuAccount.objects.get(pk=pair.heroku_account_id)
    assert account.rate_limited_until is not None
    assert account.rate_limited_until > timezone.now() + timedelta(seconds=80)

    calls = len(heroku.requests)
    second = cycle(pair)
    assert second.visible_messages == 0  # SQS is still read: only Heroku calls wait
    assert "backing off" in second.error
    assert len(heroku.requests) == calls  # no call while backing off


def test_a_low_api_pool_is_left_for_the_teams_own_tools(queue_and_app: Any, make_pair: Any, settings: Any) -> None:
    sqs, heroku = queue_and_app
    settings.HEROKU_RATE_LIMIT_RESERVE = 100
    heroku.rate_limit_pool = 62  # the first look's two reads leave 60: 40 under the reserve
    pair = make_pair(up_cycles=1)
    assert cycle(pair).outcome != Decision.Outcome.ERROR
    account = HerokuAccount.objects.get(pk=pair.heroku_account_id)
    assert account.rate_limited_until is not None and account.pool_remaining == 60
    wait = (account.rate_limited_until - timezone.now()).total_seconds()
    assert 25 < wait <= 32  # 40 calls at ~75 a minute
    calls = len(heroku.requests)
    send_messages(sqs, "orders", 100)  # the policy wants a dyno more: the write waits for the pool
    held = cycle(pair)
    assert held.outcome == Decision.Outcome.HELD and "not sent: the account's Heroku API pool" in held.reason
    assert len(heroku.requests) == calls


def test_rate_limit_remaining_is_recorded(queue_and_app: Any, make_pair: Any) -> None:
    _, heroku = queue_and_app
    heroku.rate_limit_pool = 1234
    decision = cycle(make_pair())  # far above the reserve: no back-off
    assert decision.heroku_rate_limit_remaining == 1232  # formation + dynos


def test_refused_quantity_is_not_retried_in_a_loop(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].max_quantity = 1  # e.g. an Eco dyno's limit
    pair = make_pair(max_dynos=5)
    send_messages(sqs, "orders", 100)

    refused = cycle(pair)
    assert refused.outcome == Decision.Outcome.ERROR and refused.error_permanent is True
    assert "422" in refused.error
    assert len(heroku.writes()) == 1

    held = cycle(pair)
    assert held.outcome == Decision.Outcome.HELD
    assert "Heroku refused 2 earlier" in held.reason
    assert len(heroku.writes()) == 1

    # The operator raises the limit and saves the pair: DynoScaler tries again.
    heroku.apps["orders-app"].processes["worker"].max_quantity = 10
    services.pair_apply_settings(pair=pair)
    assert cycle(pair).outcome == Decision.Outcome.APPLIED
    assert heroku.quantity("orders-app") == 2


def test_a_refusal_survives_a_cycle_that_could_not_observe(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].max_quantity = 1
    pair = make_pair(max_dynos=5)
    send_messages(sqs, "orders", 100)
    assert cycle(pair).outcome == Decision.Outcome.ERROR  # 422: refused for good
    heroku.fail_next("GET", r"/formation$", 503)  # a passing Heroku hiccup
    assert cycle(pair).outcome == Decision.Outcome.ERROR
    held = cycle(pair)
    assert held.outcome == Decision.Outcome.HELD and len(heroku.writes()) == 1


def test_transient_write_failure_retries_next_cycle_from_the_same_counters(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1)
    send_messages(sqs, "orders", 100)
    heroku.fail_next("PATCH", r"/formation/worker$", 503)
    failed = cycle(pair)
    assert failed.outcome == Decision.Outcome.ERROR and failed.error_permanent is False
    assert failed.state_after == failed.state_before
    assert cycle(pair).outcome == Decision.Outcome.APPLIED


def test_disabled_pair_runs_no_cycle(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair(enabled=False)
    assert services.pair_run_cycle(pair_id=pair.pk, force=True) is None
    assert Decision.objects.count() == 0


def test_a_second_beats_duplicate_tick_is_dropped(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair(interval_seconds=60)
    assert services.pair_run_cycle(pair_id=pair.pk) is not None
    assert services.pair_run_cycle(pair_id=pair.pk) is None  # moments later: a duplicate
    later = timezone.now() + timedelta(seconds=61)
    assert services.pair_run_cycle(pair_id=pair.pk, now=later) is not None
    assert PairSample.objects.filter(pair=pair).count() == 2  # one per cycle run (the second folds into a run)


def test_a_claim_left_by_a_killed_worker_expires(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair()
    ScalingPair.objects.filter(pk=pair.pk).update(
        cycle_claim="00000000-0000-0000-0000-000000000001",
        cycle_claimed_until=timezone.now() - timedelta(seconds=1),
    )
    assert services.pair_run_cycle(pair_id=pair.pk, force=True) is not None


@pytest.mark.django_db(transaction=True)
def test_two_cycles_of_one_pair_at_once_yield_one_decision(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1)
    send_messages(sqs, "orders", 100)
    heroku.delay_seconds = 0.3  # hold the first cycle open while the second arrives
    results = at_once(lambda: services.pair_run_cycle(pair_id=pair.pk))
    assert sum(r is not None for r in results) == 1
    assert Decision.objects.count() == 1
    assert len(heroku.writes()) == 1 and heroku.quantity("orders-app") == 2


def test_without_webhooks_a_ramp_divides_by_the_dynos_really_up(queue_and_app: Any, make_pair: Any) -> None:
    # The classic rule adds a dyno per look while backlog per running dyno is over the
    # threshold: a running count kept from before the ramp made it climb to the max.
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 0.5
    pair = make_pair(policy="classic", up_cycles=1, down_cycles=100, backlog_threshold=10, max_dynos=6)
    send_messages(sqs, "orders", 25)
    quantities = []
    for _ in range(4):
        decision = cycle(pair)
        quantities.append(heroku.quantity("orders-app"))
        time.sleep(1)  # the new dyno is up well before the next look
    assert quantities == [2, 3, 3, 3]  # 25 / 3 = 8.3 is under 10: no fourth dyno
    assert "25 visible message(s) / 3 running dyno(s) = 8.3 per dyno" in decision.reason


def test_a_call_failing_mid_cycle_says_what_failed_once(queue_and_app: Any, make_pair: Any) -> None:
    # The reason repeated the error that the record (and the log line) carry beside it.
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=2)
    send_messages(sqs, "orders", 100)
    cycle(pair)  # the first look; up 1/2
    heroku.fail_next("GET", r"/formation$", 401)  # the read right before the change
    failed = cycle(pair)
    assert failed.outcome == "error" and "401" in failed.error
    assert failed.reason.endswith("a call to Heroku failed; formation held") and "401" not in failed.reason


def test_without_webhooks_a_dyno_stuck_starting_is_not_read_at_every_look(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 3600  # never comes up here
    pair = make_pair(up_cycles=1)
    send_messages(sqs, "orders", 100)
    start = timezone.now()
    assert cycle(pair, now=start).outcome == "applied"  # a dyno starts
    ScalingPair.objects.filter(pk=pair.pk).update(max_dynos=2)  # and no more are asked for

    def dyno_reads(after: int, until: int) -> int:
        before = sum(1 for r in heroku.requests if r.method == "GET" and r.path.endswith("/dynos"))
        for seconds in range(after, until, 15):
            cycle(pair, now=start + timedelta(seconds=seconds))
        return sum(1 for r in heroku.requests if r.method == "GET" and r.path.endswith("/dynos")) - before

    assert dyno_reads(15, 120) == 7  # while it may still be booting: every look
    assert dyno_reads(240, 480) <= 5  # long past its boot: once a minute, not 16 times


def test_a_cycle_never_loads_the_pairs_stored_learned_figures(queue_and_app: Any, make_pair: Any) -> None:
    # The cycle defers the pair's `learned` (the pair page's copy, a large JSON): whatever the
    # cycle needs of the boot comes from the policy's verdict, not from a second query.
    pair = make_pair()
    cycle(pair)
    with CaptureQueriesContext(connection) as captured:
        cycle(pair)
    loads = [q["sql"] for q in captured.captured_queries
             if q["sql"].startswith('SELECT "scaling_scalingpair"."id", "scaling_scalingpair"."learned" FROM')]
    assert loads == []
