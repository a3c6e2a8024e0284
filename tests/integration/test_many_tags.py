"""Rows of many tags (issue 12: no 200-tag cap; at least 10,000 tags per row), and a row that cannot finish
in one invocation.

The upstream of the 10,000-tag row is a scripted registry (a request-counting proxy in front of a real
``docker-registry``): repository ``app`` lists 10,000 tags through ``Link`` pagination, 1,000 per page,
every one pointing at one image pushed there as ``base`` (HEADs answered by the script, GETs forwarded).
docker-registry 2.8 ignores ``n=`` on tag lists, so no real registry here paginates (as
tests/unit/test_tags_pagination.py notes).

Its state store is an in-memory :class:`~ecr_mirror.sync.StateStore` (:class:`MemoryStore`, the same
version-conditional contract as :class:`~ecr_mirror.store.StateTable`, whose own tests are
tests/integration/test_state_store.py): moto's DynamoDB serializes each item of an answer in about 10 ms,
so one Query of a 10,000-item row takes about two minutes there. Everything else is real: the scripted
upstream over HTTP, the ECR stand-in, the Syncer. The continuation across Lambda invocations through the
worker handler (moto everywhere) is the second test.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ecr_mirror.config import Settings
from ecr_mirror.errors import Deadline
from ecr_mirror.handlers import _common
from ecr_mirror.registry import FAST
from ecr_mirror.rows import parse_row
from ecr_mirror.runtime import build_syncer
from ecr_mirror.status import PassRecord, RowState, RowStatus, TagStatus, new_pass_id, now_timestamp
from tests.integration.passes import Ctx, Deployment
from tests.support import images as im
from tests.support.ecr import EcrError
from tests.support.proxy import RegistryProxy, RequestRecord, _Handler

N = 10_000
NEW = 10
PAGE = 1_000


def tag_name(i: int) -> str:
    return f"t{i:05d}"


class _ManyTagsHandler(_Handler):
    def _serve(self, record: RequestRecord, fault: object) -> None:
        proxy: ManyTags = self.server.proxy  # type: ignore[attr-defined]
        path = urlsplit(record.target).path
        if record.method == "GET" and path == "/v2/app/tags/list":
            query = parse_qs(urlsplit(record.target).query)
            n = int(query.get("n", ["100"])[0])
            last = query.get("last", [None])[0]
            start = 0 if last is None else int(last[1:]) + 1
            page = [tag_name(i) for i in range(start, min(start + n, N))]
            headers = [("Content-Type", "application/json")]
            if start + n < N:
                headers.append(("Link", f'</v2/app/tags/list?n={n}&last={page[-1]}>; rel="next"'))
            self._respond(record, 200, headers, json.dumps({"name": "app", "tags": page}).encode())
            return
        match = re.fullmatch(r"/v2/app/manifests/(t\d{5})", path)
        if match and record.method == "HEAD":
            headers = [("Docker-Content-Digest", proxy.image.digest), ("Content-Type", proxy.image.media_type)]
            self._respond(record, 200, headers, proxy.image.manifest)
            return
        if match:
            self._forward(record, fault, "/v2/app/manifests/base")
            return
        self._forward(record, fault)


class ManyTags(RegistryProxy):
    """Repository ``app`` with tags t00000..t09999, each the image pushed upstream as ``app:base``."""

    handler_class = _ManyTagsHandler

    def __init__(self, upstream: object, image: im.Image) -> None:
        super().__init__(upstream)
        self.image = image


class MemoryStore:
    """A :class:`~ecr_mirror.sync.StateStore` in memory, with StateTable's contract: a tag write lands only
    if the stored status is still the one it was based on (compared by ``last_attempt``). Counts writes."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, TagStatus]] = {}
        self.rows: dict[str, RowStatus] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def read_state(self, row_id: str) -> RowState:
        with self._lock:
            return RowState(dict(self.tags.get(row_id, {})), self.rows.get(row_id))

    def put_tag(self, row_id: str, tag: str, status: TagStatus, *, previous: TagStatus | None) -> bool:
        with self._lock:
            stored = self.tags.setdefault(row_id, {}).get(tag)
            if (stored is None) != (previous is None) or (stored is not None and stored.last_attempt != previous.last_attempt):
                return False
            self.tags[row_id][tag] = status
            self.writes += 1
            return True

    def delete_tags(self, row_id: str, tags: Iterable[str]) -> None:
        with self._lock:
            for tag in tags:
                self.tags.get(row_id, {}).pop(tag, None)
                self.writes += 1

    def put_row_status(self, row_id: str, status: RowStatus | None) -> None:
        with self._lock:
            if status is None:
                self.rows.pop(row_id, None)
            else:
                self.rows[row_id] = status
            self.writes += 1

    def migrate(self, item: Mapping[str, Any]) -> bool:
        return False


def test_ten_thousand_tags_selected_continued_and_settled_ones_cost_one_head(monkeypatch, fast_ecr, registry_factory, tmp_path):
    upstream = registry_factory()
    image = im.build_image("linux/amd64", seed=10_000, layers=1, layer_size=64)
    im.push_image(upstream, "app", image, "base")
    proxy = ManyTags(upstream, image).start()
    monkeypatch.setenv("ECR_MIRROR_TARGET_REGISTRY", fast_ecr.host)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    store = MemoryStore()
    syncer = build_syncer(Settings.from_env(), store, retry=FAST)
    try:
        item = {"id": "many", "source": f"{proxy.host}/app", "tag_pattern": r"t[0-9]{5}", "target_repository": "mirror/many"}
        row = parse_row(item)
        recorded = TagStatus("in_sync", upstream_digest=image.digest, synced_upstream_digest=image.digest,
                             expected_digest=image.digest, children=(), target_digest=image.digest,
                             fingerprint=row.fingerprint, last_attempt="2026-01-01T00:00:00.000000Z")
        store.tags["many"] = {tag_name(i): recorded for i in range(N - NEW)}  # as an earlier pass left them
        fast_ecr.create_repository("mirror/many")
        copied = lambda: len(fast_ecr.tags("mirror/many"))  # noqa: E731

        # first invocation: time runs short after a few copies
        with pytest.raises(Deadline) as stopped:
            syncer.sync_item(item, should_stop=lambda: copied() >= 5)
        first = copied()
        assert 5 <= first < NEW and stopped.value.progress == first

        # the next one continues: every selected tag HEADed once, only the rest copied
        proxy.reset()
        fast_ecr.reset_counts()
        store.writes = 0
        result = syncer.sync_item(item)
        assert result.ok and len(result.tags) == N
        assert sum(t.settled for t in result.tags) == N - NEW + first
        assert sum(t.copied for t in result.tags) == NEW - first
        assert copied() == NEW
        assert {s.state for s in store.tags["many"].values()} == {"in_sync"} and len(store.tags["many"]) == N
        # Link pagination, 1,000 per page; after the last full page (no Link) the client asks once more for
        # anything after its last tag, as a registry may page without Link (distribution-spec "Listing Tags")
        assert proxy.count("GET", "/tags/list") == N // PAGE + 1
        assert proxy.count("HEAD", "/manifests/") == N
        assert proxy.count("GET", "/manifests/") == NEW - first
        assert fast_ecr.count(op="DescribeImages", face="api") == 1 and fast_ecr.count(op="ListImages", face="api") == 1
        assert fast_ecr.count(face="api") == 2
        assert fast_ecr.count("PUT", "/manifests/") == NEW - first
        assert store.writes == 2 * (NEW - first)
    finally:
        syncer.copier.close()
        syncer.client.http.close()
        proxy.stop()


@dataclass
class ShortOfTime(Ctx):
    """A Lambda context whose remaining time drops below the worker's reserve once ``enough()`` is true."""

    enough: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return 1_000 if self.enough() else 600_000


def test_a_row_stopped_midway_is_sent_again_and_the_next_invocation_continues(monkeypatch, fast_ecr, registry_factory,
                                                                               proxy_factory, tmp_path):
    """Through the worker handler: the invocation runs short of time after some copies; the row goes back as
    a fresh message (its receive count starts over: progress is no failure); the next invocation copies the
    rest, and the tags copied before are settled (one HEAD each, nothing at ECR, no write)."""
    upstream = registry_factory()
    proxy = proxy_factory(upstream)
    tags = [f"v{i:02d}" for i in range(20)]
    for i, tag in enumerate(tags):
        im.push_image(upstream, "team/app", im.build_image("linux/amd64", seed=3000 + i, layers=1, layer_size=64), tag)
    d = Deployment(fast_ecr, docker_config=str(tmp_path / "none"))
    d.apply_env(monkeypatch.setenv)
    d.create_tables()
    d.put_row({"id": "app", "source": f"{proxy.host}/team/app", "tags": tags, "target_repository": "mirror/app"})
    d.state.put_pass(PassRecord(new_pass_id(), now_timestamp(), audit=True))  # a recent audit: this pass is not one
    d.fresh_containers()

    def copied() -> int:
        try:
            return len(fast_ecr.tags("mirror/app"))
        except EcrError:  # the worker has not created the repository yet
            return 0

    try:
        first_pass = d.run_pass(ctx=ShortOfTime(enough=lambda: copied() >= 6))
        assert first_pass.failures == []
        first = copied()
        assert 6 <= first < len(tags)
        again = d.receive_all()
        assert [json.loads(m["Body"])["id"] for m in again] == ["app"]
        proxy.reset()
        fast_ecr.reset_counts()
        d.calls.reset()
        d.invoke_worker(again)
        assert copied() == len(tags)
        assert proxy.count("HEAD", "/manifests/") == len(tags)
        assert proxy.count("GET", "/manifests/") == len(tags) - first
        assert fast_ecr.count("PUT", "/manifests/") == len(tags) - first
        assert fast_ecr.count(op="DescribeImages", face="api") == 1  # the unsettled tags, one batch
        assert d.calls.writes[d.state_name] == 2 * (len(tags) - first) + 1  # and the progress record
        assert {s.state for s in d.state.read_state("app").tags.values()} == {"in_sync"}
    finally:
        _common.reset()
