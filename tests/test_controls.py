"""What an operator controls and sees: pauses, people's changes, the kill switch, scale now,
check connection, secrets at rest, retention, the status page, exports and the sandbox."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scaling import services
from scaling.adapters.errors import AdapterError
from scaling.models import AwsAccount, Decision, HerokuAccount, PairQueue, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN, cycle, send_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(sqs: Any, heroku: Any, make_pair: Any) -> tuple[ScalingPair, Any]:
    """A pair with 100 messages waiting: its policy wants one more dyno every cycle."""
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    send_messages(sqs, "orders", 100)
    return make_pair(), heroku



def test_a_paused_pair_observes_and_records_but_changes_nothing(busy: Any) -> None:
    pair, heroku = busy
    until = services.pair_pause(pair=pair, minutes=30, user="alice")
    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.PAUSED and decision.visible_messages == 100
    assert f"paused by alice until {until:%Y-%m-%d %H:%M}" in decision.reason
    assert decision.state_after == decision.state_before and heroku.writes() == []
    services.pair_resume(pair=pair)
    assert cycle(pair).outcome == Decision.Outcome.APPLIED


def test_a_person_changing_the_formation_is_not_fought(busy: Any) -> None:
    pair, heroku = busy
    ScalingPair.objects.filter(pk=pair.pk).update(up_cycles=2)
    cycle(pair)  # up 1/2: DynoScaler now expects the 1 it saw
    heroku.set_quantity("orders-app", 7)  # someone scales by hand in the Heroku dashboard
    held = cycle(pair)  # up 2/2: it would add one, and without webhooks it looks first
    assert held.outcome == Decision.Outcome.PAUSED
    assert "changed outside DynoScaler (expected 1, found 7, read just before changing it)" in held.reason
    assert heroku.quantity("orders-app") == 7 and heroku.writes() == []
    pair.refresh_from_db()
    assert pair.paused_until is not None and pair.paused_until > timezone.now() + timedelta(minutes=14)
    # After the hold, DynoScaler takes over again from the person's quantity.
    later = timezone.now() + timedelta(minutes=16)
    resumed = services.pair_run_cycle(pair_id=pair.pk, force=True, now=later)
    assert resumed is not None and resumed.quantity_before == 7 and resumed.outcome != Decision.Outcome.PAUSED


def test_pointing_a_pair_at_another_app_is_not_taken_for_a_persons_change(busy: Any, admin_client: Any) -> None:
    pair, heroku = busy
    cycle(pair)  # DynoScaler now expects orders-app at 2
    heroku.add_app("billing-app", token=HEROKU_TOKEN, quantity=5)
    ScalingPair.objects.filter(pk=pair.pk).update(app_name="billing-app")
    services.pair_apply_settings(pair=pair, repointed=True)
    assert cycle(pair).outcome != Decision.Outcome.PAUSED


def test_the_kill_switch_stops_every_formation_write_at_once(busy: Any) -> None:
    pair, heroku = busy
    services.kill_switch_set(engaged=True, user="oncall", note="incident 42")
    held = cycle(pair)
    assert held.outcome == Decision.Outcome.HELD and "the kill switch is on" in held.reason
    assert heroku.writes() == []
    with pytest.raises(AdapterError, match="kill switch"):
        services.pair_scale_now(pair=pair, quantity=3, user="someone")
    services.kill_switch_set(engaged=False, user="oncall")
    assert cycle(pair).outcome == Decision.Outcome.APPLIED


def test_scale_now_sets_the_formation_records_it_and_holds_the_policy_off(busy: Any) -> None:
    pair, heroku = busy
    decision = services.pair_scale_now(pair=pair, quantity=4, user="alice")
    assert heroku.quantity("orders-app") == 4
    assert decision.outcome == Decision.Outcome.APPLIED and decision.applied_quantity == 4
    assert decision.reason.startswith("scaled by alice from 1 to 4 dynos (scale now)")
    assert cycle(pair).outcome == Decision.Outcome.PAUSED  # the policy does not undo it
    assert heroku.quantity("orders-app") == 4


def test_scale_now_past_the_bounds_says_the_policy_will_bring_it_back(busy: Any) -> None:
    pair, heroku = busy  # bounds 1–5
    decision = services.pair_scale_now(pair=pair, quantity=8, user="alice")
    assert heroku.quantity("orders-app") == 8
    assert decision.reason.endswith("8 is outside the pair's bounds (1–5), so the first cycle after that brings it "
                                    "back within them")
    assert "outside" not in services.pair_scale_now(pair=pair, quantity=5, user="alice").reason


def test_check_connection_says_what_works_and_changes_nothing(busy: Any, sqs: Any) -> None:
    pair, heroku = busy
    checks = services.pair_check_connection(pair=pair)
    assert [c.ok for c in checks] == [True, True]
    assert "readable: 100 visible" in checks[0].detail and "formation 1" in checks[1].detail

    pair.queues.update(queue="missing-queue")
    ScalingPair.objects.filter(pk=pair.pk).update(process_type="clock")
    pair = ScalingPair.objects.select_related("heroku_account", "aws_account").get(pk=pair.pk)
    checks = services.pair_check_connection(pair=pair)
    assert [c.ok for c in checks] == [False, False]
    assert "'missing-queue' does not exist" in checks[0].detail
    assert "no process type 'clock'" in checks[1].detail
    assert heroku.writes() == []


def test_check_connection_reports_a_token_without_access(busy: Any) -> None:
    pair, heroku = busy
    heroku.tokens.add("hk-other-account-token")
    HerokuAccount.objects.filter(pk=pair.heroku_account_id).update(api_token="hk-other-account-token")
    pair = ScalingPair.objects.select_related("heroku_account", "aws_account").get(pk=pair.pk)
    heroku_check = services.pair_check_connection(pair=pair)[-1]
    assert not heroku_check.ok and "403 forbidden" in heroku_check.detail
    assert "hk-other-account-token" not in heroku_check.detail


def test_secrets_are_encrypted_at_rest(make_pair: Any) -> None:
    make_pair()
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_token FROM scaling_herokuaccount")
        (stored_token,) = cursor.fetchone()
        cursor.execute("SELECT secret_access_key FROM scaling_awsaccount")
        (stored_secret,) = cursor.fetchone()
    assert stored_token.startswith("gAAAAA") and HEROKU_TOKEN not in stored_token
    assert stored_secret.startswith("gAAAAA") and AWS_SECRET not in stored_secret
    assert HerokuAccount.objects.get().api_token == HEROKU_TOKEN


def test_rotating_the_key_reencrypts_every_secret(make_pair: Any, settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    make_pair()
    settings.ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "2 secret(s) re-encrypted" in out.getvalue()
    settings.ENCRYPTION_KEYS = [new]  # the old key can now go
    assert HerokuAccount.objects.get().api_token == HEROKU_TOKEN
    assert AwsAccount.objects.get().secret_access_key == AWS_SECRET


def test_a_secret_saved_with_a_lost_key_says_what_to_do(make_pair: Any, settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    make_pair()
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    account = HerokuAccount.objects.get()  # the row loads; its secret says what to do when used
    with pytest.raises(ValueError, match="put the key it was saved with back in the list"):
        account.api_token


def test_a_pair_whose_secret_cannot_be_read_records_why_instead_of_stopping(busy: Any, settings: Any) -> None:
    pair, heroku = busy
    settings.SECRET_KEY = "another-secret-key-0123456789"  # the key the token was saved with is gone
    decision = cycle(pair)
    assert decision.outcome == Decision.Outcome.ERROR and decision.error_permanent is True
    assert "cannot be decrypted" in decision.error and heroku.requests == []


def test_old_decisions_are_pruned_after_the_retention_once_shipped(make_pair: Any, settings: Any) -> None:
    settings.DECISION_RETENTION_DAYS = 90
    pair = make_pair()
    now = timezone.now()

    def make(days: int, shipped: bool) -> Decision:
        return Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                       created_at=now - timedelta(days=days), policy="classic", outcome="no_change",
                                       reason="r", duration_ms=1, shipped_at=now if shipped else None)

    old_shipped, old_waiting, recent = make(100, True), make(100, False), make(10, True)
    assert services.decisions_prune(now=now) == 1
    assert set(Decision.objects.values_list("pk", flat=True)) == {old_waiting.pk, recent.pk}
    assert not Decision.objects.filter(pk=old_shipped.pk).exists()


def test_status_page_names_a_pairs_standing_problem_instead_of_ok(admin_client: Any, queue_and_app: Any,
                                                                  make_pair: Any) -> None:
    # Its queue deleted, the pair errs on every cycle: the row said "ok" beside "error".
    pair = make_pair(queues=["no-such-queue"])
    cycle(pair)
    row = admin_client.get("/admin/status/").content.decode().split(f">{pair.name}</a>")[1].split("</tr>")[0]
    assert "permanent error (bad token, no access, missing queue, refused quantity) since " in row
    assert ">ok<" not in row
    PairQueue.objects.filter(pair=pair).update(queue="orders")  # fixed, as the admin would: the next cycle clears it
    ScalingPair.objects.filter(pk=pair.pk).update(updated_at=timezone.now())
    cycle(ScalingPair.objects.get(pk=pair.pk))
    row = admin_client.get("/admin/status/").content.decode().split(f">{pair.name}</a>")[1].split("</tr>")[0]
    assert ">ok</td>" in row and "permanent error" not in row


def test_status_page_flags_a_stalled_pair_in_red(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair(interval_seconds=60)
    ScalingPair.objects.filter(pk=pair.pk).update(last_cycle_at=timezone.now() - timedelta(minutes=4),
                                                  updated_at=timezone.now() - timedelta(days=1))
    page = admin_client.get("/admin/status/").content.decode()
    assert 'class="stalled"' in page and "STALLED" in page
    assert admin_client.get("/healthz").json()["stalled_pairs"] == 1
    ScalingPair.objects.filter(pk=pair.pk).update(last_cycle_at=timezone.now())
    assert "STALLED" not in admin_client.get("/admin/status/").content.decode()


def test_the_kill_switch_is_shown_on_every_admin_page(admin_client: Any, make_pair: Any) -> None:
    make_pair()
    response = admin_client.post("/admin/kill-switch/", {"engage": "1", "note": "deploy freeze"})
    assert response.status_code == 302
    for url in ("/admin/", "/admin/scaling/scalingpair/", "/admin/scaling/decision/", "/admin/status/"):
        assert "KILL SWITCH ENGAGED" in admin_client.get(url).content.decode(), url
    admin_client.post("/admin/kill-switch/", {"engage": "0"})
    assert "KILL SWITCH ENGAGED" not in admin_client.get("/admin/").content.decode()


def test_pair_page_shows_state_chart_and_latest_decisions(admin_client: Any, busy: Any) -> None:
    pair, _ = busy
    for _ in range(3):
        cycle(pair)
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/?hours=24").content.decode()
    assert '<div id="pair-chart"><svg' in page
    for series in ("visible messages", "dynos running", "dynos desired"):
        assert f'data-series="{series}"' in page
    assert 'id="latest-decisions"' in page and "add one dyno" in page
    assert "https://" not in page.split('<div id="pair-chart">')[1].split("</svg>")[0]  # nothing from a CDN


def test_a_paused_pair_is_resumed_and_cycled_from_its_own_page(admin_client: Any, busy: Any) -> None:
    pair, _ = busy
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert 'id="resume"' not in page and 'id="run-cycle"' in page  # not paused: nothing to resume
    services.pair_pause(pair=pair, minutes=30, user="alice")
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert 'id="resume"' in page
    assert admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/resume/").status_code == 405  # a link cannot
    response = admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/resume/")
    assert response.status_code == 302 and response["Location"].endswith(f"/scalingpair/{pair.pk}/change/")
    pair.refresh_from_db()
    assert not pair.is_paused(timezone.now())
    assert admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/run-cycle/").status_code == 302
    history = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/history/").content.decode()
    assert "Resumed (it was paused by alice until" in history and "Asked for a cycle now" in history


def test_decision_csv_export_follows_the_filters_and_holds_no_secret(admin_client: Any, busy: Any) -> None:
    pair, heroku = busy
    cycle(pair)
    heroku.fail_next("GET", r"/formation$", 500)
    cycle(pair)
    response = admin_client.get("/admin/scaling/decision/export.csv?has_error=yes")
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 1 and rows[0]["outcome"] == "error" and "500" in rows[0]["error"]
    assert HEROKU_TOKEN not in body and AWS_SECRET not in body
    all_rows = list(csv.DictReader(io.StringIO(b"".join(admin_client.get("/admin/scaling/decision/export.csv").streaming_content).decode())))
    assert len(all_rows) == 2


def test_decision_history_pages_without_counting_the_whole_table(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair()
    Decision.objects.bulk_create([
        Decision(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
                 outcome="no_change", reason="r", duration_ms=1) for _ in range(150)
    ])
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get("/admin/scaling/decision/?outcome__exact=no_change")
    assert response.status_code == 200 and "no change" in response.content.decode()
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"] and "scaling_decision" in q["sql"]]
    assert counts, "the changelist should still count (capped) to paginate"
    assert all("LIMIT 10001" in q for q in counts), counts


def test_sandbox_pair_scales_with_its_simulated_traffic(settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    pair = services.sandbox_demo_ensure()
    assert pair is not None and pair.provider == "sandbox"
    start = timezone.now()
    decisions = [services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=10 * i))
                 for i in range(30)]
    quantities = [d.quantity_before for d in decisions if d is not None]
    assert max(q or 0 for q in quantities) >= 2  # the wave and bursts made it scale up
    assert all(d is not None and d.outcome != Decision.Outcome.ERROR for d in decisions)


def test_a_newcomer_sees_the_sandbox_scale_up_in_its_first_cycle(settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    pair = services.sandbox_demo_ensure()
    assert pair is not None
    first = services.pair_run_cycle(pair_id=pair.pk, force=True)
    assert first is not None and first.outcome == Decision.Outcome.APPLIED and (first.applied_quantity or 0) >= 2


def test_the_sandbox_is_never_created_where_real_credentials_exist(settings: Any, make_pair: Any) -> None:
    settings.SANDBOX_ENABLED = True
    make_pair()
    assert services.sandbox_demo_ensure() is None
    assert not ScalingPair.objects.filter(provider="sandbox").exists()


def test_the_demo_stops_cycling_once_real_work_is_configured_and_keeps_its_history(settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    demo = services.sandbox_demo_ensure()
    assert demo is not None and demo.periodic_task is not None and demo.periodic_task.enabled
    assert services.pair_run_cycle(pair_id=demo.pk, force=True) is not None
    switched = services.sandbox_demo_switch_off()
    assert switched is not None and switched.pk == demo.pk
    demo.refresh_from_db()
    assert demo.periodic_task is not None
    demo.periodic_task.refresh_from_db()
    assert not demo.enabled and not demo.periodic_task.enabled
    assert Decision.objects.filter(pair=demo).exists()
    assert services.sandbox_demo_switch_off() is None, "only the run that switched it off says so"


def test_the_sandbox_is_refused_in_production(settings: Any) -> None:
    settings.SANDBOX_ENABLED = False
    assert services.sandbox_demo_ensure() is None
    pair = ScalingPair(name="s", provider="sandbox", app_name="sandbox-app")
    with pytest.raises(Exception, match="The sandbox is off here"):
        pair.full_clean()


def test_the_decision_historys_pair_filter_lists_pairs_by_name(admin_client: Any, make_pair: Any) -> None:
    for name in ("svc-08", "svc-03", "billing", "svc-27", "audit"):
        make_pair(name=name, app=f"{name}-app")
    page = admin_client.get("/admin/scaling/decision/").content.decode()
    listed = [m for m in ("audit", "billing", "svc-03", "svc-08", "svc-27") if f">{m}</a>" in page]
    order = sorted(listed, key=lambda m: page.index(f">{m}</a>"))
    assert order == ["audit", "billing", "svc-03", "svc-08", "svc-27"]
