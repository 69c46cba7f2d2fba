"""Who did what, and what a newcomer trips on: every operator action in the admin's
history with its user, the cycle a person asked for saying who, a new pair's first cycle
at once, the sandbox pair saved from its own page, and a decision history that reads.

On PostgreSQL, the Heroku stand-in and moto_server; the task queue is the test Redis
(a real Celery worker runs what is queued where a test needs it), or a closed port where
a test needs it unreachable."""

from __future__ import annotations

import re
from html import escape
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scaling import services
from scaling.legacy_env import legacy_pair_sync
from scaling.models import Decision, KillSwitch, PairQueue, PairSample, ScalingPair
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN, REGION, cycle, free_port, send_messages
from tests.test_admin_bad_input import BrowserForm
from tests.test_legacy_env import LEGACY_ENV

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(sqs: Any, heroku: Any, make_pair: Any) -> tuple[ScalingPair, Any]:
    """A pair with 100 messages waiting on orders-app at one dyno."""
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    send_messages(sqs, "orders", 100)
    return make_pair(), heroku


@pytest.fixture
def task_queue_down(celery_on_test_redis: str) -> Iterator[None]:
    """The task queue cannot be reached: the broker's address is a port nothing listens on."""
    from dynoscaler_site.celery import app

    def forget_pooled_connections() -> None:
        # What Celery does in a forked child: its pools to the old broker are dropped.
        app._after_fork()  # type: ignore[attr-defined]

    app.conf.update(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    forget_pooled_connections()
    yield
    app.conf.update(CELERY_BROKER_URL=celery_on_test_redis)
    forget_pooled_connections()


def history(admin_client: Any, pair: ScalingPair) -> str:
    """The pair's History page as an operator reads it (tags stripped)."""
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/history/")
    assert page.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.content.decode()))


def act(admin_client: Any, pair: ScalingPair, action: str, **extra: str) -> str:
    response = admin_client.post("/admin/scaling/scalingpair/", {"action": action, "_selected_action": [pair.pk], **extra},
                                 follow=True)
    assert response.status_code == 200
    return said(response)


def said(response: Any) -> str:
    """The messages on the page, as read (the admin capitalises their first letter)."""
    return " ".join(str(m) for m in response.context["messages"]).lower()


def wait_for(done: Callable[[], bool], *, what: str, seconds: float = 30) -> None:
    """Wait for the Celery worker to have run what was queued."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"the worker did not {what}"
        time.sleep(0.2)


# --- who did what ----------------------------------------------------------------------


def test_every_list_action_is_on_the_pairs_history_page_with_who_did_it(
    busy: Any, admin_client: Any, settings: Any
) -> None:
    pair, heroku = busy
    settings.DYNOSCALER_PUBLIC_URL = "https://dynoscaler.example.com"
    act(admin_client, pair, "disable_pairs")
    act(admin_client, pair, "enable_pairs")
    act(admin_client, pair, "dry_run_on")
    act(admin_client, pair, "dry_run_off")
    act(admin_client, pair, "pause_pairs", apply="1", number="60")
    act(admin_client, pair, "resume_pairs")
    act(admin_client, pair, "scale_now", apply="1", number="3")
    act(admin_client, pair, "run_cycle_now")
    act(admin_client, pair, "check_connection")
    act(admin_client, pair, "subscribe_webhooks")

    page = history(admin_client, pair)
    for said in (
        "Disabled", "Enabled", "Dry run on", "Dry run off", "Paused for 60 minutes (until ",
        "Resumed (it was paused by admin until ", "Scaled now to 3 dynos (from 1)", "Asked for a cycle now (queued for a worker)",
        "Checked the connection: SQS queue orders (us-east-1) OK; Heroku app orders-app, process type worker OK",
        "Asked to subscribe its app orders-app to Heroku webhooks: ",
    ):
        assert said in page, said
    entries = LogEntry.objects.filter(object_id=str(pair.pk), content_type=ContentType.objects.get_for_model(ScalingPair))
    assert entries.count() == 10 and {e.user.get_username() for e in entries} == {"admin"}
    assert heroku.quantity("orders-app") == 3
    assert HEROKU_TOKEN not in page


def test_the_pair_pages_buttons_are_on_its_history_page_too(busy: Any, admin_client: Any) -> None:
    pair, heroku = busy
    admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/check/")
    admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/pause/", {"apply": "1", "number": "15"})
    services.pair_resume(pair=pair)
    admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/scale-now/", {"apply": "1", "number": "4"})
    heroku.fail_next("PATCH", r"/formation", 500)
    admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/scale-now/", {"apply": "1", "number": "5"})

    page = history(admin_client, pair)
    assert "Checked the connection: SQS queue orders (us-east-1) OK" in page
    assert "Paused for 15 minutes (until " in page
    assert "Scaled now to 4 dynos (from 1)" in page
    assert "Asked to scale now to 5 dynos: not scaled (500 internal_server_error while scaling" in page
    assert page.count(" admin ") >= 4 and heroku.quantity("orders-app") == 4


def test_a_plain_get_of_check_connection_calls_nothing_and_records_nothing(busy: Any, admin_client: Any) -> None:
    # A link prefetcher or a crawler follows links: the check is a button (a POST) since
    # it calls Heroku and AWS and goes on the pair's history.
    pair, heroku = busy
    calls = len(heroku.requests)
    assert admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/check/").status_code == 405
    assert len(heroku.requests) == calls and "Checked the connection" not in history(admin_client, pair)
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/change/").content.decode()
    assert re.search(r'<form method="post" action="/admin/scaling/scalingpair/\d+/check/"', page)


def test_a_failed_check_is_on_record_with_what_failed(busy: Any, admin_client: Any) -> None:
    pair, _ = busy
    PairQueue.objects.filter(pair=pair).update(queue="missing-queue")
    admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/check/")
    assert "SQS queue missing-queue (us-east-1) FAILED (" in history(admin_client, pair)


def test_the_kill_switch_says_who_engaged_and_released_it(admin_client: Any, admin_user: Any) -> None:
    admin_client.post("/admin/kill-switch/", {"engage": "1", "note": "incident 42"})
    status = admin_client.get("/admin/status/").content.decode()
    switch = KillSwitch.current()
    assert f"by admin at {switch.changed_at:%Y-%m-%d %H:%M} UTC: “incident 42”" in status

    admin_client.post("/admin/kill-switch/", {"engage": "0"})
    status = admin_client.get("/admin/status/").content.decode()
    assert "released by admin at " in status

    entries = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(KillSwitch)).order_by("pk")
    assert [(e.user, e.change_message) for e in entries] == [
        (admin_user, "Engaged the kill switch: incident 42"), (admin_user, "Released the kill switch")]


@pytest.mark.django_db(transaction=True)
def test_a_cycle_asked_for_in_the_admin_says_who_asked(busy: Any, admin_client: Any, celery_worker: Any) -> None:
    pair, _ = busy
    assert "pair “orders”: a cycle is queued for a worker" in act(admin_client, pair, "run_cycle_now")
    wait_for(lambda: Decision.objects.filter(pair=pair).exists(), what="run the queued cycle")
    decision = Decision.objects.get(pair=pair)
    assert decision.reason.startswith("cycle asked for by admin: ") and decision.outcome == Decision.Outcome.APPLIED


def test_with_the_task_queue_down_the_cycle_runs_here_and_still_says_who(
    busy: Any, admin_client: Any, task_queue_down: None
) -> None:
    pair, heroku = busy
    assert "pair “orders” (the task queue is unreachable, so a cycle ran here): applied" in act(admin_client, pair, "run_cycle_now")
    decision = Decision.objects.get(pair=pair)
    assert decision.reason.startswith("cycle asked for by admin: ") and heroku.quantity("orders-app") == 2
    assert "Asked for a cycle now (the task queue was unreachable, so it ran here: applied)" in history(admin_client, pair)


def test_a_cycle_asked_for_is_a_row_of_its_own_amid_quiet_cycles(sqs: Any, heroku: Any, make_pair: Any) -> None:
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    start = timezone.now() - timedelta(minutes=10)

    def at(seconds: int, **kwargs: Any) -> Decision | None:
        return services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=seconds), **kwargs)

    for i in range(4):  # nothing waits, at the minimum: quiet cycles, folded into a run
        at(15 * i)
    asked = at(60, requested_by="alice")
    again = at(70, requested_by="alice")  # asked twice: each says so on a row of its own
    after = at(85)

    rows = list(Decision.objects.filter(pair=pair).order_by("created_at", "id"))
    assert asked is not None and again is not None and after is not None
    assert [r.pk for r in rows[-3:]] == [asked.pk, again.pk, after.pk]  # none folded into a run
    assert all(r.reason.startswith("cycle asked for by alice: ") and r.cycles == 1 for r in rows[-3:-1])
    assert not rows[-1].reason.startswith("cycle asked for") and rows[-1].cycles == 1
    assert rows[-4].cycles > 1 and rows[-4].created_at == start + timedelta(seconds=45)  # the run was closed first
    assert sum(r.cycles for r in rows) == 7  # every cycle on record


@pytest.mark.parametrize("how", ["deleted", "disabled"])
def test_a_pair_deleted_or_disabled_keeps_every_cycle_on_record(sqs: Any, heroku: Any, make_pair: Any,
                                                                how: str) -> None:
    # The quiet cycles after the last row wait in the pair's open run: deleting the pair lost
    # them, and disabling it left them off the record until the hourly sweep.
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    start = timezone.now() - timedelta(minutes=10)
    for i in range(6):
        services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=15 * i))
    assert sum(Decision.objects.filter(pair_name=pair.name).values_list("cycles", flat=True)) < 6
    if how == "deleted":
        services.pair_delete(pair=ScalingPair.objects.get(pk=pair.pk))
    else:
        pair = ScalingPair.objects.get(pk=pair.pk)
        pair.enabled = False
        pair.save()
        services.pair_apply_settings(pair=pair)
    rows = Decision.objects.filter(pair_name=pair.name)
    assert sum(rows.values_list("cycles", flat=True)) == 6
    assert rows.order_by("-created_at").values_list("created_at", flat=True)[0] == start + timedelta(seconds=75)


def test_a_run_of_failing_cycles_reads_plainly_and_keeps_the_name_its_cycles_ran_under(
        sqs: Any, heroku: Any, make_pair: Any) -> None:
    # A run of errors said "saw None–None visible", a one-cycle run "12:00:00–12:00:00 ...
    # saw 30–30", and a run written after a rename went under the new name.
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)  # no queue: every read fails
    pair = make_pair()
    start = timezone.now() - timedelta(minutes=10)
    for i in range(4):
        services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=15 * i))
    ScalingPair.objects.filter(pk=pair.pk).update(name="orders-renamed")
    services.pair_delete(pair=ScalingPair.objects.get(pk=pair.pk))  # writes the open run
    run = Decision.objects.filter(cycles__gt=1).get()
    assert run.pair_name == pair.name != "orders-renamed"
    assert "saw no count (the queue could not be read)" in run.reason and "None" not in run.reason

    sqs.create_queue(QueueName="orders")
    send_messages(sqs, "orders", 30)
    other = make_pair(name="billing", up_cycles=100, down_cycles=100)
    for i in range(2):
        services.pair_run_cycle(pair_id=other.pk, force=True, now=start + timedelta(seconds=15 * i))
    services.pair_delete(pair=ScalingPair.objects.get(pk=other.pk))
    (one,) = Decision.objects.filter(pair_name="billing").order_by("-created_at")[:1]
    assert one.cycles == 1
    assert f"1 more cycle like the one at {start:%H:%M:%S}, at {start + timedelta(seconds=15):%H:%M:%S} UTC, saw 30 visible" \
        in one.reason


def test_the_reconcile_reads_of_a_quiet_pair_fold_into_its_run(sqs: Any, heroku: Any, make_pair: Any,
                                                              settings: Any) -> None:
    # Each reconcile read (every few minutes) changed the reason's words, so it broke the run
    # into three rows: about 36 an hour on steady load where the README says 4.
    settings.RECONCILE_SECONDS = 120
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    start = timezone.now() - timedelta(minutes=20)
    for i in range(40):  # ten minutes at 15 s: four reconcile reads after the first look
        services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=15 * i))
    assert sum(1 for r in heroku.requests if r.method == "GET" and "/formation" in r.path) >= 4
    services.pair_delete(pair=ScalingPair.objects.get(pk=pair.pk))  # writes the open run
    rows = list(Decision.objects.filter(pair_name=pair.name).order_by("created_at"))
    assert [r.cycles for r in rows] == [1, 39]


# --- a new pair's first cycle --------------------------------------------------------------


def pair_add_form(admin_client: Any, **values: str) -> dict[str, list[str]]:
    """The add page's form as a browser submits it, with ``values`` typed in."""
    page = admin_client.get("/admin/scaling/scalingpair/add/").content.decode()
    data = BrowserForm.of(page, "scalingpair_form")
    return {**data, **{name: [value] for name, value in values.items()}}


@pytest.mark.django_db(transaction=True)
def test_a_pair_added_in_the_admin_has_its_first_cycle_at_once(
    busy: Any, admin_client: Any, celery_worker: Any, sqs: Any
) -> None:
    existing, heroku = busy
    sqs.create_queue(QueueName="billing")
    send_messages(sqs, "billing", 50)
    heroku.add_app("billing-app", token=HEROKU_TOKEN, quantity=1)
    data = pair_add_form(admin_client, name="billing", app_name="billing-app", interval_seconds="3600",
                         heroku_account=str(existing.heroku_account_id), aws_account=str(existing.aws_account_id),
                         policy="classic", backlog_threshold="10", up_cycles="1", max_dynos="3",
                         **{"queues-0-queue": "billing", "queues-0-region": REGION})
    response = admin_client.post("/admin/scaling/scalingpair/add/", data, follow=True)
    assert "pair “billing”: its first cycle is queued for a worker" in said(response)
    assert "Pair “billing”: its first cycle" in response.content.decode()  # the name as the operator spelt it

    pair = ScalingPair.objects.get(name="billing")
    wait_for(lambda: Decision.objects.filter(pair=pair).exists(), what="run the new pair's first cycle")
    first = Decision.objects.get(pair=pair)
    assert first.outcome == Decision.Outcome.APPLIED and heroku.quantity("billing-app") == 2


@pytest.mark.django_db(transaction=True)
def test_a_pair_imported_from_a_file_has_its_first_cycle_at_once(
    queue_and_app: Any, make_pair: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_queue_down: None
) -> None:
    sqs, heroku = queue_and_app
    send_messages(sqs, "orders", 50)
    make_pair(name="template", app="template-app")
    for name, value in {"HEROKU_TOKEN_TEST": HEROKU_TOKEN, "AWS_ACCESS_KEY_ID_TEST": AWS_KEY,
                        "AWS_SECRET_ACCESS_KEY_TEST": AWS_SECRET}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "pairs.yaml"
    call_command("pairs", "export", "--output", str(path))
    spec = yaml.safe_load(path.read_text())
    spec["pairs"][0].update(name="orders", app_name="orders-app")
    path.write_text(yaml.safe_dump(spec))
    ScalingPair.objects.all().delete()

    out = _run_pairs_import(path)

    assert 'pair "orders": its first cycle ran here (the task queue is unreachable): applied' in out
    assert Decision.objects.get(pair__name="orders").outcome == Decision.Outcome.APPLIED
    assert heroku.quantity("orders-app") == 2


def _run_pairs_import(path: Path) -> str:
    import io

    out = io.StringIO()
    call_command("pairs", "import", str(path), stdout=out)
    return out.getvalue()


def test_a_dry_run_import_asks_for_no_cycle(
    queue_and_app: Any, make_pair: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_queue_down: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_pair(name="template", app="template-app")
    for name, value in {"HEROKU_TOKEN_TEST": HEROKU_TOKEN, "AWS_ACCESS_KEY_ID_TEST": AWS_KEY,
                        "AWS_SECRET_ACCESS_KEY_TEST": AWS_SECRET}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "pairs.yaml"
    call_command("pairs", "export", "--output", str(path))
    spec = yaml.safe_load(path.read_text())
    spec["pairs"].append({**spec["pairs"][0], "name": "orders", "app_name": "orders-app"})
    path.write_text(yaml.safe_dump(spec))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("pairs", "import", str(path), "--dry-run")
    assert callbacks == [] and not Decision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_original_variables_pair_has_its_first_cycle_at_once(
    queue_and_app: Any, task_queue_down: None
) -> None:
    _, heroku = queue_and_app
    env = dict(LEGACY_ENV)
    sync = legacy_pair_sync(env)
    assert sync.pair is not None
    assert Decision.objects.filter(pair=sync.pair).count() == 1
    legacy_pair_sync(env)  # a restart with the same variables: no extra cycle
    assert Decision.objects.filter(pair=sync.pair).count() == 1


# --- the sandbox pair's page -------------------------------------------------------------


def test_the_sandbox_pair_saves_from_its_own_page(admin_client: Any, settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    pair = services.sandbox_demo_ensure()
    assert pair is not None
    url = f"/admin/scaling/scalingpair/{pair.pk}/change/"
    data = BrowserForm.of(admin_client.get(url).content.decode(), "scalingpair_form")
    assert data["queues-TOTAL_FORMS"] == ["0"]  # no empty queue row to trip on
    data["max_dynos"] = ["6"]
    response = admin_client.post(url, data, follow=True)
    assert "was changed successfully" in response.content.decode()
    assert ScalingPair.objects.get(pk=pair.pk).max_dynos == 6


def test_a_sandbox_pair_given_accounts_or_a_queue_is_told_it_uses_none(admin_client: Any, make_pair: Any,
                                                                       settings: Any) -> None:
    # Kept, they suggested the pair reads or scales something real, and travelled in exports.
    settings.SANDBOX_ENABLED = True
    existing = make_pair()
    data = pair_add_form(admin_client, name="demo", app_name="demo-app", provider="sandbox",
                         heroku_account=str(existing.heroku_account_id), aws_account=str(existing.aws_account_id),
                         **{"queues-0-queue": "orders", "queues-0-region": "us-east-1"})
    response = admin_client.post("/admin/scaling/scalingpair/add/", data)
    page = response.content.decode()
    assert response.status_code == 200 and not ScalingPair.objects.filter(name="demo").exists()
    assert page.count("A sandbox pair uses no account") == 2
    assert "A sandbox pair reads no queue (its queue is simulated): delete these rows." in page
    del data["heroku_account"], data["aws_account"]
    data["queues-0-queue"], data["queues-0-region"] = [""], [""]
    response = admin_client.post("/admin/scaling/scalingpair/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ScalingPair.objects.get(name="demo").queues.count() == 0


def test_a_heroku_pair_without_a_queue_is_told_to_name_one(admin_client: Any, make_pair: Any) -> None:
    existing = make_pair()
    data = pair_add_form(admin_client, name="billing", app_name="billing-app",
                         heroku_account=str(existing.heroku_account_id), aws_account=str(existing.aws_account_id))
    response = admin_client.post("/admin/scaling/scalingpair/add/", data)
    page = response.content.decode()
    assert response.status_code == 200 and "A Heroku + SQS pair needs at least one SQS queue" in page
    assert "This field is required" not in page
    assert not ScalingPair.objects.filter(name="billing").exists()


# --- the decision history -------------------------------------------------------------------


def test_the_history_list_shows_the_columns_that_matter_in_one_line(admin_client: Any, busy: Any) -> None:
    pair, _ = busy
    decision = cycle(pair)
    page = admin_client.get("/admin/scaling/decision/").content.decode()
    head = page.split("<thead>")[1].split("</thead>")[0]
    columns = [re.sub(r"<[^>]+>|\s+", " ", th).strip().lower() for th in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
    assert columns == ["when (utc)", "pair", "outcome", "visible / in flight", "formation → desired (→ applied)",
                       "reason (hover for all of it, click for the decision)"]
    row = page.split("<tbody>")[1].split("</tr>")[0]
    assert "100 / 0" in row and "1 → 2 (→ 2)" in row
    assert f'title="{escape(decision.reason)}"' in row and f"/admin/scaling/decision/{decision.pk}/change/" in row
    assert len(decision.reason) > 90 and escape(decision.reason[:89].rstrip()) + "…" in row


def test_a_run_of_quiet_cycles_shows_its_span_and_count(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair()
    now = timezone.now()
    Decision.objects.create(
        pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
        outcome="no_change", duration_ms=3, cycles=59, first_cycle_at=now - timedelta(minutes=15), created_at=now,
        visible_min=120, visible_max=460, visible_messages=300, in_flight_messages=4, quantity_before=2,
        desired_quantity=2,
        reason="59 more cycles like the one at 11:59:45, 12:00:00–12:14:45 UTC, saw 120–460 visible; the last: "
               "300 visible within capacity: no change",
    )
    row = admin_client.get("/admin/scaling/decision/").content.decode().split("<tbody>")[1]
    span = f"{now - timedelta(minutes=15):%H:%M:%S}–{now:%H:%M:%S}"
    assert "120–460 / 4" in row
    assert f'<strong class="decision-run">59 cycles {span}</strong> 300 visible within capacity: no change</span>' in row


def test_a_run_of_one_cycle_reads_like_the_other_runs(admin_client: Any, make_pair: Any) -> None:
    # It was shown as its whole reason, "1 more cycle like the one at …; the last: …".
    pair = make_pair()
    now = timezone.now()
    Decision.objects.create(
        pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
        outcome="no_change", duration_ms=3, cycles=1, first_cycle_at=now, created_at=now, visible_min=120,
        visible_max=120, quantity_before=2, desired_quantity=2,
        reason="1 more cycle like the one at 11:59:45, 12:00:00–12:00:00 UTC, saw 120–120 visible; the last: "
               "120 visible within capacity: no change",
    )
    row = admin_client.get("/admin/scaling/decision/").content.decode().split("<tbody>")[1]
    assert f'<strong class="decision-run">1 cycle {now:%H:%M:%S}</strong> 120 visible within capacity: no change' in row
    assert "more cycle" not in row.split('title="')[1].split('">', 1)[1]


def test_a_page_of_the_history_costs_the_same_queries_whatever_it_shows(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair()

    def queries_for_a_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get("/admin/scaling/decision/").status_code == 200
        return len(captured.captured_queries)

    def add(count: int) -> None:
        Decision.objects.bulk_create([
            Decision(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
                     outcome="error", reason="could not read the queues; formation held", error="SQS: throttled",
                     duration_ms=1) for _ in range(count)])

    add(2)
    few = queries_for_a_page()
    add(98)
    assert queries_for_a_page() == few


def test_a_decisions_own_page_reads_in_sections_with_its_whole_reason(admin_client: Any, busy: Any) -> None:
    pair, _ = busy
    decision = cycle(pair)
    page = admin_client.get(f"/admin/scaling/decision/{decision.pk}/change/").content.decode()
    for section in ("What it saw", "What it decided and did", "Policy state"):
        assert f">{section}<" in page, section
    assert "A run of quiet cycles" not in page  # a single cycle is no run
    assert f"{decision.created_at:%Y-%m-%d %H:%M:%S}" in page
    assert f'<div class="decision-reason">{decision.reason}</div>' in page
    assert "orders (us-east-1): 100 visible, 0 in flight, 0 delayed" in page
    assert f'href="/admin/scaling/scalingpair/{pair.pk}/change/"' in page


def test_the_decision_history_marks_the_sandbox_pairs_decisions(admin_client: Any, busy: Any, settings: Any) -> None:
    # Side by side with a real pair's, a simulated decision must not pass for something
    # that happened on Heroku: its row and its page say SANDBOX, the real pair's do not.
    settings.SANDBOX_ENABLED = True
    real, _ = busy
    sandbox = ScalingPair.objects.create(name="trying it", provider=ScalingPair.Provider.SANDBOX, app_name="try-app",
                                         policy="target_wait", min_dynos=0, max_dynos=4)
    cycle(real)
    cycle(sandbox)
    page = admin_client.get("/admin/scaling/decision/").content.decode()
    rows = {name: row for row in page.split("<tr")[1:]
            for name in (real.name, sandbox.name) if f">{escape(name)}</span>" in row}
    assert set(rows) == {real.name, sandbox.name}
    assert "SANDBOX" in rows[sandbox.name] and "SANDBOX" not in rows[real.name]
    simulated = Decision.objects.filter(pair=sandbox).latest("created_at")
    detail = admin_client.get(f"/admin/scaling/decision/{simulated.pk}/change/").content.decode()
    assert "SANDBOX</span> (simulated: no Heroku app was read or changed)" in detail
    recorded = Decision.objects.filter(pair=real).latest("created_at")
    assert "SANDBOX" not in admin_client.get(f"/admin/scaling/decision/{recorded.pk}/change/").content.decode()


def test_deleting_a_pair_with_a_weeks_samples_counts_them_instead_of_listing_each(admin_client: Any,
                                                                                   make_pair: Any) -> None:
    # Eight days at 15 s is 46,080 samples: the confirmation listed every one (1.7 MB, longer
    # than Heroku's router waits), and so did the delete itself before deleting.
    pair = make_pair()
    keep = make_pair(name="billing", app="billing-app")
    now = timezone.now()
    PairSample.objects.bulk_create([PairSample(pair=pair, at=now - timedelta(seconds=15 * i), visible=1, in_flight=0)
                                    for i in range(46_080)], batch_size=5_000)
    Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                            policy="classic", outcome="no_change", reason="r", duration_ms=1)
    page = admin_client.get(f"/admin/scaling/scalingpair/{pair.pk}/delete/").content.decode()
    assert "46,080 chart sample(s), one per cycle" in page and "Queue: orders (us-east-1)" in page
    assert "its decisions stay in the history" in page
    assert "Pair sample:" not in page and len(page) < 100_000
    action = admin_client.post("/admin/scaling/scalingpair/", {"action": "delete_selected",
                                                               "_selected_action": [pair.pk, keep.pk]}).content.decode()
    assert "46,080 chart sample(s)" in action and "Scaling pair: billing (billing-app/worker)" in action

    response = admin_client.post(f"/admin/scaling/scalingpair/{pair.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ScalingPair.objects.filter(pk=pair.pk).exists() and not PairSample.objects.filter(pair_id=pair.pk).exists()
    assert Decision.objects.filter(pair_name=pair.name).count() == 1  # the history stays
    assert ScalingPair.objects.filter(pk=keep.pk).exists()


def test_a_pair_page_opened_before_a_pause_or_dry_run_does_not_undo_them_when_saved(
        admin_client: Any, make_pair: Any) -> None:
    pair = make_pair(policy="target_wait", dyno_rate=2)
    url = f"/admin/scaling/scalingpair/{pair.pk}/change/"
    data = BrowserForm.of(admin_client.get(url).content.decode(), "scalingpair_form")  # operator A opens the page
    services.pair_pause(pair=pair, minutes=60, user="bob")  # meanwhile B pauses it and turns dry run on
    ScalingPair.objects.filter(pk=pair.pk).update(dry_run=True)
    data["target_wait_seconds"] = ["150"]  # A changes only the target
    response = admin_client.post(url, data, follow=True)
    assert "was changed successfully" in response.content.decode()
    pair.refresh_from_db()
    assert pair.target_wait_seconds == 150
    assert pair.dry_run is True and pair.paused_until is not None and pair.paused_until > timezone.now()
    change = LogEntry.objects.filter(object_id=str(pair.pk)).latest("action_time").get_change_message()
    assert "Target wait" in change and "Paused until" not in change and "Dry run" not in change

    # What an operator does change on the page is saved.
    data = BrowserForm.of(admin_client.get(url).content.decode(), "scalingpair_form")
    data.pop("dry_run", None)  # an unticked box is not sent
    admin_client.post(url, data)
    pair.refresh_from_db()
    assert pair.dry_run is False and pair.paused_until is not None
