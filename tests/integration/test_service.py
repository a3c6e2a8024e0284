"""The mirror service end to end: rows -> schedule handler -> SQS -> worker handler -> ECR + status.

AWS APIs are moto (server mode), except ECR: the ECR stand-in (tests/support/ecr) serves both ECR's API
(boto3 ``ecr`` via ``AWS_ENDPOINT_URL_ECR``) and its registry face, with ECR's rules, over one store.
Upstreams are real docker-registry processes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from ecr_mirror import drift, metrics
from ecr_mirror.cli import main as cli
from ecr_mirror.handlers import _common, schedule, stream, worker
from tests.integration.passes import Ctx
from tests.support import images as im


class Service:
    """Everything a test needs: env set, a table, a queue, an upstream (behind a counting proxy), an ECR stand-in."""

    def __init__(self, monkeypatch, ecr, upstream, proxy) -> None:
        self.ecr, self.upstream, self.proxy = ecr, upstream, proxy
        self.table_name = "mirror-" + uuid.uuid4().hex[:8]
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName="q-" + uuid.uuid4().hex[:8])["QueueUrl"]
        for k, v in {
            "ECR_MIRROR_TABLE": self.table_name,
            "ECR_MIRROR_QUEUE_URL": self.queue_url,
            "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
            "ECR_MIRROR_REPOSITORY_PREFIX": "mirror",
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("DOCKER_CONFIG", str(upstream.workdir / "no-docker-config"))
        _common.reset()
        self.cli("table", "create")

    def cli(self, *args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def add(self, row_id: str, *args: str) -> None:
        self.cli("add", row_id, *args)

    def source(self, path: str) -> str:
        return f"{self.proxy.host}/{path}"

    def run_schedule(self) -> int:
        return schedule.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Ctx())["enqueued"]

    def drain(self, ctx: Ctx | None = None) -> dict[str, Any]:
        """Receive every message and hand them to the worker as one SQS event. Returns the response."""
        records = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = got.get("Messages") or []
            if not msgs:
                break
            for m in msgs:
                records.append({
                    "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
                })
        self.last_records = records
        response = worker.handler({"Records": records}, ctx or Ctx())
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for r in records:  # as Lambda's event source mapping does: delete what succeeded
            if r["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=r["receiptHandle"])
        return response

    def status(self) -> list[dict[str, Any]]:
        result = self.cli("status", "--json")
        return json.loads(result.output)

    def state(self, row_id: str, tag: str) -> dict[str, Any]:
        return next(r for r in self.status() if r["id"] == row_id and r["tag"] == tag)

    def ecr_host(self) -> str:
        return self.ecr.host


def emf(output: str) -> dict[str, float]:
    """Sum of every EMF metric printed (Powertools writes one JSON object per flush)."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{") or "_aws" not in line:
            continue
        doc = json.loads(line)
        for d in doc["_aws"]["CloudWatchMetrics"]:
            assert d["Namespace"] == "EcrMirror"
            for m in d["Metrics"]:
                value = doc[m["Name"]]
                totals[m["Name"]] = totals.get(m["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return totals


@pytest.fixture
def service(monkeypatch, ecr, registry_factory, proxy_factory):
    upstream = registry_factory()
    svc = Service(monkeypatch, ecr, upstream, proxy_factory(upstream))
    yield svc
    _common.reset()


def golang_index(seed: int = 1):
    return im.build_index([im.build_image("linux/amd64", seed=seed), im.build_image("linux/arm64/v8", seed=seed)], attestations=True)


def test_rows_to_ecr_through_schedule_queue_and_worker(service, capsys):
    index = golang_index()
    im.push_index(service.upstream, "library/golang", index, "1.19.2")
    im.push_index(service.upstream, "library/golang", golang_index(2), "1.20")
    service.add("golang", "--source", service.source("library/golang"), "--tag", "1.19.2,1.20")
    service.add("golang-arm", "--source", service.source("library/golang"), "--tag", "1.19.2", "--platform", "linux/arm64",
                "--target-repository", "mirror/golang-arm", "--arch-tags")
    service.add("off", "--source", service.source("library/golang"), "--tag", "1.19.2", "--disabled")
    capsys.readouterr()
    assert service.run_schedule() == 2  # the disabled row is not enqueued
    response = service.drain()
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    repo = f"mirror/{service.proxy.host.replace(':', '-')}/library/golang"
    auth = service.ecr.auth
    raw, _, digest = im.get_manifest(service.ecr, repo, "1.19.2", auth=auth)
    assert digest == index.digest and raw == index.manifest
    arm_raw, _, arm_digest = im.get_manifest(service.ecr, "mirror/golang-arm", "1.19.2", auth=auth)
    assert [d["platform"]["architecture"] for d in json.loads(arm_raw)["manifests"]] == ["arm64", "unknown"]
    assert im.head_manifest(service.ecr, "mirror/golang-arm", "1.19.2-arm64", auth=auth) == index.image_for("linux/arm64/v8").digest
    states = {(r["id"], r["tag"]): r for r in service.status()}
    assert states[("golang", "1.19.2")]["state"] == "in_sync"
    assert states[("golang", "1.19.2")]["target_digest"] == index.digest
    assert states[("golang", "1.20")]["state"] == "in_sync"
    assert states[("golang-arm", "1.19.2")]["target_digest"] == arm_digest
    assert states[("golang", "1.19.2")]["last_success"]
    counts = emf(out)
    assert counts[metrics.TAGS_IN_SYNC] == 3 and counts[metrics.TAGS_COPIED] == 3
    assert counts[metrics.BYTES_COPIED] > 0 and counts[metrics.TAGS_DRIFTED] == 0
    # the repositories were created through the ECR API with scan on push, and ECR's API describes the
    # images the registry face received (the stand-in refuses pushes to repositories not created first)
    ecr = boto3.client("ecr")
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    assert repos[repo]["imageScanningConfiguration"]["scanOnPush"] is True
    assert sorted(repos) == sorted([repo, "mirror/golang-arm"])
    described = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "1.19.2"}])["imageDetails"]
    assert [(d["imageDigest"], d["imageManifestMediaType"]) for d in described] == [(index.digest, index.media_type)]


def test_second_sync_makes_no_upstream_get(service, capsys):
    im.push_index(service.upstream, "library/golang", golang_index(), "1.19.2")
    im.push_index(service.upstream, "library/golang", golang_index(3), "1.21")
    service.add("golang", "--source", service.source("library/golang"), "--tag", "1.19.2", "--tag", "1.21")
    service.add("arm", "--source", service.source("library/golang"), "--tag", "1.19.2", "--platform", "linux/arm64",
                "--target-repository", "mirror/arm")
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    service.proxy.reset()
    service.ecr.reset_counts()
    capsys.readouterr()
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    # at ECR: nothing written, no repository created, no layer downloaded
    for op in ("PutImage", "InitiateLayerUpload", "CompleteLayerUpload", "CreateRepository", "GetDownloadUrlForLayer"):
        assert service.ecr.count(op=op) == 0, op
    # and nothing asked at all: every tag is settled (in sync as recorded, upstream unmoved)
    assert service.ecr.count() == 0 and service.ecr.count(face="api") == 0
    assert service.proxy.count("GET") == 0
    assert service.proxy.count("HEAD") == 3  # one per tag
    assert sorted(service.proxy.requests) == sorted([
        ("HEAD", "/v2/library/golang/manifests/1.19.2"),
        ("HEAD", "/v2/library/golang/manifests/1.21"),
        ("HEAD", "/v2/library/golang/manifests/1.19.2"),
    ])
    counts = emf(capsys.readouterr().out)
    assert counts[metrics.TAGS_IN_SYNC] == 3 and counts[metrics.TAGS_COPIED] == 0


def test_upstream_moves_behind_then_in_sync(service):
    im.push_index(service.upstream, "app", golang_index(1), "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1")
    service.run_schedule()
    service.drain()
    moved = golang_index(9)
    im.push_index(service.upstream, "app", moved, "v1")
    check = service.cli("sync", "--check", ok=False)
    assert check.exit_code == 4, check.output  # not in sync, nothing failed: a pipeline gate
    record = service.state("app", "v1")
    assert record["state"] == "behind"
    assert record["upstream_digest"] == moved.digest and record["target_digest"] != moved.digest
    service.run_schedule()
    service.drain()
    record = service.state("app", "v1")
    assert record["state"] == "in_sync" and record["target_digest"] == moved.digest


def test_target_overwritten_by_hand_is_diverged_counted_and_repaired(service, capsys):
    index = golang_index()
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/app")
    service.run_schedule()
    service.drain()
    intruder = im.build_image("linux/amd64", seed=99)
    im.push_image(service.ecr, "mirror/app", intruder, "v1", auth=service.ecr.auth)
    # upstream has not moved: the tag is settled, ECR is not asked
    assert service.cli("sync", "--check", ok=False).exit_code == 0
    assert service.state("app", "v1")["state"] == "in_sync"
    assert service.cli("sync", "--check", "--audit", ok=False).exit_code == 4  # the audit sees it
    assert service.state("app", "v1")["state"] == "diverged"
    capsys.readouterr()
    service.run_schedule()
    service.drain()
    counts = emf(capsys.readouterr().out)
    assert counts[metrics.TAGS_DRIFTED] == 1
    record = service.state("app", "v1")
    assert record["state"] == "in_sync" and record["target_digest"] == index.digest
    assert im.head_manifest(service.ecr, "mirror/app", "v1", auth=service.ecr.auth) == index.digest


def test_broken_index_detected_and_repaired(service, capsys, monkeypatch):
    index = golang_index()
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/app")
    service.run_schedule()
    service.drain()
    arm = index.image_for("linux/arm64/v8")
    # as a lifecycle rule does (ECR's own DELETE refuses an index child; lifecycle rules do not protect them)
    service.ecr.lifecycle_expire("mirror/app", [arm.digest])
    monkeypatch.setenv("ECR_MIRROR_AUDIT_INTERVAL_SECONDS", "0")  # the audit finds it: make this pass one
    _common.reset()
    capsys.readouterr()
    service.run_schedule()
    service.drain()
    counts = emf(capsys.readouterr().out)
    assert counts[metrics.TAGS_DRIFTED] == 1
    assert im.head_manifest(service.ecr, "mirror/app", arm.digest, auth=service.ecr.auth) == arm.digest
    assert service.state("app", "v1")["state"] == "in_sync"


def test_invalid_rows_reported_while_others_sync(service):
    im.push_index(service.upstream, "app", golang_index(), "v1")
    service.add("good", "--source", service.source("app"), "--tag", "v1")
    table = boto3.client("dynamodb")
    table.put_item(TableName=service.table_name, Item={
        "id": {"S": "bad-platform"}, "source": {"S": service.source("app")}, "tags": {"L": [{"S": "v1"}]},
        "platforms": {"L": [{"S": "linux"}]}, "target_repository": {"S": "mirror/arm"}})  # not good's repository:tag
    table.put_item(TableName=service.table_name, Item={
        "id": {"S": "unknown-attr"}, "source": {"S": service.source("app")}, "tags": {"L": [{"S": "v1"}]},
        "colour": {"S": "blue"}})
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}  # invalid rows are not retried
    records = {r["id"]: r for r in service.status()}
    assert records["good"]["state"] == "in_sync"
    assert records["bad-platform"]["state"] == "invalid" and "platforms" in records["bad-platform"]["error"]
    assert records["unknown-attr"]["state"] == "invalid" and "colour" in records["unknown-attr"]["error"]
    # the owner fixes the row: it syncs and is no longer reported invalid
    table.update_item(TableName=service.table_name, Key={"id": {"S": "bad-platform"}},
                      UpdateExpression="SET platforms = :p", ExpressionAttributeValues={":p": {"L": [{"S": "linux/arm64"}]}})
    service.run_schedule()
    service.drain()
    fixed = [r for r in service.status() if r["id"] == "bad-platform"]
    assert [(r["tag"], r["state"]) for r in fixed] == [("v1", "in_sync")]


def test_failing_row_is_a_batch_item_failure_only(service):
    im.push_index(service.upstream, "app", golang_index(), "v1")
    service.add("good", "--source", service.source("app"), "--tag", "v1")
    service.add("gone", "--source", service.source("nothing-here"), "--tag", "v1")
    service.run_schedule()
    response = service.drain()
    failed_ids = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    by_body = {json.loads(r["body"])["id"]: r["messageId"] for r in service.last_records}
    assert failed_ids == {by_body["gone"]}
    records = {r["id"]: r for r in service.status()}
    assert records["good"]["state"] == "in_sync"
    assert records["gone"]["state"] == "failed" and "not found" in records["gone"]["error"]


def test_worker_hands_back_rows_when_time_runs_low(service):
    im.push_index(service.upstream, "app", golang_index(), "v1")
    service.add("a", "--source", service.source("app"), "--tag", "v1")
    service.add("b", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/b")
    service.run_schedule()
    response = service.drain(Ctx(remaining_ms=5_000))  # below the reserve: start nothing
    # rows not started are no failure of theirs: sent again as fresh messages (the receive count starts
    # over, so a busy batch never pushes a row towards the DLQ), at once: nothing is lost
    assert response["batchItemFailures"] == []
    assert service.status() == []  # nothing half-done recorded
    assert im.head_manifest(service.ecr, "mirror/b", "v1", auth=service.ecr.auth) is None
    again = service.sqs.receive_message(QueueUrl=service.queue_url, MaxNumberOfMessages=10,
                                        MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert sorted(json.loads(m["Body"])["id"] for m in again) == ["a", "b"]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in again} == {"1"}


def test_time_guard_belongs_to_one_invocation(service):
    """A worker invocation short of time hands its rows back; the next one, with time, syncs them:
    the guard of one invocation never sticks to the syncer the container keeps."""
    index = golang_index()
    im.push_index(service.upstream, "app", index, "v1")
    service.add("a", "--source", service.source("app"), "--tag", "v1")
    service.run_schedule()
    assert service.drain(Ctx(remaining_ms=5_000)) == {"batchItemFailures": []}  # not started: sent again
    assert service.status() == []
    assert service.drain(Ctx(remaining_ms=600_000)) == {"batchItemFailures": []}
    assert service.state("a", "v1")["state"] == "in_sync"
    repo = f"mirror/{service.proxy.host.replace(':', '-')}/app"
    assert im.head_manifest(service.ecr, repo, "v1", auth=service.ecr.auth) == index.digest


def test_subset_row_with_a_record_lacking_its_upstream_digest(service, monkeypatch, proxy_factory):
    """A platform-subset row whose status records what it wrote (``expected_digest``) but not from which
    upstream digest (a record from before ``synced_upstream_digest`` existed) cannot vouch for the target:
    the target is not taken as in sync nor checked for completeness on that record's word
    (:func:`drift.expected_target_digest` says unknown). The copy then recognises its own index by the
    source digest recorded in it: no upstream GET, one manifest GET at ECR and no blob HEAD, and the
    record gets its upstream digest back, so the next sync trusts it again."""
    index = golang_index()
    im.push_index(service.upstream, "app", index, "v1")
    service.add("sub", "--source", service.source("app"), "--tag", "v1", "--platform", "linux/arm64")
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    first = service.state("sub", "v1")
    written = first["target_digest"]
    assert first["state"] == "in_sync" and written != index.digest  # a rewritten index of one platform
    state = boto3.resource("dynamodb").Table(service.table_name + "-state")
    state.update_item(Key={"pk": "sub", "sk": "tag#v1"}, UpdateExpression="REMOVE synced_upstream_digest")
    stored = state.get_item(Key={"pk": "sub", "sk": "tag#v1"})["Item"]
    assert stored["expected_digest"] == written and "synced_upstream_digest" not in stored
    assert drift.expected_target_digest(index.digest, written, recorded_upstream=None, identical=False) is None
    ecr = proxy_factory(service.ecr)
    monkeypatch.setenv("ECR_MIRROR_TARGET_REGISTRY", ecr.host)
    service.proxy.reset()

    result = json.loads(service.cli("sync", "--json").output)
    assert [(r["tag"], r["before"], r["state"], r["action"]) for r in result] == [("v1", "behind", "in_sync", "")]
    assert service.proxy.requests == [("HEAD", "/v2/app/manifests/v1")]
    # (the first request to the stand-in meets its Basic challenge: count the GET that was answered)
    assert ecr.count("GET", "/manifests/", status=200) == 1 and ecr.count("HEAD", "/blobs/") == 0
    assert ecr.count("PUT") == 0 and ecr.count("POST") == 0
    stored = state.get_item(Key={"pk": "sub", "sk": "tag#v1"})["Item"]
    assert stored["synced_upstream_digest"] == index.digest and stored["expected_digest"] == written

    # with the pair recorded again the tag is settled: nothing is asked of ECR (the audit checks it)
    ecr.reset()
    service.ecr.reset_counts()
    result = json.loads(service.cli("sync", "--json").output)
    assert [(r["before"], r["state"], r["settled"]) for r in result] == [("in_sync", "in_sync", True)]
    assert ecr.requests == [] and service.ecr.count(face="api") == 0


def test_immutable_repository_holding_other_digest_is_diverged(service):
    im.push_index(service.upstream, "app", golang_index(), "v1")
    boto3.client("ecr").create_repository(repositoryName="mirror/frozen", imageTagMutability="IMMUTABLE")
    other = im.build_image("linux/amd64", seed=42)
    im.push_image(service.ecr, "mirror/frozen", other, "v1", auth=service.ecr.auth)
    service.add("frozen", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/frozen")
    service.run_schedule()
    service.drain()
    record = service.state("frozen", "v1")
    assert record["state"] == "diverged" and "immutable" in record["error"]
    assert im.head_manifest(service.ecr, "mirror/frozen", "v1", auth=service.ecr.auth) == other.digest


def test_tag_pattern_keep_latest(service):
    """Newest N by version order (1.10 after 1.9). (docker-registry 2.8 ignores ``n=`` on tag lists, so
    ``Link`` pagination is tested against a scripted transport in tests/unit/test_tags_pagination.py.)"""
    for i, tag in enumerate(["1.9", "1.10", "1.11", "2.0-rc1", "latest", "1.2"]):
        im.push_image(service.upstream, "app", im.build_image("linux/amd64", seed=100 + i), tag)
    service.add("app", "--source", service.source("app"), "--tag-pattern", r"1\.[0-9]+", "--keep-latest", "2")
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    assert service.proxy.count("GET", "/tags/list") == 1
    assert sorted(r["tag"] for r in service.status()) == ["1.10", "1.11"]
    repo = f"mirror/{service.proxy.host.replace(':', '-')}/app"
    assert im.list_tags(service.ecr, repo, auth=service.ecr.auth) == ["1.10", "1.11"]
    # a newer release moves the window: the tag that fell out is no longer reported
    im.push_image(service.upstream, "app", im.build_image("linux/amd64", seed=200), "1.12")
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    assert sorted(r["tag"] for r in service.status()) == ["1.11", "1.12"]


def test_stream_handler_enqueues_user_changes_only(service):
    def record(name, new, old=None):
        ddb = {"Keys": {"id": {"S": new["id"]["S"]}}, "NewImage": new}
        if old is not None:
            ddb["OldImage"] = old
        return {"eventName": name, "dynamodb": ddb}

    row = {"id": {"S": "app"}, "source": {"S": "docker.io/library/golang"}, "tags": {"L": [{"S": "1.22"}]}}
    with_status = {**row, "status": {"M": {"1.22": {"M": {"state": {"S": "in_sync"}}}}}}
    changed = {**row, "tags": {"L": [{"S": "1.23"}]}}
    assert stream.rows_to_enqueue([record("INSERT", row)]) == ["app"]
    assert stream.rows_to_enqueue([record("MODIFY", with_status, row)]) == []  # a status write: no loop
    assert stream.rows_to_enqueue([record("MODIFY", changed, with_status)]) == ["app"]
    assert stream.rows_to_enqueue([{"eventName": "REMOVE", "dynamodb": {"Keys": {"id": {"S": "app"}}}}]) == []
    stream.handler({"Records": [record("INSERT", row)]}, Ctx())
    msgs = service.sqs.receive_message(QueueUrl=service.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in msgs] == [{"id": "app", "peers": []}]  # no row it may conflict with


def test_upstream_credentials_from_secret_never_printed(service, monkeypatch, proxy_factory, capsys, caplog):
    secret_value = "pw-" + uuid.uuid4().hex
    front = proxy_factory(service.upstream, credentials=("robot", secret_value))
    im.push_index(service.upstream, "private/app", golang_index(), "v1")
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="ecr-mirror/upstream", SecretString=json.dumps({front.host: {"username": "robot", "password": secret_value}}))
    monkeypatch.setenv("ECR_MIRROR_CREDENTIALS_SECRET", "ecr-mirror/upstream")
    _common.reset()
    service.add("private", "--source", f"{front.host}/private/app", "--tag", "v1", "--tag", "missing")
    service.run_schedule()
    service.drain()
    records = {r["tag"]: r for r in service.status()}
    assert records["v1"]["state"] == "in_sync"
    assert records["missing"]["state"] == "failed"
    assert front.token_requests and front.token_requests[0].username == "robot"
    out = capsys.readouterr()
    item = boto3.client("dynamodb").get_item(TableName=service.table_name, Key={"id": {"S": "private"}})["Item"]
    for text in (out.out, out.err, caplog.text, json.dumps(item), service.cli("status", "--json").output):
        assert secret_value not in text


def test_repository_deleted_under_a_warm_worker_is_created_again(service, monkeypatch):
    """A mirrored repository deleted in ECR (DeleteRepository with force) while a worker container stays
    warm: ECR refuses pushes into it (NAME_UNKNOWN), so the worker must not trust what it remembered about
    the repository; the next pass creates it again and mirrors the tag, without a failure in between.
    (A settled tag is looked at in ECR by the audit: every pass audits here.)"""
    monkeypatch.setenv("ECR_MIRROR_AUDIT_INTERVAL_SECONDS", "0")
    index = golang_index()
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/app")
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}
    boto3.client("ecr").delete_repository(repositoryName="mirror/app", force=True)
    service.ecr.reset_counts()
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}  # the same (warm) worker: no _common.reset()
    record = service.state("app", "v1")
    assert record["state"] == "in_sync" and record["target_digest"] == index.digest, record
    assert service.ecr.tags("mirror/app") == {"v1": index.digest}
    assert service.ecr.count(op="CreateRepository") == 1
