"""The stack and the rows file (context ``rowsFile``), and the outputs ``ecr-mirror --stack`` reads.

A stack with a rows file is synthesized once here (its own app, built from the cdk.json context as
``app.py`` builds it, with cdk-nag); a bad file goes through the real CDK CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

import pytest
from infra_support import (
    CUSTOM_STACK,
    DEFAULT_STACK,
    EXISTING_SECRET_STACK,
    REPO,
    cdk_json,
    function,
    function_role,
    grants,
    mirror_table,
    only,
    resources,
)

pytestmark = pytest.mark.xdist_group("infra")

ROWS_STACK = "EcrMirrorWithRows"
ROWS = """\
    # the platform team's mirror rows
    defaults:
      platforms: [linux/amd64, linux/arm64]
    sources:
      - id: golang
        source: docker.io/library/golang
        tags: ["1.22", "1.23"]
      - source: ghcr.io/org/app
        versions: ">=1.4 <2"
        keep_latest: 3
"""


@pytest.fixture(scope="module")
def rows_synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import aws_cdk as cdk

    from infra import EcrMirrorProps, EcrMirrorStack, add_checks

    work = tmp_path_factory.mktemp("rows-stack")
    path = work / "mirror.yaml"
    path.write_text(textwrap.dedent(ROWS))
    app = cdk.App(outdir=str(work / "cdk.out"), context={**cdk_json()["context"], "rowsFile": str(path)})
    props = EcrMirrorProps.from_context(app.node)
    EcrMirrorStack(app, ROWS_STACK, props=props)
    add_checks(app)
    app.synth()
    out = work / "cdk.out"
    return {
        "props": props,
        "path": path,
        "template": json.loads((out / f"{ROWS_STACK}.template.json").read_text()),
        "report": json.loads((out / "validation-report.json").read_text()),
    }


def test_the_rows_file_travels_as_a_property_of_a_custom_resource(rows_synth):
    from ecr_mirror.rowsfile import load_rows_yaml, rows_json

    template = rows_synth["template"]
    _, resource = only(template, "Custom::EcrMirrorRows")
    expected = rows_json(load_rows_yaml(rows_synth["path"].read_bytes(), prefix="mirror"))
    assert resource["Properties"]["RowsFile"] == expected
    assert resource["Properties"]["FileName"] == str(rows_synth["path"])
    document = json.loads(expected)
    assert [s["id"] for s in document["sources"]] == ["golang", "ghcr.io/org/app"]  # ids derived at synth
    assert document["sources"][1]["platforms"] == ["linux/amd64", "linux/arm64"]  # defaults applied
    # the Provider framework's function is the service token
    token = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    framework = template["Resources"][token]["Properties"]
    assert framework["Handler"] == "framework.onEvent"
    (user_function,) = [v["Fn::GetAtt"][0] for v in framework["Environment"]["Variables"].values()]
    assert template["Resources"][user_function]["Properties"]["Handler"] == "ecr_mirror.handlers.rows.handler"


def test_a_changed_file_changes_the_property_and_a_comment_does_not(rows_synth, tmp_path):
    props = rows_synth["props"]
    comment = tmp_path / "comment.yaml"
    comment.write_text("# reordered comments, same rows\n" + textwrap.dedent(ROWS).replace("# the platform", "# a"))
    changed = tmp_path / "changed.yaml"
    changed.write_text(textwrap.dedent(ROWS).replace('"1.23"]', '"1.23", "1.24"]'))
    assert props.replace(rows_file=str(comment)).rows_json == props.rows_json
    assert props.replace(rows_file=str(changed)).rows_json != props.rows_json


def test_the_rows_function_may_only_read_and_write_rows_and_no_role_uses_managed_policies(rows_synth):
    from infra.rows import ROWS_TABLE_ACTIONS

    template = rows_synth["template"]
    role = function_role(template, "ecr_mirror.handlers.rows.handler")
    table_id, _ = mirror_table(template)
    table_grants = {(a, r) for a, r in grants(template, role) if not a.startswith("logs:")}
    assert table_grants == {(a, f"<{table_id}.Arn>") for a in ROWS_TABLE_ACTIONS}
    _, fn = function(template, "ecr_mirror.handlers.rows.handler")
    assert set(fn["Properties"]["Environment"]["Variables"]) >= {"ECR_MIRROR_TABLE", "ECR_MIRROR_REPOSITORY_PREFIX"}
    for role_id, r in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in r["Properties"], f"{role_id} uses managed policies"
    assert [p["conclusion"] for p in rows_synth["report"]["pluginReports"]] == ["success"]
    # without rowsFile there is no such resource (the session's default stack)
    assert len(resources(template, "AWS::Lambda::Function")) == 5  # 3 + the rows function + the framework's


def test_a_bad_rows_file_fails_cdk_synth_with_one_line_and_no_banner(tmp_path):
    cdk = REPO / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "the CDK CLI is missing: install it with `npm ci` (make setup does)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: golang\n    source: docker.io/library/golang\n    tags: ['1.2 ']\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSII_", "CDK_"))}
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    result = subprocess.run([str(cdk), "synth", "--quiet", "--no-notices", "-c", f"rowsFile={bad}",
                             "--output", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ecr-mirror: error:")]
    assert errors == [f"ecr-mirror: error: rowsFile: {bad}:4: entry 1 (id 'golang'): attribute 'tags': entry 1: "
                      "invalid tag '1.2 ': up to 128 of letters, digits, '_', '.', '-'"], result.stderr
    assert "Traceback" not in result.stderr and "!!" not in result.stderr + result.stdout, result.stderr


@pytest.mark.parametrize("stack", [DEFAULT_STACK, CUSTOM_STACK, EXISTING_SECRET_STACK])
def test_outputs_give_the_cli_the_settings_the_worker_gets(synth, stack):
    from ecr_mirror.config import OUTPUT_REGION, STACK_OUTPUTS

    template = synth.templates[stack]
    outputs = {k: v["Value"] for k, v in template["Outputs"].items()}
    assert set(STACK_OUTPUTS) | {OUTPUT_REGION} <= set(outputs)
    _, worker = function(template, "ecr_mirror.handlers.worker.handler")
    env = worker["Properties"]["Environment"]["Variables"]
    for key, variable in {"TableName": "ECR_MIRROR_TABLE", "StateTableName": "ECR_MIRROR_STATE_TABLE",
                          "RepositoryPrefix": "ECR_MIRROR_REPOSITORY_PREFIX",
                          "TagMutability": "ECR_MIRROR_TAG_MUTABILITY"}.items():
        assert outputs[key] == env[variable], key
    if "ECR_MIRROR_TARGET_REGISTRY" in env:
        assert outputs["TargetRegistry"] == env["ECR_MIRROR_TARGET_REGISTRY"]
    else:  # the worker writes to its own account's registry: the output names it
        assert outputs["TargetRegistry"] == {"Fn::Join": ["", [{"Ref": "AWS::AccountId"}, ".dkr.ecr.",
                                                               {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]}
    assert outputs[OUTPUT_REGION] == {"Ref": "AWS::Region"}

