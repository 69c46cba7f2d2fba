"""A lost or changed encryption key: every admin page still renders and says which secret
"cannot be read: enter it again", entering it again works, a cycle records why it holds,
and the release phase says what is wrong in one line instead of a traceback."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from datetime import timedelta
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from scaling import services
from scaling.alerts.delivery import channel_drain
from scaling.alerts.evaluation import alerts_evaluate
from scaling.models import AlertChannel, AlertDelivery, AwsAccount, Decision, HerokuAccount, HerokuApp, ScalingPair
from scaling.legacy_env import legacy_pair_sync_at_start
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN, SIGNING_SECRET
from tests.test_legacy_env import LEGACY_ENV

SAVED_WITH = Fernet.generate_key().decode()
NOW_SET = Fernet.generate_key().decode()
TEAM_TOKEN = "hk-team-token-fedcba9876543210"


@pytest.fixture
def lost_key(settings: Any, make_pair: Any, sqs: Any, heroku: Any) -> ScalingPair:
    """A pair that scaled with secrets saved under one key, and then the key was replaced."""
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    assert services.pair_run_cycle(pair_id=pair.pk, force=True) is not None
    settings.ENCRYPTION_KEYS = [NOW_SET]
    return pair


def pages_of(pair: ScalingPair) -> list[str]:
    return [
        "/admin/",
        "/admin/scaling/herokuaccount/",
        "/admin/scaling/awsaccount/",
        f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/",
        f"/admin/scaling/awsaccount/{pair.aws_account_id}/change/",
        "/admin/scaling/scalingpair/",
        f"/admin/scaling/scalingpair/{pair.pk}/change/",
        "/admin/scaling/scalingpair/add/",
        "/admin/scaling/decision/",
        "/admin/status/",
    ]


@pytest.mark.django_db
def test_every_admin_page_renders_and_says_the_secret_cannot_be_read(admin_client: Any, lost_key: ScalingPair) -> None:
    for url in pages_of(lost_key):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert "cannot be read" in page, url
        assert HEROKU_TOKEN not in page and AWS_SECRET not in page, url
    accounts = admin_client.get("/admin/scaling/herokuaccount/").content.decode()
    assert '<td class="field-token_hint">cannot be read: enter it again</td>' in accounts
    pair_form = admin_client.get("/admin/scaling/scalingpair/add/").content.decode()
    assert "test (secret cannot be read: enter it again)</option>" in pair_form
    account_form = admin_client.get(f"/admin/scaling/herokuaccount/{lost_key.heroku_account_id}/change/").content.decode()
    assert "Currently: cannot be read: enter it again" in account_form


@pytest.mark.django_db
def test_entering_the_secrets_again_lets_the_cycle_read_them(admin_client: Any, lost_key: ScalingPair, heroku: Any) -> None:
    pair = lost_key
    calls = len(heroku.requests)
    held = services.pair_run_cycle(pair_id=pair.pk, force=True)
    assert held is not None and held.outcome == Decision.Outcome.ERROR and held.error_permanent is True
    assert "API token of the Heroku account “test” cannot be read: enter it again" in held.error
    assert len(heroku.requests) == calls, "nothing is sent with a credential that cannot be read"

    heroku_page = f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/"
    refused = admin_client.post(heroku_page, {"description": "test", "api_token": ""})
    assert refused.status_code == 200 and "The stored secret cannot be read: enter it again." in refused.content.decode()
    assert admin_client.post(heroku_page, {"description": "test", "api_token": HEROKU_TOKEN}).status_code == 302
    aws_page = f"/admin/scaling/awsaccount/{pair.aws_account_id}/change/"
    saved = admin_client.post(aws_page, {"description": "test", "access_key_id": AWS_KEY, "secret_access_key": AWS_SECRET})
    assert saved.status_code == 302, saved.content.decode()[:2000]

    assert "cannot be read" not in admin_client.get("/admin/scaling/scalingpair/").content.decode()
    decision = services.pair_run_cycle(pair_id=pair.pk, force=True)
    assert decision is not None and decision.outcome != Decision.Outcome.ERROR, decision and decision.error
    assert heroku.requests[-1].authorized


@pytest.mark.django_db
def test_saving_an_account_unchanged_keeps_the_secret_for_its_old_key(settings: Any, lost_key: ScalingPair) -> None:
    account = lost_key.heroku_account
    assert account is not None
    account.description = "renamed while its key was missing"
    account.save()
    account.refresh_from_db()
    settings.ENCRYPTION_KEYS = [NOW_SET, SAVED_WITH]  # the old key is found again
    assert HerokuAccount.objects.get(pk=account.pk).api_token == HEROKU_TOKEN


@pytest.mark.django_db
def test_check_connection_and_scale_now_say_the_secret_cannot_be_read(admin_client: Any, lost_key: ScalingPair,
                                                                      heroku: Any) -> None:
    check = admin_client.post(f"/admin/scaling/scalingpair/{lost_key.pk}/check/", follow=True)
    assert check.status_code == 200 and "credentials: FAILED" in check.content.decode()
    scaled = admin_client.post(f"/admin/scaling/scalingpair/{lost_key.pk}/scale-now/", {"number": 3, "apply": "1"},
                               follow=True)
    page = scaled.content.decode()
    assert scaled.status_code == 200 and "not scaled" in page and "cannot be read: enter it again" in page
    assert heroku.writes() == [] and heroku.quantity("orders-app") == 1


@pytest.mark.django_db
def test_a_worker_starting_stores_the_env_pair_secrets_again_and_logs_one_line(settings: Any,
                                                                               caplog: Any) -> None:
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    assert legacy_pair_sync_at_start(LEGACY_ENV)
    settings.ENCRYPTION_KEYS = [NOW_SET]
    with caplog.at_level(logging.WARNING, logger="dynoscaler.startup"):
        assert legacy_pair_sync_at_start(LEGACY_ENV)
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "could not be read with DYNOSCALER_ENCRYPTION_KEYS" in line and "stored again from the environment" in line
    assert HerokuAccount.objects.get(managed_by_env=True).api_token == HEROKU_TOKEN
    assert AwsAccount.objects.get(managed_by_env=True).secret_access_key == AWS_SECRET


@pytest.mark.django_db(transaction=True)  # the release phase runs in its own process and reads what this test wrote
def test_the_release_phase_says_what_is_wrong_in_one_line(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    assert legacy_pair_sync_at_start(LEGACY_ENV)
    team = HerokuAccount.objects.create(description="team", api_token=TEAM_TOKEN)  # entered in the admin
    db = connection.settings_dict
    env = {**os.environ, **LEGACY_ENV, "DYNOSCALER_ENCRYPTION_KEYS": NOW_SET,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    result = subprocess.run([sys.executable, "manage.py", "sync_env_pair"], env=env, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Pair 'orders-app/worker (env)' is up to date with the environment (every 60 s)."
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "Heroku account “dynoscaler”" in line and "stored again from the environment" in line
    assert f"1 stored secret(s) cannot be read with DYNOSCALER_ENCRYPTION_KEYS: Heroku account “team” (#{team.pk})" in line
    assert "enter them again in the admin" in line
    for secret in (HEROKU_TOKEN, AWS_SECRET, TEAM_TOKEN):
        assert secret not in result.stdout + result.stderr
    settings.ENCRYPTION_KEYS = [NOW_SET]
    assert HerokuAccount.objects.get(managed_by_env=True).api_token == HEROKU_TOKEN
    assert AwsAccount.objects.get(managed_by_env=True).secret_access_key == AWS_SECRET


@pytest.mark.django_db
def test_rotation_reencrypts_what_it_can_read_and_names_what_it_cannot(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    lost = HerokuAccount.objects.create(description="lost", api_token=TEAM_TOKEN)
    settings.ENCRYPTION_KEYS = [NOW_SET]
    HerokuAccount.objects.create(description="kept", api_token=HEROKU_TOKEN)
    newest = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [newest, NOW_SET]
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"1 secret\\(s\\) cannot be read .*Heroku account “lost” \\(#{lost.pk}\\)"):
        call_command("rotate_encryption_key", stdout=out)
    assert "1 secret(s) re-encrypted with the first key" in out.getvalue()
    settings.ENCRYPTION_KEYS = [newest]
    assert HerokuAccount.objects.get(description="kept").api_token == HEROKU_TOKEN
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    assert HerokuAccount.objects.get(description="lost").api_token == TEAM_TOKEN  # left as it was


@pytest.mark.django_db
def test_moving_off_the_laptop_key_as_the_readme_says_keeps_every_secret(
        settings: Any, make_pair: Any, make_channel: Any) -> None:
    # Saved with no key listed (the key derived from SECRET_KEY), as `make run` does.
    settings.ENCRYPTION_KEYS = []
    pair = make_pair()
    channel = make_channel("webhook")
    app = HerokuApp.objects.create(name=pair.app_name, account=pair.heroku_account, webhook_secret="whsec-0123456789abcdef")
    # The README: set DYNOSCALER_ENCRYPTION_KEYS, run rotate_encryption_key. There is no
    # old key to list: the derived one must still read what it saved.
    settings.ENCRYPTION_KEYS = [NOW_SET]
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "5 secret(s) re-encrypted with the first key" in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM scaling_herokuapp")
        (stored,) = cursor.fetchone()
    assert "whsec-" not in stored
    # Re-encrypted with the listed key: SECRET_KEY can now change without losing any.
    settings.SECRET_KEY = "a-different-secret-key-for-this-test"
    assert HerokuAccount.objects.get().api_token == HEROKU_TOKEN
    assert AwsAccount.objects.get().secret_access_key == AWS_SECRET
    channel = AlertChannel.objects.get(pk=channel.pk)
    assert channel.url.endswith("/hooks/dynoscaler") and channel.signing_secret == SIGNING_SECRET
    assert HerokuApp.objects.get(pk=app.pk).webhook_secret == "whsec-0123456789abcdef"
    # A secret no key reads is named with the row and the field it sits in.
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="the webhook URL of alert channel “webhook” "):
        call_command("rotate_encryption_key", stdout=io.StringIO())


def test_an_alert_channel_that_cannot_be_read_keeps_its_messages_until_entered_again(
        settings: Any, make_pair: Any, make_channel: Any, receiver: Any) -> None:
    settings.ENCRYPTION_KEYS = [SAVED_WITH]
    pair = make_pair()
    channel = make_channel("webhook")
    now = timezone.now()
    ScalingPair.objects.filter(pk=pair.pk).update(
        conditions={"permanent_error": {"since": now.isoformat(), "detail": "bad token"}})
    alerts_evaluate(now=now)
    settings.ENCRYPTION_KEYS = [NOW_SET]

    result = channel_drain(channel_id=channel.pk, now=now)  # raised SecretUnreadable out of the task before
    waiting = AlertDelivery.objects.get(channel=channel)
    assert result.waiting_until is not None and waiting.status == AlertDelivery.Status.RETRYING
    assert "cannot be read: enter it again" in waiting.last_error and receiver.received == []

    channel = AlertChannel.objects.get(pk=channel.pk)
    channel.url = f"{receiver.url}/hooks/dynoscaler"
    channel.signing_secret = "entered-again-signing-secret"
    channel.save()
    assert channel_drain(channel_id=channel.pk, now=now + timedelta(minutes=5)).sent == 1
    assert [b["event"] for b in receiver.bodies()] == ["opened"]
