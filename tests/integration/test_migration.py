"""Migration of a deployed table from the layout before issue 12 (the status map inside each row item) to the
state table: row by row, on the first run of the new code, losing no recorded digest or drift history,
idempotent when interrupted anywhere.

The "old" table is written here exactly as the old service wrote it (``status`` map with one entry per tag,
``row_error``/``row_error_at``), over images that really are in the ECR stand-in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from ecr_mirror import metrics
from ecr_mirror.cli import main as cli
from ecr_mirror.handlers import stream
from ecr_mirror.rows import parse_row
from ecr_mirror.status import RowState
from ecr_mirror.store import StateTable
from tests.support import images as im

T0, T1, T2 = "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:02.000000Z", "2026-01-01T00:00:03.000000Z"


class Crash(BaseException):
    """The process dying (SIGKILL, Lambda timeout): nothing may catch it."""


@pytest.fixture
def old_deployment(deployment):
    """A table as the previous version left it: three rows with their status inside, images in ECR."""
    d = deployment
    upstream, proxy, fast_ecr = d.upstream, d.proxy, d.ecr
    d.images = {}
    fast_ecr.create_repository("mirror/golang")
    for n, tag in enumerate(("1.22", "1.23", "1.21")):
        index = im.build_index([im.build_image("linux/amd64", seed=50 + n), im.build_image("linux/arm64/v8", seed=50 + n)])
        im.push_index(upstream, "library/golang", index, tag)
        with fast_ecr.http() as http:
            im.push_index(fast_ecr.url, "mirror/golang", index, tag, client=http)
        d.images[tag] = index
    golang = {"id": "golang", "source": f"{proxy.host}/library/golang", "tags": ["1.22", "1.23"],
              "target_repository": "mirror/golang"}
    fingerprint = parse_row(golang).fingerprint
    one, two = d.images["1.22"].digest, d.images["1.23"].digest
    legacy_status = {
        # in sync, after a drift the service repaired (its history must survive)
        "1.22": {"state": "in_sync", "upstream_digest": one, "expected_digest": one, "synced_upstream_digest": one,
                 "target_digest": one, "last_attempt": T2, "last_success": T2, "bytes_copied": 1234,
                 "fingerprint": fingerprint, "last_drift_state": "diverged", "last_drift_at": T1},
        # its last attempt failed; the digests of its last success are kept
        "1.23": {"state": "failed", "upstream_digest": two, "expected_digest": two, "synced_upstream_digest": two,
                 "target_digest": two, "last_attempt": T2, "last_success": T0, "error": "HTTP 503 from upstream",
                 "fingerprint": fingerprint},
    }
    d.put_row({**golang, "status": legacy_status})
    d.put_row({"id": "bad", "source": "golang", "tags": ["1"], "platforms": ["linux"],
               "row_error": "row 'bad': attribute 'platforms': invalid platform 'linux'", "row_error_at": T1})
    d.put_row({"id": "plain", "source": f"{proxy.host}/library/golang", "tags": ["1.21"],
               "target_repository": "mirror/golang"})  # never synced: nothing to migrate (a tag of its own:
    # two rows writing one tag would be a conflict, written by neither)
    d.legacy = {item["id"]: item for item in d.rows.scan_rows(consistent=True)}
    return d


def snapshot(state: StateTable) -> dict[str, RowState]:
    return state.scan_states()


def test_status_shows_legacy_rows_before_any_run_of_the_new_code(old_deployment):
    d = old_deployment
    result = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {(r["id"], r["tag"]): r for r in json.loads(result.output)}
    assert records[("golang", "1.22")]["state"] == "in_sync" and records[("golang", "1.22")]["last_drift_state"] == "diverged"
    assert records[("golang", "1.23")]["error"] == "HTTP 503 from upstream"
    assert records[("bad", None)]["state"] == "invalid"
    assert d.state.scan_states() == {}  # a read command writes nothing


def test_the_first_pass_migrates_row_by_row_and_loses_nothing(old_deployment):
    d = old_deployment
    d.fresh_containers()
    with d.stream_records() as records:
        first = d.run_pass()
    assert first.failures == [] and first.schedule["audit"] is True  # no pass on record yet: the first audits
    assert first.metrics[metrics.TAGS_COPIED] == 0 and first.metrics[metrics.ROWS_INVALID] == 1
    # the row items hold only what their owners wrote
    for row_id in ("golang", "bad", "plain"):
        item = d.rows.get_row(row_id)
        assert not {"status", "row_error", "row_error_at"} & set(item)
        assert {k: v for k, v in item.items()} == {k: v for k, v in d.legacy[row_id].items()
                                                   if k not in ("status", "row_error", "row_error_at")}
    # the migration's writes to the mirror table pass the stream filter but start no sync
    assert [r["eventName"] for r in records] == ["MODIFY", "MODIFY"]
    assert stream.rows_to_enqueue(records) == []
    state = d.state.read_state("golang")
    one, two = d.images["1.22"], d.images["1.23"]
    s22, s23 = state.tags["1.22"], state.tags["1.23"]
    assert (s22.state, s22.expected_digest, s22.synced_upstream_digest, s22.target_digest) == ("in_sync",) + (one.digest,) * 3
    assert (s22.last_drift_state, s22.last_drift_at, s22.bytes_copied) == ("diverged", T1, 1234)
    assert s22.last_success > T2  # verified again by the audit
    assert s23.state == "in_sync" and s23.expected_digest == two.digest  # the audit found it as recorded
    # the audit read each index once (children were never recorded before) and recorded the children
    assert set(s22.children) == {c.digest for c in one.children} and set(s23.children) == {c.digest for c in two.children}
    bad = d.state.read_state("bad").row
    assert bad is not None and bad.state == "invalid" and "platforms" in bad.error
    # from now on an unchanged pass asks nothing of ECR
    d.ecr.reset_counts()
    d.fresh_containers()
    assert d.run_pass().failures == []
    assert d.ecr.count() == 0 and d.ecr.count(face="api") == 0
    # the next audit lists the repository once (two rows share it); the one tag found in sync without a record
    # ("plain" was never synced: its tag was already there) has its index read once for its children ...
    d.run_pass(audit=True)
    assert d.ecr.count(op="ListImages", face="api") == 1
    assert d.ecr.count("GET", "/manifests/", status=200) == 1
    # ... and after that an audit needs nothing but the list
    d.ecr.reset_counts()
    d.run_pass(audit=True)
    assert d.ecr.count(face="api") == d.ecr.count(op="ListImages", face="api") == 1 and d.ecr.count() == 0


def test_an_interrupted_migration_rerun_ends_as_an_uninterrupted_one(old_deployment, monkeypatch):
    """Kill the migration before each of its writes in turn (each state item, then the row item), run it
    again: the end state is the same every time, and the same as a migration never interrupted."""
    d = old_deployment
    items = [d.legacy["golang"], d.legacy["bad"]]

    def reset() -> None:
        for item in items:
            d.put_row(item)  # the old layout again
        for row_id in d.state.scan_states():
            d.state.delete_row_state(row_id)

    for item in items:
        assert d.state.migrate(item)
    expected = snapshot(d.state)
    assert set(expected) == {"golang", "bad"}
    writes = 3 + 2  # golang: two tag items and the row strip; bad: the row item and the row strip

    real_put, real_strip = StateTable._put_if_newer, type(d.rows).strip_legacy
    for kill_at in range(1, writes + 1):
        reset()
        count = {"n": 0}

        def step() -> None:
            count["n"] += 1
            if count["n"] == kill_at:
                raise Crash(f"killed before write {kill_at}")

        def put(self: Any, *args: Any, **kwargs: Any) -> bool:
            step()
            return real_put(self, *args, **kwargs)

        def strip(self: Any, row_id: str) -> bool:
            step()
            return real_strip(self, row_id)

        monkeypatch.setattr(StateTable, "_put_if_newer", put)
        monkeypatch.setattr(type(d.rows), "strip_legacy", strip)
        with pytest.raises(Crash):
            for item in items:
                d.state.migrate(d.rows.get_row(item["id"]))
        monkeypatch.setattr(StateTable, "_put_if_newer", real_put)
        monkeypatch.setattr(type(d.rows), "strip_legacy", real_strip)
        # the next run of the new code finds each row as the kill left it
        for item in items:
            d.state.migrate(d.rows.get_row(item["id"]))
        assert snapshot(d.state) == expected, f"killed before write {kill_at}"
        for item in items:
            assert "status" not in d.rows.get_row(item["id"]) and "row_error" not in d.rows.get_row(item["id"])
