"""MirrorTable against DynamoDB as moto implements it, in-process (``mock_aws``).

Rows in and out, pagination, and the status rules: status writes never clobber the user's
attributes, never go backwards when workers race, keep ``last_success`` across failures, and
never bring a deleted row back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ecr_mirror.errors import AwsError, ConfigError, MirrorError, RowError
from ecr_mirror.status import STATUS_RECORD_FIELDS, format_timestamp, status_entry
from ecr_mirror.store import MirrorTable

REGION = "us-east-1"
TABLE = "ecr-mirror-test"
SECRET = "fake-secret-never-printed-0123456789"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def ts(second: int, micro: int = 0) -> str:
    return f"2026-01-01T00:00:{second:02d}.{micro:06d}Z"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:
    for name in (
        "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def table(dynamodb) -> MirrorTable:
    t = MirrorTable(dynamodb, TABLE)
    assert t.create() is True
    return t


def golang(**extra):
    item = {"id": "golang", "source": "golang", "tags": ["1.22", "1.23"], "platforms": ["linux/amd64", "linux/arm64"]}
    item.update(extra)
    return item


# ---------------------------------------------------------------- the table and rows


def test_create_is_on_demand_with_a_stream_and_idempotent(dynamodb, table):
    description = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert description["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table.create() is False


def test_put_get_scan_delete(table):
    row = table.put_row(golang(keep_latest=None, arch_tags=True))
    assert row.target_repository == "mirror/docker.io/library/golang"
    item = table.get_row("golang")
    assert item == {
        "id": "golang", "source": "golang", "tags": ["1.22", "1.23"], "platforms": ["linux/amd64", "linux/arm64"],
        "keep_latest": None, "arch_tags": True,
    }
    assert table.get_row("absent") is None
    table.put_row({"id": "node", "source": "node", "tag_pattern": r"22\.\d+", "keep_latest": 3})
    assert table.get_row("node")["keep_latest"] == Decimal(3)
    assert sorted(i["id"] for i in table.scan_rows()) == ["golang", "node"]
    assert table.delete_row("node") is True
    assert table.delete_row("node") is False
    assert [i["id"] for i in table.scan_rows()] == ["golang"]


def test_put_row_refuses_duplicates_unless_overwriting(table):
    table.put_row(golang())
    with pytest.raises(RowError) as info:
        table.put_row(golang(tags=["1.24"]))
    assert info.value.attribute == "id" and "already exists" in str(info.value)
    assert table.get_row("golang")["tags"] == ["1.22", "1.23"]
    table.put_row(golang(tags=["1.24"]), overwrite=True)
    assert table.get_row("golang")["tags"] == ["1.24"]


def test_put_row_validates_before_writing_and_never_writes_service_attributes(table):
    with pytest.raises(RowError) as info:
        table.put_row(golang(platforms=["linux"]))
    assert info.value.attribute == "platforms"
    assert table.get_row("golang") is None
    table.put_row(golang(status={"1.22": {"state": "in_sync"}}, row_error="forged"))
    item = table.get_row("golang")
    assert "status" not in item and "row_error" not in item


def test_a_resource_works_as_well_as_a_client(table):
    table.put_row(golang())
    via_resource = MirrorTable(boto3.resource("dynamodb", region_name=REGION), TABLE)
    assert via_resource.get_row("golang")["source"] == "golang"
    via_table = MirrorTable(boto3.resource("dynamodb", region_name=REGION).Table(TABLE), TABLE)
    assert [i["id"] for i in via_table.scan_rows()] == ["golang"]


def test_scan_is_paginated(table):
    for n in range(7):
        table.put_row({"id": f"row-{n}", "source": "golang", "tags": [str(n)]})
    items = list(table.scan_rows(page_size=2))
    assert sorted(i["id"] for i in items) == [f"row-{n}" for n in range(7)]


def test_scan_parsed_reports_invalid_rows_and_keeps_the_rest(dynamodb, table):
    table.put_row(golang())
    dynamodb.put_item(  # any DynamoDB client can write a bad row
        TableName=TABLE,
        Item={
            "id": {"S": "bad"}, "source": {"S": "golang"}, "tags": {"L": [{"S": "1"}]},
            "platforms": {"L": [{"S": "linux"}]},
        },
    )
    dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "typo"}, "source": {"S": "golang"}, "tag": {"S": "1"}})
    results = {item["id"]: (row, error) for item, row, error in table.scan_parsed()}
    assert results["golang"][0] is not None and results["golang"][1] is None
    assert results["bad"][0] is None and results["bad"][1].attribute == "platforms"
    assert results["typo"][1].attribute == "tag"


def test_aws_errors_are_ours_and_carry_no_secret(dynamodb):
    missing = MirrorTable(dynamodb, "no-such-table")
    for call in (lambda: missing.get_row("x"), lambda: list(missing.scan_rows()), lambda: missing.delete_row("x"),
                 lambda: missing.put_row(golang())):
        with pytest.raises(AwsError) as info:
            call()
        assert info.value.code == "ResourceNotFoundException"
        assert "DynamoDB" in str(info.value)
        assert SECRET not in str(info.value) and SECRET not in repr(info.value.args)
    with pytest.raises(AwsError):
        missing.write_status("x", "1", status_entry("in_sync"))


def test_bad_table_name_is_a_config_error(dynamodb):
    for name in ("", "ab", "has space", "x" * 256, None):
        with pytest.raises(ConfigError):
            MirrorTable(dynamodb, name)  # type: ignore[arg-type]


# ---------------------------------------------------------------- status


def test_status_writes_do_not_clobber_user_attributes(table):
    table.put_row(golang(arch_tags=True))
    user = table.get_row("golang")
    assert table.write_status("golang", "1.22", status_entry("in_sync", upstream_digest=D1, last_attempt=ts(1)))
    assert table.write_status("golang", "1.23", status_entry("behind", upstream_digest=D2, last_attempt=ts(2)))
    assert table.write_invalid("golang", "something odd")
    item = table.get_row("golang")
    assert {k: v for k, v in item.items() if k in user} == user
    assert set(item["status"]) == {"1.22", "1.23"}
    # and a user's own update meanwhile does not lose the status either
    table._client.update_item(
        TableName=TABLE, Key={"id": {"S": "golang"}}, UpdateExpression="SET tags = :t",
        ExpressionAttributeValues={":t": {"L": [{"S": "1.22"}]}},
    )
    assert table.write_status("golang", "1.22", status_entry("in_sync", upstream_digest=D1, last_attempt=ts(3)))
    item = table.get_row("golang")
    assert item["tags"] == ["1.22"] and set(item["status"]) == {"1.22", "1.23"}


def test_first_write_creates_the_status_map_and_odd_tags_are_fine(table):
    table.put_row(golang(tags=["1.21.3-alpine3.18", "v1_2", "A.b-C"]))
    for n, tag in enumerate(["1.21.3-alpine3.18", "v1_2", "A.b-C"]):
        assert table.write_status("golang", tag, status_entry("missing", last_attempt=ts(n)))
    assert set(table.get_row("golang")["status"]) == {"1.21.3-alpine3.18", "v1_2", "A.b-C"}


def test_an_older_write_never_overwrites_a_newer_one(table):
    table.put_row(golang())
    newer = status_entry("in_sync", upstream_digest=D2, expected_digest=D2, target_digest=D2,
                         last_attempt=ts(5, 1), last_success=ts(5, 1))
    older = status_entry("behind", upstream_digest=D1, target_digest=D1, last_attempt=ts(5, 0))
    assert table.write_status("golang", "1.22", newer) is True
    assert table.write_status("golang", "1.22", older) is False  # dropped silently, reported as such
    assert table.write_status("golang", "1.22", dict(newer, state="failed")) is False  # same attempt time: dropped too
    entry = table.get_row("golang")["status"]["1.22"]
    assert entry["state"] == "in_sync" and entry["upstream_digest"] == D2 and entry["last_attempt"] == ts(5, 1)


def test_last_success_survives_a_failed_attempt_and_errors_clear_on_success(table):
    table.put_row(golang())
    ok = status_entry("in_sync", upstream_digest=D1, expected_digest=D1, synced_upstream_digest=D1, target_digest=D1,
                      last_attempt=ts(1), last_success=ts(1), bytes_copied=1234)
    assert table.write_status("golang", "1.22", ok)
    failed = status_entry("failed", upstream_digest=D2, expected_digest=D1, synced_upstream_digest=D1,
                          target_digest=D1, last_attempt=ts(2), error="registry said 503")
    assert table.write_status("golang", "1.22", failed)
    entry = table.get_row("golang")["status"]["1.22"]
    assert entry["state"] == "failed" and entry["error"] == "registry said 503"
    assert entry["last_success"] == ts(1)
    assert entry["expected_digest"] == D1 and entry["synced_upstream_digest"] == D1 and entry["upstream_digest"] == D2
    assert "bytes_copied" not in entry  # per-attempt fields left None are removed
    again = status_entry("in_sync", upstream_digest=D2, expected_digest=D2, synced_upstream_digest=D2,
                         target_digest=D2, last_attempt=ts(3), last_success=ts(3), bytes_copied=99)
    assert table.write_status("golang", "1.22", again)
    entry = table.get_row("golang")["status"]["1.22"]
    assert "error" not in entry and entry["last_success"] == ts(3) and entry["bytes_copied"] == 99


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)))
def test_any_arrival_order_ends_with_the_newest_attempt(table, order):
    """Six workers' writes for one tag arrive in any order: the newest attempt always wins."""
    if table.get_row("race") is None:
        table.put_row({"id": "race", "source": "golang", "tags": ["1"]})
    tag = "t" + "".join(map(str, order))
    results = [
        table.write_status("race", tag, status_entry(("behind", "in_sync", "failed")[n % 3], bytes_copied=n,
                                                     last_attempt=ts(10, n)))
        for n in order
    ]
    entry = table.get_row("race")["status"][tag]
    assert entry["last_attempt"] == ts(10, 5) and entry["bytes_copied"] == 5 and entry["state"] == "failed"
    # a write succeeded exactly when it was newer than every write before it
    newest_so_far = list(itertools.accumulate(order, max))
    expected = [
        n == best and (i == 0 or n > newest_so_far[i - 1]) for i, (n, best) in enumerate(zip(order, newest_so_far))
    ]
    assert results == expected


def test_status_for_a_deleted_row_is_dropped_without_recreating_it(table):
    assert table.write_status("ghost", "1", status_entry("in_sync", last_attempt=ts(1))) is False
    assert table.write_invalid("ghost", "bad") is False
    assert table.clear_invalid("ghost") is False
    assert table.get_row("ghost") is None
    table.put_row(golang())
    table.write_status("golang", "1.22", status_entry("in_sync", last_attempt=ts(1)))
    table.delete_row("golang")
    assert table.write_status("golang", "1.22", status_entry("in_sync", last_attempt=ts(2))) is False
    assert table.get_row("golang") is None


def test_status_entries_are_checked(table):
    table.put_row(golang())
    with pytest.raises(MirrorError):
        table.write_status("golang", "1.22", {"state": "great", "last_attempt": ts(1)})
    with pytest.raises(MirrorError):
        table.write_status("golang", "1.22", {"state": "in_sync", "last_attempt": "yesterday"})
    with pytest.raises(MirrorError):
        table.write_status("golang", "1.22", {"state": "in_sync", "Bad Key": 1})
    # a datetime is accepted and written in the sortable format
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 1, 0, 0, 1, 5, tzinfo=UTC)
    assert table.write_status("golang", "1.22", status_entry("in_sync", last_attempt=moment))
    assert table.get_row("golang")["status"]["1.22"]["last_attempt"] == format_timestamp(moment) == ts(1, 5)


def test_extra_status_fields_are_kept(table):
    table.put_row(golang())
    entry = dict(status_entry("diverged", last_attempt=ts(1)), last_drift_state="diverged", last_drift_at=ts(1))
    assert table.write_status("golang", "1.22", entry)
    stored = table.get_row("golang")["status"]["1.22"]
    assert stored["last_drift_state"] == "diverged" and stored["last_drift_at"] == ts(1)


def test_invalid_rows_and_read_status(table):
    table.put_row(golang())
    table.put_row({"id": "alpine", "source": "alpine", "tags": ["3"]})
    table.write_status(
        "golang", "1.23", status_entry("behind", upstream_digest=D2, target_digest=D1, last_attempt=ts(2))
    )
    table.write_status("golang", "1.22", status_entry(
        "in_sync", upstream_digest=D1, expected_digest=D1, target_digest=D1, last_attempt=ts(1), last_success=ts(1),
        bytes_copied=10,
    ))
    assert table.write_invalid("alpine", "row 'alpine': attribute 'platforms':\ninvalid platform 'linux'")
    records = table.read_status()
    assert all(tuple(r) == STATUS_RECORD_FIELDS for r in records)
    assert [(r["id"], r["tag"], r["state"]) for r in records] == [
        ("alpine", None, "invalid"),
        ("golang", "1.22", "in_sync"),
        ("golang", "1.23", "behind"),
    ]
    assert records[0]["error"] == "row 'alpine': attribute 'platforms': invalid platform 'linux'"
    assert records[0]["last_attempt"]
    assert records[1] == {
        "id": "golang", "tag": "1.22", "state": "in_sync", "upstream_digest": D1, "expected_digest": D1,
        "target_digest": D1, "last_attempt": ts(1), "last_success": ts(1), "bytes_copied": 10, "error": None,
        "referrers_copied": None, "referrers_present": None, "referrers_not_applicable": None, "referrers_note": None,
        "referrers_error": None, "referrers_refused": None,
    }
    assert isinstance(records[1]["bytes_copied"], int)
    assert [r["tag"] for r in table.read_status(["golang", "absent"])] == ["1.22", "1.23"]
    # fixed by its owner: the invalid mark goes, once
    assert table.clear_invalid("alpine") is True
    assert table.clear_invalid("alpine") is False
    assert "row_error" not in table.get_row("alpine")
    assert [r["id"] for r in table.read_status()] == ["golang", "golang"]


def test_prune_status_removes_tags_no_longer_selected(table):
    table.put_row(golang())
    for n, tag in enumerate(["1.20", "1.21", "1.22"]):
        table.write_status("golang", tag, status_entry("in_sync", last_attempt=ts(n)))
    assert table.prune_status("golang", ["1.22", "9.9"]) == ["1.20", "1.21"]
    assert set(table.get_row("golang")["status"]) == {"1.22"}
    assert table.prune_status("golang", ["1.22"]) == []
    assert table.prune_status("absent", []) == []


def test_malformed_status_data_is_skipped_when_reading(dynamodb, table):
    table.put_row(golang())
    dynamodb.update_item(
        TableName=TABLE, Key={"id": {"S": "golang"}}, UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": {"M": {"1.22": {"S": "not a map"}, "1.23": {"M": {"state": {"S": "in_sync"}}}}}
        },
    )
    assert [(r["tag"], r["state"]) for r in table.read_status()] == [("1.23", "in_sync")]


def test_the_status_rules_hold_through_a_resource_too(dynamodb):
    """A resource's client converts values itself: every call must still line up."""
    t = MirrorTable(boto3.resource("dynamodb", region_name=REGION), TABLE)
    assert t.create() is True
    t.put_row(golang())
    with pytest.raises(RowError):
        t.put_row(golang())
    assert t.write_status("golang", "1.22", status_entry("in_sync", target_digest=D1, last_attempt=ts(2),
                                                         last_success=ts(2), bytes_copied=5))
    assert t.write_status("golang", "1.22", status_entry("behind", last_attempt=ts(1))) is False
    assert t.write_status("golang", "1.22", status_entry("failed", error="x", last_attempt=ts(3)))
    assert t.write_status("golang", "1.23", status_entry("missing", last_attempt=ts(3)))
    assert t.write_status("ghost", "1", status_entry("missing", last_attempt=ts(3))) is False
    assert t.write_invalid("golang", "odd") and t.clear_invalid("golang")
    assert t.prune_status("golang", ["1.22"]) == ["1.23"]
    records = t.read_status()
    assert [(r["tag"], r["state"], r["last_success"], r["error"]) for r in records] == [("1.22", "failed", ts(2), "x")]
    assert list(t.scan_rows(page_size=1))[0]["status"]["1.22"]["error"] == "x"
    assert t.delete_row("golang") and t.get_row("golang") is None and t.get_row("ghost") is None
