"""The admin as an operator uses it, in a real browser: Playwright driving Debian's Chromium.

Screenshots go to a temporary folder; with UPDATE_SCREENSHOTS=1 they replace the ones in
docs/screenshots/ that the README shows.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from scaling.models import Decision, ScalingPair
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN, send_messages

# Playwright's sync API runs an event loop in this thread; the ORM calls below are ours.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def worker_has_run(done: Callable[[], bool], *, seconds: float = 30) -> None:
    """Wait for the Celery worker to have run what the page queued."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the worker did not run the queued cycle"
        time.sleep(0.2)


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Any]:
    taken: list[Path] = []

    def shoot(page: Any, name: str, selector: str | None = None) -> None:
        path = tmp_path / f"{name}.png"
        if selector:
            page.locator(selector).screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=True)
        taken.append(path)

    yield shoot
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copy(path, DOCS / path.name)


def fill(page: Any, values: dict[str, str]) -> None:
    for name, value in values.items():
        page.fill(f"[name='{name}']", value)


def test_an_operator_sets_up_a_pair_watches_it_scale_and_stops_everything(
    live_server: Any, admin_user: Any, browser_page: Any, shots: Any, sqs: Any, heroku: Any, celery_worker: Any
) -> None:
    page = browser_page
    base = live_server.url
    sqs.create_queue(QueueName="orders")
    send_messages(sqs, "orders", 500)
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)

    # Log in.
    page.goto(f"{base}/admin/login/")
    fill(page, {"username": "admin", "password": "password"})
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    shots(page, "admin-home")

    # Credentials: the secret is typed once and never shown again.
    page.goto(f"{base}/admin/scaling/herokuaccount/add/")
    fill(page, {"description": "production", "api_token": HEROKU_TOKEN})
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    page.click("#result_list a:text('production')")
    page.wait_for_selector("#herokuaccount_form")
    assert HEROKU_TOKEN not in page.content() and f"ending …{HEROKU_TOKEN[-4:]}" in page.content()
    page.goto(f"{base}/admin/scaling/awsaccount/add/")
    fill(page, {"description": "queues", "access_key_id": AWS_KEY, "secret_access_key": AWS_SECRET})
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    page.click("#result_list a:text('queues')")
    page.wait_for_selector("#awsaccount_form")
    assert AWS_SECRET not in page.content() and f"ending …{AWS_SECRET[-4:]}" in page.content()

    # A pair with bad input: every problem is named on its field.
    page.goto(f"{base}/admin/scaling/scalingpair/add/")
    fill(page, {"name": "orders", "app_name": "Orders App", "min_dynos": "6", "max_dynos": "2",
                "interval_seconds": "3", "queues-0-queue": "orders queue", "queues-0-region": "mars",
                "dyno_rate": "5", "dyno_concurrency": "4"})
    page.select_option("[name=heroku_account]", label="production")
    page.select_option("[name=aws_account]", label="queues")
    page.click("input[name=_continue]")
    page.wait_for_selector(".errornote")
    text = page.inner_text("#content")
    for problem in ("Heroku app name", "cannot be above max dynos", "At least 5 s", "queue's name", "AWS region"):
        assert problem in text, problem
    shots(page, "pair-errors")

    # Fixed, it saves, its beat task exists, and its first cycle is queued at once: a
    # worker scales it up without waiting an interval.
    fill(page, {"app_name": "orders-app", "min_dynos": "1", "max_dynos": "8", "interval_seconds": "30",
                "queues-0-queue": "orders", "queues-0-region": "us-east-1"})
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert "pair “orders”: its first cycle is queued for a worker" in page.inner_text(".messagelist").lower()
    pair = ScalingPair.objects.get(name="orders")
    worker_has_run(lambda: Decision.objects.filter(pair=pair).exists())
    assert Decision.objects.get(pair=pair).outcome == "applied" and heroku.quantity("orders-app") > 1
    page.goto(f"{base}/admin/django_celery_beat/periodictask/")
    assert f"dynoscaler pair {pair.pk}" in page.inner_text("#result_list")

    # Run a cycle from the list: it is queued for a worker, which runs it at once and says who asked.
    page.goto(f"{base}/admin/scaling/scalingpair/")
    page.check(f"input[name=_selected_action][value='{pair.pk}']")
    page.select_option("select[name=action]", "run_cycle_now")
    page.click("button[name=index]")
    message = page.inner_text(".messagelist").lower()  # the admin's CSS capitalises messages
    assert "pair “orders”: a cycle is queued for a worker" in message
    worker_has_run(lambda: Decision.objects.filter(pair=pair).count() == 2)
    assert Decision.objects.filter(pair=pair).latest("id").reason.startswith("cycle asked for by admin: ")

    # The decisions are in the history, and on the pair page with its chart.
    page.goto(f"{base}/admin/scaling/decision/")
    assert "applied" in page.inner_text("#result_list")
    page.goto(f"{base}/admin/scaling/scalingpair/{pair.pk}/change/")
    page.wait_for_selector("#pair-chart svg path[data-series='visible messages']", state="attached")
    assert page.locator("#pair-chart svg circle").count() >= 3  # one cycle: a point per series
    assert "scale up" in page.inner_text("#latest-decisions")
    shots(page, "pair-page")

    # Check connection reads, changes nothing, and reports each part.
    writes = len(heroku.writes())
    page.click("#check-connection")
    report = page.inner_text(".messagelist")
    assert "SQS queue orders (us-east-1): OK" in report and "Heroku app orders-app, process type worker: OK" in report
    assert len(heroku.writes()) == writes

    # The kill switch: one click, a banner everywhere, and no formation change while on.
    page.goto(f"{base}/admin/status/")
    page.click("#engage-kill-switch")
    page.wait_for_selector("#kill-switch-banner")
    assert page.inner_text("#kill-switch-by").startswith("by admin at ")
    shots(page, "status-kill-switch")
    page.goto(f"{base}/admin/scaling/scalingpair/")
    assert page.is_visible("#kill-switch-banner")
    send_messages(sqs, "orders", 1000)  # 1,500 waiting: now the policy wants more than 3 dynos
    page.check(f"input[name=_selected_action][value='{pair.pk}']")
    page.select_option("select[name=action]", "run_cycle_now")
    page.click("button[name=index]")
    worker_has_run(lambda: Decision.objects.filter(pair=pair, outcome="held").exists())
    page.goto(f"{base}/admin/scaling/scalingpair/{pair.pk}/change/")
    latest = page.inner_text("#latest-decisions")
    assert "scale up" in latest and "not sent: the kill switch is on" in latest
    assert len(heroku.writes()) == writes
    page.goto(f"{base}/admin/status/")
    page.click("#release-kill-switch")
    page.wait_for_selector(".messagelist .success")
    assert not page.is_visible("#kill-switch-banner")
    assert Decision.objects.filter(pair=pair, outcome="held").exists()


def test_a_newcomer_watches_the_sandbox_pair_scale(live_server: Any, admin_user: Any, browser_page: Any,
                                                   shots: Any, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from scaling import services

    settings.SANDBOX_ENABLED = True
    pair = services.sandbox_demo_ensure()
    assert pair is not None
    start = timezone.now() - timedelta(minutes=12)
    for i in range(72):  # twelve minutes of 10-second cycles: a full wave and a burst
        services.pair_run_cycle(pair_id=pair.pk, force=True, now=start + timedelta(seconds=10 * i))

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/scaling/scalingpair/{pair.pk}/change/")
    fill(page, {"username": "admin", "password": "password"})
    page.click("input[type=submit]")
    page.wait_for_selector("#pair-chart svg")
    assert "SANDBOX" in page.inner_text("#pair-state")
    # Twelve minutes span a whole ten-minute wave, whenever the test runs: up and back down.
    decisions = Decision.objects.filter(pair=pair)
    assert max(d or 0 for d in decisions.values_list("desired_quantity", flat=True)) >= 3
    assert decisions.filter(reason__contains="scale up").exists()
    assert decisions.filter(reason__contains="scale down").exists()
    shots(page, "sandbox-pair-chart", "#pair-state")

    # Its history, on a 1400 px screen: one line per decision, nothing to scroll sideways,
    # the whole reason a hover away and the decision a click away.
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/admin/scaling/decision/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 10 and Decision.objects.filter(cycles__gt=1).exists()
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#result_list tbody td')).lineHeight)")
    padding = page.evaluate("(() => { const s = getComputedStyle(document.querySelector('#result_list tbody td'));"
                            " return parseFloat(s.paddingTop) + parseFloat(s.paddingBottom); })()")
    heights = [box["height"] for box in (rows.nth(i).bounding_box() for i in range(rows.count())) if box]
    assert max(heights) < 1.5 * line + padding + 2, (line, padding, heights)
    overflow = page.evaluate("(() => { const r = document.querySelector('#changelist-form .results');"
                             " return [r.scrollWidth - r.clientWidth,"
                             " document.documentElement.scrollWidth - document.documentElement.clientWidth]; })()")
    assert overflow == [0, 0], overflow
    longest = max(decisions, key=lambda d: len(d.reason))
    cell = page.locator(f"#result_list td.field-short_reason a[href*='/decision/{longest.pk}/'] span[title]")
    assert cell.get_attribute("title") == longest.reason and cell.inner_text().endswith("…")
    shots(page, "decision-history")
    cell.click()
    page.wait_for_selector(".decision-reason")
    assert page.inner_text(".decision-reason") == longest.reason


def test_the_sandbox_pair_saves_from_its_page_and_a_pause_shows_in_its_history_with_who(
    live_server: Any, admin_user: Any, browser_page: Any, settings: Any
) -> None:
    from scaling import services

    settings.SANDBOX_ENABLED = True
    pair = services.sandbox_demo_ensure()
    assert pair is not None
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/scaling/scalingpair/{pair.pk}/change/")
    fill(page, {"username": "admin", "password": "password"})
    page.click("input[type=submit]")
    page.wait_for_selector("#scalingpair_form")

    # A sandbox has no queue: its page saves as it is, with a field changed.
    fill(page, {"max_dynos": "7"})
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert "was changed successfully" in page.inner_text(".messagelist")
    assert ScalingPair.objects.get(pk=pair.pk).max_dynos == 7

    # A pause from the page's button, then its History page says what and who.
    page.click("text=Pause…")
    fill(page, {"number": "30"})
    page.click("input[type=submit][value=Pause]")
    page.wait_for_selector(".messagelist .success")
    page.click("a.historylink")
    history = page.inner_text("#change-history")
    assert "Paused for 30 minutes (until " in history and "admin" in history
    assert "Changed Max dynos." in history
