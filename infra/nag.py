"""cdk-nag: the AwsSolutions checks, and acknowledgements kept next to the resources they concern.

cdk-nag 3.x runs as a CDK policy-validation plugin (``Validations.of(app).add_plugins(...)``);
an unacknowledged finding makes synthesis fail. Acknowledgements use CDK's own
``Validations.of(construct).acknowledge(...)``, which needs no cdk-nag import, so the
:class:`~infra.mirror.EcrMirror` construct carries its reasons into any app that adds the plugin.
Findings about one resource of several (IAM5 wildcards) are acknowledged one by one,
``RuleId[Resource::<flattened ARN>]``, never a whole rule.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

#: the cdk-nag rule pack, as CDK's validation report names the plugin
PACK = "AwsSolutions"


def add_checks(app: cdk.App) -> None:
    """Run the AWS Solutions rule pack on every stack of ``app`` at synthesis."""
    from cdk_nag import AwsSolutionsChecks  # imported here: the constructs themselves do not need cdk-nag

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and the resources below it), with its reason.

    ``rule_id`` is cdk-nag's, e.g. ``AwsSolutions-SMG4`` or ``AwsSolutions-IAM5[Resource::*]``; it is
    recorded qualified by the plugin name (``AwsSolutions::...``), the form CDK's validation report
    lists under ``suppressedViolations`` with the reason.
    """
    if len(reason.split()) < 8:
        raise ValueError(f"acknowledgement of {rule_id} needs a specific reason, got {reason!r}")
    qualified = rule_id if "::" in rule_id.split("[", 1)[0] else f"{PACK}::{rule_id}"
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=qualified, reason=reason))


def acknowledgements(root: IConstruct) -> list[tuple[str, str, str]]:
    """Every acknowledgement recorded under ``root``: (construct path, rule id, reason)."""
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found: list[tuple[str, str, str]] = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key and entry.data:
                for rule_id, reason in entry.data.items():
                    found.append((construct.node.path, rule_id, reason))
    return found


def finding_resource(scope: IConstruct, value: str) -> str:
    """A resource (ARN, maybe with tokens) as cdk-nag's IAM5 spells it in a finding id.

    cdk-nag flattens intrinsics: ``{"Ref": "AWS::Region"}`` -> ``<AWS::Region>``,
    ``{"Fn::GetAtt": ["Res", "Arn"]}`` -> ``<Res.Arn>``, ``Fn::Join`` -> the joined parts.
    """
    return _flatten(cdk.Stack.of(scope).resolve(value))


def _flatten(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
