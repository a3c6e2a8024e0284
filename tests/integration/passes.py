"""A mirror deployment in one process, for counting what a pass costs: the three handlers invoked as Lambda
would (schedule -> SQS -> worker in batches of the stack's size), moto for DynamoDB and SQS, the ECR
stand-in for ECR (both faces), an upstream registry behind a counting proxy; and every DynamoDB and SQS
call of the handlers' clients counted through botocore's event hooks, every mirror-table stream record
read back from moto's DynamoDB Streams.

Used by the pass-cost, lease and migration tests and by ``bench/scale.py`` (the numbers of bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from demo.world import emf_totals
from ecr_mirror.handlers import _common, schedule, stream, worker
from ecr_mirror.store import MirrorTable, StateTable
from tests.support.proxy import RegistryProxy, RequestRecord, _Handler

#: the worker's batch size in the stack (infra/service.py WORKER_BATCH_SIZE)
WORKER_BATCH_SIZE = 10
#: DynamoDB operations that write, and how many writes one call makes
WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")


@dataclass
class Ctx:
    """What the Lambda runtime passes as ``context``."""

    remaining_ms: int = 600_000
    function_name: str = "ecr-mirror"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ecr-mirror"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Calls:
    """AWS calls counted per ``(table or service, operation)``; DynamoDB writes counted per item written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.writes: Counter[str] = Counter()
        self.params: list[tuple[str, dict[str, Any]]] = []

    def hook(self, client: Any) -> None:
        """Count every call ``client`` makes from now on."""
        client.meta.events.register("before-parameter-build", self._before)  # sees the call's own parameters

    def _before(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        op = model.name
        with self._lock:
            if model.service_model.service_name == "dynamodb":
                if op == "BatchWriteItem":
                    for table, requests in (params.get("RequestItems") or {}).items():
                        self.counts[(table, op)] += 1
                        self.writes[table] += len(requests)
                    return
                table = str(params.get("TableName", ""))
                self.counts[(table, op)] += 1
                if op in WRITE_OPS:
                    self.writes[table] += 1
            else:
                self.counts[(model.service_model.service_name, op)] += 1
            self.params.append((op, dict(params)))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.writes.clear()
            self.params.clear()

    def count(self, op: str, where: str | None = None) -> int:
        return sum(n for (w, o), n in self.counts.items() if o == op and (where is None or w == where))


@dataclass
class PassResult:
    """One pass: the schedule's answer, the worker invocations' answers and what they printed."""

    schedule: dict[str, Any]
    responses: list[dict[str, Any]]
    output: str
    messages: int

    @property
    def metrics(self) -> dict[str, float]:
        """Every EMF metric the pass printed, summed."""
        return emf_totals(self.output)

    @property
    def failures(self) -> list[str]:
        return [f["itemIdentifier"] for r in self.responses for f in r.get("batchItemFailures", [])]


class Deployment:
    """The handlers wired to one mirror table, state table and queue (names made unique per instance).

    ``env`` is applied to ``os.environ`` by :meth:`apply_env` (tests: through ``monkeypatch``; the bench
    sets it itself). ``ecr`` is an :class:`~tests.support.ecr.EcrStandIn` whose ECR API boto3 uses.
    """

    def __init__(self, ecr: Any, *, prefix: str = "mirror", docker_config: str = "") -> None:
        self.ecr = ecr
        self.table_name = "mirror-" + uuid.uuid4().hex[:8]
        self.state_name = self.table_name + "-state"
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName="q-" + uuid.uuid4().hex[:8])["QueueUrl"]
        self.env = {
            "ECR_MIRROR_TABLE": self.table_name,
            "ECR_MIRROR_STATE_TABLE": self.state_name,
            "ECR_MIRROR_QUEUE_URL": self.queue_url,
            "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
            "ECR_MIRROR_REPOSITORY_PREFIX": prefix,
        }
        if docker_config:
            self.env["DOCKER_CONFIG"] = docker_config
        self.calls = Calls()
        self.dynamodb = boto3.client("dynamodb")
        self.rows = MirrorTable(self.dynamodb, self.table_name, prefix=prefix)
        self.state = StateTable(self.dynamodb, self.state_name, rows=self.rows)
        self._shard_iterators: dict[str, str] = {}

    def apply_env(self, setenv: Any = None) -> None:
        for name, value in self.env.items():
            if setenv is not None:
                setenv(name, value)
            else:
                os.environ[name] = value
        _common.reset()

    def create_tables(self) -> None:
        self.rows.create()
        self.state.create()

    def put_row(self, item: Mapping[str, Any]) -> None:
        """A user's raw put-item of a row (plain Python, any DynamoDB client would do the same)."""
        boto3.resource("dynamodb").Table(self.table_name).put_item(Item=dict(item))

    # -- the handlers' clients, counted

    def fresh_containers(self) -> None:
        """Cold Lambda containers: every cached client dropped, the new ones counted."""
        _common.reset()
        for client in (_common.sqs(), _common.table()._client, _common.state()._client):
            self.calls.hook(client)

    # -- one pass

    def run_pass(self, *, audit: bool | None = None, ctx: Ctx | None = None, event: dict[str, Any] | None = None) -> PassResult:
        """The schedule handler, then every message to the worker handler in batches of
        :data:`WORKER_BATCH_SIZE` (each batch its own invocation), deleting what did not fail."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            answer = schedule.handler(event or ({"audit": True} if audit else {}), Ctx(function_name="schedule"))
            responses, messages = self.drain(ctx)
        return PassResult(answer, responses, out.getvalue(), messages)

    def receive_all(self) -> list[dict[str, Any]]:
        messages = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = got.get("Messages") or []
            if not batch:
                return messages
            messages.extend(batch)

    def drain(self, ctx: Ctx | None = None) -> tuple[list[dict[str, Any]], int]:
        messages = self.receive_all()
        responses = []
        for start in range(0, len(messages), WORKER_BATCH_SIZE):
            batch = messages[start : start + WORKER_BATCH_SIZE]
            responses.append(self.invoke_worker(batch, ctx))
        return responses, len(messages)

    def invoke_worker(self, messages: list[dict[str, Any]], ctx: Ctx | None = None) -> dict[str, Any]:
        records = [sqs_record(m) for m in messages]
        response = worker.handler({"Records": records}, ctx or Ctx(function_name="worker"))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:  # as Lambda's event source mapping does: delete what succeeded
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return response

    # -- rows waiting for an upstream's pull window (issue 15)

    def waiting(self) -> list[tuple[dict[str, Any], int]]:
        """``(body, DelaySeconds)`` of every message the handlers sent with a delay since :attr:`calls` was reset."""
        out = []
        for op, params in self.calls.params:
            if op == "SendMessageBatch":
                out += [(json.loads(e["MessageBody"]), e["DelaySeconds"]) for e in params["Entries"] if e.get("DelaySeconds")]
        return out

    def deliver_after_delay(self, bodies: list[dict[str, Any]], setattr: Callable[[Any, str, Any], None]) -> None:
        """SQS delivers delayed messages once their delay is over: the same ``bodies``, sent again visible, and the
        worker's clock (set with ``setattr``: a test's ``monkeypatch.setattr``) past their ``not_before``."""
        latest = max(float(b["not_before"]) for b in bodies)
        setattr(worker, "clock", lambda: latest + 1)
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))

    def invoke_stream(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return stream.handler({"Records": records}, Ctx(function_name="stream"))

    # -- the mirror table's stream (moto DynamoDB Streams)

    @contextlib.contextmanager
    def stream_records(self) -> Iterator[list[dict[str, Any]]]:
        """Collect the mirror table's stream records written inside the ``with`` block."""
        streams = boto3.client("dynamodbstreams")
        arn = self.dynamodb.describe_table(TableName=self.table_name)["Table"]["LatestStreamArn"]
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        iterators = [
            streams.get_shard_iterator(StreamArn=arn, ShardId=s["ShardId"], ShardIteratorType="LATEST")["ShardIterator"]
            for s in shards
        ]
        records: list[dict[str, Any]] = []
        yield records
        for iterator in iterators:
            while iterator:
                got = streams.get_records(ShardIterator=iterator)
                records.extend(got.get("Records") or [])
                if not got.get("Records"):
                    break
                iterator = got.get("NextShardIterator")


def sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS event record as Lambda hands it to the worker."""
    return {
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
    }


def stream_filter_passes(record: Mapping[str, Any], patterns: list[dict[str, Any]]) -> bool:
    """Whether a DynamoDB stream record matches any of the event source mapping's filter patterns (the
    subset of Lambda's event filtering syntax they use: value lists, ``exists``)."""

    def match(value: Any, pattern: Any, present: bool) -> bool:
        if isinstance(pattern, dict):
            if not isinstance(value, dict):
                return all(match(None, p, False) for p in pattern.values())
            return all(match(value.get(k), p, k in value) for k, p in pattern.items())
        for option in pattern:
            if isinstance(option, dict) and "exists" in option:
                if option["exists"] == present:
                    return True
            elif present and value == option:
                return True
        return False

    return any(match(record, p, True) for p in patterns)


class _OneAtATime(_Handler):
    def _serve(self, record: RequestRecord, fault: Any) -> None:
        with self.server.proxy.serial:  # type: ignore[attr-defined]
            self._forward(record, fault)


class AtomicWrites(RegistryProxy):
    """A proxy in front of moto that passes one request at a time (point ``AWS_ENDPOINT_URL_DYNAMODB`` at it).

    DynamoDB applies a conditional write atomically: of two PutItems conditional on the same version, one
    fails (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html,
    "Conditional writes"). moto's server handles requests on threads and checks a condition, then writes,
    with no lock between: two racing writes can both pass. Serialising the requests restores the
    guarantee the product relies on (the lease), for tests that race syncs.
    """

    handler_class = _OneAtATime

    def __init__(self, upstream: object) -> None:
        super().__init__(upstream)
        self.serial = threading.Lock()
