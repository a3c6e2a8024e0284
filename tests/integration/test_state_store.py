"""The state table (ecr_mirror.store.StateTable) against DynamoDB as moto implements it, in-process.

What the service records lives beside the rows, never in them: a user's plain ``put-item`` of a row
erases nothing; every status write is conditional on the version it was based on, so racing syncs never
move a tag backwards nor both take its lease; tags no longer selected, removed rows and legacy rows are
handled item by item; pass records find the last audit and "last verified".
"""

from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror import drift
from ecr_mirror.errors import AwsError
from ecr_mirror.status import NO_TAGS, PassRecord, RowStatus, TagStatus
from ecr_mirror.store import MirrorTable, StateTable
from tests.integration.test_table_dynamodb import REGION, SECRET, dynamodb  # noqa: F401 - the in-process moto fixture

ROWS = "ecr-mirror-test"
STATE = "ecr-mirror-test-state"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def ts(second: int, micro: int = 0) -> str:
    return f"2026-01-01T00:00:{second:02d}.{micro:06d}Z"


@pytest.fixture
def rows(dynamodb) -> MirrorTable:
    t = MirrorTable(dynamodb, ROWS)
    assert t.create() is True
    return t


@pytest.fixture
def state(dynamodb, rows) -> StateTable:
    t = StateTable(dynamodb, STATE, rows=rows)
    assert t.create() is True
    return t


def status(state_: str = drift.IN_SYNC, at: str = ts(1), **fields) -> TagStatus:
    return TagStatus(state_, last_attempt=at, **fields)


def test_create_keys_ttl_no_stream_and_idempotent(dynamodb, state):
    description = dynamodb.describe_table(TableName=STATE)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert "StreamSpecification" not in description or not description["StreamSpecification"].get("StreamEnabled")
    ttl = dynamodb.describe_time_to_live(TableName=STATE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert state.create() is False


def test_a_users_put_item_of_a_row_never_erases_what_the_service_recorded(dynamodb, rows, state):
    rows.put_row({"id": "golang", "source": "golang", "tags": ["1.22"]})
    assert state.put_tag("golang", "1.22", status(upstream_digest=D1, expected_digest=D1, children=(D2,)), previous=None)
    state.put_row_status("golang", RowStatus(NO_TAGS, pattern="x", tags_tried=1, at=ts(1)))
    # the README's raw put-item: the whole row item replaced, twice
    for tags in (["1.22", "1.23"], ["1.22"]):
        dynamodb.put_item(TableName=ROWS, Item={"id": {"S": "golang"}, "source": {"S": "golang"},
                                                "tags": {"L": [{"S": t} for t in tags]}})
    rows.put_row({"id": "golang", "source": "golang", "tags": ["1.22"]}, overwrite=True)
    got = state.read_state("golang")
    assert got.tags["1.22"].expected_digest == D1 and got.tags["1.22"].children == (D2,)
    assert got.row == RowStatus(NO_TAGS, pattern="x", tags_tried=1, at=ts(1))
    assert rows.get_row("golang") == {"id": "golang", "source": "golang", "tags": ["1.22"]}


def test_odd_tags_are_fine_and_a_row_reads_in_one_query_over_pages(state):
    tags = ["1.21.3-alpine3.18", "v1_2", "A.b-C"] + [f"t{n:04d}" for n in range(750)]
    big = "x" * 1500  # ~1.5 KB per item: 1.1 MB, so the query crosses DynamoDB's 1 MB page
    for n, tag in enumerate(tags):
        assert state.put_tag("golang", tag, status(drift.MISSING, ts(n % 60), reason=big), previous=None)
    pages: list[int] = []
    state._client.meta.events.register("before-call.dynamodb.Query", lambda **_: pages.append(1))
    got = state.read_state("golang")
    assert set(got.tags) == set(tags) and got.row is None
    assert len(pages) == 2  # one Query, followed to its second page
    assert state.read_state("other").is_new


def test_a_write_based_on_a_stale_read_is_dropped(state):
    first = status(drift.BEHIND, ts(1), upstream_digest=D1)
    assert state.put_tag("r", "v1", first, previous=None) is True
    assert state.put_tag("r", "v1", first, previous=None) is False  # someone else created it first
    second = status(drift.IN_SYNC, ts(2), upstream_digest=D2)
    assert state.put_tag("r", "v1", second, previous=first) is True
    # a sync that read `first` and writes now is too late: the item moved on
    assert state.put_tag("r", "v1", status(drift.FAILED, ts(3), error="x"), previous=first) is False
    assert state.read_state("r").tags["v1"] == second


def test_only_one_of_two_syncs_takes_a_lease(state):
    """Two syncs read the same status and both try to take the tag's lease: exactly one gets it."""
    read = status(drift.IN_SYNC, ts(1), upstream_digest=D1)
    state.put_tag("r", "v1", read, previous=None)
    a = replace(read, state=drift.BEHIND, lease_owner="a", lease_expires=ts(59), last_attempt=ts(2, 1))
    b = replace(read, state=drift.BEHIND, lease_owner="b", lease_expires=ts(59), last_attempt=ts(2, 2))
    assert [state.put_tag("r", "v1", x, previous=read) for x in (a, b)] == [True, False]
    assert state.read_state("r").tags["v1"].lease_owner == "a"
    # a's result releases it (conditional on a's own write)
    done = replace(a, state=drift.IN_SYNC, lease_owner=None, lease_expires=None, last_attempt=ts(3))
    assert state.put_tag("r", "v1", done, previous=a) is True
    assert state.read_state("r").tags["v1"].lease_owner is None


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)))
def test_writers_chained_on_versions_never_go_backwards(state, order):
    """Six syncs each read version n-1 and write version n, in any arrival order: a write lands only when
    its base is what is stored, so the stored versions only ever grow."""
    tag = "t" + "".join(map(str, order))
    versions = [status(drift.BEHIND if n % 2 else drift.IN_SYNC, ts(10, n), bytes_copied=n) for n in range(6)]
    state.put_tag("race", tag, versions[0], previous=None)
    landed = []
    for n in order:
        if n == 0:
            continue
        landed.append((n, state.put_tag("race", tag, versions[n], previous=versions[n - 1])))
    stored = state.read_state("race").tags[tag]
    # what landed is a chain 1, 2, ... in arrival order, and the stored status is its end
    chain = [n for n, ok in landed if ok]
    assert chain == list(range(1, len(chain) + 1))
    assert stored == versions[chain[-1] if chain else 0]


def test_delete_tags_and_row_state_and_row_status(state):
    for n, tag in enumerate(["1.20", "1.21", "1.22"]):
        state.put_tag("golang", tag, status(at=ts(n)), previous=None)
    state.put_row_status("golang", RowStatus(drift.INVALID, error="bad", at=ts(1)))
    state.delete_tags("golang", ["1.20", "1.21", "9.9"])
    got = state.read_state("golang")
    assert set(got.tags) == {"1.22"} and got.row is not None
    state.put_row_status("golang", None)
    assert state.read_state("golang").row is None
    for n in range(60):  # more than one BatchWriteItem
        state.put_tag("gone", f"t{n}", status(at=ts(n)), previous=None)
    state.put_row_status("gone", RowStatus(drift.FAILED, error="x"))
    assert state.delete_row_state("gone") == 61
    assert state.read_state("gone").is_new and not state.read_state("golang").is_new


def test_passes_newest_first_last_audit_and_last_verified(state):
    state.put_pass(PassRecord("2026-01-01T00:00:01.000000Z.aaaaaa", ts(1), audit=True, rows_enqueued=2))
    state.put_pass(PassRecord("2026-01-01T00:00:02.000000Z.bbbbbb", ts(2), audit=False, rows_enqueued=2))
    state.put_pass(PassRecord("2026-01-01T00:00:03.000000Z.cccccc", ts(3), kind="cli", audit=True,
                              rows=("b",), finished_at=ts(4)))
    assert [p.started_at for p in state.passes()] == [ts(3), ts(2), ts(1)]
    audit = state.latest_audit()  # a CLI's --audit of some rows does not reset the schedule's cadence
    assert audit is not None and audit.started_at == ts(1)
    state.put_progress("2026-01-01T00:00:02.000000Z.bbbbbb", "inv-1", ["a", "b"], ts(5))
    state.put_progress("2026-01-01T00:00:01.000000Z.aaaaaa", "inv-0", ["a", "c"], ts(2))
    assert state.verified_at(["a", "b", "c", "d"]) == {"b": ts(5), "a": ts(5), "c": ts(2)}  # the latest finish
    # pass items carry a TTL
    raw = state._client.get_item(TableName=STATE, Key={"pk": {"S": "#pass"}, "sk": {"S": "2026-01-01T00:00:01.000000Z.aaaaaa"}})
    assert int(raw["Item"]["expires_at"]["N"]) > 0
    # and pass partitions are not rows
    assert set(state.scan_states()) == set()


def test_scan_states_groups_every_row(state):
    state.put_tag("a", "1", status(at=ts(1)), previous=None)
    state.put_tag("a", "2", status(drift.FAILED, ts(2), error="x"), previous=None)
    state.put_row_status("b", RowStatus(drift.INVALID, error="bad"))
    state.put_pass(PassRecord("p", ts(1)))
    states = state.scan_states()
    assert sorted(states) == ["a", "b"]
    assert set(states["a"].tags) == {"1", "2"} and states["b"].row.state == drift.INVALID


def test_the_migration_moves_legacy_status_and_is_idempotent(dynamodb, rows, state):
    legacy = {
        "id": {"S": "golang"}, "source": {"S": "golang"}, "tags": {"L": [{"S": "1.22"}]},
        "status": {"M": {"1.22": {"M": {
            "state": {"S": "in_sync"}, "upstream_digest": {"S": D1}, "expected_digest": {"S": D1},
            "synced_upstream_digest": {"S": D1}, "target_digest": {"S": D1}, "last_attempt": {"S": ts(5)},
            "last_success": {"S": ts(5)}, "last_drift_state": {"S": "broken"}, "last_drift_at": {"S": ts(4)},
        }}}},
        "row_error": {"S": "old error"}, "row_error_at": {"S": ts(3)},
    }
    dynamodb.put_item(TableName=ROWS, Item=legacy)
    item = rows.get_row("golang")
    assert state.migrate(item) is True
    after = rows.get_row("golang")
    assert after == {"id": "golang", "source": "golang", "tags": ["1.22"]}
    got = state.read_state("golang")
    one = got.tags["1.22"]
    assert (one.expected_digest, one.last_drift_state, one.last_drift_at) == (D1, "broken", ts(4))
    assert got.row == RowStatus(drift.INVALID, error="old error", at=ts(3))
    # run again from the same (stale) item: nothing changes, nothing fails
    assert state.migrate(item) is True
    assert state.read_state("golang") == got
    assert state.migrate(after) is False
    # a newer status is never overwritten by a legacy one
    newer = replace(one, state=drift.BEHIND, last_attempt=ts(9))
    assert state.put_tag("golang", "1.22", newer, previous=one)
    state.migrate(item)
    assert state.read_state("golang").tags["1.22"] == newer


def test_a_resource_works_as_well_as_a_client(dynamodb, rows):
    resource = boto3.resource("dynamodb", region_name=REGION)
    for handle in (resource, resource.Table(STATE)):
        t = StateTable(handle, STATE, rows=rows)
        t.create()
        assert t.put_tag("r", "v1", status(children=(D1,), bytes_copied=3), previous=None) in (True, False)
        got = t.read_state("r").tags["v1"]
        assert got.children == (D1,) and got.bytes_copied == 3 and isinstance(got.bytes_copied, int)
        t.put_pass(PassRecord("p", ts(1), audit=True))
        assert t.latest_audit().pass_id == "p"
        t.delete_row_state("r")


def test_aws_errors_are_ours_and_carry_no_secret(dynamodb):
    missing = StateTable(dynamodb, "no-such-table")
    for call in (lambda: missing.read_state("x"), lambda: missing.put_tag("x", "1", status(), previous=None),
                 lambda: missing.delete_tags("x", ["1"]), lambda: missing.latest_audit(),
                 lambda: missing.put_row_status("x", None)):
        with pytest.raises(AwsError) as info:
            call()
        assert info.value.code == "ResourceNotFoundException"
        assert "DynamoDB" in str(info.value) and SECRET not in str(info.value)
