"""The stack grants nothing beyond what the code calls.

The AWS API calls are read from the Lambda package's source (every ``client.<operation>(...)`` and
``get_paginator("<operation>")`` whose name is an operation of a service the code uses, per botocore's
own service models), the registry-API calls from the registry client's methods (each maps to the ECR
IAM action that authorises it). Every action granted to any function must be one of those, or one that
Lambda itself needs for its logs and event sources.
"""

from __future__ import annotations

import ast
from pathlib import Path

import botocore
import botocore.session
import pytest
from infra_support import VARIANTS, function_role, grants

from infra.contract import HANDLER_SCHEDULE, HANDLER_STREAM, HANDLER_WORKER

pytestmark = pytest.mark.xdist_group("infra")

PACKAGE = Path(__file__).resolve().parents[2] / "lambda" / "ecr_mirror"
SERVICES = {"ecr": "ecr", "dynamodb": "dynamodb", "sqs": "sqs", "secretsmanager": "secretsmanager"}
#: IAM actions an API operation needs besides its own (tags on CreateRepository are authorised by TagResource)
IMPLIED = {"ecr:CreateRepository": {"ecr:TagResource"}, "sqs:SendMessageBatch": {"sqs:SendMessage"}}
#: the registry HTTP API, by the client method that speaks it, and the ECR action that authorises it
REGISTRY_API = {
    "manifest_head": {"ecr:BatchGetImage"},
    "manifest_get": {"ecr:BatchGetImage"},
    "manifest_put": {"ecr:PutImage"},
    "blob_head": {"ecr:BatchCheckLayerAvailability"},
    "blob_open": {"ecr:GetDownloadUrlForLayer"},
    "blob_upload_start": {"ecr:InitiateLayerUpload", "ecr:GetDownloadUrlForLayer"},  # mount reads the source repo
    "blob_upload_finish": {"ecr:UploadLayerPart", "ecr:CompleteLayerUpload"},
    # ListImageReferrers "must have the ecr:BatchGetImage permission" (API_ListImageReferrers)
    "referrers_list": {"ecr:BatchGetImage"},
    "referrers_tag_get": {"ecr:BatchGetImage"},
}
#: what Lambda's own machinery uses: log delivery and the event source mappings
PLATFORM = {
    "logs:CreateLogStream", "logs:PutLogEvents",
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
    "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
}


def _operations() -> dict[str, set[str]]:
    """snake_case operation name -> IAM actions, for the services the package uses."""
    session = botocore.session.get_session()
    out: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for op in session.get_service_model(service).operation_names:
            out.setdefault(botocore.xform_name(op), set()).add(f"{prefix}:{op}")
    return out


def code_calls() -> tuple[set[str], set[str]]:
    """(IAM actions of AWS API calls in the package, registry-client methods called outside the client)."""
    operations = _operations()
    actions: set[str] = set()
    registry_methods: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        inside_client = path.parent.name == "registry"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            # get_paginator("scan"), and the tables' own dispatchers: self._call("update_item", ...),
            # self._conditional("put_item", ...), self._pages("query", ...)
            if name in ("get_paginator", "_call", "_conditional", "_pages") and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
            for action in operations.get(name, ()):
                actions.add(action)
                actions |= IMPLIED.get(action, set())
            if name in REGISTRY_API and not inside_client:
                registry_methods.add(name)
    return actions, registry_methods


def test_the_scan_finds_what_the_code_calls():
    actions, registry = code_calls()
    # a sample of calls the service is known to make; if the scan misses these it proves nothing
    for expected in ("ecr:GetAuthorizationToken", "ecr:CreateRepository", "ecr:DescribeImages", "ecr:ListImages",
                     "dynamodb:UpdateItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchWriteItem",
                     "secretsmanager:GetSecretValue", "sqs:SendMessage", "sqs:ChangeMessageVisibility"):
        assert expected in actions
    assert registry == set(REGISTRY_API)


@pytest.mark.parametrize("stack", list(VARIANTS))
@pytest.mark.parametrize("handler", [HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM])
def test_no_grant_beyond_the_calls_the_code_makes(synth, stack, handler):
    actions, registry = code_calls()
    allowed = actions | PLATFORM | {a for m in registry for a in REGISTRY_API[m]}
    template = synth.templates[stack]
    granted = {action for action, _ in grants(template, function_role(template, handler))}
    assert granted - allowed == set(), f"{handler} is granted actions no code calls"


def test_the_worker_may_make_every_registry_call_it_makes(synth):
    _, registry = code_calls()
    template = synth.templates["EcrMirror"]
    granted = {action for action, _ in grants(template, function_role(template, HANDLER_WORKER))}
    needed = {a for m in registry for a in REGISTRY_API[m]} | {"ecr:GetAuthorizationToken", "ecr:CreateRepository",
                                                             "ecr:DescribeRepositories", "ecr:DescribeImages",
                                                             "ecr:ListImages", "dynamodb:GetItem", "dynamodb:UpdateItem",
                                                             "dynamodb:Query", "dynamodb:PutItem",
                                                             "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    assert needed - granted == set()
