"""What one cycle reads and changes: a pair's queues and its process type's formation.

Two backends answer the same questions: Heroku + SQS for real apps, and the sandbox (a
simulated queue and formation, saved between cycles). The cycle, "check connection" and
"scale now" all go through ``open_backend``, so they read and write the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings

from scaling.adapters.errors import AdapterError
from scaling.adapters.heroku import HerokuClient, ProcessState
from scaling.adapters.sandbox import SandboxSimulation
from scaling.adapters.sqs import AwsCredentials, QueueCounts, SqsReader
from scaling.fields import SecretUnreadable
from scaling.models import AwsAccount, SandboxState, ScalingPair


@dataclass(frozen=True)
class QueueReading:
    queue: str
    region: str
    counts: QueueCounts

    def as_dict(self) -> dict[str, object]:
        return {"queue": self.queue, "region": self.region, **self.counts.__dict__}


class Backend(Protocol):
    def queues(self) -> list[tuple[str, str]]:
        """(queue, region) of each queue the pair reads."""
        ...

    def read_queue(self, queue: str, region: str) -> QueueCounts: ...
    def process_state(self) -> ProcessState: ...
    def scale(self, quantity: int) -> int: ...

    @property
    def rate_limit_remaining(self) -> int | None: ...


_sqs_reader: SqsReader | None = None


def sqs_reader() -> SqsReader:
    """One reader per process: it caches boto3 clients and queue URLs."""
    global _sqs_reader
    if _sqs_reader is None:
        _sqs_reader = SqsReader(timeout_seconds=settings.AWS_TIMEOUT_SECONDS)
    return _sqs_reader


def forget_cached_clients() -> None:
    """Drop cached clients and queue URLs (after the AWS endpoint changed, in tests)."""
    global _sqs_reader
    _sqs_reader = None


def aws_credentials(account: AwsAccount) -> AwsCredentials | None:
    if account.use_default_chain:
        return None
    return AwsCredentials(account.access_key_id, account.secret_access_key)


class HerokuSqsBackend:
    def __init__(self, pair: ScalingPair) -> None:
        assert pair.heroku_account is not None and pair.aws_account is not None
        self.pair = pair
        self.credentials = aws_credentials(pair.aws_account)
        self.client = HerokuClient(
            token=pair.heroku_account.api_token,
            base_url=settings.HEROKU_API_URL,
            timeout_seconds=settings.HEROKU_TIMEOUT_SECONDS,
        )

    def queues(self) -> list[tuple[str, str]]:
        return [(q.queue, q.region) for q in self.pair.queues.all()]

    def read_queue(self, queue: str, region: str) -> QueueCounts:
        return sqs_reader().counts(queue=queue, region=region, credentials=self.credentials)

    def process_state(self) -> ProcessState:
        return self.client.process_state(app=self.pair.app_name, process_type=self.pair.process_type)

    def scale(self, quantity: int) -> int:
        return self.client.scale(app=self.pair.app_name, process_type=self.pair.process_type, quantity=quantity)

    @property
    def rate_limit_remaining(self) -> int | None:
        return self.client.rate_limit_remaining


class SandboxBackend:
    """The sandbox pair's simulation, loaded for one cycle and saved after it."""

    def __init__(self, pair: ScalingPair, now: datetime) -> None:
        self.row, _ = SandboxState.objects.get_or_create(pair=pair)
        self.simulation = SandboxSimulation(self.row.state, now=now.timestamp())

    def queues(self) -> list[tuple[str, str]]:
        return [("sandbox-queue", "simulated")]

    def read_queue(self, queue: str, region: str) -> QueueCounts:
        return self.simulation.counts()

    def process_state(self) -> ProcessState:
        return self.simulation.process_state()

    def scale(self, quantity: int) -> int:
        return self.simulation.scale(quantity)

    @property
    def rate_limit_remaining(self) -> int | None:
        return None

    def save(self) -> None:
        SandboxState.objects.filter(pk=self.row.pk).update(state=self.simulation.state())


@contextmanager
def open_backend(pair: ScalingPair, now: datetime) -> Iterator[Backend]:
    """The pair's backend. Raises AdapterError (permanent) when it cannot be set up, and
    SecretUnreadable when a stored credential cannot be decrypted."""
    if pair.provider == ScalingPair.Provider.SANDBOX:
        if not settings.SANDBOX_ENABLED:
            raise AdapterError("DynoScaler", "sandbox pairs do not run here (DYNOSCALER_SANDBOX is off)", permanent=True)
        sandbox = SandboxBackend(pair, now)
        try:
            yield sandbox
        finally:
            sandbox.save()
        return
    if pair.heroku_account is None or pair.aws_account is None:
        raise AdapterError("DynoScaler", "the pair has no Heroku or AWS account", permanent=True)
    yield HerokuSqsBackend(pair)


def pair_secrets(pair: ScalingPair) -> list[str]:
    """The pair's secrets, to scrub from texts that did not come through an adapter (an
    unexpected exception's message); none if they cannot be read."""
    try:
        return [
            pair.heroku_account.api_token if pair.heroku_account else "",
            pair.aws_account.secret_access_key if pair.aws_account else "",
        ]
    except SecretUnreadable:
        return []
