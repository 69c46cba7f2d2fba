"""Alerts against real parts: PostgreSQL, a loopback HTTP receiver for the Slack and webhook
channels, a real SMTP server on loopback (aiosmtpd) for email, and the real scaling cycle
(moto_server SQS and the Heroku stand-in) where it already produces the state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from scaling import services
from scaling.alerts import detectors
from scaling.conditions import conditions_next
from scaling.alerts.delivery import DrainResult, channel_drain, channel_send_test
from scaling.alerts.evaluation import Evaluation, _Channel, alerts_evaluate, alerts_prune, problem_open, problem_resolve
from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem
from scaling.models import Decision, HerokuAccount, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN, SIGNING_SECRET, SLACK_KEY_PATH, at_once, free_port
from tests.standins.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.test_e2e_celery import celery, redis_url, wait_until  # noqa: F401  (fixtures: a real worker and beat on Redis)

pytestmark = pytest.mark.django_db

Status = AlertDelivery.Status


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpReceiver]:
    server = SmtpReceiver(free_port()).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.ALERT_FROM_EMAIL = "dynoscaler@example.com"
    yield server
    server.stop()


def evaluate(at: Any) -> Evaluation:
    result = alerts_evaluate(now=at)
    assert not result.busy
    return result


def drain(channel: AlertChannel, at: Any) -> DrainResult:
    result = channel_drain(channel_id=channel.pk, now=at)
    assert not result.busy
    return result


def events(receiver: WebhookReceiver) -> list[tuple[str, str | None]]:
    return [(b["event"], (b.get("problem") or {}).get("key")) for b in receiver.bodies()]


def set_condition(pair: ScalingPair, code: str, *, since: Any, detail: str, **fields: Any) -> None:
    conditions = {**pair.conditions, code: {"since": since.isoformat(), "detail": detail}}
    ScalingPair.objects.filter(pk=pair.pk).update(conditions=conditions, **fields)
    pair.refresh_from_db()


def clear_condition(pair: ScalingPair, code: str) -> None:
    pair.refresh_from_db()
    ScalingPair.objects.filter(pk=pair.pk).update(conditions={k: v for k, v in pair.conditions.items() if k != code})


# --- one alert per problem, and its resolution ----------------------------------------------


def test_a_pair_enabled_again_is_not_called_stalled_before_it_has_missed_a_cycle(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    # Its last cycle was before it was disabled; enabling it made the alert fire at once.
    pair = make_pair(interval_seconds=60, enabled=False)
    ScalingPair.objects.filter(pk=pair.pk).update(last_cycle_at=timezone.now() - timedelta(hours=2))
    channel = make_channel("webhook")
    pair = ScalingPair.objects.get(pk=pair.pk)
    pair.enabled = True
    pair.save()
    services.pair_apply_settings(pair=pair)
    start = timezone.now()
    for seconds in (5, 60, 150):
        evaluate(start + timedelta(seconds=seconds))
        drain(channel, start + timedelta(seconds=seconds))
    assert events(receiver) == []
    evaluate(start + timedelta(seconds=200))  # three intervals since it was enabled, and still no cycle
    drain(channel, start + timedelta(seconds=200))
    assert events(receiver) == [("opened", f"stalled:pair:{pair.pk}")]


def test_a_stalled_pair_is_told_once_and_resolved_when_its_cycles_return(
    sqs: Any, heroku: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair(interval_seconds=60)
    channel = make_channel("webhook")
    start = timezone.now()

    # No cycle for more than three intervals: every evaluation sees it, one message is sent.
    for seconds in range(200, 500, 30):
        evaluate(start + timedelta(seconds=seconds))
        drain(channel, start + timedelta(seconds=seconds))
    assert events(receiver) == [("opened", f"stalled:pair:{pair.pk}")]
    opened = receiver.bodies()[0]
    assert "no cycle for" in opened["problem"]["summary"] and opened["problem"]["pair"]["app"] == "orders-app"
    (later,) = detectors.stalled_pairs(start + timedelta(seconds=610))
    assert "no cycle for 10 min (10 intervals of 60 s; told after 3)" in later.summary  # the count it has missed

    # The real cycle runs again: the problem clears, and the channel hears so, once.
    assert services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=500)) is not None
    for seconds in (510, 540, 570):
        evaluate(start + timedelta(seconds=seconds))
        drain(channel, start + timedelta(seconds=seconds))
    assert events(receiver) == [("opened", f"stalled:pair:{pair.pk}"), ("resolved", f"stalled:pair:{pair.pk}")]
    assert all(WebhookReceiver.signature_ok(r, SIGNING_SECRET) for r in receiver.received)
    assert receiver.received[0].headers["X-DynoScaler-Delivery"] != receiver.received[1].headers["X-DynoScaler-Delivery"]
    problem = AlertProblem.objects.get()
    assert problem.resolved_at == start + timedelta(seconds=510)


def test_the_kill_switch_is_told_when_engaged_and_when_released(make_channel: Any, receiver: WebhookReceiver) -> None:
    channel = make_channel("slack")
    services.kill_switch_set(engaged=True, user="oncall", note="incident 42")
    now = timezone.now()
    evaluate(now)
    evaluate(now + timedelta(seconds=30))
    drain(channel, now + timedelta(seconds=30))
    services.kill_switch_set(engaged=False, user="bob")
    evaluate(now + timedelta(seconds=60))
    drain(channel, now + timedelta(seconds=60))

    texts = [b["text"] for b in receiver.bodies()]
    assert len(texts) == 2 and all(r.path == SLACK_KEY_PATH for r in receiver.received)
    assert texts[0].startswith("*[DynoScaler] PROBLEM kill switch engaged*")
    assert "engaged by oncall: incident 42" in texts[0] and "no formation is changed anywhere" in texts[0]
    assert texts[1].startswith("*[DynoScaler] RESOLVED kill switch engaged*") and "Released by bob." in texts[1]


def test_an_account_backing_off_after_a_429_is_told_to_channels_that_want_global_problems(
    sqs: Any, heroku: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    everything = make_channel("webhook", name="everything")
    pair_only = make_channel("slack", name="pair only", pairs=[pair], include_global=False)
    heroku.fail_next("GET", r"/formation$", 429)
    decision = services.pair_run_cycle(pair_id=pair.pk, force=True)
    assert decision is not None and decision.error_permanent is False

    opened = evaluate(timezone.now()).opened
    account = HerokuAccount.objects.get()
    assert [p.key for p in opened] == [f"rate_limited:account:{account.pk}"] and opened[0].pair is None
    assert "1 pair(s) make no Heroku call" in opened[0].action
    assert list(everything.deliveries.values_list("event", flat=True)) == ["opened"]
    assert not pair_only.deliveries.exists()

    # When the back-off is over, it resolves.
    HerokuAccount.objects.update(rate_limited_until=timezone.now() - timedelta(seconds=1))
    assert [p.key for p in evaluate(timezone.now()).resolved] == [f"rate_limited:account:{account.pk}"]


def test_the_cycles_conditions_become_problems_and_the_wait_only_after_its_grace(
    make_pair: Any, make_channel: Any, settings: Any
) -> None:
    settings.ALERT_WAIT_OVER_TARGET_MINUTES = 10
    pair = make_pair(interval_seconds=3600)  # not stalled in the minutes this test spans
    make_channel("webhook")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="Heroku: 403 forbidden: You do not have access to the app.")
    set_condition(pair, "person_change", since=now, detail="the formation was changed outside DynoScaler (expected 2, found 7)",
                  paused_by="a person outside DynoScaler")
    set_condition(pair, "not_helping", since=now, detail="3 more dynos for 10 min, backlog still growing")
    set_condition(pair, "wait_over_target_at_max", since=now, detail="newest message waits ≈ 400 s (target 120 s) at max 5")

    first = {p.kind: p for p in evaluate(now + timedelta(seconds=10)).opened}
    assert set(first) == {"permanent_error", "person_change", "not_helping"}
    assert first["permanent_error"].summary == "Heroku: 403 forbidden: You do not have access to the app."
    assert first["person_change"].summary == "the formation was changed outside DynoScaler (expected 2, found 7)"
    later = evaluate(now + timedelta(minutes=10, seconds=1)).opened
    assert [p.kind for p in later] == ["wait_over_target_at_max"] and later[0].since == now

    clear_condition(pair, "permanent_error")
    assert [p.kind for p in evaluate(now + timedelta(minutes=11)).resolved] == ["permanent_error"]
    # A disabled pair's problems clear, and say why.
    ScalingPair.objects.filter(pk=pair.pk).update(enabled=False)
    resolved = evaluate(now + timedelta(minutes=11, seconds=30)).resolved
    assert {p.kind for p in resolved} == {"person_change", "not_helping", "wait_over_target_at_max"}
    assert all(p.resolution == "The pair was disabled." for p in resolved)


def test_the_audit_trail_behind_is_a_problem_only_while_decisions_wait_for_elasticsearch(
    make_pair: Any, settings: Any, elastic: Any
) -> None:
    settings.ALERT_AUDIT_BEHIND_MINUTES = 10
    pair = make_pair()
    now = timezone.now()
    Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
                            outcome="no_change", reason="r", duration_ms=1, created_at=now - timedelta(minutes=15))
    assert [p.key for p in detectors.audit_behind(now)] == ["audit_behind"]
    settings.ELK_ELASTIC_URL = None  # without Elasticsearch decisions print: nothing can be behind
    assert detectors.audit_behind(now) == []
    settings.ELK_ELASTIC_URL = elastic.url
    evaluate(now)
    assert services.audit_ship_pending() == 1  # Elasticsearch answers again
    assert [p.key for p in evaluate(now + timedelta(seconds=30)).resolved] == ["audit_behind"]


def test_channels_hear_only_their_pairs_their_kinds_and_global_problems_if_asked(make_pair: Any, make_channel: Any) -> None:
    orders, billing = make_pair(name="orders", app="orders-app"), make_pair(name="billing", app="billing-app")
    everything = make_channel("webhook", name="everything")
    billing_only = make_channel("webhook", name="billing only", pairs=[billing], include_global=False)
    kill_switch_only = make_channel("webhook", name="kill switch only", kinds=["kill_switch"])
    now = timezone.now()
    set_condition(orders, "permanent_error", since=now, detail="queue missing")
    set_condition(billing, "permanent_error", since=now, detail="queue missing")
    services.kill_switch_set(engaged=True, user="oncall")
    evaluate(now)

    def heard(channel: AlertChannel) -> set[str]:
        return {d.problem.key for d in channel.deliveries.select_related("problem") if d.problem}

    assert heard(everything) == {f"permanent_error:pair:{orders.pk}", f"permanent_error:pair:{billing.pk}", "kill_switch"}
    assert heard(billing_only) == {f"permanent_error:pair:{billing.pk}"}
    assert heard(kill_switch_only) == {"kill_switch"}

    # Its pair deleted, a channel that heard of one pair does not start hearing of every pair.
    billing_key = f"permanent_error:pair:{billing.pk}"
    services.pair_delete(pair=billing)
    evaluate(now + timedelta(seconds=30))
    set_condition(orders, "not_helping", since=now, detail="no better")
    evaluate(now + timedelta(seconds=60))
    assert heard(billing_only) == {billing_key}
    resolved = billing_only.deliveries.get(event="resolved")
    assert "The pair was deleted." in resolved.text
    assert f"RESOLVED {billing.name}: " in resolved.title  # which pair, though it is gone


def test_a_resolution_goes_only_where_the_problem_was_told(make_pair: Any, make_channel: Any) -> None:
    pair = make_pair()
    early = make_channel("webhook", name="early")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="bad token")
    evaluate(now)
    late = make_channel("webhook", name="added later")
    clear_condition(pair, "permanent_error")
    evaluate(now + timedelta(seconds=30))
    assert list(early.deliveries.order_by("id").values_list("event", flat=True)) == ["opened", "resolved"]
    assert not late.deliveries.exists()


def test_a_failing_detector_silences_no_other_and_clears_nothing(make_pair: Any, make_channel: Any) -> None:
    pair = make_pair()
    make_channel("webhook")
    now = timezone.now()
    services.kill_switch_set(engaged=True, user="oncall")
    assert [p.key for p in evaluate(now).opened] == ["kill_switch"]

    def broken(at: Any) -> list[detectors.ActiveProblem]:
        raise RuntimeError("a bug in a detector")

    set_condition(pair, "permanent_error", since=now, detail="bad token")
    partial = alerts_evaluate(now=now, detectors=(broken, detectors.pair_conditions))
    assert [p.key for p in partial.opened] == [f"permanent_error:pair:{pair.pk}"]
    assert partial.resolved == [] and AlertProblem.objects.open().filter(key="kill_switch").exists()


def test_the_cycle_keeps_a_condition_since_it_began_and_drops_it_when_it_clears() -> None:
    t0 = timezone.now()
    first = conditions_next({}, {"permanent_error": "Heroku: 401\nunauthorized while reading the formation"}, now=t0)
    assert first == {"permanent_error": {"since": t0.isoformat(),
                                         "detail": "Heroku: 401 unauthorized while reading the formation"}}
    same = conditions_next(first, {"permanent_error": "Heroku: 401 unauthorized while listing the dynos"},
                           now=t0 + timedelta(minutes=1))
    assert same["permanent_error"]["since"] == t0.isoformat()  # the same cause, met by another call
    named = conditions_next(same, {"permanent_error": "Heroku: 401 unauthorized (Heroku account “Team A”)"},
                            now=t0 + timedelta(minutes=2))
    assert named["permanent_error"]["since"] == t0.isoformat()  # now naming the account: still the same problem
    later = conditions_next(same, {"permanent_error": "Heroku: 403 forbidden", "not_helping": "no better"},
                            now=t0 + timedelta(minutes=5))
    # Another cause is another problem: it starts now (and is told anew).
    assert later["permanent_error"] == {"since": (t0 + timedelta(minutes=5)).isoformat(), "detail": "Heroku: 403 forbidden"}
    assert later["not_helping"]["since"] == (t0 + timedelta(minutes=5)).isoformat()
    # A transient error hides whether the permanent one is still there: it is kept, the rest clear.
    assert conditions_next(later, {}, now=t0 + timedelta(minutes=6), unknown=["permanent_error"]) == {
        "permanent_error": later["permanent_error"]}
    assert conditions_next(later, {}, now=t0 + timedelta(minutes=7)) == {}
    with pytest.raises(ValueError, match="unknown condition code 'stalled'"):
        conditions_next({}, {"stalled": "x"}, now=t0)


# --- races, order, limits, failures ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_evaluators_running_at_once_open_one_problem_and_queue_one_message(make_pair: Any, make_channel: Any) -> None:
    pair = make_pair()
    channel = make_channel("webhook")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="bad token")
    results = at_once(lambda: alerts_evaluate(now=now))
    assert len(results) == 4 and sum(len(r.opened) for r in results) == 1
    assert AlertProblem.objects.count() == 1 and channel.deliveries.count() == 1


def test_opening_or_resolving_a_problem_twice_is_settled_by_the_database(make_pair: Any, make_channel: Any) -> None:
    """What two evaluators that both passed the lease would do: the second loses quietly."""
    pair = make_pair()
    channel = make_channel("webhook")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="bad token")
    (active,) = detectors.pair_conditions(now)
    channels = [_Channel(channel, frozenset())]
    first = problem_open(active, now=now, channels=channels, secrets=[])
    assert first is not None
    assert problem_open(active, now=now, channels=channels, secrets=[]) is None
    stale_copy = AlertProblem.objects.get(pk=first.pk)
    assert problem_resolve(first, now=now, channels=channels, secrets=[]) is not None
    assert problem_resolve(stale_copy, now=now, channels=channels, secrets=[]) is None
    assert list(channel.deliveries.order_by("id").values_list("event", flat=True)) == ["opened", "resolved"]


def test_a_failing_receiver_is_retried_with_back_off_and_the_resolution_waits_behind_it(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    pair = make_pair()
    channel = make_channel("webhook")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="bad token")
    evaluate(now)
    receiver.fail_next(503, times=2, body="upstream busy")
    first = drain(channel, now)
    assert first.waiting_until == now + timedelta(seconds=30) and receiver.received == []

    clear_condition(pair, "permanent_error")
    evaluate(now + timedelta(seconds=10))
    assert drain(channel, now + timedelta(seconds=10)).sent == 0  # the resolution queues behind the retry
    second = drain(channel, now + timedelta(seconds=31))
    assert second.waiting_until == now + timedelta(seconds=31 + 120)
    third = drain(channel, now + timedelta(seconds=31 + 120))
    assert third.sent == 2 and third.waiting_until is None

    assert [e for e, _ in events(receiver)] == ["opened", "resolved"]
    opened = channel.deliveries.get(event="opened")
    assert opened.status == Status.SENT and opened.attempts == 3
    assert [a["error"] for a in opened.attempt_log] == [
        "webhook: 127.0.0.1:%d answered HTTP 503: upstream busy" % receiver._server.server_address[1]] * 2 + [None]


def test_a_message_that_cannot_be_delivered_is_marked_failed_and_the_queue_moves_on(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver, settings: Any
) -> None:
    settings.ALERT_MAX_ATTEMPTS = 2
    orders, billing = make_pair(name="orders", app="orders-app"), make_pair(name="billing", app="billing-app")
    channel = make_channel("webhook")
    now = timezone.now()
    set_condition(orders, "permanent_error", since=now, detail="bad token")
    evaluate(now)
    set_condition(billing, "permanent_error", since=now, detail="bad token")
    evaluate(now + timedelta(seconds=1))

    receiver.fail_next(500, times=2)
    drain(channel, now + timedelta(seconds=1))
    result = drain(channel, now + timedelta(seconds=40))  # the second and last attempt also fails
    assert (result.failed, result.sent) == (1, 1)
    failed = channel.deliveries.get(status=Status.FAILED)
    assert failed.problem is not None and failed.problem.pair == orders and failed.attempts == 2
    assert "HTTP 500" in failed.last_error
    assert events(receiver) == [("opened", f"permanent_error:pair:{billing.pk}")]

    # A permanent refusal (the hook was deleted) is not retried at all.
    clear_condition(billing, "permanent_error")
    evaluate(now + timedelta(seconds=50))
    receiver.fail_next(404, body="no_service")
    assert drain(channel, now + timedelta(seconds=50)).failed == 1
    gone = channel.deliveries.get(event="resolved")
    assert gone.status == Status.FAILED and gone.attempts == 1 and gone.last_error.endswith("HTTP 404: no_service")


def test_a_bug_in_a_transport_is_recorded_and_retried_instead_of_wedging_the_queue(make_pair: Any, make_channel: Any) -> None:
    pair = make_pair()
    channel = make_channel("webhook")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail="bad token")
    evaluate(now)

    class Broken:
        def send(self, message: Any) -> str:
            raise TypeError("a bug in a transport")

    result = channel_drain(channel_id=channel.pk, now=now, transports=lambda c: Broken())
    delivery = channel.deliveries.get()
    assert result.waiting_until == now + timedelta(seconds=30) and delivery.status == Status.RETRYING
    assert delivery.last_error == "DynoScaler: TypeError: a bug in a transport"
    assert AlertChannel.objects.get(pk=channel.pk).sending_claim is None  # the channel is free again


def test_the_hourly_limit_holds_messages_back_and_summarises_them_when_the_hour_has_room(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    pairs = [make_pair(name=f"p{i}", app=f"app-{i}") for i in range(4)]
    channel = make_channel("webhook", max_per_hour=2)
    now = timezone.now()
    for pair in pairs:
        set_condition(pair, "permanent_error", since=now, detail="bad token")
    evaluate(now)
    clear_condition(pairs[3], "permanent_error")
    evaluate(now + timedelta(seconds=30))

    assert drain(channel, now + timedelta(seconds=30)) == DrainResult(sent=2, held=3)
    assert drain(channel, now + timedelta(minutes=30)) == DrainResult()  # the hour is still full
    assert len(receiver.received) == 2

    summary_drain = drain(channel, now + timedelta(minutes=61))
    assert summary_drain.sent == 1
    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == ["opened", "opened", "summary"]
    summary = bodies[2]
    assert [h["event"] for h in summary["held_back"]] == ["opened", "opened", "resolved"]
    assert summary["held_back"][2]["problem_key"] == f"permanent_error:pair:{pairs[3].pk}"
    assert summary["still_open"] == [f"permanent_error:pair:{pairs[2].pk}"]
    assert summary["title"] == "[DynoScaler] 3 alert(s) held back by this channel's limit of 2 an hour"
    held = channel.deliveries.filter(status=Status.SUMMARISED)
    assert held.count() == 3 and {d.summary_id for d in held} == {channel.deliveries.get(event="summary").pk}
    assert drain(channel, now + timedelta(minutes=62)) == DrainResult()  # nothing sent twice


# --- what is sent, and what never is -----------------------------------------------------------


def test_a_message_says_what_for_which_pair_since_when_what_is_done_and_links_the_pair(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver, settings: Any
) -> None:
    settings.DYNOSCALER_PUBLIC_URL = "https://dynoscaler.example.com/"
    pair = make_pair(interval_seconds=3600)  # not stalled in the minutes this test spans
    channel = make_channel("slack")
    since = timezone.now().replace(second=0, microsecond=0)
    set_condition(pair, "permanent_error", since=since, detail="Heroku: 404 not_found: Couldn't find that app.")
    evaluate(since + timedelta(seconds=5))
    drain(channel, since + timedelta(seconds=5))
    text = receiver.bodies()[0]["text"]
    assert text.splitlines() == [
        f"*[DynoScaler] PROBLEM orders (orders-app/worker): {AlertProblem(kind='permanent_error').get_kind_display()}*",
        "What: Heroku: 404 not_found: Couldn't find that app.",
        "Pair: orders — Heroku app orders-app, process type worker",
        f"Since: {since:%Y-%m-%d %H:%M} UTC",
        f"DynoScaler: {detectors.CONDITION_ACTIONS[detectors.ProblemKind.PERMANENT_ERROR]}",
        f"Open: https://dynoscaler.example.com/admin/scaling/scalingpair/{pair.pk}/change/",
    ]
    settings.DYNOSCALER_PUBLIC_URL = None
    clear_condition(pair, "permanent_error")
    evaluate(since + timedelta(minutes=12))
    drain(channel, since + timedelta(minutes=12))
    resolved = receiver.bodies()[1]["text"]
    assert "Cleared:" in resolved and "after 12 min" in resolved and "Open:" not in resolved


def test_email_alerts_reach_a_real_smtp_server(make_pair: Any, make_channel: Any, smtp: SmtpReceiver) -> None:
    pair = make_pair()
    channel = make_channel("email")
    now = timezone.now()
    set_condition(pair, "not_helping", since=now, detail="3 more dynos for 10 min, backlog still growing")
    evaluate(now)
    assert drain(channel, now).sent == 1
    (mail,) = smtp.messages
    assert mail["Subject"] == "[DynoScaler] PROBLEM orders (orders-app/worker): more dynos not helping"
    assert mail["From"] == "dynoscaler@example.com" and mail["To"] == "oncall@example.com, lead@example.com"
    assert mail["X-DynoScaler-Event"] == "opened"
    assert "What: 3 more dynos for 10 min, backlog still growing" in mail.get_content()


def test_an_smtp_server_that_is_busy_is_retried_and_one_that_refuses_the_recipient_is_not(
    make_pair: Any, make_channel: Any, smtp: SmtpReceiver
) -> None:
    pair = make_pair()
    channel = make_channel("email", recipients="oncall@example.com")
    now = timezone.now()
    set_condition(pair, "not_helping", since=now, detail="no better")
    evaluate(now)
    smtp.busy_times = 1
    assert drain(channel, now).waiting_until == now + timedelta(seconds=30)
    assert "answered 451" in channel.deliveries.get().last_error
    assert drain(channel, now + timedelta(seconds=30)).sent == 1 and len(smtp.messages) == 1

    smtp.refused.add("oncall@example.com")
    clear_condition(pair, "not_helping")
    evaluate(now + timedelta(seconds=40))
    assert drain(channel, now + timedelta(seconds=40)).failed == 1
    assert "refused the recipient(s) oncall@example.com" in channel.deliveries.get(event="resolved").last_error


def test_no_secret_reaches_a_message_a_mail_or_a_stored_row(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver, smtp: SmtpReceiver, elastic: Any
) -> None:
    pair = make_pair()
    channels = [make_channel("webhook"), make_channel("slack"), make_channel("email")]
    slack_url = f"{receiver.url}{SLACK_KEY_PATH}"
    planted = (f"token {HEROKU_TOKEN} key {AWS_SECRET} hook {slack_url} path {SLACK_KEY_PATH} "
               f"signing {SIGNING_SECRET} es es-pass-s3cret-XYZ")
    now = timezone.now()
    set_condition(pair, "permanent_error", since=now, detail=planted)
    evaluate(now)
    receiver.fail_next(500, body="could not post to {path}")  # a receiver that echoes the URL's key
    for channel in channels:
        drain(channel, now)
    drain(channels[1], now + timedelta(seconds=30))
    clear_condition(pair, "permanent_error")
    evaluate(now + timedelta(seconds=60))
    for channel in channels:
        drain(channel, now + timedelta(seconds=60))

    secrets = [HEROKU_TOKEN, AWS_SECRET, SLACK_KEY_PATH, SIGNING_SECRET, "es-pass-s3cret-XYZ"]
    sent = [r.body.decode() for r in receiver.received] + [m.as_string() for m in smtp.messages]
    assert len(sent) == 6 and "****" in sent[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT summary || action FROM scaling_alertproblem")
        stored = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT title || text || payload::text || attempt_log::text || last_error FROM scaling_alertdelivery")
        stored += [row[0] for row in cursor.fetchall()]
    assert any("could not post to ****" in s for s in stored)  # the echoed key, scrubbed
    for text in sent + stored:
        for secret in secrets:
            assert secret not in text


def test_resolved_problems_and_old_tests_are_forgotten_after_the_retention_open_ones_never(
    make_pair: Any, make_channel: Any, settings: Any
) -> None:
    settings.DECISION_RETENTION_DAYS = 90
    orders, billing = make_pair(name="orders", app="orders-app"), make_pair(name="billing", app="billing-app")
    channel = make_channel("webhook")
    long_ago = timezone.now() - timedelta(days=100)
    set_condition(orders, "permanent_error", since=long_ago, detail="bad token")
    set_condition(billing, "permanent_error", since=long_ago, detail="bad token")
    evaluate(long_ago)
    clear_condition(billing, "permanent_error")
    evaluate(long_ago + timedelta(minutes=1))
    AlertDelivery.objects.create(channel=channel, event="test", status=Status.SENT, title="t", text="t", created_at=long_ago)
    assert alerts_prune() == 4  # rows: billing's problem and its two messages, and the old test
    assert list(AlertProblem.objects.values_list("key", flat=True)) == [f"permanent_error:pair:{orders.pk}"]
    assert list(channel.deliveries.values_list("event", flat=True)) == ["opened"]


# --- the operator's test alert and pages ----------------------------------------------------------


def test_a_test_alert_is_sent_now_and_recorded_even_when_the_hour_is_full(
    make_channel: Any, receiver: WebhookReceiver
) -> None:
    channel = make_channel("webhook", max_per_hour=1)
    first = channel_send_test(channel=channel, user="alice")
    second = channel_send_test(channel=channel, user="alice")
    assert (first.status, second.status) == (Status.SENT, Status.SENT)
    assert [b["event"] for b in receiver.bodies()] == ["test", "test"]
    assert "Sent by alice" in receiver.bodies()[0]["text"]
    assert WebhookReceiver.signature_ok(receiver.received[0], SIGNING_SECRET)
    assert not WebhookReceiver.signature_ok(receiver.received[0], "another-secret-entirely")
    assert not WebhookReceiver.signature_ok(receiver.received[0], SIGNING_SECRET, now=float(int(
        receiver.received[0].headers["X-DynoScaler-Timestamp"]) + 3600))  # replayed an hour later


def test_send_a_test_alert_in_the_admin_tells_what_happened(admin_client: Any, make_channel: Any,
                                                             receiver: WebhookReceiver) -> None:
    channel = make_channel("slack")
    page = admin_client.post(f"/admin/scaling/alertchannel/{channel.pk}/test/", follow=True).content.decode()
    assert "Test alert sent to “slack” (HTTP 200)" in page and len(receiver.received) == 1
    receiver.fail_next(403, body="invalid_token")
    page = admin_client.post("/admin/scaling/alertchannel/", {"action": "send_test_alert", "_selected_action": [channel.pk]},
                             follow=True).content.decode()
    assert "Test alert to “slack” failed: Slack: 127.0.0.1" in page and "HTTP 403: invalid_token" in page
    assert channel.deliveries.filter(status=Status.FAILED, event="test").count() == 1
    assert admin_client.get(f"/admin/scaling/alertchannel/{channel.pk}/test/").status_code == 405


def test_the_channel_form_names_each_problem_and_never_shows_a_secret(admin_client: Any, receiver: WebhookReceiver) -> None:
    form = {"name": "hooks", "kind": "webhook", "enabled": "on", "url": "", "signing_secret": "short",
            "recipients": "", "all_pairs": "on", "include_global": "on", "max_per_hour": "20"}
    page = admin_client.post("/admin/scaling/alertchannel/add/", form).content.decode()
    assert "Required for a Slack or webhook channel." in page and "at least 16 characters" in page
    page = admin_client.post("/admin/scaling/alertchannel/add/", {**form, "kind": "email", "recipients": "oncall, x@example.com"}).content.decode()
    assert "Not an email address: oncall." in page
    page = admin_client.post("/admin/scaling/alertchannel/add/", {**form, "all_pairs": "", "include_global": ""}).content.decode()
    assert "Choose at least one pair, tick “every pair”, or tick “global problems too”." in page

    url = f"{receiver.url}/hooks/secret-path-123"
    response = admin_client.post("/admin/scaling/alertchannel/add/", {**form, "url": url, "signing_secret": SIGNING_SECRET,
                                                                       "kinds": ["kill_switch", "stalled"]})
    assert response.status_code == 302
    channel = AlertChannel.objects.get()
    assert (channel.url, channel.signing_secret, channel.kinds) == (url, SIGNING_SECRET, ["kill_switch", "stalled"])
    page = admin_client.get(f"/admin/scaling/alertchannel/{channel.pk}/change/").content.decode()
    assert url not in page and "secret-path-123" not in page and SIGNING_SECRET not in page
    assert f"Currently set: {receiver.url}/…-123." in page and "set, ending …" in page and 'id="send-test-alert"' in page
    listing = admin_client.get("/admin/scaling/alertchannel/").content.decode()
    assert "secret-path-123" not in listing and "every pair" in listing
    # Saved again with the secrets left empty, they are kept.
    admin_client.post(f"/admin/scaling/alertchannel/{channel.pk}/change/", {**form, "signing_secret": "", "max_per_hour": "5"})
    channel.refresh_from_db()
    assert (channel.url, channel.signing_secret, channel.max_per_hour) == (url, SIGNING_SECRET, 5)


def test_problems_and_deliveries_are_read_only_with_filters_and_search(admin_client: Any, make_pair: Any,
                                                                      make_channel: Any) -> None:
    pair = make_pair()
    make_channel("webhook")
    set_condition(pair, "permanent_error", since=timezone.now(), detail="Heroku: 401 unauthorized")
    evaluate(timezone.now())
    problems = admin_client.get("/admin/scaling/alertproblem/?open=yes&q=unauthorized").content.decode()
    assert "401 unauthorized" in problems and "Add alert problem" not in problems
    assert "401 unauthorized" not in admin_client.get("/admin/scaling/alertproblem/?open=no").content.decode()
    deliveries = admin_client.get("/admin/scaling/alertdelivery/?status__exact=pending").content.decode()
    assert "PROBLEM orders" in deliveries
    problem = AlertProblem.objects.get()
    assert "Messages sent about it" in admin_client.get(f"/admin/scaling/alertproblem/{problem.pk}/change/").content.decode()
    # Times as the decision pages give them: to the second, in UTC, and saying so.
    assert f"{problem.opened_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in problems
    delivery = AlertDelivery.objects.get()
    assert f"{delivery.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in deliveries


@pytest.mark.parametrize(("variables", "says"), [
    ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT: expected a whole number, got 'smtp'"),
    ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_SSL: set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL"),
    ({"DYNOSCALER_PUBLIC_URL": "my-dynoscaler.herokuapp.com"}, "DYNOSCALER_PUBLIC_URL: expected a URL starting with https://"),
    ({"DYNOSCALER_ALERT_TIMEOUT": "300"}, "DYNOSCALER_ALERT_TIMEOUT: must be at most 30, got 300"),
])
def test_a_malformed_alert_setting_stops_start_up_naming_the_variable(variables: dict[str, str], says: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SECRET_KEY": "test-only-key", "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings", **variables}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and says in done.stderr


# --- through a real Celery worker and beat on Redis ---------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_tells_a_webhook_once_when_the_kill_switch_is_engaged_and_once_when_released(
    celery: Any, receiver: WebhookReceiver, tmp_path: Any  # noqa: F811  (imported fixtures)
) -> None:
    AlertChannel.objects.create(name="hook", kind="webhook", url=f"{receiver.url}/hook", signing_secret=SIGNING_SECRET)
    celery({"DYNOSCALER_ALERT_INTERVAL": "1", "DYNOSCALER_LOG_TASKS": "1"})  # counted by Celery's task lines
    worker_log = tmp_path / "worker.log"

    def evaluations() -> int:
        text = worker_log.read_text() if worker_log.exists() else ""
        return sum("scaling.tasks.evaluate_alerts[" in line and "succeeded" in line for line in text.splitlines())

    services.kill_switch_set(engaged=True, user="oncall", note="e2e drill")
    wait_until(lambda: len(receiver.received) == 1, seconds=60, what="the problem at the receiver", logs=tmp_path)
    seen = evaluations()
    wait_until(lambda: evaluations() >= seen + 3, seconds=60, what="three more evaluations", logs=tmp_path)
    services.kill_switch_set(engaged=False, user="oncall")
    wait_until(lambda: len(receiver.received) == 2, seconds=60, what="the resolution at the receiver", logs=tmp_path)
    seen = evaluations()
    wait_until(lambda: evaluations() >= seen + 3, seconds=60, what="three more evaluations", logs=tmp_path)

    assert [(b["event"], b["problem"]["key"]) for b in receiver.bodies()] == [("opened", "kill_switch"), ("resolved", "kill_switch")]
    assert all(WebhookReceiver.signature_ok(r, SIGNING_SECRET) for r in receiver.received)
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert SIGNING_SECRET not in logs and "/hook" not in logs


@pytest.mark.parametrize("kinds, hears", [([], True), (["stalled"], True), (["kill_switch"], False)])
def test_no_worker_running_tasks_goes_where_stalled_pairs_go(kinds: list[str], hears: bool) -> None:
    # When the workers stop every pair stalls; a channel that asked for stalls hears the cause.
    channel = AlertChannel(name="c", kind="webhook", kinds=kinds, enabled=True, include_global=True)
    assert channel.wants(kind="workers_silent", pair_id=None, pair_ids=frozenset()) is hears


def test_a_permanent_error_whose_cause_changes_is_told_again(
    sqs: Any, heroku: Any, make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    # The token fixed but the app now missing: the open problem kept saying 401, and its
    # RESOLVED later said "Was: 401", while on-call had a 404 to fix.
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    channel = make_channel("webhook")
    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token="hk-revoked-token-000000")
    start = timezone.now()
    services.pair_run_cycle(pair_id=pair.pk, force=True, now=start)
    services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=15))  # same cause: same problem
    evaluate(start + timedelta(seconds=20))
    drain(channel, start + timedelta(seconds=20))

    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token=HEROKU_TOKEN)
    heroku.apps["orders-app-renamed"] = heroku.apps.pop("orders-app")
    services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=30))
    evaluate(start + timedelta(seconds=35))
    drain(channel, start + timedelta(seconds=35))
    evaluate(start + timedelta(seconds=50))  # and once told, it stays one problem
    drain(channel, start + timedelta(seconds=50))

    key = f"permanent_error:pair:{pair.pk}"
    assert events(receiver) == [("opened", key), ("resolved", key), ("opened", key)]
    first, cleared, second = receiver.bodies()
    assert "401" in first["problem"]["summary"]
    assert cleared["problem"]["resolution"].startswith("It changed: ") and "404" in cleared["problem"]["resolution"]
    assert "404" in second["problem"]["summary"] and "401" not in second["problem"]["summary"]


def test_a_message_names_the_pair_once_and_a_stored_url_keeps_its_port(make_pair: Any) -> None:
    from scaling.admin.alerts import url_hint
    from scaling.alerts.messages import problem_content

    pair = make_pair(name="orders-app/worker (env)")
    set_condition(pair, "permanent_error", since=timezone.now(), detail="Heroku: 404 not_found")
    (opened,) = evaluate(timezone.now()).opened
    title = problem_content(opened, AlertDelivery.Event.OPENED).title
    assert title.startswith("[DynoScaler] PROBLEM orders-app/worker (env): permanent error")  # not "(env) (orders-app/worker)"
    assert url_hint("http://127.0.0.1:18080/hooks/secret-path/abcd") == "set: http://127.0.0.1:18080/…abcd"
    assert "secret-path" not in url_hint("https://hooks.example.com/services/secret-path/abcd")


def test_a_worker_tells_the_channels_when_beat_has_stopped(make_channel: Any, receiver: WebhookReceiver) -> None:
    # With beat down no cycle and no alerts task is sent: the workers idle, and nothing
    # would be told. Each worker watches beat's note and stands in.
    from scaling.alerts.watch import BeatWatch, beat_seen

    make_channel("webhook")
    watch = BeatWatch()
    start = watch.since
    beat_seen(start)
    assert watch.look(start + timedelta(minutes=2)) is None  # heard from within the last 3 minutes
    told = watch.look(start + timedelta(minutes=4))
    assert told is not None and [p.key for p in told.opened] == ["beat_silent"]
    (body,) = receiver.bodies()
    assert body["title"] == "[DynoScaler] PROBLEM beat not running (told by a worker)"
    assert "beat has not run for 4 min" in body["text"] and "check that the beat process is running" in body["text"]
    again = watch.look(start + timedelta(minutes=5))
    assert again is not None and not again.opened  # told once

    beat_seen(start + timedelta(minutes=6))  # beat is back; its alerts task clears it
    assert watch.look(start + timedelta(minutes=6, seconds=30)) is None
    assert [p.key for p in alerts_evaluate(now=start + timedelta(minutes=7)).resolved] == ["beat_silent"]


def test_a_person_changes_alert_adds_only_an_admin_pause_to_what_it_says(make_pair: Any) -> None:
    pair = make_pair(interval_seconds=3600)
    detail = "the formation was changed outside DynoScaler by bob@example.com (expected 2, found 7)"
    set_condition(pair, "person_change", since=timezone.now(), detail=detail,
                  paused_by="bob@example.com (outside DynoScaler)")
    (told,) = detectors.pair_conditions(timezone.now())
    assert told.summary == detail  # the hold is the change's own: said once
    ScalingPair.objects.filter(pk=pair.pk).update(paused_by="alice")  # then paused in the admin
    (told,) = detectors.pair_conditions(timezone.now())
    assert told.summary == f"{detail} (paused by alice)"


def test_with_no_worker_the_cause_is_told_first_and_its_stalled_pairs_are_not_told_one_by_one(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    # Workers down with 25 pairs: before, 25 "stalled" messages filled the channel's hour
    # and held back the one message that named the cause; then 25 "resolved" were held too.
    from scaling.alerts.watch import Silence, stand_in

    for i in range(25):
        make_pair(name=f"p{i}", app=f"app-{i}")
    channel = make_channel("webhook", max_per_hour=5)
    now = timezone.now()
    ScalingPair.objects.update(last_cycle_at=now - timedelta(minutes=10), created_at=now - timedelta(hours=1),
                               updated_at=now - timedelta(hours=1))
    stand_in(Silence(last=now - timedelta(minutes=10), heard=True), now=now)
    drain(channel, now)
    assert events(receiver) == [("opened", "workers_silent")]
    assert "25 enabled pair(s) have missed their cycles" in receiver.bodies()[0]["problem"]["summary"]

    # A worker is back and every pair cycles: the cause resolves, and no pair was ever told.
    later = now + timedelta(minutes=2)
    ScalingPair.objects.update(last_cycle_at=later)
    evaluate(later)
    drain(channel, later)
    assert events(receiver) == [("opened", "workers_silent"), ("resolved", "workers_silent")]
    assert not AlertProblem.objects.filter(key__startswith="stalled:").exists()


def test_a_resolution_of_a_problem_the_channel_was_told_is_not_held_by_its_limit(
    make_pair: Any, make_channel: Any, receiver: WebhookReceiver
) -> None:
    first, *others = [make_pair(name=f"p{i}", app=f"app-{i}") for i in range(4)]
    channel = make_channel("webhook", max_per_hour=1)
    now = timezone.now()
    set_condition(first, "permanent_error", since=now, detail="bad token")
    evaluate(now)
    drain(channel, now)
    for pair in others:  # the hour is full: these are held back
        set_condition(pair, "permanent_error", since=now, detail="bad token")
    evaluate(now + timedelta(seconds=30))
    clear_condition(first, "permanent_error")
    clear_condition(others[0], "permanent_error")
    evaluate(now + timedelta(seconds=60))
    drain(channel, now + timedelta(seconds=60))
    # The alarm that was raised is closed at once; the one never told waits with its problem.
    assert events(receiver) == [("opened", f"permanent_error:pair:{first.pk}"),
                                ("resolved", f"permanent_error:pair:{first.pk}")]
