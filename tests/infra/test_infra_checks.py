"""cdk-nag (AwsSolutions) passes with specific acknowledgements; cfn-lint passes on every template."""

from __future__ import annotations

from pathlib import Path

import pytest
from infra_support import VARIANTS

from infra import nag

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")

#: cfn-lint checks ignored, and why
CFN_LINT_IGNORED = {
    # CDK gives every function an explicit DependsOn on its role and the role's default policy (so the
    # policy exists before the function can run); the role is also referenced by GetAtt, which cfn-lint
    # reports as a redundant dependency. It is harmless and not ours to remove.
    "W3005": "CDK's explicit DependsOn on a function's role, also referenced by GetAtt",
}


def aws_solutions(report):
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == nag.PACK]
    return plugin


def test_aws_solutions_checks_ran_and_passed(synth):
    plugin = aws_solutions(synth.report)
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    # the pack really looked: what it found and we acknowledged is listed with the reason
    assert plugin["suppressedViolations"], "AwsSolutions reported nothing at all: did the checks run?"


def test_every_acknowledgement_carries_a_specific_reason(synth):
    found = synth.acknowledgements
    assert found
    for path, rule_id, reason in found:
        assert rule_id.startswith(f"{nag.PACK}::{nag.PACK}-"), rule_id
        words = reason.split()
        assert len(words) >= 12, f"{path} {rule_id}: reason too thin: {reason!r}"
        assert rule_id.split("::", 1)[1] not in reason


def test_every_acknowledgement_is_needed(synth):
    """No stale acknowledgement: each one suppressed a finding on the construct it was made on."""
    plugin = aws_solutions(synth.report)
    used = {(v["acknowledgedAt"], v["acknowledgedId"]) for v in plugin["suppressedViolations"]}
    made = {(path, rule_id) for path, rule_id, _ in synth.acknowledgements}
    assert made - used == set(), "acknowledged but never found"
    assert used - made == set(), "suppressed by an acknowledgement the tree does not hold"


def test_acknowledged_findings_are_the_expected_few(synth):
    plugin = aws_solutions(synth.report)
    rules = {(v["acknowledgedAt"].split("/", 1)[1], v["ruleName"]) for v in plugin["suppressedViolations"]}
    assert rules == {
        ("Mirror/Service/WorkerRole", "AwsSolutions-IAM5[Resource::*]"),
        ("Mirror/Service/StreamRole", "AwsSolutions-IAM5[Resource::*]"),
        (
            "Mirror/Service/WorkerRole",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:repository/mirror/*]",
        ),
        (
            "Mirror/Service/WorkerRole",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:"
            "repository/team/mirror/*]",
        ),
        (
            "Mirror/Service/WorkerRole",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecr:eu-west-1:123456789012:repository/mirror/*]",
        ),
        ("Mirror/Service/UpstreamCredentials", "AwsSolutions-SMG4"),
    }


def test_a_reason_must_be_specific():
    import aws_cdk as cdk

    with pytest.raises(ValueError, match="specific reason"):
        nag.acknowledge(cdk.App(), "AwsSolutions-IAM5[Resource::*]", "needed")


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_cfn_lint_passes(synth, stack):
    from cfnlint.api import ManualArgs, lint_file

    template = Path(synth.outdir) / f"{stack}.template.json"
    options = ManualArgs(ignore_checks=sorted(CFN_LINT_IGNORED), regions=["us-east-1", "eu-west-1"])
    matches = lint_file(template, options)
    assert [str(m) for m in matches] == []
