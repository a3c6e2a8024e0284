"""MirrorTable against DynamoDB as moto implements it, in-process (``mock_aws``): rows in and out,
pagination, validation. (What the service records lives in the state table:
tests/integration/test_state_store.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from ecr_mirror.errors import AwsError, ConfigError, RowError
from ecr_mirror.store import MirrorTable

REGION = "us-east-1"
TABLE = "ecr-mirror-test"
SECRET = "fake-secret-never-printed-0123456789"


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


def test_bad_table_name_is_a_config_error(dynamodb):
    for name in ("", "ab", "has space", "x" * 256, None):
        with pytest.raises(ConfigError):
            MirrorTable(dynamodb, name)  # type: ignore[arg-type]
