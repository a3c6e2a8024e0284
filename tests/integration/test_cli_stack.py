"""``ecr-mirror --stack NAME``: the CLI takes its settings from a deployed stack's outputs, so a laptop ``sync``
and the worker write the same repositories the same way. CloudFormation is moto's (a stack created there
with the outputs infra/stack.py writes; tests/infra checks those equal what the worker is given); ECR is
the stand-in; the upstream a real registry.
"""

from __future__ import annotations

import json
import uuid

import boto3
from click.testing import CliRunner

from ecr_mirror.cli import main as cli
from ecr_mirror.config import OUTPUT_REGION, STACK_OUTPUTS
from tests.support import images as im

REPO = "team/app"


def create_stack(outputs: dict[str, str]) -> str:
    """A CloudFormation stack on moto with these outputs (and one resource: a stack needs one)."""
    name = "Mirror" + uuid.uuid4().hex[:6]
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_stack_outputs_decide_table_prefix_mutability_and_registry_over_the_environment(
        ecr, registry, monkeypatch, tmp_path):
    table = "stack-rows-" + uuid.uuid4().hex[:6]
    state = "stack-state-" + uuid.uuid4().hex[:6]  # not <table>-state: only the stack can say it
    stack = create_stack({"TableName": table, "StateTableName": state, "RepositoryPrefix": "team/mirror",
                          "TagMutability": "IMMUTABLE", "TargetRegistry": ecr.host, OUTPUT_REGION: "us-east-1"})
    # what a laptop may have set for something else: --stack wins over it
    for name, value in {"ECR_MIRROR_TABLE": "other-table", "ECR_MIRROR_STATE_TABLE": "other-state",
                        "ECR_MIRROR_REPOSITORY_PREFIX": "laptop", "ECR_MIRROR_TAG_MUTABILITY": "MUTABLE",
                        "ECR_MIRROR_TARGET_REGISTRY": "127.0.0.1:1", "DOCKER_CONFIG": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # restored after the test (--stack sets it to the stack's)
    index = im.build_index([im.build_image("linux/amd64", seed=31), im.build_image("linux/arm64/v8", seed=31)])
    im.push_index(registry, REPO, index, "v1")

    assert invoke("--stack", stack, "table", "create").exit_code == 0
    names = boto3.client("dynamodb").list_tables()["TableNames"]
    assert table in names and state in names and "other-table" not in names
    assert invoke("add", "app", "--source", f"{registry.host}/{REPO}", "--tag", "v1", "--stack", stack).exit_code == 0
    synced = invoke("sync", "--json", "--stack", stack)  # a global option after the command
    assert synced.exit_code == 0, synced.output
    (result,) = json.loads(synced.output)
    assert (result["state"], result["target_digest"]) == ("in_sync", index.digest)
    repository = f"team/mirror/{registry.host.replace(':', '-')}/{REPO}"
    assert im.head_manifest(ecr, repository, "v1", auth=ecr.auth) == index.digest
    (described,) = ecr.client().describe_repositories(repositoryNames=[repository])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE"
    status = boto3.resource("dynamodb").Table(state).scan()["Items"]
    assert any(i.get("target_digest") == index.digest for i in status)
    # --table on the command line still names another table
    other = invoke("--stack", stack, "list", "--table", "nope-" + uuid.uuid4().hex[:4])
    assert other.exit_code == 1 and "not found" in other.output


def test_a_missing_stack_or_one_without_the_outputs_is_one_line(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    missing = invoke("--stack", "NoSuchStack", "list")
    assert missing.exit_code == 1
    assert missing.output.strip() == ("ecr-mirror: error: stack NoSuchStack not found in region us-east-1: deploy it "
                                      "(cdk deploy), or set AWS_REGION to the region it is in")
    foreign = create_stack({"Something": "else"})
    other = invoke("--stack", foreign, "list")
    assert other.exit_code == 1
    assert other.output.strip() == (f"ecr-mirror: error: stack {foreign} has no output {', '.join(STACK_OUTPUTS)}: "
                                    "is it an ecr-mirror stack? (a stack deployed by an older version gets them "
                                    "with cdk deploy)")


def test_a_stack_output_the_functions_would_refuse_is_refused(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    stack = create_stack({"TableName": "t1", "StateTableName": "t1-state", "RepositoryPrefix": "mirror",
                          "TagMutability": "SOMETIMES", "TargetRegistry": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                          OUTPUT_REGION: "us-east-1"})
    result = invoke("--stack", stack, "list")
    assert result.exit_code == 1 and "output TagMutability='SOMETIMES' is not one of MUTABLE" in result.output
