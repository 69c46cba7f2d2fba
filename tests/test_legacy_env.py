"""The original tool's variables keep working: set them, and the pair exists and scales."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from dynoscaler_site.env import EnvError
from scaling.models import AwsAccount, Decision, HerokuAccount, ScalingPair
from scaling.legacy_env import legacy_config_from_env, legacy_pair_sync_at_start
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN, send_messages

LEGACY_ENV = {
    "MY_HEROKU_AUTH_DES": "dynoscaler",
    "MY_HEROKU_AUTH_TOKEN": HEROKU_TOKEN,
    "MY_HEROKU_AS_APP": "orders-app",
    "MY_HEROKU_AS_PROCESS": "worker",
    "AWS_KEY": AWS_KEY,
    "AWS_SECRET": AWS_SECRET,
    "AWS_SQS_NAME": "orders",
    "AWS_SQS_REGION": "us-east-1",
    "DYNOSCALER_MAX_DYNOS": "4",
    "DYNOSCALER_MIN_DYNOS": "1",
    "DYNOSCALER_UP_CYCLES": "2",
    "DYNOSCALER_DOWN_CYCLES": "3",
    "DYNOSCALER_BACKLOG_THRESHOLD": "10",
}


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in LEGACY_ENV.items() if k != name}


def test_no_original_variable_means_no_env_pair() -> None:
    assert legacy_config_from_env({"AWS_KEY": "x", "AWS_SQS_REGION": "us-east-1", "ELK_ELASTIC_URL": "http://x"}) is None


def test_the_original_variables_read_as_one_pair() -> None:
    config = legacy_config_from_env(LEGACY_ENV)
    assert config is not None
    assert (config.app_name, config.process_type, config.queue, config.region) == ("orders-app", "worker", "orders", "us-east-1")
    assert (config.min_dynos, config.max_dynos, config.up_cycles, config.down_cycles) == (1, 4, 2, 3)
    assert config.backlog_threshold == 10.0 and config.interval_seconds == 60
    assert HEROKU_TOKEN not in repr(config) and AWS_SECRET not in repr(config)


@pytest.mark.parametrize("name", [
    "MY_HEROKU_AUTH_TOKEN", "MY_HEROKU_AS_APP", "MY_HEROKU_AS_PROCESS", "AWS_SQS_NAME", "AWS_SQS_REGION",
    "DYNOSCALER_MAX_DYNOS", "DYNOSCALER_MIN_DYNOS", "DYNOSCALER_UP_CYCLES", "DYNOSCALER_DOWN_CYCLES",
    "DYNOSCALER_BACKLOG_THRESHOLD",
])
def test_a_missing_variable_is_named(name: str) -> None:
    with pytest.raises(EnvError, match=f"^{name}: is required"):
        legacy_config_from_env(without(name))


@pytest.mark.parametrize("name, value, says", [
    ("DYNOSCALER_MAX_DYNOS", "ten", "expected a whole number, got 'ten'"),
    ("DYNOSCALER_MAX_DYNOS", "0", "must be at least 1"),
    ("DYNOSCALER_MAX_DYNOS", "500", "must be at most 100"),
    ("DYNOSCALER_MIN_DYNOS", "-1", "must be at least 0"),
    ("DYNOSCALER_MIN_DYNOS", "9", "DYNOSCALER_MIN_DYNOS: 9 cannot be above DYNOSCALER_MAX_DYNOS (4)"),
    ("DYNOSCALER_UP_CYCLES", "1.5", "expected a whole number"),
    ("DYNOSCALER_BACKLOG_THRESHOLD", "lots", "expected a number"),
    ("DYNOSCALER_BACKLOG_THRESHOLD", "0", "must be greater than 0"),
    ("DYNOSCALER_BACKLOG_THRESHOLD", "nan", "finite"),
    ("MY_HEROKU_AS_APP", "My_App", "Heroku app name"),
    ("AWS_SQS_REGION", "virginia", "AWS region"),
    ("AWS_SQS_NAME", "orders queue", "queue's name"),
    ("DYNOSCALER_INTERVAL_SECONDS", "3", "must be at least 5 (DYNOSCALER_MIN_INTERVAL), got 3"),
])
def test_a_malformed_variable_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(EnvError) as caught:
        legacy_config_from_env({**LEGACY_ENV, name: value})
    assert str(caught.value).startswith(f"{name}:") and says in str(caught.value)


def test_the_interval_variable_has_the_floor_every_pair_has() -> None:
    # The admin takes 5 s (DYNOSCALER_MIN_INTERVAL); the variable refused anything under 10.
    config = legacy_config_from_env({**LEGACY_ENV, "DYNOSCALER_INTERVAL_SECONDS": "7"})
    assert config is not None and config.interval_seconds == 7


def test_half_an_aws_key_pair_is_named() -> None:
    with pytest.raises(EnvError, match="^AWS_SECRET:"):
        legacy_config_from_env(without("AWS_SECRET"))


def test_no_aws_key_pair_uses_the_default_credential_chain() -> None:
    config = legacy_config_from_env({k: v for k, v in LEGACY_ENV.items() if k not in ("AWS_KEY", "AWS_SECRET")})
    assert config is not None and config.aws_key is None and config.aws_secret is None


@pytest.mark.django_db
def test_starting_with_the_original_variables_creates_the_pair_and_its_beat_task() -> None:
    assert legacy_pair_sync_at_start(LEGACY_ENV) is True
    pair = ScalingPair.objects.get(managed_by_env=True)
    assert pair.name == "orders-app/worker (env)" and pair.policy == "classic" and pair.enabled
    assert [(q.queue, q.region) for q in pair.queues.all()] == [("orders", "us-east-1")]
    assert pair.heroku_account is not None and pair.aws_account is not None
    assert pair.heroku_account.api_token == HEROKU_TOKEN and pair.heroku_account.description == "dynoscaler"
    assert pair.aws_account.access_key_id == AWS_KEY and not pair.aws_account.use_default_chain
    task = PeriodicTask.objects.get(pk=pair.periodic_task_id)
    assert task.enabled and task.interval.every == 60 and json.loads(task.args) == [pair.pk]


@pytest.mark.django_db
def test_changing_a_variable_and_restarting_updates_the_same_pair() -> None:
    legacy_pair_sync_at_start(LEGACY_ENV)
    legacy_pair_sync_at_start({**LEGACY_ENV, "DYNOSCALER_MAX_DYNOS": "8", "AWS_SQS_NAME": "orders-v2", "DYNOSCALER_INTERVAL_SECONDS": "30"})
    pair = ScalingPair.objects.get()
    assert pair.max_dynos == 8
    assert [q.queue for q in pair.queues.all()] == ["orders-v2"]
    assert PeriodicTask.objects.get(pk=pair.periodic_task_id).interval.every == 30
    assert HerokuAccount.objects.count() == 1 and AwsAccount.objects.count() == 1


@pytest.mark.django_db
def test_a_new_app_in_the_variables_starts_with_no_expected_formation() -> None:
    legacy_pair_sync_at_start(LEGACY_ENV)
    ScalingPair.objects.update(expected_quantity=3)
    legacy_pair_sync_at_start({**LEGACY_ENV, "MY_HEROKU_AS_APP": "other-app"})
    assert ScalingPair.objects.get().expected_quantity is None
    legacy_pair_sync_at_start({**LEGACY_ENV, "MY_HEROKU_AS_APP": "other-app", "DYNOSCALER_MAX_DYNOS": "9"})
    ScalingPair.objects.update(expected_quantity=4)
    legacy_pair_sync_at_start({**LEGACY_ENV, "MY_HEROKU_AS_APP": "other-app", "DYNOSCALER_MAX_DYNOS": "8"})
    assert ScalingPair.objects.get().expected_quantity == 4  # same app: still expected


@pytest.mark.django_db
def test_a_bad_variable_at_start_up_logs_one_line_naming_it(caplog: Any) -> None:
    assert legacy_pair_sync_at_start({**LEGACY_ENV, "DYNOSCALER_UP_CYCLES": "often"}) is False
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "DYNOSCALER_UP_CYCLES: expected a whole number" in errors[0].getMessage()
    assert errors[0].exc_info is None  # a line, not a traceback
    assert ScalingPair.objects.count() == 0


@pytest.mark.django_db
def test_scale_once_with_only_the_original_variables_scales_the_pair(sqs: Any, heroku: Any, monkeypatch: Any) -> None:
    for name, value in {**LEGACY_ENV, "DYNOSCALER_UP_CYCLES": "1"}.items():
        monkeypatch.setenv(name, value)
    sqs.create_queue(QueueName="orders")
    send_messages(sqs, "orders", 30)
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    out = io.StringIO()
    call_command("scale_once", stdout=out)
    assert "orders-app/worker (env): applied: formation read from Heroku (a first look at the formation); " \
           "30 visible message(s) / 1 running dyno(s)" in out.getvalue()
    assert heroku.quantity("orders-app") == 2
    assert Decision.objects.get().applied_quantity == 2


@pytest.mark.django_db
def test_scale_once_says_a_cycles_error_once(sqs: Any, heroku: Any, monkeypatch: Any) -> None:
    for name, value in LEGACY_ENV.items():
        monkeypatch.setenv(name, value)
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)  # and no queue "orders"
    out = io.StringIO()
    with pytest.raises(CommandError, match="at least one cycle failed"):
        call_command("scale_once", stdout=out)
    line = out.getvalue().splitlines()[0]
    assert line == ("orders-app/worker (env): error: could not read the queues; formation held [SQS: "
                    "AWS.SimpleQueueService.NonExistentQueue: queue 'orders' does not exist in us-east-1 for these credentials]")


@pytest.mark.django_db
def test_scale_once_names_a_malformed_original_variable(monkeypatch: Any) -> None:
    for name, value in LEGACY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DYNOSCALER_MIN_DYNOS", "some")
    with pytest.raises(CommandError, match="DYNOSCALER_MIN_DYNOS: expected a whole number, got 'some'"):
        call_command("scale_once")


@pytest.mark.django_db
def test_every_bad_original_variable_is_named_at_once_in_one_line(monkeypatch: Any) -> None:
    env = {**LEGACY_ENV, "MY_HEROKU_AS_APP": "Orders App", "DYNOSCALER_MAX_DYNOS": "ten", "AWS_SQS_REGION": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CommandError) as caught:
        call_command("sync_env_pair")
    message = str(caught.value)
    assert "\n" not in message
    named = re.findall(r"\b([A-Z][A-Z0-9_]+): ", message)
    assert named == ["MY_HEROKU_AS_APP", "AWS_SQS_REGION", "DYNOSCALER_MAX_DYNOS"]
    assert "DYNOSCALER_MAX_DYNOS: expected a whole number, got 'ten'" in message
    assert "AWS_SQS_REGION: is required but not set" in message
    assert ScalingPair.objects.count() == 0


@pytest.mark.django_db
def test_sync_env_pair_command_says_what_it_did(monkeypatch: Any) -> None:
    out = io.StringIO()
    call_command("sync_env_pair", stdout=out)
    assert "not set; nothing to do" in out.getvalue()
    for name, value in LEGACY_ENV.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    call_command("sync_env_pair", stdout=out)
    assert out.getvalue() == "Pair 'orders-app/worker (env)' was created from the environment (every 60 s).\n"
    out = io.StringIO()
    call_command("sync_env_pair", stdout=out)
    assert out.getvalue() == "Pair 'orders-app/worker (env)' is up to date with the environment (every 60 s).\n"
    monkeypatch.setenv("DYNOSCALER_MAX_DYNOS", "9")
    out = io.StringIO()
    call_command("sync_env_pair", stdout=out)
    assert out.getvalue() == "Pair 'orders-app/worker (env)' was updated from the environment (every 60 s).\n"


@pytest.mark.django_db
def test_unsetting_the_original_variables_stops_their_pair_and_setting_them_again_resumes_it(
        monkeypatch: Any, caplog: Any) -> None:
    # The original tool did nothing without its variables; the pair made from them must not
    # go on scaling with the token and secret it stored.
    legacy_pair_sync_at_start(LEGACY_ENV)
    assert legacy_pair_sync_at_start({}) is False
    pair = ScalingPair.objects.get()
    assert not pair.enabled and not pair.managed_by_env
    assert not PeriodicTask.objects.get(pk=pair.periodic_task_id).enabled
    (said,) = [r for r in caplog.records if "no longer set" in r.getMessage()]
    assert said.levelname == "WARNING" and "'orders-app/worker (env)'" in said.getMessage()
    assert HEROKU_TOKEN not in caplog.text and AWS_SECRET not in caplog.text
    out = io.StringIO()
    call_command("sync_env_pair", stdout=out)
    assert "not set; nothing to do" in out.getvalue()  # released once, then left alone

    ScalingPair.objects.update(enabled=True)  # enabled again in the admin: the admin's now
    legacy_pair_sync_at_start({})
    assert ScalingPair.objects.get().enabled

    ScalingPair.objects.update(enabled=False)
    legacy_pair_sync_at_start(LEGACY_ENV)  # the variables are set again: the same pair scales again
    pair = ScalingPair.objects.get()
    assert pair.enabled and pair.managed_by_env


def test_several_bad_variables_read_as_one_sentence() -> None:
    with pytest.raises(EnvError) as caught:
        legacy_config_from_env({**LEGACY_ENV, "AWS_SQS_REGION": "virginia", "DYNOSCALER_UP_CYCLES": "x"})
    assert ".;" not in str(caught.value) and str(caught.value).count("; ") == 1


def test_a_queue_url_in_another_region_than_aws_sqs_region_is_named() -> None:
    with pytest.raises(EnvError) as caught:
        legacy_config_from_env({**LEGACY_ENV, "AWS_SQS_NAME": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"})
    assert str(caught.value) == ("AWS_SQS_REGION: the queue's URL is in eu-west-1, not us-east-1: set the region to "
                                 "eu-west-1 (AWS_SQS_NAME is the queue's URL)")


@pytest.mark.django_db
def test_the_env_pairs_page_shows_what_the_variables_describe_without_offering_to_change_it(admin_client: Any) -> None:
    # An edit there was silently set back by the next restart.
    legacy_pair_sync_at_start(LEGACY_ENV)
    pair = ScalingPair.objects.get()
    url = f"/admin/scaling/scalingpair/{pair.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "Made from the original DynoScaler variables" in page
    for field in ("max_dynos", "min_dynos", "backlog_threshold", "app_name", "queues-0-queue"):
        assert f'name="{field}"' not in page, field
    assert 'name="manual_hold_seconds"' in page and 'name="dry_run"' in page  # DynoScaler's own settings stay editable
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    form.update({"enabled": "on", "dry_run": "on", "manual_hold_seconds": 600, "paused_until_0": "", "paused_until_1": "",
                 "target_wait_seconds": 120, "dyno_rate": 10, "boot_seconds": 45, "dyno_concurrency": 1,
                 "prewarm": "off", "scale_down_window_seconds": 90, "lag_seconds": 30, "_save": "Save"})
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    pair.refresh_from_db()
    assert pair.dry_run and pair.manual_hold_seconds == 600 and pair.max_dynos == 4
    assert [q.queue for q in pair.queues.all()] == ["orders"]


@pytest.mark.django_db
def test_variables_not_applied_at_a_start_are_said_on_the_pages_and_as_an_alert(admin_client: Any) -> None:
    # The pair went on with its old values, its page and the status page said "ok", and
    # only one log line told that DYNOSCALER_MAX_DYNOS=ten had been ignored.
    from scaling.alerts.evaluation import alerts_evaluate

    legacy_pair_sync_at_start(LEGACY_ENV)
    legacy_pair_sync_at_start({**LEGACY_ENV, "DYNOSCALER_MAX_DYNOS": "ten"})
    pair = ScalingPair.objects.get()
    assert pair.max_dynos == 4 and pair.enabled  # the last good values go on
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert "Not applied at the last start: DYNOSCALER_MAX_DYNOS: expected a whole number" in page
    assert "DYNOSCALER_MAX_DYNOS: expected a whole number" in admin_client.get("/admin/status/").content.decode()
    (opened,) = alerts_evaluate().opened
    assert opened.kind == "env_invalid" and "DYNOSCALER_MAX_DYNOS" in opened.summary
    assert HEROKU_TOKEN not in opened.summary and AWS_SECRET not in opened.summary

    legacy_pair_sync_at_start(LEGACY_ENV)  # fixed and restarted
    assert ScalingPair.objects.get().env_problem == ""
    assert [p.kind for p in alerts_evaluate().resolved] == ["env_invalid"]
    assert "Not applied" not in admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()


@pytest.mark.django_db
def test_without_elasticsearch_every_cycle_of_the_env_pair_has_its_line(sqs: Any, heroku: Any, settings: Any,
                                                                        caplog: Any) -> None:
    # The original tool printed every cycle when Elasticsearch was not configured; quiet
    # cycles folded into one row left its users' terminal silent for minutes.
    from datetime import timedelta

    from django.utils import timezone

    from scaling import services

    settings.ELK_ELASTIC_URL = ""
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    legacy_pair_sync_at_start(LEGACY_ENV)
    pair = ScalingPair.objects.get()
    caplog.set_level("INFO", logger="scaling.services.cycle")
    start = timezone.now()
    for i in range(12):
        services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=60 * i))
    lines = [r for r in caplog.records if r.name == "scaling.services.cycle" and r.levelname == "INFO"
             and r.getMessage().startswith("pair orders-app/worker (env): no_change")]
    assert len(lines) == 12  # a line a cycle, the ones folded into runs of quiet cycles too
