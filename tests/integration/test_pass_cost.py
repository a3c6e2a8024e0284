"""What a pass costs, counted on every side (issue 12): upstream (a counting proxy), ECR (the stand-in's
registry face and ECR API face), DynamoDB (every call of the handlers' clients), SQS, and the mirror
table's stream. Request and write COUNTS are asserted (cost), never times.

10 rows x 5 two-platform tags (each row its own repository), through the handlers as Lambda runs them:

- cold: 2 state writes per tag (the lease/state before the copy, and the result), nothing else written;
- unchanged: 1 HEAD upstream per tag and nothing else anywhere, except the pass record and one
  pass-progress record per worker batch of 10 rows;
- audit: one ListImages per repository, no GET, no blob request; a lifecycle-broken index found and
  repaired;

and the pieces around them: repositories are checked only for new rows (or when ECR says one is gone), the
schedule reads user attributes only and sends ceil(N/10) SendMessageBatch calls, no pass writes the mirror
table (so its stream, filtered as the stack filters it, invokes nothing), a 600-tag pattern row is
mirrored whole.
"""

from __future__ import annotations

import json
import math

import pytest

import httpx

from ecr_mirror import metrics
from ecr_mirror.handlers import schedule
from ecr_mirror.rows import STREAM_FILTERS, is_enabled
from tests.integration.passes import Ctx, Deployment, stream_filter_passes
from tests.support import images as im

ROWS, TAGS = 10, 5


def two_platform(seed: int) -> im.Index:
    return im.build_index([im.build_image("linux/amd64", seed=seed, layers=1, layer_size=256),
                           im.build_image("linux/arm64/v8", seed=seed, layers=1, layer_size=256)])


def seed_rows(d: Deployment, rows: int = ROWS, tags: int = TAGS) -> dict[tuple[int, str], im.Index]:
    """``rows`` rows, each its own upstream repository with ``tags`` two-platform tags."""
    pushed = {}
    for r in range(rows):
        for t in range(tags):
            index = two_platform(1000 * r + t)
            im.push_index(d.upstream, f"team/app{r}", index, f"v{t}")
            pushed[(r, f"v{t}")] = index
        d.put_row({"id": f"app{r}", "source": f"{d.proxy.host}/team/app{r}", "tags": [f"v{t}" for t in range(tags)],
                   "target_repository": f"mirror/app{r}"})
    return pushed


def ecr_requests(d: Deployment) -> int:
    """Requests at the ECR side: registry face + API face (the layer bucket would be GETs: none here)."""
    return d.ecr.count() + d.ecr.count(face="api")


def reset_counts(d: Deployment) -> None:
    d.proxy.reset()
    d.ecr.reset_counts()
    d.calls.reset()


def test_cold_unchanged_and_audit_passes_cost_what_the_design_says(deployment):
    d = deployment
    pushed = seed_rows(d)
    n_tags = ROWS * TAGS
    d.fresh_containers()
    reset_counts(d)

    # -- cold
    with d.stream_records() as records:
        cold = d.run_pass()
    assert cold.failures == [] and cold.messages == ROWS
    assert cold.metrics[metrics.TAGS_COPIED] == n_tags and cold.metrics[metrics.TAGS_IN_SYNC] == n_tags
    assert d.calls.writes[d.state_name] == 2 * n_tags + 1 + 1  # 2 per tag, the pass record, one progress record
    assert d.calls.writes[d.table_name] == 0 and records == []
    # new rows: each repository described and created once; the new (empty) repositories need no look-up
    assert d.ecr.count(op="DescribeRepositories", face="api") == ROWS
    assert d.ecr.count(op="CreateRepository", face="api") == ROWS
    assert d.ecr.count(op="DescribeImages", face="api") == 0
    assert d.ecr.count("HEAD", path_regex=r"/manifests/v\d$") == 0  # the copy was told the tag is absent
    for (r, tag), index in pushed.items():
        assert d.ecr.tags(f"mirror/app{r}")[tag] == index.digest
    assert d.proxy.count("HEAD", "/manifests/") == n_tags

    # -- unchanged: nothing at ECR, nothing written but the pass and its progress
    reset_counts(d)
    d.fresh_containers()
    with d.stream_records() as records:
        unchanged = d.run_pass()
    assert unchanged.failures == [] and unchanged.schedule["audit"] is False
    assert unchanged.metrics[metrics.TAGS_IN_SYNC] == n_tags and unchanged.metrics[metrics.TAGS_COPIED] == 0
    assert ecr_requests(d) == 0
    assert d.proxy.count("HEAD") == n_tags and d.proxy.count("GET") == 0
    assert d.calls.writes[d.state_name] == 2 and d.calls.writes[d.table_name] == 0
    assert d.calls.count("PutItem", d.state_name) == 2  # the #pass record and the #pass#<id> progress record
    assert d.calls.count("SendMessageBatch") == 1 and records == []

    # -- audit: the repositories' image lists, nothing else
    reset_counts(d)
    d.fresh_containers()
    audit = d.run_pass(audit=True)
    assert audit.failures == [] and audit.schedule["audit"] is True
    assert d.ecr.count(op="ListImages", face="api") == ROWS and d.ecr.count(face="api") == ROWS
    assert d.ecr.count() == 0  # registry face: no GET (children were recorded with the copies), no blob request
    assert d.calls.writes[d.state_name] == 2
    assert audit.metrics[metrics.TAGS_DRIFTED] == 0

    # -- a lifecycle rule breaks one index: the next audit finds it, repairs it, counts it
    broken = pushed[(3, "v2")]
    d.ecr.lifecycle_expire("mirror/app3", [broken.images[1].digest])
    reset_counts(d)
    d.fresh_containers()
    unchanged = d.run_pass()  # between audits a broken child is not looked for: that is the audit's job
    assert ecr_requests(d) == 0 and unchanged.metrics[metrics.TAGS_DRIFTED] == 0
    repair = d.run_pass(audit=True)
    assert repair.metrics[metrics.TAGS_DRIFTED] == 1 and repair.metrics[metrics.TAGS_COPIED] == 1
    assert broken.images[1].digest in d.ecr.images("mirror/app3")
    record = d.state.read_state("app3").tags["v2"]
    assert record.state == "in_sync" and record.last_drift_state == "broken"
    assert set(record.children) == {c.digest for c in broken.children}


def test_a_repository_deleted_under_settled_rows_is_found_by_the_audit_and_created_again(deployment):
    """ensure_repository runs for new rows, and when ECR answers that a repository does not exist: here the
    audit's ListImages (RepositoryNotFoundException), after which every tag is copied again."""
    d = deployment
    seed_rows(d, rows=2, tags=2)
    d.fresh_containers()
    assert d.run_pass().failures == []
    d.ecr.client().delete_repository(repositoryName="mirror/app1", force=True)
    reset_counts(d)
    d.fresh_containers()
    assert d.run_pass().failures == []  # settled: nothing asked of ECR
    assert ecr_requests(d) == 0
    repaired = d.run_pass(audit=True)
    assert repaired.failures == [] and repaired.metrics[metrics.TAGS_COPIED] == 2
    assert d.ecr.count(op="CreateRepository", face="api") == 1
    assert sorted(d.ecr.tags("mirror/app1")) == ["v0", "v1"]


def test_the_schedule_reads_user_attributes_only_and_sends_ceil_n_over_10_batches(deployment):
    d = deployment
    n = 95
    with d.stream_records() as records:
        for r in range(n):
            d.put_row({"id": f"row{r:03d}", "source": "docker.io/library/golang", "tags": ["1.22"],
                       "target_repository": f"mirror/shared{r % 3}"})
        # a row still carrying an old version's status map: the scan must not read it
        d.put_row({"id": "legacy", "source": "docker.io/library/golang", "tags": ["1.22"],
                   "status": {"1.22": {"state": "in_sync", "reason": "x" * 10_000}}, "enabled": False})
    assert len(records) == n + 1
    # the stack's filter passes every one of these user writes but the disabled row's
    assert sum(stream_filter_passes(r, list(STREAM_FILTERS)) for r in records) == n
    d.fresh_containers()
    answer = schedule.handler({}, Ctx(function_name="schedule"))
    assert answer["enqueued"] == n
    assert d.calls.count("SendMessageBatch") == math.ceil(n / 10)
    scans = [p for op, p in d.calls.params if op == "Scan"]
    assert scans and all("ProjectionExpression" in p for p in scans)
    projected = {p["ExpressionAttributeNames"][k] for p in scans for k in p["ProjectionExpression"].split(", ")}
    assert "status" not in projected and "id" in projected and "target_repository" in projected
    bodies = [json.loads(m["Body"]) for m in d.receive_all()]
    assert len(bodies) == n and {b["pass"] for b in bodies} == {answer["pass"]}
    peers = {b["id"]: b["peers"] for b in bodies}
    assert sorted(peers["row000"]) == [f"row{r:03d}" for r in range(3, n, 3)]  # the rows writing to mirror/shared0
    assert d.calls.writes[d.state_name] == 1  # the pass record


def test_a_600_tag_pattern_row_is_mirrored_whole(deployment):
    """No 200-tag cap: every tag a pattern selects is mirrored and recorded (one state item each)."""
    d = deployment
    upstream, proxy = d.upstream, d.proxy
    image = im.build_image("linux/amd64", seed=600, layers=1, layer_size=128)
    im.push_image(upstream, "team/many", image, "1.0.0")
    tags = [f"1.{minor}.{patch}" for minor in range(30) for patch in range(20)]
    with httpx.Client(timeout=30) as http:
        for tag in tags:
            im.push_manifest(upstream, "team/many", tag, image.manifest, image.media_type, client=http)
    d.put_row({"id": "many", "source": f"{proxy.host}/team/many", "tag_pattern": r"1\.[0-9]+\.[0-9]+",
               "target_repository": "mirror/many"})
    d.fresh_containers()
    result = d.run_pass()
    assert result.failures == [] and result.metrics[metrics.TAGS_IN_SYNC] == 600
    assert len(d.ecr.tags("mirror/many")) == 600
    recorded = d.state.read_state("many").tags
    assert len(recorded) == 600 and {s.state for s in recorded.values()} == {"in_sync"}


@pytest.mark.parametrize("enabled", [None, {"BOOL": True}, {"BOOL": False}, {"S": "yes"}, {"NULL": True}])
@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
def test_the_stream_filter_passes_what_the_handler_would_enqueue(enabled, event):
    """The stack's event filter (ecr_mirror.rows.STREAM_FILTERS) lets through exactly the rows
    :func:`ecr_mirror.rows.is_enabled` counts as enabled (a malformed ``enabled`` too: the worker marks it
    invalid), and every REMOVE."""
    image = {"id": {"S": "app"}, "source": {"S": "golang"}}
    if enabled is not None:
        image["enabled"] = enabled
    record = {"eventName": event, "dynamodb": {"Keys": {"id": {"S": "app"}}, "NewImage": image}}
    assert stream_filter_passes(record, list(STREAM_FILTERS)) is is_enabled(image)
    assert stream_filter_passes({"eventName": "REMOVE", "dynamodb": {"Keys": {"id": {"S": "app"}}}}, list(STREAM_FILTERS))
