"""Garbage in, a message out: no admin page, form, filter, export or control answers 500.

The cases are generated from the admin registry, so a model (or a view of a model admin)
registered tomorrow is covered without touching this file: every changelist with each of
its filters, its search and its actions; every add and change form, posted as a browser
would with hostile values; every page that takes an object id; every extra view a model
admin adds (the pair's check, pause and scale-now, the decision export); plus the status
page and the kill switch. It runs on PostgreSQL, which refuses a NUL byte or an
out-of-range integer itself, against the loopback Heroku stand-in and moto_server.

Each hostile value is tried in every field of a form at once; on the change forms of
DynoScaler's own models each field alone (the rest of the form as saved) gets one of
them, in rotation, which keeps the run short; DYNOSCALER_FUZZ_EVERY_VALUE=1 tries every
value in every field alone, on every form.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import reverse

from scaling.models import Decision, KillSwitch, PairSchedule, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN

pytestmark = pytest.mark.django_db

# What an operator might paste, a script might send, or an attacker might try.
HOSTILE = [
    "",
    "-1",
    "99999999999999999999999",
    "1e400",
    "x" * 3000,
    "orders\x00--",
    "\ufffd\ufffe\u202e",  # what undecodable bytes become, and a right-to-left override
    "'; DROP TABLE scaling_scalingpair; --",
    "<script>alert(1)</script>",
    "2026-13-45 25:99",
    "Mars/Olympus_Mons",
]
EVERY_VALUE = os.environ.get("DYNOSCALER_FUZZ_EVERY_VALUE") == "1"
SECRETS = (HEROKU_TOKEN, AWS_SECRET)
BAD_OBJECT_IDS = ["-1", "99999999999999999999999", "abc", "%00", "%FF%FE"]
PAGE_PARAMS = ["_changelist_filters", "_to_field", "_popup", "hours", "number"]
PAGE_VALUES = ["", "-1", "orders\x00--", "x" * 3000, "<script>alert(1)</script>"]
STANDARD_VIEWS = {"changelist", "add", "change", "delete", "history"}


def values_for(position: int) -> list[str]:
    """The hostile values one field gets on its own: all of them, or one in rotation."""
    return HOSTILE if EVERY_VALUE else [HOSTILE[position % len(HOSTILE)]]


@dataclass
class Failures:
    """Every case that answered 500, showed a secret, logged the operator out or swallowed
    bad input, reported at once."""

    seen: list[str] = field(default_factory=list)

    def check(self, response: Any, what: str, *, form_post: bool = False) -> None:
        status = response.status_code
        if not response.streaming and any(secret.encode() in response.content for secret in SECRETS):
            self.seen.append(f"a stored secret is on the page of {what}")
        if status >= 500:
            exc = getattr(response, "exc_info", None)
            cause = f" {exc[0].__name__}: {str(exc[1])[:160]}" if exc else ""
            self.seen.append(f"{status} {what}{cause}")
        elif status == 302 and "/admin/login/" in response.get("Location", ""):
            self.seen.append(f"logged out by {what}")
        elif form_post and status == 200:
            page = response.content.decode(errors="replace")
            if "errornote" not in page and "errorlist" not in page:
                self.seen.append(f"no error shown for {what}")

    def assert_none(self) -> None:
        assert not self.seen, f"{len(self.seen)} case(s):\n" + "\n".join(self.seen)


class BrowserForm(HTMLParser):
    """The name/value pairs a browser would submit from one form of a page."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self.hidden: set[str] = set()
        self._select: str | None = None
        self._multiple = False
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id if self.form_id else a.get("id") != "logout-form"
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind == "hidden":
                self.hidden.add(a["name"])
            self.fields.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and a.get("name"):
            self._select, self._multiple, self._options = a["name"], "multiple" in a, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected]
            if not chosen and not self._multiple and self._options:
                chosen = [self._options[0][0]]  # what a browser submits when nothing is marked
            self.fields += [(self._select, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None

    @classmethod
    def of(cls, page: str, form_id: str | None) -> dict[str, list[str]]:
        return cls.parse(page, form_id).data()

    @classmethod
    def parse(cls, page: str, form_id: str | None) -> BrowserForm:
        parser = cls(form_id)
        parser.feed(page)
        return parser

    def data(self) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {}
        for name, value in self.fields:
            data.setdefault(name, []).append(value)
        return data


@pytest.fixture(autouse=True)
def quick_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # the user forms hash on save


@pytest.fixture
def admin_world(make_pair: Any, heroku: Any, sqs: Any, admin_user: User) -> ScalingPair:
    """One of everything an operator edits: a pair with a queue, a schedule window and
    decisions (one an error), its accounts and beat task, another user and a group."""
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair()
    PairSchedule.objects.create(pair=pair, weekdays="5,6", start_time=time(8), end_time=time(18), min_dynos=0, max_dynos=2)
    for outcome, error in (("applied", ""), ("error", "Heroku: 500 internal_server_error")):
        Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                policy="classic", outcome=outcome, reason="r", error=error, duration_ms=5)
    User.objects.create_user("operator", password="a long enough password")
    Group.objects.create(name="operators")
    return pair


@pytest.fixture
def browser(admin_user: User) -> Client:
    client = Client(raise_request_exception=False)  # a crash is a 500 response to count, not a stop
    client.force_login(admin_user)
    return client


def as_admin(user: User) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def registered() -> Iterator[tuple[type[Model], Any]]:
    yield from admin.site._registry.items()


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def one_editable(model: type[Model], admin_user: User) -> Model | None:
    """An object to edit; never the user this client is logged in as."""
    objects = model._default_manager.order_by("pk")
    if model is User:
        objects = objects.exclude(pk=admin_user.pk)
    return objects.first()


def extra_views(model: type[Model], model_admin: Any) -> Iterator[tuple[str, bool]]:
    """The views a model admin adds to the standard ones (their names after the model's),
    and whether each takes an object id."""
    prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
    for pattern in model_admin.get_urls():
        view = (pattern.name or "").removeprefix(prefix)
        if pattern.name and view != pattern.name and view not in STANDARD_VIEWS:
            yield view, bool(pattern.pattern.converters)


MANAGEMENT_FIELDS = ("-TOTAL_FORMS", "-INITIAL_FORMS", "-MIN_NUM_FORMS", "-MAX_NUM_FORMS")


def fuzz_form(browser: Client, failures: Failures, page_url: str, form_id: str | None, *, field_by_field: bool) -> None:
    """Post the page's form as a browser would: each hostile value in every field at once
    (a broken formset count alone, or no inline would be read), every min_X above its
    max_X, and, field by field, each field the operator fills in alone, with the rest as
    the page had it."""
    page = browser.get(page_url)
    failures.check(page, f"GET {page_url}")
    if page.status_code != 200:
        return
    form = BrowserForm.parse(page.content.decode(), form_id)
    baseline = form.data()
    targets = [n for n in baseline if n != "csrfmiddlewaretoken" and "__prefix__" not in n]
    counts = [n for n in targets if n.endswith(MANAGEMENT_FIELDS)]
    fields = [n for n in targets if n not in counts]
    typed = [n for n in fields if n not in form.hidden]  # what an operator types or picks

    def post(changes: dict[str, str], what: str) -> None:
        failures.check(browser.post(page_url, {**baseline, **changes}), f"POST {page_url} {what}", form_post=True)

    if fields:
        for value in HOSTILE:
            post(dict.fromkeys(fields, value), f"every field={value[:30]!r}")
        # Bytes that are not UTF-8 at all, as a broken client might send them.
        body = urlencode({k: v for k, v in baseline.items() if k not in fields}, doseq=True)
        body += "".join(f"&{quote(name)}=%C3%28%FF%FE" for name in fields)
        failures.check(browser.post(page_url, body, content_type="application/x-www-form-urlencoded"),
                       f"POST {page_url} every field=b'\\xc3(\\xff\\xfe'", form_post=True)
    for name in fields:
        twin = name.replace("min_", "max_")
        if twin != name and twin in baseline:
            post({name: "9", twin: "2"}, f"{name}=9 above {twin}=2")
    for position, name in enumerate(counts + (typed if field_by_field else [])):
        for value in values_for(position):
            post({name: value}, f"{name}={value[:30]!r}")


def test_no_admin_form_answers_500_to_hostile_input(admin_world: ScalingPair, browser: Client, admin_user: User) -> None:
    failures = Failures()
    for model, model_admin in registered():
        form_id = f"{model._meta.model_name}_form"
        if model_admin.has_add_permission(as_admin(admin_user)):
            fuzz_form(browser, failures, admin_url(model, "add"), form_id, field_by_field=EVERY_VALUE)
        obj = one_editable(model, admin_user)
        ours = model._meta.app_label == "scaling" or EVERY_VALUE
        if obj is not None and model_admin.has_change_permission(as_admin(admin_user), obj):
            fuzz_form(browser, failures, admin_url(model, "change", obj.pk), form_id, field_by_field=ours)
        for view, per_object in extra_views(model, model_admin):
            if per_object and obj is not None:
                fuzz_form(browser, failures, admin_url(model, view, obj.pk), None, field_by_field=ours)
    failures.assert_none()


def test_a_schedule_window_with_min_above_max_is_refused_on_the_page(admin_world: ScalingPair, browser: Client) -> None:
    page_url = admin_url(ScalingPair, "change", admin_world.pk)
    form = BrowserForm.of(browser.get(page_url).content.decode(), "scalingpair_form")
    response = browser.post(page_url, {**form, "schedules-0-min_dynos": "5", "schedules-0-max_dynos": "2"})
    assert response.status_code == 200
    assert "Min dynos cannot be above max dynos." in response.content.decode()
    assert PairSchedule.objects.get(pair=admin_world).max_dynos == 2


def test_no_admin_page_answers_500_to_hostile_addresses(admin_world: ScalingPair, browser: Client, admin_user: User) -> None:
    failures = Failures()
    for model, model_admin in registered():
        obj = one_editable(model, admin_user)
        pages = [admin_url(model, "add")]
        if obj is not None:
            pages += [admin_url(model, view, obj.pk) for view in ("change", "history", "delete")]
            pages += [admin_url(model, view, obj.pk) for view, per_object in extra_views(model, model_admin) if per_object]
        for page in pages:
            for value in PAGE_VALUES:
                failures.check(browser.get(page, dict.fromkeys(PAGE_PARAMS, value)), f"GET {page}?…={value[:30]!r}")
        for bad in BAD_OBJECT_IDS:
            for view in ("change", "history", "delete"):
                page = admin_url(model, view, "0").replace("/0/", f"/{bad}/")
                failures.check(browser.get(page), f"GET {page}")
    for page in ["/admin/", "/admin/scaling/", "/admin/auth/", "/admin/django_celery_beat/", "/admin/status/"]:
        for value in PAGE_VALUES:
            failures.check(browser.get(page, {"q": value, "next": value}), f"GET {page}?q={value[:30]!r}")
    failures.assert_none()


def test_no_changelist_filter_search_or_action_answers_500(admin_world: ScalingPair, browser: Client, admin_user: User) -> None:
    failures = Failures()
    for model, model_admin in registered():
        changelist = admin_url(model, "changelist")
        lists = [changelist] + [admin_url(model, view) for view, per_object in extra_views(model, model_admin) if not per_object]
        page = browser.get(changelist)
        failures.check(page, f"GET {changelist}")
        params = {p for spec in page.context["cl"].filter_specs for p in spec.expected_parameters()}
        params |= {"q", "o", "p", "all", "e", "no_such_field", "pair__heroku_account__api_token__startswith"}
        for target in lists:
            for value in HOSTILE:
                failures.check(drain(browser.get(target, dict.fromkeys(params, value))), f"GET {target}?every={value[:30]!r}")
            for position, param in enumerate(sorted(params)):
                for value in values_for(position):
                    failures.check(drain(browser.get(target, {param: value})), f"GET {target}?{param}={value[:30]!r}")
            failures.check(drain(browser.get(target + "?q=%FF%FE%00&o=%00")), f"GET {target}?q=%FF%FE%00")
        fuzz_actions(browser, failures, model, model_admin, changelist, admin_user)
    failures.assert_none()


def drain(response: Any) -> Any:
    """Read a streamed body to its end: a failure while streaming is a 500 too."""
    if response.streaming:
        b"".join(response.streaming_content)
    return response


def fuzz_actions(browser: Client, failures: Failures, model: type[Model], model_admin: Any, changelist: str,
                 admin_user: User) -> None:
    obj = one_editable(model, admin_user)
    for action in [*model_admin.get_actions(as_admin(admin_user)), "", "no_such_action"]:
        cases = [("abc", "3"), ("\x00", "3"), ("99999999999999999999999", "3")]
        if obj is not None and action != "delete_selected":
            cases += [(str(obj.pk), number) for number in ("-1", "99999999999999999999999", "orders\x00--", "3")]
        for selected, number in cases:
            data = {"action": action, "_selected_action": selected, "number": number, "apply": "1", "index": "0"}
            failures.check(browser.post(changelist, data), f"POST {changelist} {action} on {selected!r} number={number!r}")


def test_the_decision_export_answers_bad_filters_with_a_message(admin_world: ScalingPair, browser: Client) -> None:
    response = browser.get("/admin/scaling/decision/export.csv", {"created_at__gte": "yesterday"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "These filters cannot be applied" in page and "“yesterday” value has an invalid format" in page
    assert "Nothing was exported." in page


def test_a_changelist_says_why_it_dropped_its_filters(admin_world: ScalingPair, browser: Client) -> None:
    response = browser.get("/admin/scaling/decision/", {"pair__id__exact": "abc"}, follow=True)
    assert response.status_code == 200
    assert "These filters cannot be applied" in response.content.decode()
    response = browser.get("/admin/scaling/scalingpair/", {"q": "orders\x00"}, follow=True)
    assert response.status_code == 200 and "NUL character" in response.content.decode()


def test_beat_tasks_are_shown_but_cannot_be_edited_by_hand(admin_world: ScalingPair, browser: Client) -> None:
    task_url = f"/admin/django_celery_beat/periodictask/{admin_world.periodic_task_id}/change/"
    page = browser.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert f"dynoscaler pair {admin_world.pk}" in page and admin_world.name in page
    assert "last sent (written every 5 min)" in page.lower()  # beat writes it every few minutes, not at each send
    assert browser.get(task_url).status_code == 200
    assert browser.post(task_url, {"name": "renamed", "task": "scaling.tasks.run_pair_cycle"}).status_code == 403
    assert browser.get("/admin/django_celery_beat/periodictask/add/").status_code == 403
    for schedule in ("intervalschedule", "crontabschedule", "solarschedule", "clockedschedule"):
        assert browser.get(f"/admin/django_celery_beat/{schedule}/").status_code == 404


def test_the_status_page_kill_switch_and_pair_controls_take_garbage(admin_world: ScalingPair, browser: Client) -> None:
    failures = Failures()
    for value in HOSTILE:
        for engage in ("1", "0", value):
            for next_url in ("/admin/status/", value, f"/admin/{quote(value)}", "//evil.example/", "/admin/\x00\r\nX: y"):
                data = {"engage": engage, "note": value, "next": next_url}
                response = browser.post("/admin/kill-switch/", data)
                failures.check(response, f"POST kill-switch {data!r:.90}")
                location = response.get("Location", "")
                assert location.startswith("/admin/"), f"the kill switch sent the operator to {location!r}"
    browser.post("/admin/kill-switch/", {"engage": "0"})
    for bad in BAD_OBJECT_IDS:
        for view in ("check", "pause", "scale-now"):
            failures.check(browser.get(f"/admin/scaling/scalingpair/{bad}/{view}/"), f"GET pair {bad} {view}")
    failures.assert_none()


def test_an_emergency_stop_is_not_refused_for_its_note(admin_world: ScalingPair, browser: Client) -> None:
    response = browser.post("/admin/kill-switch/", {"engage": "1", "note": "deploy\x00 gone wrong " + "!" * 300,
                                                    "next": "/admin/status/"}, follow=True)
    assert response.status_code == 200 and "Kill switch engaged" in response.content.decode()
    assert KillSwitch.is_engaged()
    response = browser.post("/admin/kill-switch/", {"engage": "maybe"}, follow=True)
    assert "The kill switch was not changed" in response.content.decode() and KillSwitch.is_engaged()
