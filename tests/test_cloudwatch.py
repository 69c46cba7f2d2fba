"""The CloudWatch adapter against a real moto_server holding SQS's metrics, published by
the test the way AWS publishes them: one point a minute per queue in ``AWS/SQS``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests

from scaling.adapters.cloudwatch import CloudWatchReader, queue_name
from scaling.adapters.errors import AdapterError
from scaling.adapters.aws import AwsCredentials
from tests.conftest import AWS_KEY, AWS_SECRET, REGION, free_port

CREDENTIALS = AwsCredentials(AWS_KEY, AWS_SECRET)
END = 1_767_600_000.0  # a whole minute; the reader asks for the minutes before it


@pytest.fixture
def cloudwatch(moto_url: str) -> Iterator[Any]:
    """A boto3 CloudWatch client on the suite's freshly reset moto_server; the adapter
    finds the same server through AWS_ENDPOINT_URL_CLOUDWATCH."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    before = os.environ.get("AWS_ENDPOINT_URL_CLOUDWATCH")
    os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = moto_url
    yield boto3.client("cloudwatch", region_name=REGION, aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET)
    if before is None:
        os.environ.pop("AWS_ENDPOINT_URL_CLOUDWATCH", None)
    else:
        os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = before


def publish(client: Any, queue: str, metric: str, minute: float, value: float) -> None:
    client.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": metric, "Dimensions": [{"Name": "QueueName", "Value": queue}],
        "Timestamp": datetime.fromtimestamp(minute, tz=UTC), "Value": value,
        "Unit": "Seconds" if metric == "ApproximateAgeOfOldestMessage" else "Count",
    }])


def test_deletes_are_added_up_and_the_oldest_age_is_the_largest_over_a_pairs_queues(cloudwatch: Any) -> None:
    for i, (orders, refunds) in enumerate([(120, 30), (90, 10), (0, 5)]):
        minute = END - (3 - i) * 60
        publish(cloudwatch, "orders", "NumberOfMessagesDeleted", minute, orders)
        publish(cloudwatch, "refunds", "NumberOfMessagesDeleted", minute, refunds)
        publish(cloudwatch, "orders", "ApproximateAgeOfOldestMessage", minute, 40 + i)
        publish(cloudwatch, "refunds", "ApproximateAgeOfOldestMessage", minute, 70 - 20 * i)
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/refunds"
    metrics = CloudWatchReader().queue_metrics(queues=["orders", url], region=REGION, credentials=CREDENTIALS, end=END)
    assert metrics.deleted_per_minute == ((END - 180, 150.0), (END - 120, 100.0), (END - 60, 5.0))
    assert metrics.oldest_age_per_minute == ((END - 180, 70.0), (END - 120, 50.0), (END - 60, 42.0))


def test_only_whole_minutes_of_the_window_are_read(cloudwatch: Any) -> None:
    publish(cloudwatch, "orders", "NumberOfMessagesDeleted", END - 20 * 60, 999)  # older than ten minutes
    publish(cloudwatch, "orders", "NumberOfMessagesDeleted", END - 60, 7)
    publish(cloudwatch, "orders", "NumberOfMessagesDeleted", END, 555)  # the minute under way
    metrics = CloudWatchReader().queue_metrics(queues=["orders"], region=REGION, credentials=CREDENTIALS, end=END + 30)
    assert metrics.deleted_per_minute == ((END - 60, 7.0),)
    assert metrics.oldest_age_per_minute == ()


def test_a_queue_url_is_named_as_cloudwatch_names_it() -> None:
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo") == "jobs.fifo"
    assert queue_name("jobs") == "jobs"


def test_an_unreachable_endpoint_is_a_passing_failure(cloudwatch: Any) -> None:
    os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AdapterError) as caught:
        CloudWatchReader(timeout_seconds=1).queue_metrics(queues=["orders"], region=REGION, credentials=CREDENTIALS, end=END)
    assert caught.value.system == "CloudWatch" and not caught.value.permanent


def test_no_permission_to_read_metrics_is_permanent_so_the_pair_learns_from_counts(moto_with_iam: str, cloudwatch: Any) -> None:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_with_iam, aws_access_key_id=AWS_KEY,
                       aws_secret_access_key=AWS_SECRET)
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = moto_with_iam
    with pytest.raises(AdapterError) as caught:
        CloudWatchReader().queue_metrics(queues=["orders"], region=REGION,
                                         credentials=AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"]), end=END)
    assert caught.value.permanent and caught.value.status == 403 and "AccessDenied" in caught.value.message
    assert "cloudwatch:GetMetricData" in caught.value.message and "<?xml" not in caught.value.message
    assert key["SecretAccessKey"] not in str(caught.value)
