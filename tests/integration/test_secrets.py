"""Secrets never leak: a run that used known fake secrets, every output scanned for them.

The secrets:

- upstream credentials from a Docker config file (``$DOCKER_CONFIG/config.json``, the ``auth`` form);
- upstream credentials from a Secrets Manager secret in moto (``ECR_MIRROR_CREDENTIALS_SECRET``),
  used against a bearer-token registry, so the bearer tokens it issues are secrets too;
- a wrong password for a third registry (it must not show up in the error it causes);
- every ECR authorization token the ECR stand-in (tests/support/ecr) issued, and the password inside it.

The outputs: stdout and stderr of ``ecr-mirror copy`` (plain and ``--json``), ``sync`` (plain and
``--json``), ``status`` (plain and ``--json``) and ``list --json``, each a separate process; the
worker Lambda handler's stdout (Powertools JSON logs and EMF metrics) and every log record at DEBUG
level while it ran; the raw items of the mirror table in DynamoDB.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from ecr_mirror.runtime import boto3_client
from ecr_mirror.store import MirrorTable
from tests.support import images as im

ECR_MIRROR = str(Path(sys.executable).with_name("ecr-mirror"))

DOCKER_USER, DOCKER_SECRET = "dcfg-user", "dcfg-S3cret-4b1d9e"
SM_USER, SM_SECRET = "smgr-user", "smgr-S3cret-77aa01"
WRONG_USER, RIGHT_PASSWORD, WRONG_SECRET = "c-user", "c-right-pw-51e2", "wrong-S3cret-c0ffee"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


@dataclass
class Run:
    what: str
    code: int
    out: str
    err: str


@pytest.fixture
def world(monkeypatch, tmp_path, ecr, registry_factory, proxy_factory):
    """Three upstreams (Docker-config creds, Secrets Manager creds behind a bearer realm, wrong creds),
    ECR = the ``ecr`` stand-in (its own tokens), a mirror table, and the environment that ties them together."""
    docker_up = registry_factory(htpasswd={DOCKER_USER: DOCKER_SECRET})
    sm_up = registry_factory()
    sm_front = proxy_factory(sm_up, credentials=(SM_USER, SM_SECRET))
    wrong_up = registry_factory(htpasswd={WRONG_USER: RIGHT_PASSWORD})
    index = im.build_index([im.build_image("linux/amd64", seed=31, layer_size=4_000),
                            im.build_image("linux/arm64/v8", seed=31, layer_size=4_000)])
    im.push_index(docker_up, "team/app", index, "v1", auth=docker_up.auth)
    im.push_index(sm_up, "team/app", index, "v1")
    im.push_index(wrong_up, "team/app", index, "v1", auth=wrong_up.auth)

    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        docker_up.host: {"auth": b64(f"{DOCKER_USER}:{DOCKER_SECRET}")},
        wrong_up.host: {"auth": b64(f"{WRONG_USER}:{WRONG_SECRET}")},
    }}))
    secret_name = "ecr-mirror/upstream-" + uuid.uuid4().hex[:6]
    boto3.client("secretsmanager").create_secret(
        Name=secret_name, SecretString=json.dumps({sm_front.host: {"username": SM_USER, "password": SM_SECRET}}))
    table_name = "mirror-" + uuid.uuid4().hex[:8]
    env = {
        "DOCKER_CONFIG": str(tmp_path),
        "ECR_MIRROR_TABLE": table_name,
        "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
        "ECR_MIRROR_CREDENTIALS_SECRET": secret_name,
        "ECR_MIRROR_LOG_LEVEL": "DEBUG",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    table = MirrorTable(boto3_client("dynamodb"), table_name)
    table.create()
    rows = [
        {"id": "docker-config", "source": f"{docker_up.host}/team/app", "tags": ["v1"], "target_repository": "mirror/dc"},
        {"id": "secrets-manager", "source": f"{sm_front.host}/team/app", "tags": ["v1", "missing"],
         "target_repository": "mirror/sm"},
        {"id": "wrong-password", "source": f"{wrong_up.host}/team/app", "tags": ["v1"], "target_repository": "mirror/wrong"},
    ]
    items = boto3.resource("dynamodb").Table(table_name)
    for row in rows:
        items.put_item(Item=row)

    secrets = {
        "docker config password": DOCKER_SECRET,
        "docker config auth": b64(f"{DOCKER_USER}:{DOCKER_SECRET}"),
        "secrets manager password": SM_SECRET,
        "secrets manager basic": b64(f"{SM_USER}:{SM_SECRET}"),
        "wrong password": WRONG_SECRET,
        "wrong basic": b64(f"{WRONG_USER}:{WRONG_SECRET}"),
    }

    class World:
        pass

    w = World()
    w.sm_up = sm_up
    w.docker_up, w.sm_front, w.wrong_up, w.ecr, w.index, w.rows = docker_up, sm_front, wrong_up, ecr, index, rows
    w.table, w.table_name, w.secrets, w.runs = table, table_name, secrets, []

    def cli(*args: str) -> Run:
        proc = subprocess.run([ECR_MIRROR, *args], env=dict(os.environ), capture_output=True, text=True, timeout=120)
        run = Run("ecr-mirror " + " ".join(args), proc.returncode, proc.stdout, proc.stderr)
        w.runs.append(run)
        return run

    def all_secrets() -> dict[str, str]:
        """The fixed secrets, plus every bearer token the Secrets Manager registry issued and every ECR
        password (and the authorization token carrying it: base64 ``AWS:<password>``) the stand-in issued."""
        found = {**secrets, **{f"bearer token {i}": t.token for i, t in enumerate(sm_front.tokens)}}
        for i, password in enumerate(ecr.passwords):
            assert len(password) >= 8
            found[f"ecr password {i}"] = password
            found[f"ecr authorization token {i}"] = b64(f"AWS:{password}")
        return found

    w.cli, w.all_secrets = cli, all_secrets
    return w


def test_no_output_of_a_run_with_secrets_contains_them(world):
    w = world
    # ------------------------------------------------ copy: Docker config credentials -> ECR token
    plain = w.cli("copy", f"{w.docker_up.host}/team/app:v1", f"{w.ecr.host}/mirror/dc:copied")
    assert plain.code == 0, plain.err
    assert plain.out.strip() == w.index.digest
    as_json = w.cli("copy", "--json", f"{w.docker_up.host}/team/app:v1", f"{w.ecr.host}/mirror/dc:copied-json")
    assert as_json.code == 0, as_json.err
    report = json.loads(as_json.out)
    assert report["digest"] == w.index.digest and report["requests"]
    failed = w.cli("copy", f"{w.wrong_up.host}/team/app:v1", f"{w.ecr.host}/mirror/wrong:v1")
    assert failed.code == 1 and "refused our credentials" in failed.err and "Traceback" not in failed.err
    # ------------------------------------------------ sync, status, list: + the Secrets Manager secret
    synced = w.cli("sync", "--json")
    assert synced.code == 1, synced.err  # two tags fail (missing, wrong password); the rest syncs
    states = {(r["id"], r["tag"]): r for r in json.loads(synced.out)}
    assert states[("docker-config", "v1")]["state"] == "in_sync"
    assert states[("secrets-manager", "v1")]["state"] == "in_sync"
    assert states[("secrets-manager", "missing")]["state"] == "failed"
    assert states[("wrong-password", "v1")]["state"] == "failed"
    assert "refused our credentials" in states[("wrong-password", "v1")]["error"]
    assert len(w.sm_front.tokens) >= 1 and all(t.username == SM_USER for t in w.sm_front.tokens)
    assert w.cli("sync").code == 1
    status = w.cli("status", "--json")
    assert status.code == 0 and {r["id"] for r in json.loads(status.out)} == {"docker-config", "secrets-manager", "wrong-password"}
    assert w.cli("status").code == 0
    assert w.cli("list", "--json").code == 0
    # ------------------------------------------------ the worker Lambda: JSON logs and EMF metrics
    moved = im.build_index([im.build_image("linux/amd64", seed=32, layer_size=4_000)])
    im.push_index(w.sm_up, "team/app", moved, "v1")  # upstream moved: the worker copies, with the secret's credentials
    worker = run_worker(w.rows, "INFO")
    lambda_out = worker.stdout
    response = json.loads(lambda_out.strip().splitlines()[-1])
    # the Lambda reads no Docker config: rows 0 and 2 fail for want of credentials, row 1 for its missing tag
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {"0", "1", "2"}
    emf = [json.loads(line) for line in lambda_out.splitlines() if line.startswith('{"_aws"')]
    assert emf and emf[-1]["TagsCopied"] in (1, [1.0])
    assert '"message":"row sync failed"' in lambda_out  # Powertools JSON logs
    assert "INFO:httpx:HTTP Request" in worker.stderr  # the libraries' logs, too
    assert im.head_manifest(w.ecr, "mirror/sm", "v1", w.ecr.auth) == moved.digest
    # ------------------------------------------------ the table's raw items
    items = boto3.client("dynamodb").scan(TableName=w.table_name)["Items"]
    raw_items = json.dumps(items)
    assert "requires credentials" in raw_items and "in_sync" in raw_items  # errors and states are there

    # ------------------------------------------------ the scan
    secrets = w.all_secrets()
    assert len([n for n in secrets if n.startswith("bearer token")]) >= 1  # bearer tokens were issued, and are checked too
    assert len([n for n in secrets if n.startswith("ecr password")]) >= 4  # one per process that pushed to ECR
    outputs = {f"{run.what} ({stream})": text for run in w.runs for stream, text in (("stdout", run.out), ("stderr", run.err))}
    outputs["worker handler stdout (Powertools logs, EMF metrics, response)"] = worker.stdout
    outputs["worker handler stderr (every other logger at INFO)"] = worker.stderr
    outputs["DynamoDB items"] = raw_items
    found = {where: leaks(text, secrets) for where, text in outputs.items()}
    assert {where: names for where, names in found.items() if names} == {}
    assert len(outputs) == 2 * len(w.runs) + 3 and len(w.runs) == 8


def test_debug_logs_contain_no_secrets(world):
    """``--debug`` and a DEBUG root logger show more (tracebacks, DEBUG logs), but still no secret."""
    w = world
    runs = [
        w.cli("--debug", "copy", f"{w.docker_up.host}/team/app:v1", f"{w.ecr.host}/mirror/dc:debug"),
        w.cli("--debug", "sync", "--json"),
    ]
    assert runs[0].code == 0, runs[0].err
    worker = run_worker(w.rows, "DEBUG")
    assert "botocore" in worker.stderr and "DEBUG" in worker.stderr
    secrets = w.all_secrets()
    found = {f"{run.what} {stream}": leaks(text, secrets) for run in runs for stream, text in (("stdout", run.out), ("stderr", run.err))}
    found["worker handler stdout"] = leaks(worker.stdout, secrets)
    found["worker handler stderr (every logger at DEBUG)"] = leaks(worker.stderr, secrets)
    assert {k: v for k, v in found.items() if v} == {}


def run_worker(rows: list[dict], root_level: str) -> subprocess.CompletedProcess:
    """The worker handler in its own process (as in Lambda): Powertools at ECR_MIRROR_LOG_LEVEL (DEBUG),
    every other logger at ``root_level`` on stderr."""
    proc = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, json.dumps([row["id"] for row in rows]), root_level],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


#: the worker Lambda handler on an SQS event for the given row ids, the root logger at the given level on stderr
WORKER_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=sys.argv[2], stream=sys.stderr)
from ecr_mirror.handlers import worker

class Context:
    function_name = "ecr-mirror-worker"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ecr-mirror-worker"
    aws_request_id = "req-secrets"
    def get_remaining_time_in_millis(self):
        return 600_000

records = [{"messageId": str(i), "receiptHandle": "h", "body": json.dumps({"id": row_id}), "attributes": {},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
           for i, row_id in enumerate(json.loads(sys.argv[1]))]
print(json.dumps(worker.handler({"Records": records}, Context())))
"""
