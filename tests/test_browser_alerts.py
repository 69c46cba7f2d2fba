"""Alerts as an operator sets them up, in a real browser: a webhook channel and an email
channel configured in the admin, a test alert to each, then the kill switch engaged and
released and both messages at the loopback receiver, in order."""

from __future__ import annotations

from typing import Any

import pytest

from scaling.alerts.delivery import channel_drain
from scaling.alerts.evaluation import alerts_evaluate
from scaling.models.alerts import AlertChannel
from tests.standins.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import SIGNING_SECRET
from tests.test_alerts import smtp  # noqa: F401  (a fixture)
from tests.test_browser import browser_page, fill, shots  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def evaluate_and_send() -> None:
    """What the worker does every DYNOSCALER_ALERT_INTERVAL seconds (no worker runs here)."""
    for channel_id in alerts_evaluate().channels_due:
        channel_drain(channel_id=channel_id)


def test_an_operator_sets_up_alerts_and_hears_about_the_kill_switch(
    live_server: Any, admin_user: Any, browser_page: Any, shots: Any,  # noqa: F811  (imported fixtures)
    receiver: WebhookReceiver, smtp: SmtpReceiver,  # noqa: F811
) -> None:
    page = browser_page
    base = live_server.url
    page.goto(f"{base}/admin/login/?next=/admin/scaling/alertchannel/add/")
    fill(page, {"username": "admin", "password": "password"})
    page.click("input[type=submit]")
    page.wait_for_selector("#alertchannel_form")

    # A webhook channel without its signing secret: the problem is named on the field.
    hook_url = f"{receiver.url}/hooks/dynoscaler"
    fill(page, {"name": "on-call webhook", "url": hook_url})
    page.select_option("[name=kind]", "webhook")
    page.click("input[name=_continue]")
    page.wait_for_selector(".errornote")
    assert "Required for a webhook channel" in page.inner_text(".field-signing_secret")

    # With it, the channel saves; its secrets are never shown again.
    fill(page, {"url": hook_url, "signing_secret": SIGNING_SECRET})
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    content = page.content()
    assert hook_url not in content and SIGNING_SECRET not in content and "set, ending …" in content

    # "Send a test alert" on the channel page: sent now, signed, and the page says so.
    page.click("#send-test-alert")
    page.wait_for_selector(".messagelist .success")
    assert "Test alert sent to “on-call webhook” (HTTP 200)" in page.inner_text(".messagelist")
    (test,) = receiver.received
    assert test.json["event"] == "test" and WebhookReceiver.signature_ok(test, SIGNING_SECRET)
    assert "sent" in page.inner_text("#recent-deliveries").lower()
    shots(page, "alert-channel")

    # An email channel, tested from the list with the action.
    page.goto(f"{base}/admin/scaling/alertchannel/add/")
    page.select_option("[name=kind]", "email")
    fill(page, {"name": "on-call email", "recipients": "oncall@example.com"})
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    email_channel = AlertChannel.objects.get(name="on-call email")
    page.check(f"input[name=_selected_action][value='{email_channel.pk}']")
    page.select_option("select[name=action]", "send_test_alert")
    page.click("button[name=index]")
    assert "test alert sent to “on-call email”" in page.inner_text(".messagelist").lower()
    assert [m["To"] for m in smtp.messages] == ["oncall@example.com"]

    # The kill switch engaged and released in the browser: one message each, in order, everywhere.
    page.goto(f"{base}/admin/status/")
    page.fill("[name=note]", "incident 42")
    page.click("#engage-kill-switch")
    page.wait_for_selector("#kill-switch-banner")
    evaluate_and_send()
    evaluate_and_send()  # still engaged: nothing more is sent
    page.goto(f"{base}/admin/scaling/alertproblem/?open=yes")
    assert "kill switch engaged" in page.inner_text("#result_list")
    page.goto(f"{base}/admin/status/")
    page.click("#release-kill-switch")
    page.wait_for_selector(".messagelist .success")
    evaluate_and_send()

    assert [(b["event"], b["problem"] and b["problem"]["key"]) for b in receiver.bodies()] == [
        ("test", None), ("opened", "kill_switch"), ("resolved", "kill_switch")]
    assert all(WebhookReceiver.signature_ok(r, SIGNING_SECRET) for r in receiver.received)
    assert "incident 42" in receiver.bodies()[1]["problem"]["summary"]
    subjects = [m["Subject"] for m in smtp.messages]
    assert subjects[1:] == ["[DynoScaler] PROBLEM kill switch engaged", "[DynoScaler] RESOLVED kill switch engaged"]
    page.goto(f"{base}/admin/scaling/alertdelivery/?status__exact=sent")
    assert page.locator("#result_list tbody tr").count() == 6
    page.click("#toggle-nav-sidebar")  # room for the messages in the screenshot
    shots(page, "alert-deliveries")
