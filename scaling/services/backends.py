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

from scaling.adapters.cloudwatch import CloudWatchReader
from scaling.adapters.errors import AdapterError
from scaling.adapters.heroku import HerokuClient, ProcessState
from scaling.adapters.sandbox import SandboxSimulation
from scaling.adapters.aws import AwsCredentials
from scaling.adapters.sqs import QueueCounts, SqsReader
from scaling.fields import SecretUnreadable
from scaling.models import AwsAccount, FormationState, HerokuApp, SandboxState, ScalingPair
from scaling.services import formations
from scaling.services.pair_inputs import pair_inputs
from scaling.services.heroku_budget import Call, why_not_call


@dataclass(frozen=True)
class Measured:
    """What the policy learns from beyond the counts: boots that ended since the last cycle,
    and CloudWatch's per-minute points when they were read this cycle."""

    boot_durations: tuple[float, ...] = ()
    deleted_per_minute: tuple[tuple[float, float], ...] = ()
    oldest_age_per_minute: tuple[tuple[float, float], ...] = ()
    cloudwatch_read: bool = False  # CloudWatch was asked this cycle
    cloudwatch_problem: str | None = None  # why it cannot be read ("" : it can again; None: not asked)


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

    def process_state(self) -> ProcessState:
        """The formation as far as it is known now (reading it only when a read is due)."""
        ...

    def read_process_state(self) -> ProcessState:
        """The formation read now, whatever it costs (check connection)."""
        ...

    def why_not_write(self) -> str | None:
        """Why a formation change must not be sent now (the account's pool), if it must not."""
        ...

    def quantity_before_write(self, expected: int) -> int | None:
        """The quantity found, if it is no longer ``expected`` (someone changed it): read
        right before a write where nothing else would have told us."""
        ...

    def scale(self, quantity: int) -> int: ...

    def measure(self, *, since: datetime | None) -> Measured:
        """Boots that ended after ``since``, and CloudWatch's points when a read is due."""
        ...

    @property
    def rate_limit_remaining(self) -> int | None: ...

    @property
    def heroku_calls(self) -> int:
        """Heroku calls this backend made."""
        ...

    @property
    def read_because(self) -> str | None:
        """Why the formation was read from Heroku this cycle, if it was."""
        ...


_sqs_reader: SqsReader | None = None
_cloudwatch_reader: CloudWatchReader | None = None


def sqs_reader() -> SqsReader:
    """One reader per process: it caches boto3 clients and queue URLs."""
    global _sqs_reader
    if _sqs_reader is None:
        _sqs_reader = SqsReader(timeout_seconds=settings.AWS_TIMEOUT_SECONDS)
    return _sqs_reader


def cloudwatch_reader() -> CloudWatchReader:
    global _cloudwatch_reader
    if _cloudwatch_reader is None:
        _cloudwatch_reader = CloudWatchReader(timeout_seconds=settings.AWS_TIMEOUT_SECONDS)
    return _cloudwatch_reader


def forget_cached_clients() -> None:
    """Drop cached clients and queue URLs (after the AWS endpoint changed, in tests)."""
    global _sqs_reader, _cloudwatch_reader
    _sqs_reader = _cloudwatch_reader = None


def aws_credentials(account: AwsAccount) -> AwsCredentials | None:
    if account.use_default_chain:
        return None
    return AwsCredentials(account.access_key_id, account.secret_access_key)


class HerokuSqsBackend:
    """SQS for the queues, every cycle; Heroku through the formation store: read only when a
    reconcile is due (or before a write, without webhooks), written to when scaling."""

    def __init__(self, pair: ScalingPair, now: datetime) -> None:
        assert pair.heroku_account is not None and pair.aws_account is not None
        self.pair, self.now = pair, now
        self.account = pair.heroku_account
        self._token = self.account.api_token  # read now: an unreadable token is this cycle's error
        self._client: HerokuClient | None = None
        self.credentials = aws_credentials(pair.aws_account)
        # The formation and its app in one read when both are known (most cycles).
        self._state = formations.known_with_app(pair.app_name, pair.process_type, account=self.account)
        self.app = self._state.app if self._state is not None else formations.app_for(
            name=pair.app_name, account=self.account)
        self._calls = 0
        self._read_because: str | None = None

    @property
    def client(self) -> HerokuClient:
        """Made only when this cycle calls Heroku, which most cycles do not."""
        if self._client is None:
            self._client = HerokuClient(token=self._token, base_url=settings.HEROKU_API_URL,
                                        timeout_seconds=settings.HEROKU_TIMEOUT_SECONDS)
        return self._client

    def _known(self) -> FormationState | None:
        if self._state is None:
            self._state = formations.known(self.app, self.pair.process_type)
        return self._state

    def queues(self) -> list[tuple[str, str]]:
        return list(pair_inputs(self.pair).queues)

    def read_queue(self, queue: str, region: str) -> QueueCounts:
        return sqs_reader().counts(queue=queue, region=region, credentials=self.credentials)

    def process_state(self) -> ProcessState:
        state = self._known()
        plan = formations.read_plan(self.app, state, now=self.now, boot_seconds=self.pair.boot_seconds,
                                    unsettled=self.pair.unconfirmed_quantity is not None)
        if plan.why is not None:
            purpose = Call.RECONCILE if state is not None else Call.READ_FOR_WRITE
            refused = why_not_call(self.account, purpose, self.now)
            if refused is None and formations.read_claim(self.app, self.now):
                self._read(dynos=plan.dynos, because=plan.why)
                state = self._known()
            elif state is None:
                # Nothing was asked of Heroku: not its error, so no back-off grows from it.
                why = refused or "another pair of the app is reading it"
                raise AdapterError("DynoScaler", f"the formation is not known yet ({why}); it will be read at a "
                                   "later cycle", permanent=False)
        if state is None:
            raise self._no_such_process_type()
        return formations.process_state(state)

    def read_process_state(self) -> ProcessState:
        self._read(dynos=True, because="a connection check")
        state = self._known()
        if state is None:
            raise self._no_such_process_type()
        return formations.process_state(state)

    def why_not_write(self) -> str | None:
        return why_not_call(self.account, Call.WRITE, self.now)

    def quantity_before_write(self, expected: int) -> int | None:
        if self.app.subscribed or self._read_because is not None:
            return None  # webhooks (or this cycle's own read) already told us
        if why_not_call(self.account, Call.READ_FOR_WRITE, self.now) is not None:
            return None  # the write itself will be refused by the same rule
        self._read(dynos=False, because="the read before a change (no webhooks)")
        state = self._known()
        found = state.quantity if state is not None else expected
        return found if found != expected else None

    def scale(self, quantity: int) -> int:
        self._calls += 1
        info = self.client.scale(app=self.pair.app_name, process_type=self.pair.process_type, quantity=quantity)
        formations.store_write(self.app, info, now=self.now)
        self._state = None
        return info.quantity

    def measure(self, *, since: datetime | None) -> Measured:
        state = self._known()
        boots = formations.boots_since(state, since) if state is not None else ()
        if self.pair.policy != "target_wait" or not self._cloudwatch_due():
            return Measured(boot_durations=boots)
        deleted: dict[float, float] = {}
        oldest: dict[float, float] = {}
        regions: dict[str, list[str]] = {}
        for queue, region in self.queues():
            regions.setdefault(region, []).append(queue)
        try:
            for region, queues in regions.items():
                points = cloudwatch_reader().queue_metrics(queues=queues, region=region, credentials=self.credentials,
                                                           end=self.now.timestamp())
                for minute, value in points.deleted_per_minute:
                    deleted[minute] = deleted.get(minute, 0.0) + value
                for minute, value in points.oldest_age_per_minute:
                    oldest[minute] = max(oldest.get(minute, 0.0), value)
        except AdapterError as exc:
            problem = (f"CloudWatch cannot be read ({exc.message}); the policy learns from the queue counts "
                       "meanwhile" if exc.permanent else None)
            return Measured(boot_durations=boots, cloudwatch_read=True, cloudwatch_problem=problem)
        return Measured(boot_durations=boots, deleted_per_minute=tuple(sorted(deleted.items())),
                        oldest_age_per_minute=tuple(sorted(oldest.items())), cloudwatch_read=True, cloudwatch_problem="")

    def _cloudwatch_due(self) -> bool:
        every = settings.CLOUDWATCH_SECONDS
        if not every:
            return False
        if self.pair.cloudwatch_problem:
            every = max(every, 3600)  # refused: ask again hourly, in case the permission was granted
        read_at = self.pair.cloudwatch_read_at
        return read_at is None or (self.now - read_at).total_seconds() >= every

    @property
    def rate_limit_remaining(self) -> int | None:
        return self._client.rate_limit_remaining if self._client is not None else None

    @property
    def heroku_calls(self) -> int:
        return self._calls

    @property
    def read_because(self) -> str | None:
        return self._read_because

    def _read(self, *, dynos: bool, because: str) -> None:
        try:
            self._calls += 1
            found = self.client.formation(app=self.pair.app_name)
            listed = None
            if dynos:
                self._calls += 1
                listed = self.client.dynos(app=self.pair.app_name)
        finally:
            HerokuApp.objects.filter(pk=self.app.pk).update(read_claimed_until=None)
        formations.store_read(self.app, formations=found, dynos=listed, now=self.now)
        self.app.refresh_from_db()
        self._state = None
        self._read_because = because

    def _no_such_process_type(self) -> AdapterError:
        return AdapterError("Heroku", f"app {self.pair.app_name!r} has no process type {self.pair.process_type!r} "
                            "in its formation", permanent=True, status=404)


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

    def read_process_state(self) -> ProcessState:
        return self.simulation.process_state()

    def why_not_write(self) -> str | None:
        return None

    def quantity_before_write(self, expected: int) -> int | None:
        return None

    def scale(self, quantity: int) -> int:
        return self.simulation.scale(quantity)

    def measure(self, *, since: datetime | None) -> Measured:
        return Measured()

    @property
    def rate_limit_remaining(self) -> int | None:
        return None

    @property
    def heroku_calls(self) -> int:
        return 0

    @property
    def read_because(self) -> str | None:
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
    yield HerokuSqsBackend(pair, now)


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
