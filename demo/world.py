"""The demo's little world: moto, an upstream registry, a counting proxy, the ECR stand-in, and the Lambda-style plumbing.

Everything started here is registered with one :class:`contextlib.ExitStack` *before* it starts, so
a normal exit, a failed check, an exception, Ctrl-C (SIGINT) or SIGTERM/SIGHUP stops every process
and removes every temp dir. Nothing listens on anything but 127.0.0.1.

- ``moto_server``: the AWS APIs other than ECR (DynamoDB, SQS, Secrets Manager).
- ``upstream``: a ``docker-registry`` playing Docker Hub, reached only through a counting proxy
  (:class:`tests.support.proxy.RegistryProxy`), so the demo can prove which requests a sync made.
- ``ecr``: the ECR stand-in (:class:`tests.support.ecr.EcrStandIn`): ECR's API (boto3's ``ecr``
  client goes there, ``AWS_ENDPOINT_URL_ECR``) and its registry face, with ECR's rules (Basic
  ``AWS:<password>`` from its own GetAuthorizationToken, no push into a repository the API did not
  create, PutImage throttling, blob GETs redirected to a layer bucket), over one store; it counts
  every request in ECR's terms.

The handlers are invoked in this process, as the Lambda runtime would: an event, a context object
with a real deadline, and stdout captured (Powertools writes its JSON logs and EMF metrics there).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ecr_mirror import config  # noqa: E402 - the names only; the package reads the environment later
from tests.support.ecr import EcrStandIn  # noqa: E402
from tests.support.moto import MotoServer, boto3_env  # noqa: E402
from tests.support.proxy import RegistryProxy  # noqa: E402
from tests.support.registry import RegistryProcess  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
TABLE = "ecr-mirror-demo"
QUEUE = "ecr-mirror-demo-work"
PREFIX = "mirror"
#: messages per worker invocation: what the stack configures (infra/service.py WORKER_BATCH_SIZE)
WORKER_BATCH_SIZE = 1
WORKER_TIMEOUT_SECONDS = 900  # the stack's default worker timeout (cdk.json workerTimeoutSeconds)


# ---------------------------------------------------------------------------- interruption


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, turned into an exception so that every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP raise :class:`Interrupted`; SIGINT keeps raising KeyboardInterrupt."""

    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)


# ---------------------------------------------------------------------------- stdout capture


class StdoutSwitch(io.TextIOBase):
    """Installed as ``sys.stdout`` before the handlers are imported.

    Powertools binds its log stream to ``sys.stdout`` when the Logger is created, and prints EMF
    metrics with ``print``; routing both through this object lets the demo capture one
    invocation's output (what CloudWatch Logs would receive) and show a digest of it instead.
    The capture is process-wide, since the worker's thread pools log too.
    """

    def __init__(self, real: Any) -> None:
        super().__init__()
        self.real = real
        self._buffer: io.StringIO | None = None

    @contextlib.contextmanager
    def capture(self) -> Iterator[io.StringIO]:
        buffer, previous = io.StringIO(), self._buffer
        self._buffer = buffer
        try:
            yield buffer
        finally:
            self._buffer = previous

    def _target(self) -> Any:
        return self._buffer if self._buffer is not None else self.real

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", None) or "utf-8"


# ---------------------------------------------------------------------------- Lambda plumbing


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the attributes Powertools and the worker read)."""

    function_name: str
    timeout_seconds: int = WORKER_TIMEOUT_SECONDS
    memory_limit_in_mb: int = 2048
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))


@dataclass
class Invocation:
    function: str
    result: Any
    output: str
    seconds: float

    @property
    def metrics(self) -> dict[str, float]:
        return emf_totals(self.output)

    @property
    def logs(self) -> list[dict[str, Any]]:
        return structured_logs(self.output)


def emf_totals(output: str) -> dict[str, float]:
    """Sum of every EMF metric in ``output`` (Powertools prints one JSON object per flush)."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return totals


def structured_logs(output: str) -> list[dict[str, Any]]:
    """The Powertools JSON log records in ``output`` (not the EMF documents)."""
    records = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "level" in doc and "message" in doc:
            records.append(doc)
    return records


@dataclass
class SyncRun:
    """One scheduled run: the schedule invocation and every worker invocation it caused."""

    schedule: Invocation
    workers: list[Invocation]
    messages: int
    failures: list[str]

    @property
    def metrics(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for inv in [self.schedule, *self.workers]:
            for name, value in inv.metrics.items():
                totals[name] = totals.get(name, 0) + value
        return totals

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [rec for inv in self.workers for rec in inv.logs]

    @property
    def seconds(self) -> float:
        return self.schedule.seconds + sum(w.seconds for w in self.workers)


# ---------------------------------------------------------------------------- the world


class World:
    """Start with :meth:`start`; :meth:`close` (or the ``with`` block) stops everything."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.tmp: Path | None = None
        self.moto = MotoServer()
        self.upstream = RegistryProcess(storage="memory")
        self.ecr: EcrStandIn | None = None
        self.proxy: RegistryProxy | None = None
        self.stdout: StdoutSwitch | None = None
        self.queue_url = ""
        self.queue_arn = ""
        self.handlers: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # shield the clean-up from a second Ctrl-C/SIGTERM: stopping takes well under a second
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self._stack.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start_processes(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ecr-mirror-demo-"))
        self._stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        self._stack.callback(self.moto.stop)
        self.moto.start()
        self._stack.callback(self.upstream.stop)
        self.upstream.start()
        self.ecr = EcrStandIn(storage="memory", region=REGION, registry_id=ACCOUNT)
        self._stack.callback(self.ecr.stop)
        self.ecr.start()
        self.proxy = RegistryProxy(self.upstream)
        self._stack.callback(self.proxy.stop)
        self.proxy.start()

    def configure_environment(self) -> None:
        """Point boto3 at moto and the product at the stand-ins; nothing of the user's leaks in."""
        assert self.tmp is not None and self.ecr is not None
        for name in list(os.environ):
            if name.startswith(("ECR_MIRROR_", "POWERTOOLS_", "AWS_ENDPOINT_URL")) or name in (
                "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_DEFAULT_PROFILE",
            ):
                del os.environ[name]
        (self.tmp / "docker").mkdir()
        os.environ.update(boto3_env(self.moto.url, REGION))
        os.environ.update(self.ecr.env)  # boto3's ecr client (only it) goes to the ECR stand-in
        os.environ.update({
            # no ~/.aws or ~/.docker of the user's: the demo talks only to its own stand-ins
            "AWS_CONFIG_FILE": str(self.tmp / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.tmp / "no-aws-credentials"),
            "DOCKER_CONFIG": str(self.tmp / "docker"),
            config.ENV_TABLE: TABLE,
            config.ENV_REPOSITORY_PREFIX: PREFIX,
            config.ENV_TARGET_REGISTRY: self.ecr.host,
            config.ENV_LOG_LEVEL: "INFO",
        })

    def create_queue(self) -> None:
        sqs = self.moto.client("sqs", REGION)
        dlq = sqs.create_queue(QueueName=QUEUE + "-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_url = sqs.create_queue(QueueName=QUEUE, Attributes={
            "VisibilityTimeout": str(6 * WORKER_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        })["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        os.environ[config.ENV_QUEUE_URL] = self.queue_url

    def load_handlers(self) -> Any:
        """Import the three handler modules (after the environment is set), stdout routed through a switch."""
        self.stdout = StdoutSwitch(sys.stdout)
        sys.stdout = self.stdout
        self._stack.callback(setattr, sys, "stdout", self.stdout.real)
        # the product's own (non-Powertools) loggers: warnings and up, into the same captured stream
        handler = logging.StreamHandler(self.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("ecr_mirror").addHandler(handler)
        logging.getLogger("ecr_mirror").setLevel(logging.WARNING)
        from ecr_mirror.handlers import _common, schedule, stream, worker

        self.handlers = type("Handlers", (), {"common": _common, "schedule": schedule, "stream": stream, "worker": worker})
        _common.reset()
        return self.handlers

    # -- Lambda-style invocations -------------------------------------------------------------

    def invoke(self, function: str, handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any]) -> Invocation:
        assert self.stdout is not None
        context = LambdaContext(function)
        started = time.perf_counter()
        with self.stdout.capture() as buffer:
            result = handler(event, context)
        return Invocation(function, result, buffer.getvalue(), time.perf_counter() - started)

    def scheduled_event(self) -> dict[str, Any]:
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/EcrMirror-Schedule"], "detail": {},
        }

    def _sqs_record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
            "attributes": message.get("Attributes") or {"ApproximateReceiveCount": "1"},
            "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn, "awsRegion": REGION,
        }

    def sync_run(self, *, fresh_containers: bool = True) -> SyncRun:
        """EventBridge -> schedule handler -> SQS -> worker handler, as the deployed stack runs it.

        Messages are handed to the worker in batches of :data:`WORKER_BATCH_SIZE`; as Lambda's SQS
        event source does, a message is deleted only when the worker did not report it failed.
        ``fresh_containers`` drops every cached client first (a cold start: nothing remembered).
        """
        h = self.handlers
        if fresh_containers:
            h.common.reset()
        schedule = self.invoke("ecr-mirror-schedule", h.schedule.handler, self.scheduled_event())
        sqs = self.moto.client("sqs", REGION)
        messages: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      MessageSystemAttributeNames=["All"])
            batch = got.get("Messages") or []
            if not batch:
                break
            messages.extend(batch)
        workers: list[Invocation] = []
        failures: list[str] = []
        for start in range(0, len(messages), WORKER_BATCH_SIZE):
            batch = messages[start : start + WORKER_BATCH_SIZE]
            inv = self.invoke("ecr-mirror-worker", h.worker.handler, {"Records": [self._sqs_record(m) for m in batch]})
            workers.append(inv)
            failed = {f["itemIdentifier"] for f in (inv.result or {}).get("batchItemFailures", [])}
            for m in batch:
                if m["MessageId"] in failed:
                    failures.append(json.loads(m["Body"]).get("id", "?"))
                else:
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return SyncRun(schedule, workers, len(messages), failures)

    # -- the CLI, as a user runs it --------------------------------------------------------------

    def cli(self, *args: str, color: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``ecr-mirror ARGS`` in a child process with the demo's environment."""
        env = dict(os.environ)
        if color:
            env["FORCE_COLOR"] = "1"
        env.setdefault("COLUMNS", "160")
        argv = [*ecr_mirror_command(), *args]
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except BaseException:  # timeout, Ctrl-C, SIGTERM: the child goes too, and is reaped
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def cli_json(*args: str) -> Any:
    """``ecr-mirror ARGS`` (a ``--json`` command) run in this process through the same click command;
    for the demo's own checks, where a child process per query would only cost time."""
    from click.testing import CliRunner

    from ecr_mirror.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"ecr-mirror {' '.join(args)} exited {result.exit_code}: {result.output}")
    return json.loads(result.stdout)


def ecr_mirror_command() -> Sequence[str]:
    """The installed console script next to this interpreter, else ``python -m ecr_mirror.cli``."""
    script = Path(sys.executable).parent / "ecr-mirror"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "ecr_mirror.cli"]
