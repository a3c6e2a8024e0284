"""What the three handlers share: settings, Powertools logger and metrics, clients built once per container.

Clients are built lazily, on first use, and cached for the container's life (Lambda reuses it
across invocations); nothing here holds per-invocation state. Every log line leaves through a
:class:`~ecr_mirror.runtime.Redactor` that knows the registry client's secrets.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from ..config import DEFAULT_LOG_LEVEL, DEFAULT_METRICS_NAMESPACE, ENV_LOG_LEVEL, ENV_METRICS_NAMESPACE, ENV_QUEUE_URL, Settings
from ..errors import AwsError
from ..metrics import SERVICE
from ..runtime import Redactor, boto3_client, build_syncer, quiet_aws_loggers, redact_logs
from ..store import MirrorTable
from ..sync import Syncer

# read before Settings: a logger must exist even when the rest of the configuration is bad
logger = Logger(service=SERVICE, level=os.environ.get(ENV_LOG_LEVEL) or DEFAULT_LOG_LEVEL)
metrics = Metrics(namespace=os.environ.get(ENV_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE, service=SERVICE)
redactor = Redactor()
quiet_aws_loggers()  # botocore at DEBUG prints ECR tokens and secret strings
redact_logs(redactor, [logger.registered_handler])


@cache
def settings() -> Settings:
    """The ``ECR_MIRROR_*`` settings (raises :class:`~ecr_mirror.errors.ConfigError`)."""
    return Settings.from_env()


@cache
def sqs() -> Any:
    """The SQS client."""
    return boto3_client("sqs")


@cache
def table() -> MirrorTable:
    """The mirror table."""
    return MirrorTable(boto3_client("dynamodb"), settings().table)


@cache
def syncer() -> Syncer:
    """The worker's syncer (registry client, copier, ECR target); its secrets are redacted from logs."""
    built = build_syncer(settings(), table())
    redactor.watch(built.client.secrets)
    redact_logs(redactor, [logger.registered_handler])  # and root handlers added since import
    return built


def enqueue(row_ids: list[str]) -> int:
    """One SQS message ``{"id": <row id>}`` per row id, sent in batches of 10 (SendMessageBatch's limit),
    each failed entry sent once more. Returns how many were sent; raises :class:`AwsError`."""
    queue_url = settings().queue_url
    if not queue_url:
        raise AwsError(f"{ENV_QUEUE_URL} is not set")
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
    for fn in (settings, sqs, table, syncer):
        fn.cache_clear()
