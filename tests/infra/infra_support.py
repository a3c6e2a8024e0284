"""What the infra tests share: the session's stack variants, and readers of synthesized templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent

DEFAULT_STACK = "EcrMirror"
CUSTOM_STACK = "EcrMirrorCustom"
EXISTING_SECRET_STACK = "EcrMirrorExistingSecret"

#: props changes per stack, on top of the cdk.json context
VARIANTS: dict[str, dict[str, Any]] = {
    DEFAULT_STACK: {},
    CUSTOM_STACK: {
        "schedule_expression": "rate(2 hours)",
        "repository_prefix": "team/mirror",
        "tag_mutability": "IMMUTABLE",
        "alarm_email": "ops@example.com",
        "create_credentials_secret": True,
        "worker_memory_mb": 4096,
        "worker_timeout_seconds": 600,
        "max_concurrency": 3,
        "metrics_namespace": "TeamMirror",
        "log_level": "DEBUG",
        "pull_reserve": "5",
        "host_rates": "public.ecr.aws=5",
    },
    EXISTING_SECRET_STACK: {
        "schedule_expression": "cron(0 3 * * ? *)",
        "schedule_period_minutes": 1440,
        "credentials_secret_name": "ecr-mirror/upstream",
        "target_registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    },
}


def cdk_json() -> dict[str, Any]:
    return json.loads((REPO / "cdk.json").read_text())


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def only(template: dict[str, Any], type_: str, predicate: Any = None) -> tuple[str, dict[str, Any]]:
    found = [(k, r) for k, r in resources(template, type_).items() if predicate is None or predicate(k, r)]
    assert len(found) == 1, f"expected one {type_}, found {[k for k, _ in found]}"
    return found[0]


def mirror_table(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The mirror table (users' rows; the one with a stream)."""
    return only(template, "AWS::DynamoDB::Table", lambda _k, r: "StreamSpecification" in r["Properties"])


def state_table(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The state table (what the service records; no stream)."""
    return only(template, "AWS::DynamoDB::Table", lambda _k, r: "StreamSpecification" not in r["Properties"])


def flat(value: Any) -> str:
    """Intrinsics flattened the way cdk-nag does: Ref X -> <X>, GetAtt X.Arn -> <X.Arn>, Join -> joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{resource}.{attribute}>"
        if "Fn::Join" in value:
            delimiter, parts = value["Fn::Join"]
            return delimiter.join(flat(p) for p in parts)
    return json.dumps(value, sort_keys=True)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function(template: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::Lambda::Function", lambda _k, r: r["Properties"]["Handler"] == handler)


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement granted to a role: inline policies and AWS::IAM::Policy resources attached to it."""
    role = template["Resources"][role_id]["Properties"]
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def grants(template: dict[str, Any], role_id: str) -> set[tuple[str, str]]:
    """(action, flat resource) pairs a role is allowed."""
    pairs = set()
    for statement in role_statements(template, role_id):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                pairs.add((action, flat(resource)))
    return pairs


def function_role(template: dict[str, Any], handler: str) -> str:
    _, fn = function(template, handler)
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def alarm_by_metric(template: dict[str, Any], metric_name: str, **match: Any) -> dict[str, Any]:
    found = [
        r["Properties"]
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("MetricName") == metric_name
        and all(r["Properties"].get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"expected one alarm on {metric_name} {match}, found {len(found)}"
    return found[0]
