"""What the three handlers share: settings, Powertools logger and metrics, clients built once per container.

Clients are built lazily, on first use, and cached for the container's life (Lambda reuses it
across invocations); nothing here holds per-invocation state. Every log line leaves through a
:class:`~ecr_mirror.runtime.Redactor` that knows the registry client's secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from ..config import DEFAULT_LOG_LEVEL, DEFAULT_METRICS_NAMESPACE, ENV_LOG_LEVEL, ENV_METRICS_NAMESPACE, ENV_QUEUE_URL, Settings
from ..aws import aws_error
from ..errors import AwsError
from ..metrics import SERVICE
from ..runtime import Redactor, boto3_client, build_syncer, quiet_aws_loggers, redact_logs
from ..store import MirrorTable, StateTable
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
def state() -> StateTable:
    """The state table (what the service records), beside the mirror table."""
    return StateTable(boto3_client("dynamodb"), settings().state_table, rows=table())


@cache
def syncer() -> Syncer:
    """The worker's syncer (registry client, copier, ECR target); its secrets are redacted from logs."""
    built = build_syncer(settings(), state())
    redactor.watch(built.client.secrets)
    redact_logs(redactor, [logger.registered_handler])  # and root handlers added since import
    return built


#: SendMessageBatch calls of one enqueue in flight at once
SEND_CONCURRENCY = 4
#: SQS's longest message delay (DelaySeconds)
MAX_DELAY_SECONDS = 900


def enqueue(messages: Sequence[Mapping[str, Any]], *, delay_seconds: int = 0) -> int:
    """One SQS message per entry of ``messages`` (each a JSON body, ``{"id": <row id>, ...}``), sent with
    SendMessageBatch, 10 per call (its limit), :data:`SEND_CONCURRENCY` calls at once: ``ceil(n/10)``
    calls for ``n`` messages, plus one for any batch with failed entries (those are sent once more).
    ``delay_seconds`` (0-900, SQS's range): each message becomes visible that much later.
    Returns how many were sent; raises :class:`AwsError`."""
    queue_url = settings().queue_url
    if not queue_url:
        raise AwsError(f"{ENV_QUEUE_URL} is not set")
    client = sqs()

    def send(batch: Sequence[Mapping[str, Any]]) -> int:
        entries = [{"Id": str(n), "MessageBody": json.dumps(body)} for n, body in enumerate(batch)]
        if delay_seconds:
            for entry in entries:
                entry["DelaySeconds"] = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        try:
            answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = answer.get("Failed") or []
            if failed:
                retry = [e for e in entries if e["Id"] in {f["Id"] for f in failed}]
                answer = client.send_message_batch(QueueUrl=queue_url, Entries=retry)
        except Exception as exc:  # botocore errors
            raise aws_error(exc, "sqs:SendMessageBatch") from exc
        if answer.get("Failed"):
            raise AwsError(f"sqs:SendMessageBatch failed for {len(answer['Failed'])} rows")
        return len(batch)

    batches = [messages[i : i + 10] for i in range(0, len(messages), 10)]
    if len(batches) <= 1:
        return sum(send(b) for b in batches)
    with ThreadPoolExecutor(min(SEND_CONCURRENCY, len(batches)), thread_name_prefix="send") as pool:
        return sum(pool.map(send, batches))


def reset() -> None:
    """Forget the cached settings and clients (tests; a Lambda container never needs this)."""
    for fn in (settings, sqs, table, state, syncer):
        fn.cache_clear()
