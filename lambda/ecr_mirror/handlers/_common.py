"""What the three handlers share: settings, Powertools logger/metrics, lazily built clients."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from ..config import ENV_METRICS_NAMESPACE, DEFAULT_METRICS_NAMESPACE, Settings
from ..metrics import SERVICE

logger = Logger(service=SERVICE, level=os.environ.get("ECR_MIRROR_LOG_LEVEL", "INFO"))


def _quiet() -> None:
    from ..runtime import quiet_aws_loggers

    quiet_aws_loggers()  # botocore at DEBUG prints ECR tokens and secret strings


_quiet()
metrics = Metrics(namespace=os.environ.get(ENV_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE, service=SERVICE)


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def sqs() -> Any:
    from ..runtime import boto3_client

    return boto3_client("sqs")


@cache
def table() -> Any:
    from ..runtime import boto3_client
    from ..table import MirrorTable

    s = settings()
    return MirrorTable(boto3_client("dynamodb"), s.table)


def enqueue(row_ids: list[str]) -> int:
    """One SQS message per row id, sent in batches of 10. Returns how many were sent."""
    from ..errors import AwsError

    queue_url = settings().queue_url
    if not queue_url:
        raise AwsError("ECR_MIRROR_QUEUE_URL is not set")
    sent = 0
    for i in range(0, len(row_ids), 10):
        batch = row_ids[i : i + 10]
        entries = [{"Id": str(n), "MessageBody": json.dumps({"id": rid})} for n, rid in enumerate(batch)]
        answer = sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = answer.get("Failed") or []
        if failed:
            retry = [e for e in entries if e["Id"] in {f["Id"] for f in failed}]
            answer = sqs().send_message_batch(QueueUrl=queue_url, Entries=retry)
            if answer.get("Failed"):
                raise AwsError(f"sqs:SendMessageBatch failed for {len(answer['Failed'])} rows")
        sent += len(batch)
    return sent


def reset() -> None:
    """Forget the cached settings and clients (tests; a Lambda container never needs this)."""
    for fn in (settings, sqs, table):
        fn.cache_clear()
    from . import worker

    worker.syncer_factory.cache_clear()
