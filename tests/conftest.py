"""Real parts for the suite: PostgreSQL (via DATABASE_URL), moto_server for SQS, and
loopback stand-ins for the Heroku Platform API and Elasticsearch. Nothing here skips: a
missing server fails the tests that need it, with the command that starts it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from scaling import services
from scaling.models import AwsAccount, HerokuAccount, PairQueue, ScalingPair
from tests.standins.elasticsearch_api import ElasticsearchStandIn
from tests.standins.heroku_api import HerokuStandIn

HEROKU_TOKEN = "hk-test-token-0123456789abcdef"
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


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto_server process on loopback; boto3 finds it through AWS_ENDPOINT_URL_SQS."""
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
    os.environ["AWS_ENDPOINT_URL_SQS"] = url
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def sqs(moto_url: str) -> Any:
    """A boto3 SQS client on a freshly reset moto_server."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    services._sqs_reader = None  # forget cached queue URLs from earlier tests
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
        services.pair_saved(pair=pair)
        pair.refresh_from_db()
        return pair

    return make


def send_messages(sqs: Any, queue: str, count: int) -> None:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": f"job {start + i}"} for i in range(min(10, count - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
