"""End to end: a real Celery worker and beat on Redis, PostgreSQL, moto_server SQS, and the
Heroku and Elasticsearch stand-ins. Nothing is called directly: beat schedules, the worker
scales, and we watch the formation, the decision rows and the documents."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from scaling.models import Decision, ScalingPair
from tests.conftest import AWS_SECRET, HEROKU_TOKEN, send_messages
from tests.test_legacy_env import LEGACY_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
BASE_DIR = Path(settings.BASE_DIR)


def wait_until(check: Callable[[], bool], *, seconds: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out after {seconds} s waiting for {what}\n{tails}")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {url}: start it (see .ci/run) or set TEST_REDIS_URL")
    return url


@pytest.fixture
def celery(tmp_path: Path, redis_url: str, moto_url: str, heroku: Any, elastic: Any) -> Iterator[Callable[[dict[str, str]], None]]:
    if connection.vendor != "postgresql":
        pytest.fail("the end-to-end test needs PostgreSQL: set DATABASE_URL (make test does)")
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(extra_env: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in LEGACY_ENV}
        env.update({
            # Web, worker and beat share one key, as Heroku config vars make them do.
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": settings.SECRET_KEY,
            "HEROKU_API_URL": heroku.url, "AWS_ENDPOINT_URL_SQS": moto_url, "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
            "ELK_ELASTIC_URL": elastic.url, "ELK_ELASTIC_USER": "elastic", "ELK_ELASTIC_PASS": "es-pass-s3cret-XYZ",
            "DYNOSCALER_MIN_INTERVAL": "1", **extra_env,
        })
        celery_cmd = [sys.executable, "-m", "celery", "-A", "dynoscaler_site"]
        commands = {
            "worker": [*celery_cmd, "worker", "--pool=threads", "--concurrency=4", "--loglevel=INFO"],
            "beat": [*celery_cmd, "beat", "--loglevel=INFO", "--max-interval=1", f"--pidfile={tmp_path / 'beat.pid'}",
                     "--scheduler", "scaling.beat:DynoScalerScheduler"],
        }
        for name, cmd in commands.items():
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT))

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_formations_follow_the_backlog_up_and_down(celery: Any, sqs: Any, heroku: Any, elastic: Any,
                                                   make_pair: Any, tmp_path: Path) -> None:
    # A pair set up as an operator would in the admin (2 s cycles to keep the test short) ...
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    pair = make_pair(interval_seconds=2, backlog_threshold=5, up_cycles=1, down_cycles=1, min_dynos=1, max_dynos=4)
    send_messages(sqs, "orders", 40)
    # ... and one described only by the original tool's variables: no admin step at all.
    sqs.create_queue(QueueName="legacy")
    heroku.add_app("legacy-app", token="hk-legacy-token-abcdef123456", quantity=1)
    send_messages(sqs, "legacy", 50)
    legacy = {**LEGACY_ENV, "MY_HEROKU_AUTH_TOKEN": "hk-legacy-token-abcdef123456", "MY_HEROKU_AS_APP": "legacy-app",
            "AWS_SQS_NAME": "legacy", "DYNOSCALER_UP_CYCLES": "1", "DYNOSCALER_INTERVAL_SECONDS": "10"}
    celery(legacy)

    wait_until(lambda: heroku.quantity("orders-app") == 4, seconds=60, what="orders-app to grow to 4", logs=tmp_path)
    wait_until(lambda: heroku.quantity("legacy-app") >= 2, seconds=60, what="the env pair to add a dyno", logs=tmp_path)
    env_pair = ScalingPair.objects.get(managed_by_env=True)
    assert env_pair.name == "legacy-app/worker (env)"

    sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName="orders")["QueueUrl"])
    # Wait for the recorded decision, not the formation: the row is committed just after the PATCH.
    wait_until(lambda: Decision.objects.filter(pair=pair, outcome="applied", applied_quantity=1).exists(),
               seconds=60, what="orders-app to shrink back to 1", logs=tmp_path)
    wait_until(lambda: not Decision.objects.filter(shipped_at__isnull=True).exists(), seconds=60,
               what="every decision to reach Elasticsearch", logs=tmp_path)

    writes = [w.body["quantity"] for w in heroku.writes() if "/apps/orders-app/" in w.path]
    assert writes == [2, 3, 4, 3, 2, 1]
    applied = list(Decision.objects.filter(pair=pair, outcome="applied").order_by("created_at")
                   .values_list("applied_quantity", flat=True))
    assert applied == writes
    docs = elastic.docs_in("dynoscaler-decisions")
    assert set(docs) == {str(pk) for pk in Decision.objects.values_list("pk", flat=True)}
    assert {d["outcome"] for d in docs.values() if d["pair"] == "orders"} >= {"applied"}
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    for secret in (HEROKU_TOKEN, "hk-legacy-token-abcdef123456", AWS_SECRET, "es-pass-s3cret-XYZ"):
        assert secret not in logs
    # The worker's log says what the cycles did, not two Celery lines for every task it ran.
    worker_log = (tmp_path / "worker.log").read_text()
    assert "pair orders: applied" in worker_log
    assert "succeeded in" not in worker_log and "Task scaling.tasks.run_pair_cycle" not in worker_log
