"""CloudWatch: what SQS publishes about a queue every minute.

Two metrics of the ``AWS/SQS`` namespace (dimension ``QueueName``), read with one
``GetMetricData`` call for all of a pair's queues: ``NumberOfMessagesDeleted`` (Sum per
minute, added up over the queues) and ``ApproximateAgeOfOldestMessage`` (Maximum per
minute, the largest over the queues). AWS publishes them a minute or two late; the policy
reads each minute once however often it is passed, so asking for the last ten minutes
every time is harmless.

Reading needs ``cloudwatch:GetMetricData``. Without it the error is permanent, and the
caller falls back to learning from the counts alone. boto3 reads its own configuration:
the default credential chain when a pair's AWS account says so, and
``AWS_ENDPOINT_URL_CLOUDWATCH`` for a local endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions

from scaling.adapters.aws import AwsCredentials, ClientCache, error_parts, secrets_of
from scaling.adapters.errors import AdapterError

SYSTEM = "CloudWatch"
NAMESPACE = "AWS/SQS"
DELETED = "NumberOfMessagesDeleted"
OLDEST = "ApproximateAgeOfOldestMessage"

# After these, asking again unchanged cannot help (for AccessDenied: the role may not read
# metrics, so the pair learns from the counts).
_PERMANENT_CODES = {
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
    "UnrecognizedClientException", "SignatureDoesNotMatch", "AuthFailure", "InvalidParameterValue",
    "InvalidParameterCombination", "MissingParameter",
}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestThrottled", "LimitExceeded", "LimitExceededException"}


@dataclass(frozen=True)
class QueueMetrics:
    """Per-minute points, (minute start in epoch seconds, value), oldest first."""

    deleted_per_minute: tuple[tuple[float, float], ...]
    oldest_age_per_minute: tuple[tuple[float, float], ...]


def queue_name(queue: str) -> str:
    """CloudWatch names a queue by its name; a pair may hold its URL."""
    return queue.rstrip("/").rsplit("/", 1)[-1]


class CloudWatchReader:
    """Reads SQS's per-minute metrics. One instance is shared by a worker process; its
    boto3 clients are cached (building one costs tens of milliseconds)."""

    def __init__(self, *, timeout_seconds: float = 10.0) -> None:
        self._clients = ClientCache("cloudwatch", timeout_seconds=timeout_seconds)

    def queue_metrics(self, *, queues: Sequence[str], region: str, credentials: AwsCredentials | None,
                      end: float, minutes: int = 10) -> QueueMetrics:
        """The last ``minutes`` whole minutes before ``end`` (epoch seconds)."""
        names = [queue_name(q) for q in queues]
        stop = int(end // 60 * 60)
        queries = []
        for i, name in enumerate(names):
            for prefix, metric, stat in (("d", DELETED, "Sum"), ("a", OLDEST, "Maximum")):
                queries.append({
                    "Id": f"{prefix}{i}",
                    "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                                              "Dimensions": [{"Name": "QueueName", "Value": name}]},
                                   "Period": 60, "Stat": stat},
                    "ReturnData": True,
                })
        deleted: dict[float, float] = {}
        oldest: dict[float, float] = {}
        try:
            client = self._clients.client(region, credentials)
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "MetricDataQueries": queries, "ScanBy": "TimestampAscending",
                    "StartTime": datetime.fromtimestamp(stop - minutes * 60, tz=UTC),
                    "EndTime": datetime.fromtimestamp(stop, tz=UTC),
                }
                if token:
                    kwargs["NextToken"] = token
                response = client.get_metric_data(**kwargs)
                for series in response.get("MetricDataResults", []):
                    into, combine = (deleted, _add) if series["Id"].startswith("d") else (oldest, max)
                    for stamp, value in zip(series.get("Timestamps", []), series.get("Values", [])):
                        minute = float(int(stamp.timestamp()) // 60 * 60)
                        into[minute] = combine(into[minute], float(value)) if minute in into else float(value)
                token = response.get("NextToken")
                if not token:
                    break
        except botocore.exceptions.ClientError as exc:
            raise _client_error(exc, secrets_of(credentials)) from None
        except botocore.exceptions.NoCredentialsError:
            raise AdapterError(SYSTEM, "no AWS credentials found (set a key pair or configure the default chain)",
                               permanent=True) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise AdapterError(SYSTEM, f"{type(exc).__name__} reading metrics: {exc}", permanent=False,
                               secrets=secrets_of(credentials)) from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise AdapterError(SYSTEM, "unreadable GetMetricData answer", permanent=False) from None
        return QueueMetrics(tuple(sorted(deleted.items())), tuple(sorted(oldest.items())))


def _add(a: float, b: float) -> float:
    return a + b


def _client_error(exc: botocore.exceptions.ClientError, secrets: tuple[str, ...]) -> AdapterError:
    code, status, message = error_parts(exc)
    # moto answers a refused call in XML whatever protocol the client speaks, so botocore
    # finds no code in it and reports the status; AWS sends the code. Both are a refusal.
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") or status == 403:
        code = "AccessDenied" if status == 403 else code
        message = "not allowed to read metrics (grant cloudwatch:GetMetricData); learning from the queue counts instead"
    permanent = code not in _THROTTLED and (code in _PERMANENT_CODES or status in (400, 401, 403, 404))
    return AdapterError(SYSTEM, f"{code}: {message}", permanent=permanent, status=status, secrets=secrets)
