"""IAM least privilege: each function's role holds exactly its grants, the ECR ones on the prefix ARNs."""

from __future__ import annotations

import pytest
from infra_support import (
    CUSTOM_STACK,
    DEFAULT_STACK,
    EXISTING_SECRET_STACK,
    VARIANTS,
    as_list,
    function,
    function_role,
    grants,
    mirror_table,
    only,
    resources,
    role_statements,
    state_table,
)

from infra.contract import HANDLER_SCHEDULE, HANDLER_STREAM, HANDLER_WORKER

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")

# Written out here, not imported from infra: a change to what the worker may do must change this test.
ECR_REPOSITORY_ACTIONS = {
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:DescribeImages",
    "ecr:ListImages",
    "ecr:DescribeRepositories",
    "ecr:CreateRepository",
    "ecr:TagResource",
}
TABLE_SCAN = {"dynamodb:Scan"}
TABLE_WORKER = {"dynamodb:GetItem", "dynamodb:UpdateItem"}
STATE_SCHEDULE = {"dynamodb:Query", "dynamodb:PutItem"}
STATE_WORKER = {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                "dynamodb:GetItem", "dynamodb:UpdateItem"}  # GetItem, UpdateItem: the pull budgets (issue 15)
STATE_STREAM = {"dynamodb:Query", "dynamodb:BatchWriteItem"}
TABLE_WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
SQS_SEND = {"sqs:SendMessage"}
SQS_CONSUME = {
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
STREAM_READ = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
#: the only actions allowed on "*": neither has a resource-level form usable here
STAR_ACTIONS = {HANDLER_WORKER: {"ecr:GetAuthorizationToken"}, HANDLER_STREAM: {"dynamodb:ListStreams"}}


def ids(template):
    table_id, _ = mirror_table(template)
    queue_id, _ = only(template, "AWS::SQS::Queue", lambda _k, r: "RedrivePolicy" in r["Properties"])
    logs = {}
    for handler in (HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM):
        _, fn = function(template, handler)
        logs[handler] = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    state_id, _ = state_table(template)
    return table_id, state_id, queue_id, logs


def pairs(actions, resource):
    return {(a, resource) for a in actions}


def expected_grants(template, props, handler):
    table_id, state_id, queue_id, logs = ids(template)
    table, state, queue = f"<{table_id}.Arn>", f"<{state_id}.Arn>", f"<{queue_id}.Arn>"
    expected = pairs(LOGS, f"<{logs[handler]}.Arn>")
    if handler == HANDLER_SCHEDULE:
        expected |= pairs(TABLE_SCAN, table) | pairs(STATE_SCHEDULE, state) | pairs(SQS_SEND, queue)
    elif handler == HANDLER_STREAM:
        expected |= pairs(SQS_SEND, queue) | pairs(STATE_STREAM, state) | pairs(TABLE_SCAN, table)
        expected |= pairs(STREAM_READ, f"<{table_id}.StreamArn>") | {("dynamodb:ListStreams", "*")}
    else:
        expected |= pairs(TABLE_WORKER, table) | pairs(STATE_WORKER, state) | pairs(SQS_CONSUME, queue)
        expected |= pairs(SQS_SEND, queue)  # rows it could not start go back as fresh messages
        expected |= {("ecr:GetAuthorizationToken", "*")}
        if props.target_registry:
            account, region = props.target_account_and_region
        else:
            account, region = "<AWS::AccountId>", "<AWS::Region>"
        repositories = f"arn:<AWS::Partition>:ecr:{region}:{account}:repository/{props.repository_prefix}/*"
        expected |= pairs(ECR_REPOSITORY_ACTIONS, repositories)
        if props.create_credentials_secret:
            secret_id, _ = only(template, "AWS::SecretsManager::Secret")
            expected |= {("secretsmanager:GetSecretValue", f"<{secret_id}>")}
        elif props.credentials_secret_name:
            expected |= {
                (
                    "secretsmanager:GetSecretValue",
                    "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
                    f"{props.credentials_secret_name}-??????",
                )
            }
    return expected


@pytest.mark.parametrize("stack", list(VARIANTS))
@pytest.mark.parametrize("handler", [HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM])
def test_each_role_holds_exactly_its_grants(synth, stack, handler):
    template = synth.templates[stack]
    actual = grants(template, function_role(template, handler))
    expected = expected_grants(template, synth.props[stack], handler)
    assert actual - expected == set(), "granted beyond what the function needs"
    assert expected - actual == set(), "missing grants"


def test_default_worker_pushes_only_under_mirror(synth):
    template = synth.templates[DEFAULT_STACK]
    ecr = {r for a, r in grants(template, function_role(template, HANDLER_WORKER)) if a.startswith("ecr:")}
    assert ecr == {"*", "arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:repository/mirror/*"}


def test_target_registry_moves_the_repository_arns_to_its_account_and_region(synth):
    template = synth.templates[EXISTING_SECRET_STACK]
    ecr = {r for a, r in grants(template, function_role(template, HANDLER_WORKER)) if a == "ecr:PutImage"}
    assert ecr == {"arn:<AWS::Partition>:ecr:eu-west-1:123456789012:repository/mirror/*"}


def test_custom_prefix_scopes_the_repository_arns(synth):
    template = synth.templates[CUSTOM_STACK]
    ecr = {r for a, r in grants(template, function_role(template, HANDLER_WORKER)) if a == "ecr:CreateRepository"}
    assert ecr == {"arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:repository/team/mirror/*"}


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_nothing_wider_anywhere(synth, stack):
    template = synth.templates[stack]
    for handler in (HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM):
        role_id = function_role(template, handler)
        for action, resource in grants(template, role_id):
            assert "*" not in action, f"{handler}: wildcard action {action}"
            if resource == "*":
                assert action in STAR_ACTIONS.get(handler, set()), f"{handler}: {action} on '*'"
    for role_id, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{role_id} uses managed policies"
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert len(resources(template, "AWS::IAM::Role")) == 3, "one role per function, no other roles"


def test_only_the_worker_reads_the_secret_and_writes_to_the_mirror_table(synth):
    for stack in (CUSTOM_STACK, EXISTING_SECRET_STACK):
        template = synth.templates[stack]
        table_id, _, _, _ = ids(template)
        for handler in (HANDLER_SCHEDULE, HANDLER_STREAM):
            pairs_ = grants(template, function_role(template, handler))
            actions = {a for a, _ in pairs_}
            assert not {a for a in actions if a.startswith("secretsmanager:")}
            assert not {a for a, r in pairs_ if r == f"<{table_id}.Arn>"} & TABLE_WRITE
            assert not {a for a in actions if a.startswith("ecr:")}
        # the worker writes the mirror table only to remove a legacy status map (UpdateItem), never a whole item
        worker = {a for a, r in grants(template, function_role(template, HANDLER_WORKER)) if r == f"<{table_id}.Arn>"}
        assert worker & TABLE_WRITE == {"dynamodb:UpdateItem"}


def test_secret_grant_is_get_secret_value_only(synth):
    template = synth.templates[CUSTOM_STACK]
    statements = role_statements(template, function_role(template, HANDLER_WORKER))
    secret_actions = {a for s in statements for a in as_list(s["Action"]) if a.startswith("secretsmanager:")}
    assert secret_actions == {"secretsmanager:GetSecretValue"}
