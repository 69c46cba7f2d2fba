"""Beat's scheduler (scaling/beat.py) on the real Redis broker and PostgreSQL: it sends what
the PeriodicTask rows say, follows their changes, spreads pairs over their interval, does no
database work per send, and holds cycles back rather than queue more than the workers take."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from dynoscaler_site.celery import app
from scaling import beat, services
from scaling.beat import DynoScalerScheduler
from scaling.models import ScalingPair
from tests.conftest import TEST_REDIS_URL, free_port, wait_for_port
from tests.test_legacy_env import LEGACY_ENV

# The scheduler closes stale connections as the beat process does, which a test wrapped in
# a transaction would not survive: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)
BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture
def broker() -> redis.Redis:
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: start it (see .ci/run) or set TEST_REDIS_URL")
    return client


def queued(broker: redis.Redis) -> list[tuple[str, list[Any]]]:
    """(task, args) of each message waiting in the queue, oldest first (kombu pushes on the
    left, workers take from the right)."""
    out = []
    for raw in reversed(broker.lrange("celery", 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def take_all(broker: redis.Redis) -> list[tuple[str, list[Any]]]:
    """Take every waiting message, as a worker would, oldest first."""
    taken = []
    while (raw := broker.rpop("celery")) is not None:
        message = json.loads(raw)  # type: ignore[arg-type]
        taken.append((message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0]))
    return taken


def run_beat(scheduler: DynoScalerScheduler, until: Callable[[], bool], *, seconds: float = 15) -> None:
    """Tick as celery beat's loop does until ``until()``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not until():
        if time.monotonic() > deadline:
            pytest.fail(f"beat did not get there within {seconds} s")
        time.sleep(min(scheduler.tick(), 0.2))


def cycles_of(messages: list[tuple[str, list[Any]]]) -> list[int]:
    return [args[0] for task, args in messages if task == beat.CYCLE_TASK]


@pytest.fixture
def only_pairs(settings: Any) -> Iterator[None]:
    """Beat with no settings' tasks, so the queue holds only pairs' cycles."""
    saved = app.conf.beat_schedule
    app.conf.update(CELERY_BEAT_SCHEDULE={})
    yield
    app.conf.update(CELERY_BEAT_SCHEDULE=saved)


def test_beat_sends_each_enabled_pair_at_its_interval_and_the_settings_tasks(make_pair: Any, broker: redis.Redis) -> None:
    orders = make_pair(name="orders", app="orders-app", interval_seconds=1)
    mail = make_pair(name="mail", app="mail-app", interval_seconds=1)
    off = make_pair(name="off", app="off-app", interval_seconds=1, enabled=False)
    saved = app.conf.beat_schedule
    app.conf.update(CELERY_BEAT_SCHEDULE={
        "dynoscaler-ship-decisions": {"task": "scaling.tasks.ship_decisions", "schedule": 1.0}})
    try:
        scheduler = DynoScalerScheduler(app=app)
        run_beat(scheduler, lambda: Counter(cycles_of(queued(broker)))[orders.pk] >= 3)
    finally:
        app.conf.update(CELERY_BEAT_SCHEDULE=saved)
    messages = queued(broker)
    counts = Counter(cycles_of(messages))
    assert counts[orders.pk] >= 3 and counts[mail.pk] >= 2
    assert off.pk not in counts
    assert ("scaling.tasks.ship_decisions", []) in messages


def test_a_send_does_no_database_work(make_pair: Any, broker: redis.Redis, only_pairs: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        make_pair(name=f"pair {i}", app=f"app-{i}", interval_seconds=1)
    scheduler = DynoScalerScheduler(app=app)
    monkeypatch.setattr(beat, "CHANGE_CHECK_SECONDS", 3600)  # no look for schedule changes during the count
    scheduler.tick()
    with CaptureQueriesContext(connection) as queries:
        run_beat(scheduler, lambda: broker.llen("celery") >= 60)
    assert len(cycles_of(queued(broker))) >= 60
    assert queries.captured_queries == []


def test_when_beat_stops_each_tasks_last_run_is_written_in_one_update(make_pair: Any, broker: redis.Redis,
                                                                      only_pairs: None) -> None:
    pairs = [make_pair(name=f"pair {i}", app=f"app-{i}", interval_seconds=1) for i in range(5)]
    scheduler = DynoScalerScheduler(app=app)
    run_beat(scheduler, lambda: len(set(cycles_of(queued(broker)))) == 5 and broker.llen("celery") >= 12)
    sends = Counter(cycles_of(queued(broker)))
    with CaptureQueriesContext(connection) as queries:
        scheduler.close()
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["UPDATE"]
    for pair in pairs:
        task = PeriodicTask.objects.get(pk=pair.periodic_task_id)
        assert task.last_run_at is not None
        assert task.total_run_count == sends[pair.pk]


def test_beat_follows_pairs_disabled_and_added_without_a_restart(make_pair: Any, broker: redis.Redis,
                                                                  only_pairs: None) -> None:
    first = make_pair(name="first", app="first-app", interval_seconds=1)
    scheduler = DynoScalerScheduler(app=app)
    run_beat(scheduler, lambda: first.pk in cycles_of(queued(broker)))

    first.enabled = False
    first.save()
    services.pair_apply_settings(pair=first)
    second = make_pair(name="second", app="second-app", interval_seconds=1)
    run_beat(scheduler, lambda: first.periodic_task_id not in scheduler.tasks)
    broker.delete("celery")
    run_beat(scheduler, lambda: Counter(cycles_of(queued(broker)))[second.pk] >= 2)
    assert first.pk not in cycles_of(queued(broker))

    ScalingPair.objects.filter(pk=second.pk).update(interval_seconds=30)
    services.pair_schedule_sync(pair=ScalingPair.objects.get(pk=second.pk))
    run_beat(scheduler, lambda: scheduler.tasks[second.periodic_task_id].every == 30)


def test_a_one_off_task_from_the_periodic_tasks_admin_is_sent_once_then_disabled(broker: redis.Redis,
                                                                                 only_pairs: None) -> None:
    clock = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(seconds=1))
    once = PeriodicTask.objects.create(name="prune alerts once", task="scaling.tasks.prune_alerts", clocked=clock,
                                       one_off=True)
    scheduler = DynoScalerScheduler(app=app)
    run_beat(scheduler, lambda: broker.llen("celery") >= 1)
    for _ in range(10):  # two seconds more: it is not sent again
        time.sleep(min(scheduler.tick(), 0.2))
    assert [task for task, _ in queued(broker)] == ["scaling.tasks.prune_alerts"]
    once.refresh_from_db()
    assert not once.enabled and once.total_run_count == 1


def test_after_a_restart_pairs_are_spread_over_their_interval(make_pair: Any, broker: redis.Redis,
                                                              only_pairs: None) -> None:
    for i in range(150):
        make_pair(name=f"pair {i}", app=f"app-{i}", interval_seconds=15)
    started = time.time()
    scheduler = DynoScalerScheduler(app=app)
    offsets = [t.due - started for t in scheduler.tasks.values() if t.holdable]
    assert len(offsets) == 150
    assert all(0 <= offset < 15 + 1 for offset in offsets)
    per_second = Counter(int(offset) for offset in offsets)
    # 10 a second on average; none of the 15 seconds gets a crowd.
    assert max(per_second.values()) <= 25
    assert len(per_second) >= 14


def test_a_run_of_decisions_asks_for_one_shipment(queue_and_app: Any, make_pair: Any, broker: redis.Redis,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from scaling import tasks

    monkeypatch.setattr(tasks, "SHIP_GATHER_SECONDS", 60.0)  # however slow this machine, one window
    monkeypatch.setattr(tasks, "_ship_asked_until", 0.0)
    pair = make_pair()
    for _ in range(5):
        tasks.run_pair_cycle(pair.pk, force=True)
    assert pair.samples.count() == 5  # five cycles (their quiet repeats fold into one run of decisions)
    assert [task for task, _ in queued(broker)] == ["scaling.tasks.ship_decisions"]


# --- a real beat process against a queue nobody takes from ------------------------------------


@pytest.fixture
def beat_process(tmp_path: Path, broker: redis.Redis) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in LEGACY_ENV}
        env.update({"DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL, "SECRET_KEY": settings.SECRET_KEY,
                    "DYNOSCALER_MIN_INTERVAL": "1", **extra_env})
        with open(tmp_path / "beat.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dynoscaler_site", "beat", "--loglevel=INFO",
                                     f"--pidfile={tmp_path / 'beat.pid'}", "--scheduler", "scaling.beat:DynoScalerScheduler"],
                                    cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_with_no_worker_beat_queues_no_more_than_its_bound_and_every_pair_gets_its_turn(
    make_pair: Any, broker: redis.Redis, beat_process: Any, tmp_path: Path
) -> None:
    pairs = {make_pair(name=f"pair {i:02d}", app=f"app-{i:02d}", interval_seconds=1).pk for i in range(20)}
    beat_process({"DYNOSCALER_BEAT_MAX_QUEUED": "5"})

    # Nobody takes from the queue: beat stops at its bound, however many pairs are due.
    deadline = time.monotonic() + 60
    while len(cycles_of(queued(broker))) < 5:
        if time.monotonic() > deadline:
            pytest.fail(f"beat sent nothing; its log:\n{(tmp_path / 'beat.log').read_text()[-3000:]}")
        time.sleep(0.1)
    most = 0
    for _ in range(30):  # three seconds, three intervals of every pair
        most = max(most, len(cycles_of(queued(broker))))
        time.sleep(0.1)
    assert most == 5

    # A slow worker takes five at a time: the pairs that waited go first, and every pair
    # cycles as often as every other.
    order: list[int] = []
    deadline = time.monotonic() + 60
    while len(order) < 60:
        if time.monotonic() > deadline:
            pytest.fail(f"beat did not resume; its log:\n{(tmp_path / 'beat.log').read_text()[-3000:]}")
        order += cycles_of(take_all(broker))
        time.sleep(0.3)
    assert set(order[:20]) == pairs
    counts = Counter(order[:60])
    assert set(counts) == pairs
    assert max(counts.values()) - min(counts.values()) <= 1
    assert "holding pair cycles back" in (tmp_path / "beat.log").read_text()


# --- the worker's database connections ------------------------------------------------------


def worker_backends() -> set[int]:
    """PostgreSQL sessions on the test database other than the test's own: the worker's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return {row[0] for row in cursor.fetchall()}


def test_a_worker_keeps_its_database_connection_and_survives_it_being_killed(
    queue_and_app: Any, make_pair: Any, broker: redis.Redis, celery_worker: Any
) -> None:
    from scaling import tasks

    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: set DATABASE_URL")
    pair = make_pair()

    def cycle_through_the_worker(expected: int) -> None:
        tasks.run_pair_cycle.delay(pair.pk, force=True)
        deadline = time.monotonic() + 30
        while pair.samples.count() < expected:  # every cycle is sampled
            if time.monotonic() > deadline:
                pytest.fail(f"the worker recorded {pair.samples.count()} of {expected} cycles")
            time.sleep(0.1)

    cycle_through_the_worker(1)
    first = worker_backends()
    cycle_through_the_worker(2)
    # The same PostgreSQL session served both tasks: no new connection per task.
    assert first and worker_backends() == first

    with connection.cursor() as cursor:  # the server drops the worker's session between tasks
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    cycle_through_the_worker(3)
    cycle_through_the_worker(4)
    assert pair.decisions.filter(outcome="error").count() == 0
    assert worker_backends().isdisjoint(first)


def test_a_broker_restart_costs_beat_one_line_each_way_not_a_traceback_per_send(
        make_pair: Any, only_pairs: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    own = Celery("beat-broker-restart", broker=f"redis://127.0.0.1:{port}/0", set_as_current=False)
    own.conf.update(beat_schedule={}, broker_connection_retry_on_startup=False)
    try:
        wait_for_port(port)
        make_pair(name="orders", app="orders-app", interval_seconds=1)
        client = redis.Redis(port=port)
        scheduler = DynoScalerScheduler(app=own)
        run_beat(scheduler, lambda: client.llen("celery") >= 1)

        server.kill()
        server.wait(timeout=10)
        caplog.clear()
        deadline = time.monotonic() + 4  # four seconds of sends due every second, with Redis gone
        while time.monotonic() < deadline:
            time.sleep(min(scheduler.tick(), 0.2))
        down = [r for r in caplog.records if r.name == "scaling.beat" and "cannot be reached" in r.getMessage()]
        assert len(down) == 1 and down[0].exc_info is None
        assert len([r for r in caplog.records if "could not read the queue's depth" in r.getMessage()]) <= 1
        assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]

        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for_port(port)
        run_beat(scheduler, lambda: client.llen("celery") >= 1, seconds=20)
        back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(back) == 1 and "sends failed while it was not" in back[0]
    finally:
        server.kill()
        server.wait(timeout=10)


# --- telling of workers that stopped ---------------------------------------------------------


def test_with_no_worker_running_tasks_beat_tells_the_channels_itself_and_a_worker_back_clears_it(
        make_channel: Any, receiver: Any, broker: redis.Redis, settings: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from celery.contrib.testing.worker import start_worker

    from scaling.alerts import watch

    settings.ALERT_WORKERS_SILENT_MINUTES = 0.02  # 1.2 s instead of minutes
    settings.ALERT_EVALUATE_INTERVAL_SECONDS = 0.3
    monkeypatch.setattr(watch, "WATCH_SECONDS", 0.2)
    monkeypatch.setattr(watch, "SEEN_EVERY_SECONDS", 0.1)
    make_channel("webhook")
    saved = app.conf.beat_schedule
    app.conf.update(CELERY_BEAT_SCHEDULE={
        "dynoscaler-evaluate-alerts": {"task": "scaling.tasks.evaluate_alerts", "schedule": 0.3}})

    def told(event: str) -> list[dict[str, Any]]:
        return [b for b in receiver.bodies() if b["event"] == event and (b["problem"] or {}).get("key") == "workers_silent"]

    try:
        scheduler = DynoScalerScheduler(app=app)
        # Nobody takes the alerts task beat sends: beat tells the channel in the workers' place.
        run_beat(scheduler, lambda: bool(told("opened")), seconds=20)
        (opened,) = told("opened")
        assert opened["title"] == "[DynoScaler] PROBLEM no worker running tasks (told by beat)"
        assert "no worker has finished a task for" in opened["text"] and "none has since beat started" in opened["text"]
        assert "check that the worker process is running" in opened["text"]
        assert broker.llen("celery") > 0  # the alerts tasks wait for a worker
        assert any("beat evaluates and sends the alerts itself" in r.getMessage() for r in caplog.records)

        # A worker starts: it runs what waited, its own evaluation clears the problem, and
        # beat, hearing from it, stops standing in (no second "problem" while it runs).
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            run_beat(scheduler, lambda: bool(told("resolved")), seconds=20)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                time.sleep(min(scheduler.tick(), 0.1))
    finally:
        app.conf.update(CELERY_BEAT_SCHEDULE=saved)
    assert len(told("opened")) == 1 and len(told("resolved")) == 1
    assert told("resolved")[0]["title"] == "[DynoScaler] RESOLVED no worker running tasks (told by beat)"


def test_a_beat_started_before_its_broker_waits_quietly_sends_once_it_answers_and_stops_when_told(
        make_pair: Any, beat_process: Any, tmp_path: Path) -> None:
    port = free_port()
    make_pair(name="orders", app="orders-app", interval_seconds=1)
    proc = beat_process({"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    log = tmp_path / "beat.log"

    def wait_for(what: Callable[[], bool], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not what():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"beat did not get there; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    wait_for(lambda: "the broker cannot be reached" in log.read_text())
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        client = redis.Redis(port=port)
        wait_for(lambda: client.llen("celery") >= 2)  # the pair's cycles, once the broker answers
    finally:
        server.kill()
        server.wait(timeout=10)
    proc.terminate()  # Heroku's SIGTERM, with the broker gone again
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"beat did not stop on SIGTERM; its log:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert " ERROR " not in text and "Traceback" not in text
    assert text.count("the broker cannot be reached") <= 2  # once per outage
    assert "reachable again" in text
