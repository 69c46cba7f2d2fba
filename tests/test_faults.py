"""Faults DynoScaler must survive, each a class, each on real parts: PostgreSQL, moto_server
SQS, and the loopback Heroku and Elasticsearch stand-ins (which drop answers, echo tokens,
hang and refuse as real systems do)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from scaling import services
from scaling.models import Decision, HerokuAccount, Lease, ScalingPair
from tests.conftest import HEROKU_TOKEN, cycle, send_messages
from tests.test_legacy_env import LEGACY_ENV

pytestmark = pytest.mark.django_db




# --- 1. a back-off ends when it says it ends ---------------------------------------------


def test_an_accounts_back_off_ends_on_time_however_often_its_pairs_cycle(queue_and_app: Any, make_pair: Any, settings: Any) -> None:
    sqs, heroku = queue_and_app
    settings.HEROKU_RATE_LIMIT_BACKOFF_SECONDS = 12
    for name in ("billing-app", "mailer-app"):
        heroku.add_app(name, token=HEROKU_TOKEN, quantity=1)
    pairs = [make_pair(), make_pair(name="billing", app="billing-app"), make_pair(name="mailer", app="mailer-app")]
    t0 = timezone.now()
    heroku.rate_limit_pool = 0
    assert "429" in cycle(pairs[0], now=t0).error
    heroku.rate_limit_pool = 4500  # the fault clears at once; the back-off still runs its course
    calls = len(heroku.requests)

    # Every pair of the account cycles every 2 s through the back-off: none calls Heroku, and
    # being skipped is not a reason to wait longer.
    for step in range(1, 6):
        for pair in pairs:
            held = cycle(pair, now=t0 + timedelta(seconds=2 * step))
            assert "backing off" in held.error and held.error_permanent is False
            assert held.visible_messages == 0  # SQS is still read: only Heroku calls wait
    assert len(heroku.requests) == calls
    account = HerokuAccount.objects.get()
    assert account.rate_limited_until == t0 + timedelta(seconds=12)

    # Within the back-off plus one interval, the account calls Heroku again and scales.
    recovered = cycle(pairs[1], now=t0 + timedelta(seconds=14))
    assert recovered.outcome != Decision.Outcome.ERROR
    assert len(heroku.requests) > calls


# --- 2. our own write, its answer lost, is not a person's change --------------------------


def test_a_write_whose_answer_was_lost_is_confirmed_not_blamed_on_a_person(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1, max_dynos=5)
    send_messages(sqs, "orders", 100)
    heroku.lose_answer_next("PATCH", r"/formation/worker$")

    lost = cycle(pair)
    assert lost.outcome == Decision.Outcome.ERROR and lost.error_permanent is False
    assert heroku.quantity("orders-app") == 2  # Heroku did apply it

    confirmed = cycle(pair)
    assert confirmed.outcome != Decision.Outcome.PAUSED
    assert "the change to 2 asked for earlier was applied" in confirmed.reason
    assert "outside DynoScaler" not in confirmed.reason
    pair.refresh_from_db()
    assert pair.paused_until is None and pair.unconfirmed_quantity is None


def test_after_a_lost_answer_a_third_quantity_is_still_a_persons_change(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1, max_dynos=5)
    send_messages(sqs, "orders", 100)
    heroku.lose_answer_next("PATCH", r"/formation/worker$")
    cycle(pair)  # asked for 2; the answer was lost
    heroku.set_quantity("orders-app", 4)  # neither the old 1 nor the asked-for 2: someone scaled by hand
    held = cycle(pair)
    assert held.outcome == Decision.Outcome.PAUSED
    assert "changed outside DynoScaler (expected 1, found 4)" in held.reason
    assert heroku.quantity("orders-app") == 4


def test_a_lost_answer_that_was_not_applied_is_simply_tried_again(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair(up_cycles=1, max_dynos=5)
    send_messages(sqs, "orders", 100)
    heroku.fail_next("PATCH", r"/formation/worker$", 503)  # not applied, and we cannot know that
    assert cycle(pair).outcome == Decision.Outcome.ERROR
    retried = cycle(pair)
    assert retried.outcome == Decision.Outcome.APPLIED and heroku.quantity("orders-app") == 2


# --- 3. a killed shipper holds the audit trail up for seconds, not minutes ---------------


@pytest.mark.django_db(transaction=True)
def test_a_shipper_killed_mid_batch_holds_the_audit_trail_up_for_one_short_lease(
    queue_and_app: Any, make_pair: Any, elastic: Any, moto_url: str
) -> None:
    sqs, heroku = queue_and_app
    pair = make_pair()
    for _ in range(3):
        cycle(pair)
    elastic.delay_seconds = 60  # the cluster hangs: the shipper sits in its request
    db = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if k not in LEGACY_ENV},
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": django_settings.SECRET_KEY, "ELK_ELASTIC_URL": elastic.url,
        "ELK_ELASTIC_USER": "elastic", "ELK_ELASTIC_PASS": "es-pass-s3cret-XYZ",
    }
    shipper = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", "from scaling import services; services.audit_ship_pending()"],
        cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not Lease.objects.filter(key=services.AUDIT_LEASE, holder__isnull=False).exists():
            assert time.monotonic() < deadline, "the shipper never took its lease"
            time.sleep(0.1)
        time.sleep(0.5)  # inside its Elasticsearch request now
        shipper.send_signal(signal.SIGKILL)
        killed_at = timezone.now()
    finally:
        shipper.kill()
        shipper.wait(timeout=10)
    lease = Lease.objects.get(key=services.AUDIT_LEASE)
    assert lease.expires_at is not None
    assert lease.expires_at - killed_at <= timedelta(seconds=django_settings.AUDIT_LEASE_SECONDS)

    elastic.delay_seconds = 0
    assert services.audit_ship_pending(now=lease.expires_at - timedelta(seconds=1)) == 0  # still held
    assert services.audit_ship_pending(now=lease.expires_at + timedelta(seconds=1)) == Decision.objects.count()
    assert not Decision.objects.filter(shipped_at__isnull=True).exists()


# --- 4. an outside system that echoes a secret ---------------------------------------------


def test_a_token_echoed_in_herokus_error_reaches_no_page_row_or_log(
    queue_and_app: Any, make_pair: Any, admin_client: Any, caplog: Any
) -> None:
    sqs, heroku = queue_and_app
    caplog.set_level(logging.DEBUG)
    pair = make_pair(up_cycles=1)
    send_messages(sqs, "orders", 100)
    heroku.fail_next("PATCH", r"/formation/worker$", 422,
                     message=f"Token {HEROKU_TOKEN} may not scale; request had Authorization: Bearer {HEROKU_TOKEN}")
    refused = cycle(pair)
    assert refused.error_permanent is True and "may not scale" in refused.error
    pair.refresh_from_db()
    assert pair.blocked_quantity == 2 and "may not scale" in pair.blocked_reason
    cycle(pair)  # held, quoting the refusal

    pages = [
        f"/admin/scaling/scalingpair/{pair.pk}/change/",
        "/admin/scaling/scalingpair/",
        "/admin/scaling/decision/",
        f"/admin/scaling/decision/{refused.pk}/change/",
        "/admin/scaling/decision/export.csv",
        "/admin/status/",
    ]
    seen = []
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        seen.append(b"".join(response.streaming_content) if response.streaming else response.content)
    stored = [pair.blocked_reason, *Decision.objects.values_list("reason", "error")]
    everything = b"".join(seen).decode() + repr(stored) + caplog.text
    assert "may not scale" in everything
    assert HEROKU_TOKEN not in everything


# --- 8. a refused quantity: not asked again, and the pair goes as high as Heroku allows ----


def test_the_original_variables_pair_does_not_resend_a_refused_quantity_on_every_run(
    sqs: Any, heroku: Any, monkeypatch: Any
) -> None:
    for name, value in {**LEGACY_ENV, "DYNOSCALER_UP_CYCLES": "1", "DYNOSCALER_MAX_DYNOS": "4"}.items():
        monkeypatch.setenv(name, value)
    sqs.create_queue(QueueName="orders")
    send_messages(sqs, "orders", 100)
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=2, max_quantity=2)
    for _ in range(3):
        try:
            call_command("scale_once", stdout=io.StringIO())
        except Exception:
            pass  # the first run reports the refusal as a failed cycle
    assert [w.body for w in heroku.writes()] == [{"quantity": 3}]
    outcomes = list(Decision.objects.order_by("created_at").values_list("outcome", flat=True))
    assert outcomes == ["error", "held"]  # and the third run held like the second: folded into its run
    assert ScalingPair.objects.get(managed_by_env=True).quiet_run["cycles"] == 1

    # The operator changes a variable (say, the bounds): that is a new configuration, tried afresh.
    monkeypatch.setenv("DYNOSCALER_MAX_DYNOS", "5")
    try:
        call_command("scale_once", stdout=io.StringIO())
    except Exception:
        pass
    assert len(heroku.writes()) == 2


def test_a_refused_jump_lands_at_the_most_heroku_says_it_accepts(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.set_quantity("orders-app", 2)
    heroku.apps["orders-app"].processes["worker"].max_quantity = 6
    pair = make_pair(policy="target_wait", dyno_rate=0.1, dyno_concurrency=1, max_dynos=20, min_dynos=1)
    ScalingPair.objects.filter(pk=pair.pk).update(policy_state={"needs": [[0, 2]]})
    send_messages(sqs, "orders", 200)

    decision = cycle(pair)
    asked = [w.body["quantity"] for w in heroku.writes()]
    assert asked[0] > 6 and asked[1:] == [6]  # refused, then the limit Heroku named, at once
    assert decision.outcome == Decision.Outcome.APPLIED and decision.applied_quantity == 6
    assert "the most it accepts" in decision.reason and decision.error == ""
    assert heroku.quantity("orders-app") == 6

    held = cycle(pair)
    assert held.outcome == Decision.Outcome.HELD and len(heroku.writes()) == 2


def test_without_a_named_limit_the_pair_still_finds_the_most_heroku_accepts(queue_and_app: Any, make_pair: Any) -> None:
    sqs, heroku = queue_and_app
    heroku.set_quantity("orders-app", 2)
    process = heroku.apps["orders-app"].processes["worker"]
    process.max_quantity, process.limit_message = 6, "Your account cannot scale this far."
    pair = make_pair(policy="target_wait", dyno_rate=0.1, dyno_concurrency=1, max_dynos=20, min_dynos=1)
    ScalingPair.objects.filter(pk=pair.pk).update(policy_state={"needs": [[0, 2]]})
    send_messages(sqs, "orders", 200)

    for _ in range(7):
        cycle(pair)
    asked = [w.body["quantity"] for w in heroku.writes()]
    assert heroku.quantity("orders-app") == 6
    refused = [q for q in asked if q > 6]
    assert len(refused) == len(set(refused)) <= 5  # halving the gap: no quantity refused twice
    for _ in range(3):
        assert cycle(pair).outcome == Decision.Outcome.HELD  # found it: no retry loop after
    assert len(heroku.writes()) == len(asked)


# --- the broker away while a cycle records its decision -------------------------------------


@pytest.fixture
def broker_away() -> Any:
    """The app's broker pointed at a port nothing listens on (Redis down), then back."""
    from dynoscaler_site.celery import app
    from tests.conftest import TEST_REDIS_URL, free_port

    from kombu import pools

    def point_at(url: str) -> None:
        app.conf.update(CELERY_BROKER_URL=url)
        pools.reset()  # kombu's producer pools, keyed by connection
        app._pool = None  # type: ignore[attr-defined]
        app.amqp._producer_pool = None  # type: ignore[attr-defined]

    point_at(f"redis://127.0.0.1:{free_port()}/0")
    yield
    point_at(TEST_REDIS_URL)


def test_a_cycle_while_the_broker_is_away_records_its_decision_and_raises_nothing(
        queue_and_app: Any, make_pair: Any, broker_away: None, caplog: pytest.LogCaptureFixture) -> None:
    from scaling import tasks

    pair = make_pair()
    tasks._ship_asked_until = 0.0
    with caplog.at_level(logging.WARNING):
        tasks.run_pair_cycle(pair.pk, force=True)  # raised kombu's OperationalError out of the task before
    assert Decision.objects.filter(pair=pair, shipped_at__isnull=True).count() == 1  # the sweep ships it later
    said = [r for r in caplog.records if "could not ask for a shipment" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is None
    assert tasks._ship_asked_until == 0.0  # the next decision asks again
