"""Pairs: validation an operator sees, their beat tasks, the commands, and the admin."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scaling import services
from scaling.models import AwsAccount, Decision, Heartbeat, HerokuAccount, PairQueue, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN

pytestmark = pytest.mark.django_db
TARGET_WAIT_FIELDS = {"target_wait_seconds": 120, "dyno_rate": 5, "dyno_concurrency": 4, "boot_seconds": 45,
                      "scale_down_window_seconds": 90, "lag_seconds": 30, "provider": "heroku",
                      "manual_hold_seconds": 900, "prewarm": "on"}
NO_SCHEDULES = {"schedules-TOTAL_FORMS": 0, "schedules-INITIAL_FORMS": 0, "schedules-MIN_NUM_FORMS": 0,
                "schedules-MAX_NUM_FORMS": 1000}


def errors_of(obj: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    return caught.value.message_dict


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, says", [
    ("app_name", "Orders_App", "Heroku app name"),
    ("process_type", "work er", "process type"),
    ("min_dynos", -1, "greater than or equal to 0"),
    ("max_dynos", 0, "greater than or equal to 1"),
    ("max_dynos", 101, "less than or equal to 100"),
    ("up_cycles", 0, "greater than or equal to 1"),
    ("down_cycles", 0, "greater than or equal to 1"),
    ("interval_seconds", 4, "At least 5 s (DYNOSCALER_MIN_INTERVAL)"),
    ("backlog_threshold", 0, "greater than or equal to 0.001"),
])
def test_bad_pair_fields_are_named(make_pair: Any, field: str, value: Any, says: str) -> None:
    pair = make_pair()
    setattr(pair, field, value)
    assert any(says in m for m in errors_of(pair)[field])


def test_min_above_max_is_refused(make_pair: Any) -> None:
    pair = make_pair()
    pair.min_dynos, pair.max_dynos = 6, 3
    assert "cannot be above max dynos" in errors_of(pair)["min_dynos"][0]


def test_a_second_pair_for_the_same_app_and_process_is_refused(make_pair: Any) -> None:
    first = make_pair()
    twin = ScalingPair(name="twin", heroku_account=first.heroku_account, aws_account=first.aws_account,
                       app_name=first.app_name, process_type=first.process_type)
    assert errors_of(twin) == {"app_name": ["The pair 'orders' already scales this app's worker dynos: edit that pair, "
                                            "or choose another app or process type."]}
    twin.process_type = "urgent"
    twin.full_clean()
    first.full_clean()  # a pair is not its own twin


@pytest.mark.parametrize("queue, ok", [
    ("billing", True), ("orders.fifo", True), ("https://sqs.us-east-1.amazonaws.com/123456789012/orders", True),
    ("orders queue", False), ("a" * 81, False), ("https://sqs.us-east-1.amazonaws.com/orders", False),
])
def test_queue_names_and_urls(make_pair: Any, queue: str, ok: bool) -> None:
    q = PairQueue(pair=make_pair(), queue=queue, region="us-east-1")
    if ok:
        q.full_clean()
    else:
        assert "queue" in errors_of(q)


def test_unknown_region_shape_is_refused(make_pair: Any) -> None:
    assert "region" in errors_of(PairQueue(pair=make_pair(), queue="orders", region="Virginia"))


def test_a_well_shaped_region_that_does_not_exist_is_refused(make_pair: Any) -> None:
    errors = errors_of(PairQueue(pair=make_pair(), queue="billing", region="us-north-9"))
    assert "not an AWS region with SQS that botocore" in errors["region"][0]
    PairQueue(pair=make_pair(name="other", app="other-app"), queue="billing", region="ap-southeast-2").full_clean()


@pytest.mark.parametrize("url, region", [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/orders", "eu-west-1"),
    ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/orders", "us-gov-west-1"),
    ("https://vpce-0a1b2c3d-e4f5.sqs.ap-south-1.vpce.amazonaws.com/123456789012/orders", "ap-south-1"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/orders", "cn-north-1"),
    ("https://eu-central-1.queue.amazonaws.com/123456789012/orders", "eu-central-1"),
    ("https://queue.amazonaws.com/123456789012/orders", "us-east-1"),
])
def test_a_queue_url_in_another_region_than_the_pairs_is_refused_on_the_region(make_pair: Any, url: str,
                                                                               region: str) -> None:
    other = "us-west-2"
    errors = errors_of(PairQueue(pair=make_pair(), queue=url, region=other))
    assert list(errors) == ["region"]
    assert errors["region"] == [f"The queue's URL is in {region}, not {other}: set the region to {region}."]
    PairQueue(pair=make_pair(name="other", app="other-app"), queue=url, region=region).full_clean()


def test_a_local_endpoints_queue_url_says_nothing_of_its_region(make_pair: Any) -> None:
    PairQueue(pair=make_pair(), queue="http://127.0.0.1:5000/123456789012/orders", region="eu-west-1").full_clean()


def test_aws_account_needs_a_key_pair_or_the_default_chain() -> None:
    assert set(errors_of(AwsAccount(description="x"))) == {"access_key_id", "secret_access_key"}
    assert "use_default_chain" in errors_of(AwsAccount(description="x", use_default_chain=True, access_key_id="AKIAIOSFODNN7EXAMPLE"))
    AwsAccount(description="x", use_default_chain=True).full_clean()


# --- beat follows the pair ------------------------------------------------------------

def test_each_pair_has_its_own_periodic_task_at_its_interval(make_pair: Any) -> None:
    pair = make_pair(interval_seconds=45)
    task = PeriodicTask.objects.get(pk=pair.periodic_task_id)
    assert task.task == "scaling.tasks.run_pair_cycle" and json.loads(task.args) == [pair.pk]
    assert task.interval.every == 45 and task.enabled and task.expire_seconds == 45


def test_editing_disabling_and_deleting_a_pair_keep_beat_in_step(make_pair: Any) -> None:
    pair = make_pair()
    pair.interval_seconds, pair.enabled = 120, False
    pair.save()
    services.pair_apply_settings(pair=pair)
    task = PeriodicTask.objects.get(pk=pair.periodic_task_id)
    assert task.interval.every == 120 and not task.enabled
    services.pair_delete(pair=pair)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


# --- commands ---------------------------------------------------------------------------

def make_decision(pair: ScalingPair, when: Any, outcome: str = "no_change") -> Decision:
    return Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                   created_at=when, policy="classic", outcome=outcome, reason="r", duration_ms=5)


def test_export_decisions_writes_json_lines_oldest_first(make_pair: Any) -> None:
    pair = make_pair()
    now = timezone.now()
    old, new = make_decision(pair, now - timedelta(days=2)), make_decision(pair, now)
    out = io.StringIO()
    call_command("export_decisions", "--pair", "orders", stdout=out)
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [str(old.pk), str(new.pk)]
    out = io.StringIO()
    call_command("export_decisions", "--since", (now - timedelta(days=1)).isoformat(), stdout=out)
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [str(new.pk)]


def test_export_decisions_names_a_bad_argument(make_pair: Any) -> None:
    with pytest.raises(CommandError, match="^--since: expected an ISO 8601 time"):
        call_command("export_decisions", "--since", "yesterday")
    with pytest.raises(CommandError, match="^--pair: no pair or decisions named 'nope'"):
        call_command("export_decisions", "--pair", "nope")


def test_scale_once_names_an_unknown_or_disabled_pair(make_pair: Any) -> None:
    make_pair(enabled=False)
    with pytest.raises(CommandError, match="--pair: no pair named 'nope' \\(known: orders\\)"):
        call_command("scale_once", "--pair", "nope")
    with pytest.raises(CommandError, match="'orders' is disabled"):
        call_command("scale_once", "--pair", "orders")


def test_scale_once_reports_a_failed_cycle_and_exits_non_zero(make_pair: Any, sqs: Any, heroku: Any) -> None:
    make_pair()  # its queue does not exist
    out = io.StringIO()
    with pytest.raises(CommandError, match="at least one cycle failed"):
        call_command("scale_once", stdout=out)
    assert "orders: error:" in out.getvalue() and "does not exist" in out.getvalue()


def test_models_and_migrations_do_not_drift() -> None:
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


# --- admin ------------------------------------------------------------------------------
def pair_form(existing: ScalingPair, **changes: Any) -> dict[str, Any]:
    return {
        "name": "billing", "enabled": "on", "heroku_account": existing.heroku_account_id,
        "aws_account": existing.aws_account_id, "app_name": "billing-app", "process_type": "worker",
        "min_dynos": 0, "max_dynos": 3, "interval_seconds": 30, "policy": "target_wait",
        "backlog_threshold": 50, "up_cycles": 2, "down_cycles": 5,
        "queues-TOTAL_FORMS": 1, "queues-INITIAL_FORMS": 0, "queues-MIN_NUM_FORMS": 1, "queues-MAX_NUM_FORMS": 1000,
        "queues-0-queue": "billing", "queues-0-region": "eu-west-1",
        **TARGET_WAIT_FIELDS, **NO_SCHEDULES, **changes,
    }



def test_saved_secrets_are_never_shown_again(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair()
    for url in (f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/",
                f"/admin/scaling/awsaccount/{pair.aws_account_id}/change/",
                "/admin/scaling/herokuaccount/", "/admin/scaling/awsaccount/"):
        page = admin_client.get(url).content.decode()
        assert HEROKU_TOKEN not in page and AWS_SECRET not in page
    page = admin_client.get(f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/").content.decode()
    assert f"set, ending …{HEROKU_TOKEN[-4:]}" in page


def test_saving_a_credential_form_with_the_secret_left_empty_keeps_it(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair()
    url = f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/"
    response = admin_client.post(url, {"description": "renamed", "api_token": ""})
    assert response.status_code == 302
    account = HerokuAccount.objects.get(pk=pair.heroku_account_id)
    assert account.description == "renamed" and account.api_token == HEROKU_TOKEN


def test_creating_a_pair_in_the_admin_creates_its_beat_task(admin_client: Any, make_pair: Any) -> None:
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(make_pair(), policy="classic"))
    assert response.status_code == 302, response.content.decode()[:3000]
    pair = ScalingPair.objects.get(name="billing")
    assert PeriodicTask.objects.get(pk=pair.periodic_task_id).interval.every == 30


def test_the_pair_form_names_each_bad_field(admin_client: Any, make_pair: Any) -> None:
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(
        make_pair(), name="bad", app_name="Bad App", min_dynos=4, max_dynos=2, interval_seconds=1, up_cycles=0,
        policy="classic", **{"queues-0-queue": "bad queue", "queues-0-region": "mars"},
    ))
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("Heroku app name", "At least 5 s", "greater than or equal to 1", "cannot be above max dynos",
                 "queue&#x27;s name", "AWS region"):
        assert text in page, text
    assert not ScalingPair.objects.filter(name="bad").exists()


@pytest.mark.parametrize("interval", [-5, 0, 1, 4])
def test_an_interval_under_the_floor_gets_one_message_whatever_the_value(admin_client: Any, make_pair: Any,
                                                                          interval: int) -> None:
    # Before, -5 was told "≥ 0", 0 "≥ 1" and "at least 5 s" together, 1 only "at least 5 s".
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(make_pair(), interval_seconds=interval))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["interval_seconds"]
    assert errors == ["At least 5 s (DYNOSCALER_MIN_INTERVAL): SQS's counts are approximate and settle over seconds, "
                      "so a closer look sees nothing new."]


@pytest.mark.parametrize(("field", "value"), [("max_dynos", -3), ("max_dynos", 0), ("up_cycles", -1), ("up_cycles", 0)])
def test_a_number_under_a_fields_lowest_value_is_told_that_value(admin_client: Any, make_pair: Any, field: str,
                                                                  value: int) -> None:
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(make_pair(), policy="classic",
                                                                              **{field: value}))
    assert response.context["adminform"].form.errors[field] == ["Ensure this value is greater than or equal to 1."]


def test_healthz_answers_for_the_web_dyno(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "stalled_pairs": 0, "kill_switch": False, "workers_last_task_seconds": None}
    Heartbeat.objects.create(key="workers", at=timezone.now() - timedelta(minutes=5))  # a worker's last task
    assert 299 <= client.get("/healthz").json()["workers_last_task_seconds"] <= 301


def test_target_wait_must_exceed_boot_time(admin_client: Any, make_pair: Any) -> None:
    response = admin_client.post("/admin/scaling/scalingpair/add/",
                                 pair_form(make_pair(), target_wait_seconds=30, boot_seconds=45))
    assert response.status_code == 200
    assert "must exceed the boot time (45 s)" in response.content.decode()
    assert not ScalingPair.objects.filter(name="billing").exists()


def test_overlapping_schedules_are_refused_and_disjoint_ones_saved(admin_client: Any, make_pair: Any) -> None:
    existing = make_pair()
    windows = {
        "schedules-TOTAL_FORMS": 2,
        "schedules-0-weekdays": "0,1,2,3,4", "schedules-0-start_time": "08:00", "schedules-0-end_time": "18:00",
        "schedules-0-timezone": "UTC", "schedules-0-min_dynos": 3, "schedules-0-max_dynos": 10,
        "schedules-1-weekdays": "4", "schedules-1-start_time": "17:00", "schedules-1-end_time": "23:00",
        "schedules-1-timezone": "UTC", "schedules-1-min_dynos": 0, "schedules-1-max_dynos": 2,
    }
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(existing, **windows))
    assert response.status_code == 200
    assert "Schedule windows overlap" in response.content.decode()
    windows["schedules-1-start_time"] = "18:00"
    response = admin_client.post("/admin/scaling/scalingpair/add/", pair_form(existing, **windows))
    assert response.status_code == 302
    assert ScalingPair.objects.get(name="billing").schedules.count() == 2


def test_a_schedule_sets_the_bounds_of_a_cycle(make_pair: Any, sqs: Any, heroku: Any) -> None:
    from datetime import time

    from scaling.models import PairSchedule

    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair(min_dynos=1, max_dynos=5)
    PairSchedule.objects.create(pair=pair, weekdays="0,1,2,3,4,5,6", start_time=time(0), end_time=time(0),
                                min_dynos=3, max_dynos=5)
    decision = services.pair_run_cycle(pair_id=pair.pk, force=True)
    assert decision is not None and decision.applied_quantity == 3
    assert decision.reason.startswith("[schedule mon,tue,wed,thu,fri,sat,sun 00:00–00:00 UTC: min 3, max 5]")


def test_a_pairs_page_folds_away_the_other_policys_settings(admin_client: Any, make_pair: Any) -> None:
    def classes_of(page: str, title: str) -> str:
        start = page.rindex("<fieldset", 0, page.index(f">{title}<"))
        return page[start:page.index(">", start)]

    classic = admin_client.get(f"/admin/scaling/scalingpair/{make_pair(policy='classic').pk}/change/").content.decode()
    assert "collapse" in classes_of(classic, "target_wait policy") and "collapse" not in classes_of(classic, "classic policy")
    other = make_pair(name="billing", app="billing-app", policy="target_wait")
    page = admin_client.get(f"/admin/scaling/scalingpair/{other.pk}/change/").content.decode()
    assert "collapse" in classes_of(page, "classic policy") and "collapse" not in classes_of(page, "target_wait policy")
