"""Duplicate deliveries (issue 12): SQS delivers at least once, and the schedule, the stream and the CLI can
each start the same row at the same moment. Each tag a sync copies is leased (its state-before-copy write,
conditional on the status it read); another sync finds it taken and leaves the tag alone. A manifest PUT
refused because a blob or child it names is momentarily unknown is re-checked and retried once.

Upstream behind a counting proxy (every blob and manifest GET counted), ECR = the stand-in, moto for the rest,
DynamoDB through :class:`~tests.integration.passes.AtomicWrites` (moto's conditional writes are not atomic
under concurrent requests; DynamoDB's are, and the lease relies on it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from ecr_mirror import drift, metrics
from ecr_mirror.config import Settings
from ecr_mirror.registry import FAST
from ecr_mirror.runtime import build_syncer
from ecr_mirror.status import PassRecord, new_pass_id, now_timestamp, timestamp_after
from tests.integration.passes import Deployment
from tests.support import images as im

ECR_MIRROR = str(Path(sys.executable).with_name("ecr-mirror"))
ROWS = 4
TAGS = ("v1", "v2")


@pytest.fixture
def dynamodb_endpoint(atomic_dynamodb):
    """DynamoDB (moto) with DynamoDB's atomic conditional writes (tests/integration/conftest.py)."""
    return atomic_dynamodb


@pytest.fixture
def deployment(deployment):
    """The shared deployment with :data:`ROWS` rows of :data:`TAGS`, and a recent audit on record (these
    passes are not audits: an audit would only add ListImages calls)."""
    d = deployment
    for r in range(ROWS):
        d.put_row({"id": f"app{r}", "source": f"{d.proxy.host}/team/app{r}", "tags": list(TAGS),
                   "target_repository": f"mirror/app{r}"})
    d.state.put_pass(PassRecord(new_pass_id(), now_timestamp(), audit=True))
    return d


def push_round(d: Deployment, generation: int) -> dict[tuple[str, str], im.Index]:
    """Upstream moves: every tag of every row gets a new two-platform image (its own blobs)."""
    pushed = {}
    for r in range(ROWS):
        for t, tag in enumerate(TAGS):
            seed = 10_000 * generation + 10 * r + t
            index = im.build_index([im.build_image("linux/amd64", seed=seed, layers=1, layer_size=512),
                                    im.build_image("linux/arm64/v8", seed=seed, layers=1, layer_size=512)])
            im.push_index(d.upstream, f"team/app{r}", index, tag)
            pushed[(f"app{r}", tag)] = index
    return pushed


def gets_per_path(d: Deployment) -> Counter[str]:
    """Upstream GETs of blobs and manifests, per path (a copy's referrer discovery lists the tags: not content)."""
    return Counter(path for method, path in d.proxy.requests
                   if method == "GET" and ("/blobs/" in path or "/manifests/" in path))


def assert_mirrored(d: Deployment, pushed: dict[tuple[str, str], im.Index]) -> None:
    for (row_id, tag), index in pushed.items():
        assert d.ecr.tags(f"mirror/{row_id}")[tag] == index.digest
        recorded = d.state.read_state(row_id).tags[tag]
        assert (recorded.state, recorded.expected_digest, recorded.lease_owner) == ("in_sync", index.digest, None)


def test_two_workers_on_the_same_rows_at_once_many_times(deployment):
    """No failure, no drift, and no blob or manifest fetched twice upstream: each tag is copied by exactly
    one of the two; the other finds it leased, or changed since it read it, or already settled."""
    d = deployment
    workers = [build_syncer(Settings.from_env(), d.state, retry=FAST) for _ in range(2)]
    try:
        for generation in range(1, 7):
            pushed = push_round(d, generation)
            d.proxy.reset()
            items = [d.rows.get_row(f"app{r}") for r in range(ROWS)]
            results: list = [None, None]
            start = threading.Barrier(2)

            def run(n: int) -> None:
                start.wait()
                results[n] = workers[n].sync_items(items)

            threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for rows in results:
                assert all(r.ok for r in rows), [t.error for r in rows for t in r.tags if t.error]
                counts = metrics.sync_counts(rows)
                assert counts[metrics.TAGS_FAILED] == 0 and counts[metrics.TAGS_DRIFTED] == 0
            copies = Counter((t.row_id, t.tag) for rows in results for r in rows for t in r.tags if t.copied)
            assert copies == Counter(dict.fromkeys(pushed, 1)), f"generation {generation}: {copies}"
            assert max(gets_per_path(d).values()) == 1, f"generation {generation}: a GET was made twice upstream"
            assert_mirrored(d, pushed)
    finally:
        for w in workers:
            w.copier.close()
            w.client.http.close()


def test_two_cli_syncs_of_the_same_rows_at_once(deployment):
    """The issue's reproduction: two `ecr-mirror sync` of the same four rows at the same moment."""
    d = deployment
    for generation in range(1, 4):
        pushed = push_round(d, generation)
        d.proxy.reset()
        procs = [subprocess.Popen([ECR_MIRROR, "sync", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outputs, strict=True):
            states = {(o["id"], o["tag"]): o for o in json.loads(out)}
            assert all(o["state"] != "failed" and not o["error"] for o in states.values()), states
            # 4 (not in sync) exactly when it left a tag to the other sync, which was copying it
            left = [o for o in states.values() if o["action"] == "skipped" and o["state"] != "in_sync"]
            assert p.returncode == (4 if left else 0), (err, left)
        copied = Counter((o["id"], o["tag"]) for out, _ in outputs for o in json.loads(out) if o["action"] == "copied")
        assert copied == Counter(dict.fromkeys(pushed, 1))
        assert max(gets_per_path(d).values()) == 1
        assert_mirrored(d, pushed)


def test_a_tag_leased_by_a_live_sync_is_skipped_and_a_lapsed_lease_is_taken_over(deployment, caplog):
    d = deployment
    first = push_round(d, 1)
    syncer = build_syncer(Settings.from_env(), d.state, retry=FAST)
    try:
        assert all(r.ok for r in syncer.sync_items([d.rows.get_row("app0")]))
        moved = push_round(d, 2)
        # another sync holds v1's lease (it is copying it right now)
        held = d.state.read_state("app0").tags["v1"]
        leased = replace(held, state=drift.BEHIND, lease_owner="other-worker", lease_expires=timestamp_after(600),
                         last_attempt=now_timestamp())
        assert d.state.put_tag("app0", "v1", leased, previous=held)
        d.ecr.reset_counts()
        with caplog.at_level("INFO", logger="ecr_mirror.sync"):
            (result,) = syncer.sync_items([d.rows.get_row("app0")])
        by_tag = {t.tag: t for t in result.tags}
        assert result.ok and by_tag["v1"].skipped and not by_tag["v1"].copied and by_tag["v2"].copied
        assert "another sync (other-worker) is copying it" in caplog.text
        assert metrics.sync_counts([result])[metrics.TAGS_COPIED] == 1  # the skipped tag is the other's to count
        assert d.ecr.tags("mirror/app0")["v1"] == first[("app0", "v1")].digest  # left alone
        assert d.state.read_state("app0").tags["v1"] == leased
        # the holder died: once its lease lapses, the next sync takes the tag over
        lapsed = replace(leased, lease_expires="2000-01-01T00:00:00.000000Z", last_attempt=now_timestamp())
        assert d.state.put_tag("app0", "v1", lapsed, previous=leased)
        (result,) = syncer.sync_items([d.rows.get_row("app0")])
        assert result.ok and {t.tag: t.copied for t in result.tags} == {"v1": True, "v2": False}
        assert d.ecr.tags("mirror/app0")["v1"] == moved[("app0", "v1")].digest
    finally:
        syncer.copier.close()
        syncer.client.http.close()


@pytest.mark.parametrize("which", ["index", "child"])
def test_a_put_refused_for_an_unknown_blob_is_rechecked_and_retried_once(deployment, which):
    """MANIFEST_BLOB_UNKNOWN on the index PUT (a child momentarily unknown), or BLOB_UNKNOWN on a child's PUT:
    what it names is re-checked at the destination (HEAD), and the PUT is made once more; the tag is not
    failed."""
    d = deployment
    pushed = push_round(d, 1)
    index = pushed[("app1", "v1")]
    if which == "index":
        path, code = r"/v2/mirror/app1/manifests/v1$", "MANIFEST_BLOB_UNKNOWN"
    else:
        path, code = rf"/v2/mirror/app1/manifests/{index.images[0].digest}$", "BLOB_UNKNOWN"
    body = json.dumps({"errors": [{"code": code, "message": "blob unknown to registry"}]})
    fault = d.ecr.add_fault("PUT", path, "status", status=400, body=body, times=1)
    syncer = build_syncer(Settings.from_env(), d.state, retry=FAST)
    try:
        (result,) = syncer.sync_items([d.rows.get_row("app1")])
    finally:
        syncer.copier.close()
        syncer.client.http.close()
    assert fault.fired == 1
    assert result.ok and all(t.state == "in_sync" and not t.error for t in result.tags)
    puts = [r for r in d.ecr.records if r.method == "PUT" and r.path.endswith(path.split("/")[-1].rstrip("$"))]
    assert [r.status for r in puts] == [400, 201]
    # between the two PUTs, what the manifest names was looked at again
    first, second = (d.ecr.records.index(r) for r in puts)
    rechecked = [r for r in d.ecr.records[first + 1 : second] if r.method == "HEAD"]
    assert rechecked
    assert_mirrored(d, {k: v for k, v in pushed.items() if k[0] == "app1"})


def test_a_row_delivered_twice_in_one_batch_is_synced_once(deployment):
    d = deployment
    push_round(d, 1)
    d.fresh_containers()
    schedule_result = d.run_pass()
    assert schedule_result.failures == []
    d.proxy.reset()
    # the stream and the schedule enqueued the same row: both messages land in one batch
    for _ in range(2):
        d.sqs.send_message(QueueUrl=d.queue_url, MessageBody=json.dumps({"id": "app2"}))
    response = d.invoke_worker(d.receive_all())
    assert response == {"batchItemFailures": []}
    assert d.proxy.count("HEAD") == len(TAGS)  # one HEAD per tag, once
