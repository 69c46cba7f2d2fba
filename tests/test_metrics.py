"""/metrics as Prometheus scrapes it: behind a bearer token, read from real rows in
PostgreSQL, parsed with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scaling import services
from scaling.models import Decision, HerokuAccount, ScalingPair
from tests.conftest import HEROKU_TOKEN

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def metrics_on(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


def scrape(client: Client, token: str = TOKEN) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    text = response.content.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def decide(pair: ScalingPair, *, ago: float = 0, **fields: Any) -> Decision:
    values: dict[str, Any] = {"outcome": Decision.Outcome.NO_CHANGE, "reason": "test", "duration_ms": 5, **fields}
    return Decision.objects.create(
        pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type=pair.process_type, policy=pair.policy,
        created_at=timezone.now() - timedelta(seconds=ago), **values,
    )


# --- the token ----------------------------------------------------------------------------

def test_metrics_are_off_until_a_token_is_set(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", TOKEN])
def test_a_scrape_without_the_right_bearer_token_is_refused(client: Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.content.decode()


def test_metrics_only_answer_get(client: Client) -> None:
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# --- what a scrape shows ------------------------------------------------------------------

def test_each_pair_shows_what_its_latest_cycle_saw_and_wanted(client: Client, make_pair: Callable[..., ScalingPair]) -> None:
    orders = make_pair(name="orders", app="orders-app")
    billing = make_pair(name="billing", app="billing-app")
    decide(orders, ago=120, visible_messages=50, in_flight_messages=1, delayed_messages=0, dynos_running=1,
           quantity_before=1, desired_quantity=1)
    decide(orders, ago=60, visible_messages=9000, in_flight_messages=20, delayed_messages=3, dynos_running=5,
           quantity_before=5, desired_quantity=20, applied_quantity=20, outcome=Decision.Outcome.APPLIED)
    decide(billing, ago=30, visible_messages=0, in_flight_messages=0, delayed_messages=0, dynos_running=2,
           quantity_before=2, desired_quantity=1, outcome=Decision.Outcome.DRY_RUN)

    samples = scrape(client)

    assert value(samples, "dynoscaler_queue_visible_messages", pair="orders") == 9000
    assert value(samples, "dynoscaler_queue_in_flight_messages", pair="orders") == 20
    assert value(samples, "dynoscaler_queue_delayed_messages", pair="orders") == 3
    assert value(samples, "dynoscaler_dynos_running", pair="orders") == 5
    assert value(samples, "dynoscaler_formation_quantity", pair="orders") == 20  # what it set, not what it found
    assert value(samples, "dynoscaler_desired_dynos", pair="orders") == 20
    assert value(samples, "dynoscaler_formation_quantity", pair="billing") == 2  # dry run: left as found
    assert value(samples, "dynoscaler_desired_dynos", pair="billing") == 1
    assert value(samples, "dynoscaler_pair_info", pair="orders", app="orders-app", process_type="worker",
                 policy="classic", provider="heroku") == 1


def test_a_count_the_latest_cycle_could_not_read_is_absent_rather_than_zero(
    client: Client, make_pair: Callable[..., ScalingPair]
) -> None:
    pair = make_pair()
    decide(pair, ago=60, visible_messages=400, dynos_running=2, quantity_before=2, desired_quantity=2)
    decide(pair, ago=1, outcome=Decision.Outcome.ERROR, error="SQS: throttled", error_permanent=False)

    samples = scrape(client)

    assert value(samples, "dynoscaler_queue_visible_messages", pair="orders") is None
    assert value(samples, "dynoscaler_pair_error", pair="orders", kind="transient") == 1
    assert value(samples, "dynoscaler_pair_error", pair="orders", kind="permanent") == 0


def test_decisions_and_errors_of_the_last_hour_are_counted_by_outcome_and_kind(
    client: Client, make_pair: Callable[..., ScalingPair]
) -> None:
    pair = make_pair()
    quiet = make_pair(name="quiet", app="quiet-app")
    decide(pair, ago=2 * 3600, outcome=Decision.Outcome.APPLIED)  # older than the hour
    for ago in (3000, 2000, 1000):
        decide(pair, ago=ago, outcome=Decision.Outcome.NO_CHANGE)
    decide(pair, ago=500, outcome=Decision.Outcome.APPLIED)
    decide(pair, ago=400, outcome=Decision.Outcome.ERROR, error="Heroku: 401", error_permanent=True)
    decide(pair, ago=300, outcome=Decision.Outcome.ERROR, error="Heroku: 503", error_permanent=False)
    decide(pair, ago=200, outcome=Decision.Outcome.ERROR, error="Heroku: 503", error_permanent=False)

    samples = scrape(client)

    assert value(samples, "dynoscaler_decisions_last_hour", pair="orders", outcome="no_change") == 3
    assert value(samples, "dynoscaler_decisions_last_hour", pair="orders", outcome="applied") == 1
    assert value(samples, "dynoscaler_decisions_last_hour", pair="orders", outcome="error") == 3
    assert value(samples, "dynoscaler_errors_last_hour", pair="orders", kind="permanent") == 1
    assert value(samples, "dynoscaler_errors_last_hour", pair="orders", kind="transient") == 2
    # A pair with no decision still has its series, at 0, so alerts on them do not flicker.
    assert value(samples, "dynoscaler_decisions_last_hour", pair=quiet.name, outcome="paused") == 0


def test_stalled_pairs_the_age_of_each_last_cycle_and_the_kill_switch(
    client: Client, make_pair: Callable[..., ScalingPair]
) -> None:
    fresh = make_pair(name="fresh", app="fresh-app")
    stalled = make_pair(name="stalled", app="stalled-app")
    now = timezone.now()
    ScalingPair.objects.filter(pk=fresh.pk).update(last_cycle_at=now - timedelta(seconds=30))
    ScalingPair.objects.filter(pk=stalled.pk).update(last_cycle_at=now - timedelta(seconds=600),
                                                     created_at=now - timedelta(days=1), updated_at=now - timedelta(days=1))
    services.kill_switch_set(engaged=True, user="ops")

    samples = scrape(client)

    assert value(samples, "dynoscaler_pair_stalled", pair="stalled") == 1
    assert value(samples, "dynoscaler_pair_stalled", pair="fresh") == 0
    assert value(samples, "dynoscaler_stalled_pairs") == 1
    assert 600 <= (value(samples, "dynoscaler_pair_last_cycle_age_seconds", pair="stalled") or 0) < 700
    assert value(samples, "dynoscaler_kill_switch_engaged") == 1


def test_each_heroku_accounts_pool_and_backoff(client: Client, make_pair: Callable[..., ScalingPair]) -> None:
    busy = make_pair(name="busy", app="busy-app")
    other_account = HerokuAccount.objects.create(description="team b", api_token=HEROKU_TOKEN + "b",
                                                 rate_limited_until=timezone.now() + timedelta(seconds=90))
    held = make_pair(name="held", app="held-app")
    ScalingPair.objects.filter(pk=held.pk).update(heroku_account=other_account)
    decide(busy, ago=120, heroku_rate_limit_remaining=4200)
    decide(busy, ago=60, heroku_rate_limit_remaining=4100)
    decide(busy, ago=1)  # a cycle that made no call records no pool: the last known one stands
    decide(held, ago=2 * 3600, heroku_rate_limit_remaining=50)  # over an hour old: the pool has refilled since

    samples = scrape(client)

    assert value(samples, "dynoscaler_heroku_api_calls_remaining", account="test") == 4100
    assert value(samples, "dynoscaler_heroku_backing_off", account="test") == 0
    assert value(samples, "dynoscaler_heroku_api_calls_remaining", account="team b") is None
    assert value(samples, "dynoscaler_heroku_backing_off", account="team b") == 1


def test_the_audit_trails_lag(client: Client, make_pair: Callable[..., ScalingPair]) -> None:
    pair = make_pair()
    shipped = decide(pair, ago=900)
    Decision.objects.filter(pk=shipped.pk).update(shipped_at=timezone.now())
    decide(pair, ago=300)
    decide(pair, ago=10)

    samples = scrape(client)

    assert value(samples, "dynoscaler_audit_unshipped_decisions") == 2
    assert 300 <= (value(samples, "dynoscaler_audit_oldest_unshipped_age_seconds") or 0) < 400

    Decision.objects.update(shipped_at=timezone.now())
    samples = scrape(client)
    assert value(samples, "dynoscaler_audit_unshipped_decisions") == 0
    assert value(samples, "dynoscaler_audit_oldest_unshipped_age_seconds") == 0


def test_a_scrape_costs_the_same_few_queries_however_many_pairs_and_decisions(
    client: Client, make_pair: Callable[..., ScalingPair], django_assert_max_num_queries: Any
) -> None:
    for i in range(12):
        pair = make_pair(name=f"pair-{i}", app=f"app-{i}")
        for ago in range(0, 600, 60):
            decide(pair, ago=ago, visible_messages=i, heroku_rate_limit_remaining=4000)
    with django_assert_max_num_queries(8):
        samples = scrape(client)
    assert value(samples, "dynoscaler_queue_visible_messages", pair="pair-11") == 11


def test_gauges_and_pages_show_the_latest_cycle_of_a_quiet_run_not_its_first(
        client: Client, admin_client: Client, make_pair: Callable[..., ScalingPair], queue_and_app: Any) -> None:
    # Quiet cycles fold into one decision row, written when the run ends; until then the
    # row holds the run's first cycle. What the pair sees now must show anyway.
    from tests.conftest import cycle, send_messages

    sqs, _ = queue_and_app
    pair = make_pair(backlog_threshold=10_000)
    start = timezone.now()
    send_messages(sqs, "orders", 5)
    cycle(pair, now=start)
    cycle(pair, now=start + timedelta(seconds=60))  # the run's first cycle gets a row
    send_messages(sqs, "orders", 40)
    cycle(pair, now=start + timedelta(seconds=120))  # folded into the open run
    assert Decision.objects.filter(pair=pair).order_by("-created_at").values_list("visible_messages", flat=True)[0] == 5

    assert value(scrape(client), "dynoscaler_queue_visible_messages", pair="orders") == 45
    status = admin_client.get("/admin/status/").content.decode()
    assert "45 visible message(s)" in status
    assert "<td>no change</td>" in status  # as the other pages say it, not "no_change"
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert "Last cycle</strong>" in page and "45 visible message(s)" in page
