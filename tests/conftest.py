"""Real parts for the suite: PostgreSQL (via DATABASE_URL), moto_server for SQS, and
loopback stand-ins for the Heroku Platform API and Elasticsearch. Nothing here skips: a
missing server fails the tests that need it, with the command that starts it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import requests

from scaling import services
from scaling.models import AlertChannel, AwsAccount, Decision, HerokuAccount, PairQueue, ScalingPair
from tests.standins.alert_receivers import WebhookReceiver
from tests.standins.elasticsearch_api import ElasticsearchStandIn
from tests.standins.heroku_api import HerokuStandIn

T = TypeVar("T")
HEROKU_TOKEN = "hk-test-token-0123456789abcdef"
SIGNING_SECRET = "whsec-alerts-0123456789abcdef"
SLACK_KEY_PATH = "/services/T0001/B0002/slackKEYslackKEY123"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def plain_http() -> None:
    """The test client and the live server speak plain HTTP, which production settings
    redirect to HTTPS (tests/test_production_settings.py checks that, in its own process)."""
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """After the run, close what still holds the test database (a live-server request thread
    the browser left, a worker subprocess's connection), so it is dropped, not left behind."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()


@pytest.fixture(scope="session", autouse=True)
def celery_on_test_redis() -> Iterator[str]:
    """Tasks the suite queues go to the test Redis (the production broker), never to the
    laptop's filesystem broker in the working copy."""
    from dynoscaler_site.celery import app

    # Under the CELERY_ namespace the settings' own names win over broker_url: set those.
    app.conf.update(CELERY_BROKER_URL=TEST_REDIS_URL, CELERY_BROKER_TRANSPORT_OPTIONS={})
    assert app.connection_for_write().as_uri().startswith("redis://"), "the suite's tasks would not go to Redis"
    yield TEST_REDIS_URL


@pytest.fixture
def celery_worker(celery_on_test_redis: str) -> Iterator[Any]:
    """A real Celery worker (in this process, one thread) consuming from the test Redis."""
    import redis
    from celery.contrib.testing.worker import start_worker

    from dynoscaler_site.celery import app

    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: start it (see .ci/run) or set TEST_REDIS_URL")
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING") as worker:
        yield worker


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto_server process on loopback; boto3 finds it through AWS_ENDPOINT_URL_SQS (and
    _CLOUDWATCH: moto serves both, and holds the SQS metrics the tests publish as AWS would)."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
    except RuntimeError:
        proc.kill()
        pytest.fail(f"moto_server did not start (install requirements-dev.txt); its log: {log.read_text()[-2000:]}")
    url = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL_SQS"] = os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = url
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def moto_with_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second moto_server that enforces IAM after its first two calls (which make a
    user with no permission at all)."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "2"})
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def sqs(moto_url: str) -> Any:
    """A boto3 SQS client on a freshly reset moto_server."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    services.forget_cached_clients()  # cached queue URLs from earlier tests
    return boto3.client("sqs", region_name=REGION, aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET)


@pytest.fixture
def heroku(settings: Any) -> Iterator[HerokuStandIn]:
    standin = HerokuStandIn().start()
    settings.HEROKU_API_URL = standin.url
    yield standin
    standin.stop()


@pytest.fixture
def elastic(settings: Any) -> Iterator[ElasticsearchStandIn]:
    standin = ElasticsearchStandIn(user="elastic", password="es-pass-s3cret-XYZ").start()
    settings.ELK_ELASTIC_URL = standin.url
    settings.ELK_ELASTIC_USER = "elastic"
    settings.ELK_ELASTIC_PASS = "es-pass-s3cret-XYZ"
    settings.ELK_INDEX_AS = "dynoscaler-decisions"
    yield standin
    standin.stop()


@pytest.fixture
def make_pair(db: None) -> Callable[..., ScalingPair]:
    def make(*, queues: list[str] | None = None, name: str = "orders", app: str = "orders-app", **fields: Any) -> ScalingPair:
        heroku_account, _ = HerokuAccount.objects.get_or_create(description="test", defaults={"api_token": HEROKU_TOKEN})
        aws_account, _ = AwsAccount.objects.get_or_create(
            description="test", defaults={"access_key_id": AWS_KEY, "secret_access_key": AWS_SECRET}
        )
        values: dict[str, Any] = {
            "policy": "classic", "min_dynos": 1, "max_dynos": 5, "backlog_threshold": 10, "up_cycles": 1, "down_cycles": 1,
            "interval_seconds": 60, **fields,
        }
        pair = ScalingPair.objects.create(
            name=name, heroku_account=heroku_account, aws_account=aws_account, app_name=app, **values
        )
        for queue in queues or ["orders"]:
            PairQueue.objects.create(pair=pair, queue=queue, region=REGION)
        services.pair_apply_settings(pair=pair)
        pair.refresh_from_db()
        return pair

    return make


@pytest.fixture
def queue_and_app(sqs: Any, heroku: Any) -> tuple[Any, Any]:
    """What most tests scale: the "orders" SQS queue, and "orders-app" on Heroku at one dyno."""
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    return sqs, heroku


def cycle(pair: ScalingPair, **kwargs: Any) -> Decision:
    """Run one cycle of ``pair`` now, as a person asking for it would (no interval spacing)."""
    decision = services.pair_run_cycle(pair_id=pair.pk, force=True, **kwargs)
    assert decision is not None, "the cycle did not run"
    return decision


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A loopback HTTP receiver for the alert channels' webhooks (Slack-compatible or signed)."""
    standin = WebhookReceiver().start()
    yield standin
    standin.stop()


@pytest.fixture
def make_channel(receiver: WebhookReceiver) -> Callable[..., AlertChannel]:
    def make(kind: str = "webhook", *, name: str | None = None, pairs: list[ScalingPair] | None = None,
             **fields: Any) -> AlertChannel:
        values: dict[str, Any] = {
            "webhook": {"url": f"{receiver.url}/hooks/dynoscaler", "signing_secret": SIGNING_SECRET},
            "slack": {"url": f"{receiver.url}{SLACK_KEY_PATH}"},
            "email": {"recipients": "oncall@example.com, lead@example.com"},
        }[kind]
        channel = AlertChannel.objects.create(name=name or kind, kind=kind, all_pairs=not pairs, **{**values, **fields})
        channel.pairs.set(pairs or [])
        return channel

    return make


def at_once(work: Callable[[], T], *, threads: int = 4) -> list[T]:
    """Run ``work`` in several threads released together, as two workers (or beats) would;
    each closes its own database connection. Returns what each returned."""
    from django.db import connection

    start = threading.Barrier(threads)
    results: list[T] = []

    def run() -> None:
        start.wait()
        try:
            results.append(work())
        finally:
            connection.close()

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return results


def send_messages(sqs: Any, queue: str, count: int) -> None:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": f"job {start + i}"} for i in range(min(10, count - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
