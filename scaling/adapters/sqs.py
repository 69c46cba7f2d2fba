"""SQS: how many messages a queue holds.

boto3 reads its own configuration: the default credential chain (IAM roles, AWS_PROFILE)
when a pair's AWS account says so, and ``AWS_ENDPOINT_URL_SQS`` for a local endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import botocore.exceptions

from scaling.adapters.aws import AwsCredentials, ClientCache, error_parts, secrets_of
from scaling.adapters.errors import AdapterError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SYSTEM = "SQS"

# Error codes after which retrying with the same settings cannot help.
_PERMANENT_CODES = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAddress",
    "InvalidParameterValue",
    "InvalidSecurity",
    "AuthFailure",
}
_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int

    def __add__(self, other: QueueCounts) -> QueueCounts:
        return QueueCounts(
            self.visible + other.visible,
            self.in_flight + other.in_flight,
            self.delayed + other.delayed,
        )


class SqsReader:
    """Reads queue attributes. One instance is shared by a worker process.

    Clients and resolved queue URLs are cached: building a boto3 client costs tens of
    milliseconds and a GetQueueUrl per cycle is a wasted round trip.
    """

    def __init__(self, *, timeout_seconds: float = 10.0) -> None:
        self._clients = ClientCache("sqs", timeout_seconds=timeout_seconds)
        self._urls: dict[tuple[str, AwsCredentials | None, str], str] = {}

    def counts(
        self, *, queue: str, region: str, credentials: AwsCredentials | None
    ) -> QueueCounts:
        secrets = secrets_of(credentials)
        try:
            client: SQSClient = self._clients.client(region, credentials)
            url = self._queue_url(client, queue, region, credentials)
            response = client.get_queue_attributes(QueueUrl=url, AttributeNames=_ATTRIBUTES)  # type: ignore[arg-type]
        except botocore.exceptions.ClientError as exc:
            raise _client_error(exc, queue, region, secrets) from None
        except botocore.exceptions.NoCredentialsError:
            raise AdapterError(
                SYSTEM, "no AWS credentials found (set a key pair or configure the default chain)", permanent=True
            ) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise AdapterError(SYSTEM, f"{type(exc).__name__} reading {queue}: {exc}", permanent=False, secrets=secrets) from None
        attrs = response.get("Attributes", {})
        try:
            return QueueCounts(
                visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
                in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
            )
        except ValueError:
            raise AdapterError(SYSTEM, f"unreadable attributes for {queue}", permanent=False) from None

    def _queue_url(
        self, client: SQSClient, queue: str, region: str, credentials: AwsCredentials | None
    ) -> str:
        if queue.startswith(("https://", "http://")):
            return queue
        key = (region, credentials, queue)
        url = self._urls.get(key)
        if url is None:
            url = client.get_queue_url(QueueName=queue)["QueueUrl"]
            self._urls[key] = url
        return url


def _client_error(exc: botocore.exceptions.ClientError, queue: str, region: str, secrets: tuple[str, ...]) -> AdapterError:
    code, status, message = error_parts(exc)
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        message = f"queue {queue!r} does not exist in {region} for these credentials"
    permanent = code in _PERMANENT_CODES or status in (400, 403, 404)
    if code in ("Throttling", "ThrottlingException", "RequestThrottled", "OverLimit"):
        permanent = False
    return AdapterError(SYSTEM, f"{code}: {message}", permanent=permanent, status=status, secrets=secrets)
