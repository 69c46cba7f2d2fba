"""What the live cycle feeds the learning policy, and what the pair page shows of it, on real
parts: moto_server's SQS and CloudWatch (holding the SQS metrics published as AWS would),
the Heroku stand-in with its webhooks, and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from django.utils import timezone

from scaling import services
from scaling.models import FormationState, HerokuApp, ScalingPair
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN, REGION, cycle, send_messages


def publish_deletes(moto_url: str, queue: str, *, minutes: list[float], per_minute: float) -> None:
    client = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_url, aws_access_key_id=AWS_KEY,
                          aws_secret_access_key=AWS_SECRET)
    client.put_metric_data(Namespace="AWS/SQS", MetricData=[
        {"MetricName": "NumberOfMessagesDeleted", "Dimensions": [{"Name": "QueueName", "Value": queue}],
         "Timestamp": datetime.fromtimestamp(minute, tz=UTC), "Value": per_minute} for minute in minutes])


@pytest.mark.django_db
def test_cloudwatch_is_read_at_most_once_a_minute(queue_and_app: Any, make_pair: Any) -> None:
    pair = make_pair(policy="target_wait", dyno_rate=2)
    start = timezone.now()
    cycle(pair, now=start)
    pair.refresh_from_db()
    first = pair.cloudwatch_read_at
    assert first == start and pair.cloudwatch_problem == ""
    cycle(pair, now=start + timedelta(seconds=15))
    pair.refresh_from_db()
    assert pair.cloudwatch_read_at == first  # the same minutes: not asked again
    cycle(pair, now=start + timedelta(seconds=61))
    pair.refresh_from_db()
    assert pair.cloudwatch_read_at == start + timedelta(seconds=61)


@pytest.mark.django_db
def test_no_permission_for_cloudwatch_is_said_once_and_the_pair_scales_on(
    queue_and_app: Any, make_pair: Any, moto_with_iam: str, monkeypatch: Any
) -> None:
    sqs, heroku = queue_and_app
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_with_iam, aws_access_key_id=AWS_KEY,
                       aws_secret_access_key=AWS_SECRET)
    iam.create_user(UserName="someone-else")  # the server's two calls before it enforces IAM
    iam.create_user(UserName="someone-more")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", moto_with_iam)  # from now on it knows none of our keys
    services.forget_cached_clients()
    pair = make_pair(policy="target_wait", dyno_rate=0.1, max_dynos=10)
    send_messages(sqs, "orders", 100)
    start = timezone.now()
    decision = cycle(pair, now=start)
    assert decision.outcome == "applied"  # SQS and Heroku carry on
    pair.refresh_from_db()
    assert "CloudWatch cannot be read" in pair.cloudwatch_problem and "queue counts" in pair.cloudwatch_problem
    assert AWS_SECRET not in pair.cloudwatch_problem
    cycle(pair, now=start + timedelta(minutes=10))
    pair.refresh_from_db()
    assert pair.cloudwatch_read_at == start  # refused: asked again only after an hour
    services.forget_cached_clients()


@pytest.mark.django_db
def test_the_pair_page_shows_what_was_learned_and_what_the_operator_said(
    queue_and_app: Any, make_pair: Any, moto_url: str, admin_client: Any
) -> None:
    sqs, heroku = queue_and_app
    heroku.set_quantity("orders-app", 2)
    pair = make_pair(policy="target_wait", dyno_rate=10, max_dynos=10, min_dynos=2)
    send_messages(sqs, "orders", 300)  # a backlog the two dynos work through
    start = timezone.now().replace(second=5, microsecond=0)
    minutes = [(start - timedelta(minutes=m)).timestamp() // 60 * 60 for m in range(1, 9)]
    publish_deletes(moto_url, "orders", minutes=minutes, per_minute=240)  # 2 dynos x 2/s: a fifth of what was said
    for step in range(0, 8):
        cycle(pair, now=start + timedelta(seconds=15 * step))
    pair.refresh_from_db()
    rate = pair.learned["learned"]["rate"]
    assert rate["operator"] == 10
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert "What DynoScaler measured" in page and "messages per second per dyno" in page
    assert "You said" in page and "Pre-warm" in page


@pytest.mark.django_db
def test_a_pinned_rate_is_used_as_given(queue_and_app: Any, make_pair: Any) -> None:
    sqs, _ = queue_and_app
    pair = make_pair(policy="target_wait", dyno_rate=3, pin_dyno_rate=True)
    send_messages(sqs, "orders", 20)
    decision = cycle(pair)
    pair.refresh_from_db()
    assert pair.learned["learned"]["rate"]["source"] == "pinned"
    assert "rate 3/s per dyno (pinned)" in decision.reason


@pytest.mark.django_db(transaction=True)
def test_boots_seen_by_webhook_reach_the_policy(queue_and_app: Any, make_pair: Any, live_server: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 1.0
    pair = make_pair(policy="target_wait", dyno_rate=0.5, max_dynos=4)
    cycle(pair)
    services.app_subscribe(app=HerokuApp.objects.get(), public_url=live_server.url)
    send_messages(sqs, "orders", 200)
    assert cycle(pair).outcome == "applied"
    # A one-second boot, its webhook posted to the live server: generous bounds, as the
    # stand-in's timer and the delivery both wait for a loaded machine's scheduler.
    deadline = timezone.now() + timedelta(seconds=60)
    while not FormationState.objects.get().boots:
        assert timezone.now() < deadline, "no dyno came up"
        heroku.flush(1)
    (_, seconds), *_ = FormationState.objects.get().boots
    assert 0.5 <= seconds <= 30
    cycle(pair, now=timezone.now() + timedelta(seconds=15))
    boot = ScalingPair.objects.get(pk=pair.pk).learned["learned"]["boot"]
    assert boot["samples"] >= 1


@pytest.mark.django_db
def test_without_webhooks_a_boot_is_timed_from_the_dynos_own_times_not_from_when_we_looked(
        queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 1.0
    pair = make_pair(policy="target_wait", dyno_rate=0.5, max_dynos=4)
    cycle(pair)
    send_messages(sqs, "orders", 200)
    assert cycle(pair).outcome == "applied"
    time.sleep(3)  # the dyno came up long before the next look at the dyno list
    cycle(pair, now=timezone.now() + timedelta(seconds=31))  # the read while new dynos boot
    boots = [seconds for _, seconds in FormationState.objects.get().boots]
    assert boots and all(0.8 <= seconds <= 2.0 for seconds in boots), boots  # not the 3 s we waited


def two_dynos_up_since_before(sqs: Any, heroku: Any, make_pair: Any) -> ScalingPair:
    """Workers that ran before DynoScaler: two dynos up, each booted in 7 s (by their own times)."""
    sqs.create_queue(QueueName="orders")
    process = heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=2, boot_seconds=7.0).processes["worker"]
    process.dyno_started = {n: time.monotonic() - 100 for n in (1, 2)}
    return make_pair(policy="target_wait", dyno_rate=0.5, max_dynos=4)


@pytest.mark.django_db
def test_the_dynos_already_up_at_the_first_look_tell_their_boot(sqs: Any, heroku: Any, make_pair: Any) -> None:
    # Workers that ran before DynoScaler: each dyno's own times (started, then up 7 s later)
    # are a boot seen, so the first burst is not planned on the operator's figure alone.
    pair = two_dynos_up_since_before(sqs, heroku, make_pair)
    first = cycle(pair)
    assert [seconds for _, seconds in FormationState.objects.get().boots] == [7.0, 7.0]
    assert "boot 7 s" in first.reason  # learned from them, not the operator's 45 s
    cycle(pair, now=timezone.now() + timedelta(seconds=400))  # the reconcile reads them again
    assert len(FormationState.objects.get().boots) == 2  # the same dynos are not counted twice


@pytest.mark.django_db
def test_a_pair_that_never_had_a_dyno_up_times_its_boot_through_heroku_and_lets_the_dynos_go(
        queue_and_app: Any, make_pair: Any, admin_client: Any) -> None:
    _, heroku = queue_and_app
    heroku.set_quantity("orders-app", 0)
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 1.0
    pair = make_pair(policy="target_wait", dyno_rate=10, min_dynos=0, max_dynos=4)
    first = cycle(pair)
    assert first.outcome == "applied" and (first.quantity_before, first.applied_quantity) == (0, 2)
    assert "no dyno was ever up and no boot measured, and a burst from zero is planned on the boot: starts 2 dyno(s)" in first.reason
    assert heroku.apps["orders-app"].processes["worker"].quantity == 2
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert "Timing the boot" in page and "under way: 2 dyno(s) started" in page
    time.sleep(2.5)  # both dynos come up
    done = cycle(pair, now=timezone.now() + timedelta(seconds=15))
    assert done.outcome == "applied" and done.applied_quantity == 0, done.reason
    assert heroku.apps["orders-app"].processes["worker"].quantity == 0
    boot = ScalingPair.objects.get(pk=pair.pk).learned["learned"]["boot"]
    assert boot["source"] == "learned" and 0.8 <= boot["value"] <= 2.0, boot
    assert "timed once, with 2 dyno(s) started" in admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    # Timed once: an idle queue at zero dynos stays there.
    later = cycle(pair, now=timezone.now() + timedelta(seconds=30))
    assert later.desired_quantity == 0 and "time their boot" not in later.reason


@pytest.mark.django_db
def test_a_dry_run_pair_asks_to_time_its_boot_once_and_then_says_it_was_not_done(
        queue_and_app: Any, make_pair: Any) -> None:
    _, heroku = queue_and_app
    heroku.set_quantity("orders-app", 0)
    pair = make_pair(policy="target_wait", dyno_rate=10, min_dynos=0, max_dynos=4, dry_run=True)
    first = cycle(pair)
    assert first.outcome == "dry_run" and "to time their boot" in first.reason
    second = cycle(pair, now=timezone.now() + timedelta(seconds=15))
    assert second.outcome == "no_change" and "not timed, the boot stays the operator's figure" in second.reason
    assert heroku.apps["orders-app"].processes["worker"].quantity == 0
    third = cycle(pair, now=timezone.now() + timedelta(seconds=30))
    assert "to time" not in third.reason


@pytest.mark.django_db
def test_what_a_held_pair_measured_is_kept(sqs: Any, heroku: Any, make_pair: Any) -> None:
    # The kill switch holds every formation change, but the pair goes on looking: the boots
    # it saw while held (seen once: the dyno list's times are read once per dyno) must stay
    # learned. Before, a held cycle kept none of its state, and the next reason went back to
    # the operator's 45 s, and so on every cycle the pair was held.
    pair = two_dynos_up_since_before(sqs, heroku, make_pair)
    services.kill_switch_set(engaged=True, user="alice", note="incident")
    send_messages(sqs, "orders", 300)  # it wants more dynos than the two: every cycle is held
    first = cycle(pair)
    assert first.outcome == "held" and "boot 7 s" in first.reason
    later = cycle(pair, now=timezone.now() + timedelta(seconds=15))
    assert later.outcome == "held"
    assert "boot 7 s" in later.reason, later.reason


@pytest.mark.django_db
def test_a_figure_pinned_since_the_last_cycle_shows_as_pinned_at_once(queue_and_app: Any, make_pair: Any,
                                                                      admin_client: Any) -> None:
    # Disabled, the pair runs no cycle that would rewrite its table: it said "10/s, operator"
    # beside a form that said 25, pinned, for as long as it stayed disabled.
    pair = make_pair(policy="target_wait", dyno_rate=10, dyno_concurrency=4, max_dynos=4)
    cycle(pair)
    ScalingPair.objects.filter(pk=pair.pk).update(enabled=False, dyno_rate=25, pin_dyno_rate=True, dyno_concurrency=2,
                                                  pin_dyno_concurrency=True)
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    table = page.split("What DynoScaler measured", 1)[1].split("</table>", 1)[0]
    rate = table.split("messages per second per dyno", 1)[1].split("</tr>", 1)[0]
    assert "25/s" in rate and "pinned" in rate and "10/s" not in rate
    concurrency = table.split("concurrency per dyno", 1)[1].split("</tr>", 1)[0]
    assert ">2<" in concurrency and "pinned" in concurrency and ">4<" not in concurrency
