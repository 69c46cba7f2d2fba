"""Heroku webhooks keep the formation current; Heroku is called only to act and to reconcile.

Real parts: the web endpoint served by Django's live server, PostgreSQL, moto_server SQS,
and the Heroku stand-in, which signs and posts deliveries as Heroku does."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from scaling import services
from scaling.alerts.detectors import active_problems
from scaling.models import FormationState, HerokuAccount, HerokuApp, ScalingPair, WebhookEvent
from tests.conftest import cycle, send_messages
from tests.standins.heroku_api import Delivery, HerokuStandIn

pytestmark = pytest.mark.django_db(transaction=True)


def heroku_calls(heroku: HerokuStandIn) -> int:
    return sum(1 for r in heroku.requests if not r.path.endswith("/webhooks") and "/webhooks/" not in r.path)


@pytest.fixture
def subscribed(queue_and_app: Any, make_pair: Any, live_server: Any, settings: Any) -> tuple[ScalingPair, HerokuStandIn]:
    """A pair whose app is subscribed to webhooks at the live server, after its first look."""
    _, heroku = queue_and_app
    settings.DYNOSCALER_PUBLIC_URL = live_server.url
    pair = make_pair()
    cycle(pair)  # the first look reads the formation (and the app's row is made)
    app = HerokuApp.objects.get(name="orders-app")
    assert "subscribed" in services.app_subscribe(app=app, public_url=live_server.url)
    return pair, heroku


def test_subscribing_asks_heroku_for_formation_and_dyno_events_at_our_address(subscribed: Any, live_server: Any) -> None:
    _, heroku = subscribed
    (subscription,) = heroku.subscriptions.values()
    app = HerokuApp.objects.get(name="orders-app")
    assert subscription.url == f"{live_server.url}/hooks/heroku/{app.hook_token}/"
    assert subscription.include == ["api:formation", "dyno"] and subscription.level == "sync"
    assert subscription.secret and subscription.secret == app.webhook_secret  # a secret of its own
    assert "subscribed" in services.app_check(app=app)
    assert "unsubscribed" in services.app_unsubscribe(app=app)
    assert heroku.subscriptions == {}


def test_a_persons_change_arrives_by_webhook_and_is_respected_without_polling(subscribed: Any) -> None:
    pair, heroku = subscribed
    heroku.set_quantity("orders-app", 4, actor="alice@example.com")
    heroku.flush()
    calls = heroku_calls(heroku)
    held = cycle(pair)
    assert held.outcome == "paused"
    assert "changed outside DynoScaler by alice@example.com (expected 1, found 4)" in held.reason  # who, as Heroku said
    assert heroku_calls(heroku) == calls  # the webhook told us: no read
    state = FormationState.objects.get(process_type="worker")
    assert state.changed_by == "alice@example.com"
    pair.refresh_from_db()
    assert pair.paused_by == "alice@example.com (outside DynoScaler)"
    assert "paused by alice@example.com (outside DynoScaler)" in cycle(pair).reason
    (problem,) = [p for p in active_problems(timezone.now()).problems.values() if p.kind == "person_change"]
    assert "by alice@example.com" in problem.summary and "(paused by" not in problem.summary  # said once


def test_our_own_change_coming_back_by_webhook_is_not_a_persons(subscribed: Any, queue_and_app: Any) -> None:
    pair, heroku = subscribed
    sqs, _ = queue_and_app
    ScalingPair.objects.filter(pk=pair.pk).update(up_cycles=1)
    send_messages(sqs, "orders", 100)
    assert cycle(pair).outcome == "applied"
    heroku.flush()
    send_messages(sqs, "orders", 0)
    follow = cycle(pair)
    assert follow.outcome != "paused" and "outside DynoScaler" not in follow.reason


def test_dynos_coming_up_are_told_by_webhook(subscribed: Any, queue_and_app: Any) -> None:
    pair, heroku = subscribed
    sqs, _ = queue_and_app
    heroku.apps["orders-app"].processes["worker"].boot_seconds = 0.5
    ScalingPair.objects.filter(pk=pair.pk).update(up_cycles=1)
    send_messages(sqs, "orders", 100)
    applied = cycle(pair)
    assert applied.applied_quantity == 2
    state = FormationState.objects.get(process_type="worker")
    assert state.dyno_counts() == (1, 1)  # the new dyno is booting
    heroku.flush()
    deadline = timezone.now() + timedelta(seconds=10)
    while state.dyno_counts() != (2, 0):
        assert timezone.now() < deadline, f"no 'up' event arrived: {state.dynos}"
        heroku.flush(1)
        state.refresh_from_db()


def test_a_bad_signature_an_unknown_address_and_garbage_change_nothing(subscribed: Any, live_server: Any) -> None:
    _, heroku = subscribed
    app = HerokuApp.objects.get(name="orders-app")
    heroku.set_quantity("orders-app", 6)
    heroku.flush()
    good = [d for d in heroku.deliveries if d.event["resource"] == "formation"][-1]
    assert good.status == 200
    forged_body = good.body.replace(b'"quantity": 6', b'"quantity": 9')
    forged = Delivery(url=good.url, body=forged_body, headers=good.headers, event=good.event)
    assert heroku.post(forged) == 403
    assert heroku.post(Delivery(url=good.url, body=good.body, headers={"Content-Type": "application/json"},
                                event=good.event)) == 403  # unsigned
    unknown = Delivery(url=f"{live_server.url}/hooks/heroku/00000000-0000-0000-0000-000000000000/", body=good.body,
                       headers=good.headers, event=good.event)
    assert heroku.post(unknown) == 404
    sub = next(iter(heroku.subscriptions.values()))
    garbage = b"not json"
    assert requests.post(good.url, data=garbage, timeout=5,
                         headers={"Heroku-Webhook-Hmac-SHA256": heroku.sign(sub, garbage)}).status_code == 400
    assert FormationState.objects.get(app=app, process_type="worker").quantity == 6


def test_a_redelivered_event_is_handled_once(subscribed: Any) -> None:
    _, heroku = subscribed
    heroku.set_quantity("orders-app", 3)
    heroku.flush()
    formation_event = [d for d in heroku.deliveries if d.event["resource"] == "formation"][-1]
    events = WebhookEvent.objects.count()
    assert heroku.post(formation_event) == 200  # Heroku retries a "sync" delivery it thinks failed
    assert WebhookEvent.objects.count() == events


def test_a_delivery_that_failed_on_our_side_is_handled_when_heroku_retries_it(subscribed: Any,
                                                                            monkeypatch: Any) -> None:
    _, heroku = subscribed

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the database went away mid-delivery")

    monkeypatch.setattr(services.webhooks.formations, "store_formation_event", broken)
    heroku.set_quantity("orders-app", 5, actor="alice@example.com")
    heroku.flush()
    delivery = [d for d in heroku.deliveries if d.event["resource"] == "formation"][-1]
    assert delivery.status == 500
    monkeypatch.undo()
    assert heroku.post(delivery) == 200  # Heroku retries; the first attempt left nothing behind
    state = FormationState.objects.get(process_type="worker")
    assert (state.quantity, state.changed_by) == (5, "alice@example.com")


def test_events_heroku_would_not_send_are_answered_and_change_nothing(subscribed: Any) -> None:
    _, heroku = subscribed
    heroku.set_quantity("orders-app", 3)
    heroku.flush()
    good = [d for d in heroku.deliveries if d.event["resource"] == "formation"][-1]
    sub = next(iter(heroku.subscriptions.values()))
    later = "2099-01-01T00:00:0{}Z".format  # newer than anything stored, so only the values decide
    odd = [dict(good.event, id="actor-is-text", actor="bob", data=dict(good.event["data"], quantity=4,
                                                                        updated_at=later(1))),
           dict(good.event, id="huge", data=dict(good.event["data"], quantity=10**9, updated_at=later(2))),
           dict(good.event, id="long-type", data=dict(good.event["data"], type="w" * 500, updated_at=later(3)))]
    for event in odd:
        body = json.dumps(event).encode()
        assert heroku.post(Delivery(url=good.url, body=body, event=event,
                                    headers={**good.headers, "Heroku-Webhook-Hmac-SHA256": heroku.sign(sub, body)})) == 200
    state = FormationState.objects.get(process_type="worker")
    assert (state.quantity, state.changed_by) == (4, "someone Heroku did not name")


def test_an_older_event_arriving_late_does_not_undo_a_newer_one(subscribed: Any) -> None:
    _, heroku = subscribed
    heroku.drop_webhooks = True  # hold the deliveries back, then post them in the wrong order
    heroku.set_quantity("orders-app", 3)
    heroku.set_quantity("orders-app", 5)
    heroku.drop_webhooks = False
    heroku.set_quantity("orders-app", 7)
    heroku.flush()
    newest = [d for d in heroku.deliveries if d.event["resource"] == "formation"][-1]
    sub = next(iter(heroku.subscriptions.values()))
    older = dict(newest.event, id="an-older-event",
                 data=dict(newest.event["data"], quantity=2, updated_at="2026-01-01T00:00:01.000Z"))
    body = json.dumps(older).encode()
    assert heroku.post(Delivery(url=newest.url, body=body, event=older,
                                headers={**newest.headers, "Heroku-Webhook-Hmac-SHA256": heroku.sign(sub, body)})) == 200
    assert FormationState.objects.get(process_type="worker").quantity == 7


def test_the_reconcile_catches_a_missed_webhook(subscribed: Any) -> None:
    pair, heroku = subscribed
    heroku.drop_webhooks = True
    start = timezone.now()
    heroku.set_quantity("orders-app", 5)
    assert cycle(pair, now=start + timedelta(seconds=60)).outcome != "paused"  # nothing told us yet
    held = cycle(pair, now=start + timedelta(seconds=301))
    assert "the reconcile every few minutes" in held.reason and "(expected 1, found 5)" in held.reason
    assert held.outcome == "paused"


def test_without_webhooks_a_person_is_seen_right_before_a_write(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1)
    cycle(pair)
    heroku.set_quantity("orders-app", 4)
    send_messages(sqs, "orders", 200)
    held = cycle(pair)
    assert held.outcome == "paused" and "read just before changing it" in held.reason
    assert heroku.writes() == []  # the person's 4 was not overwritten


def test_pairs_of_one_app_share_its_reads(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.add_process("orders-app", "urgent", quantity=2)
    sqs.create_queue(QueueName="urgent")
    worker = make_pair()
    urgent = make_pair(name="urgent", process_type="urgent", queues=["urgent"], min_dynos=2, max_dynos=2)
    cycle(worker)  # the first look reads the whole app's formation and dynos
    calls = heroku_calls(heroku)
    first = cycle(urgent)
    assert first.quantity_before == 2 and first.dynos_running == 2, first.reason
    assert heroku_calls(heroku) == calls, [r.path for r in heroku.requests]


def test_a_steady_pair_costs_few_heroku_calls_an_hour(queue_and_app: Any, make_pair: Any, live_server: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(interval_seconds=15, policy="target_wait", dyno_rate=10, min_dynos=1, max_dynos=5)
    send_messages(sqs, "orders", 20)  # a little steady backlog: nothing to change
    start = timezone.now()
    cycle(pair, now=start)
    before = heroku_calls(heroku)
    for step in range(1, 241):  # an hour of 15-second looks, without webhooks
        cycle(pair, now=start + timedelta(seconds=15 * step))
    without = heroku_calls(heroku) - before
    assert without <= 30, without

    services.app_subscribe(app=HerokuApp.objects.get(name="orders-app"), public_url=live_server.url)
    start += timedelta(hours=1, seconds=15)
    before = heroku_calls(heroku)
    for step in range(0, 240):
        cycle(pair, now=start + timedelta(seconds=15 * step))
    with_webhooks = heroku_calls(heroku) - before
    assert with_webhooks <= 15 and with_webhooks < without, (with_webhooks, without)


def test_reconciles_give_way_to_writes_when_the_pool_runs_low(queue_and_app: Any, make_pair: Any, settings: Any) -> None:
    sqs, heroku = queue_and_app
    settings.HEROKU_RATE_LIMIT_RESERVE, settings.HEROKU_RECONCILE_HEADROOM = 100, 50
    pair = make_pair(up_cycles=1)
    start = timezone.now()
    cycle(pair, now=start)
    heroku.rate_limit_pool = 130  # above the reserve, below reserve + headroom
    HerokuAccount.objects.update(pool_remaining=130, pool_seen_at=start + timedelta(seconds=300))
    quiet = cycle(pair, now=start + timedelta(seconds=301))  # a reconcile is due, but the pool is kept
    assert "formation read from Heroku" not in quiet.reason
    send_messages(sqs, "orders", 100)
    calls = len(heroku.requests)
    wrote = cycle(pair, now=start + timedelta(seconds=302))
    assert wrote.outcome == "applied"  # the write, and the read before it, still go
    assert [r.method for r in heroku.requests[calls:]] == ["GET", "PATCH"]


def test_the_command_subscribes_checks_and_removes_and_the_admin_shows_it(
    queue_and_app: Any, make_pair: Any, live_server: Any, admin_client: Any, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    _, heroku = queue_and_app
    make_pair()
    settings.DYNOSCALER_PUBLIC_URL = None
    with pytest.raises(CommandError, match="--url: DynoScaler's public address is needed"):
        call_command("heroku_webhooks", "subscribe")
    out = StringIO()
    call_command("heroku_webhooks", "subscribe", "--url", live_server.url, stdout=out)
    assert "orders-app: subscribed to api:formation, dyno" in out.getvalue()
    call_command("heroku_webhooks", "check", stdout=out)
    assert "orders-app: subscribed; no event yet" in out.getvalue()

    # A check that cannot read the subscription fails, for scripts and monitors to see.
    heroku.fail_next("GET", r"/apps/orders-app/webhooks/", 503)
    with pytest.raises(CommandError, match=r"1 app\(s\) failed"):
        call_command("heroku_webhooks", "check", stdout=out)
    assert "orders-app: the subscription cannot be read" in out.getvalue()

    heroku.set_quantity("orders-app", 2)
    heroku.flush()
    page = admin_client.get("/admin/scaling/herokuapp/").content.decode()
    assert "orders-app" in page and "subscribed" in page and "worker=2" in page
    assert HerokuApp.objects.get().webhook_secret not in page
    call_command("heroku_webhooks", "remove", stdout=out)
    assert heroku.subscriptions == {} and "orders-app: unsubscribed" in out.getvalue()
