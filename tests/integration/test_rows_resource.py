"""The stack's rows file at deploy: the rows custom resource's handler (ecr_mirror.handlers.rows) against a
mirror table on moto, with the Create, Update and Delete requests the CDK Provider framework hands it.

The resource's properties are made as the stack makes them at synth (infra/config.py ``rows_json``:
:func:`ecr_mirror.rowsfile.load_rows_yaml`, then :func:`~ecr_mirror.rowsfile.rows_json`).
"""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from ecr_mirror.cli import main as cli
from ecr_mirror.errors import RowsFileError
from ecr_mirror.handlers import _common, rows
from ecr_mirror.rowsfile import PROPERTY_FILE_NAME, PROPERTY_ROWS, load_rows_yaml, rows_json
from tests.integration.passes import Ctx

FIRST = """\
    defaults:
      platforms: [linux/amd64, linux/arm64]
    sources:
      - id: golang
        source: docker.io/library/golang
        tags: ["1.22", "1.23"]
      - source: docker.io/library/node   # id derived: docker.io/library/node
        versions: ">=20 <23"
        keep_latest: 2
      - id: debian
        source: docker.io/library/debian
        tags: [bookworm]
"""

SECOND = """\
    sources:
      - id: golang
        source: docker.io/library/golang
        tags: ["1.23", "1.24"]           # changed
      - source: docker.io/library/node
        versions: ">=20 <23"
        keep_latest: 2
        platforms: [linux/amd64, linux/arm64]
      - id: redis                         # added; debian removed from the file
        source: docker.io/library/redis
        tags: ["7"]
"""


def properties(text: str, name: str = "mirror.yaml") -> dict[str, Any]:
    """What the stack puts on the custom resource for a rows file of ``text`` (infra/config.py rows_json)."""
    rows_file = load_rows_yaml(textwrap.dedent(text), name=name, prefix="mirror")
    return {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
            PROPERTY_ROWS: rows_json(rows_file), PROPERTY_FILE_NAME: name}


def event(request: str, props: dict[str, Any], old: dict[str, Any] | None = None,
          physical: str | None = None) -> dict[str, Any]:
    """A CloudFormation custom resource request, as the Provider framework passes it to onEvent."""
    body: dict[str, Any] = {
        "RequestType": request, "ResourceType": "Custom::EcrMirrorRows", "LogicalResourceId": "MirrorRows",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/EcrMirror/1",
        "RequestId": str(uuid.uuid4()), "ResourceProperties": props,
    }
    if old is not None:
        body["OldResourceProperties"] = old
    if physical is not None:
        body["PhysicalResourceId"] = physical
    return body


@pytest.fixture
def table(aws_env, monkeypatch, tmp_path) -> str:
    name = "rows-" + uuid.uuid4().hex[:8]
    for key, value in {"ECR_MIRROR_TABLE": name, "ECR_MIRROR_REPOSITORY_PREFIX": "mirror",
                       "DOCKER_CONFIG": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    _common.reset()
    run("table", "create")
    yield name
    _common.reset()


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def items(name: str) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in boto3.resource("dynamodb").Table(name).scan(ConsistentRead=True)["Items"]}


def test_create_update_delete_manage_the_rows_of_the_file_and_leave_the_others(table, tmp_path):
    run("add", "by-hand", "--source", "quay.io/org/tool", "--tag", "v1")
    first = properties(FIRST)
    created = rows.handler(event("Create", first), Ctx())
    assert created == {"PhysicalResourceId": f"{table}/rows",
                       "Data": {"Added": 3, "Changed": 0, "Deleted": 0, "Unchanged": 0}}
    got = items(table)
    assert sorted(got) == ["by-hand", "debian", "docker.io/library/node", "golang"]
    assert got["golang"]["tags"] == ["1.22", "1.23"] and got["golang"]["platforms"] == ["linux/amd64", "linux/arm64"]

    # the same code as `ecr-mirror apply -f`: the file applied by the CLI finds nothing to do
    path = tmp_path / "mirror.yaml"
    path.write_text(textwrap.dedent(FIRST))
    assert "0 added, 0 changed, 0 deleted, 3 unchanged, 1 not in the file (left)" in run("apply", "-f", str(path))
    # an Update with the same rows (a comment changed: the property is the same) writes nothing
    again = rows.handler(event("Update", first, old=first, physical=created["PhysicalResourceId"]), Ctx())
    assert again["Data"] == {"Added": 0, "Changed": 0, "Deleted": 0, "Unchanged": 3}
    assert items(table) == got

    second = properties(SECOND)
    updated = rows.handler(event("Update", second, old=first, physical=created["PhysicalResourceId"]), Ctx())
    assert updated == {"PhysicalResourceId": f"{table}/rows",
                       "Data": {"Added": 1, "Changed": 1, "Deleted": 1, "Unchanged": 1}}
    got = items(table)
    assert sorted(got) == ["by-hand", "docker.io/library/node", "golang", "redis"]  # debian left the file
    assert got["golang"]["tags"] == ["1.23", "1.24"] and "platforms" not in got["golang"]

    deleted = rows.handler(event("Delete", second, physical=updated["PhysicalResourceId"]), Ctx())
    assert deleted["PhysicalResourceId"] == f"{table}/rows"
    assert items(table) == got  # the rows stay


def test_a_file_clashing_with_a_row_not_in_it_fails_the_deployment_and_writes_nothing(table):
    run("add", "by-hand", "--source", "docker.io/library/golang", "--tag", "1.22",
        "--target-repository", "mirror/docker.io/library/golang")
    before = items(table)
    with pytest.raises(RowsFileError) as caught:
        rows.handler(event("Create", properties(FIRST)), Ctx())
    assert "'by-hand' is in the table but not in the file" in str(caught.value), caught.value
    assert items(table) == before
    bad = {**properties(FIRST), PROPERTY_ROWS: '{"sources": [{"id": "x", "source": "docker.io/library/x", '
                                                '"tags": ["1.2 "]}]}'}
    with pytest.raises(RowsFileError) as caught:
        rows.handler(event("Create", bad), Ctx())
    assert str(caught.value).startswith("mirror.yaml: entry 1 (id 'x'): attribute 'tags'"), caught.value
    assert items(table) == before
