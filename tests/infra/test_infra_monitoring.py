"""Alarms (on the package's own metric names, with Powertools' service dimension), topic, dashboard."""

from __future__ import annotations

import json
import re

import pytest
from infra_support import (
    CUSTOM_STACK,
    DEFAULT_STACK,
    EXISTING_SECRET_STACK,
    VARIANTS,
    alarm_by_metric,
    flat,
    function,
    only,
    resources,
)

from infra.contract import HANDLER_SCHEDULE, HANDLER_STREAM, HANDLER_WORKER, lambda_metrics

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")

SERVICE_DIMENSION = [{"Name": "service", "Value": "ecr-mirror"}]


def topic_ref(template):
    topic_id, _ = only(template, "AWS::SNS::Topic")
    return {"Ref": topic_id}


def service_alarm(template, props, metric):
    alarm = alarm_by_metric(template, metric, Namespace=props.metrics_namespace)
    assert alarm["Dimensions"] == SERVICE_DIMENSION, "Powertools adds the service dimension to every metric"
    return alarm


@pytest.mark.parametrize("stack", list(VARIANTS))
@pytest.mark.parametrize(
    "metric", [lambda_metrics.TAGS_DRIFTED, lambda_metrics.TAGS_FAILED, lambda_metrics.ROWS_INVALID,
               lambda_metrics.ROWS_MATCHED_NOTHING, lambda_metrics.TAGS_IN_CONFLICT]
)
def test_drift_failure_and_invalid_rows_alarm_on_any_occurrence(synth, stack, metric):
    """Rows matching nothing and tags in conflict too (issue 13: each a state a user must see)."""
    template = synth.templates[stack]
    alarm = service_alarm(template, synth.props[stack], metric)
    assert alarm["Statistic"] == "Sum"
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [topic_ref(template)]


@pytest.mark.parametrize(
    ("stack", "period", "evaluations"),
    [(DEFAULT_STACK, 21600, 2), (CUSTOM_STACK, 7200, 2), (EXISTING_SECRET_STACK, 86400, 2)],
)
def test_no_successful_sync_for_two_schedule_periods(synth, stack, period, evaluations):
    template = synth.templates[stack]
    alarm = service_alarm(template, synth.props[stack], lambda_metrics.SYNC_SUCCEEDED)
    window = (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"])
    assert window == (period, evaluations, evaluations)
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching", "no data at all is the failure this alarm is for"
    assert alarm["AlarmActions"] == [topic_ref(template)]


def test_dead_letter_queue_alarm(synth):
    template = synth.templates[DEFAULT_STACK]
    dlq_id, _ = only(template, "AWS::SQS::Queue", lambda _k, r: "RedrivePolicy" not in r["Properties"])
    alarm = alarm_by_metric(template, "ApproximateNumberOfMessagesVisible", Namespace="AWS/SQS")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [topic_ref(template)]


def test_function_errors_and_worker_throttles_alarm(synth):
    template = synth.templates[DEFAULT_STACK]
    lambda_alarms = [
        r["Properties"]
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("Namespace") == "AWS/Lambda"
    ]
    watched = {(a["MetricName"], a["Dimensions"][0]["Value"]["Ref"]) for a in lambda_alarms}
    ids = {handler: function(template, handler)[0] for handler in (HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM)}
    assert watched == {
        ("Errors", ids[HANDLER_SCHEDULE]),
        ("Errors", ids[HANDLER_WORKER]),
        ("Errors", ids[HANDLER_STREAM]),
        ("Throttles", ids[HANDLER_WORKER]),
    }
    for alarm in lambda_alarms:
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["AlarmActions"] == [topic_ref(template)]


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_every_alarm_notifies_the_topic_and_uses_a_metric_the_package_emits(synth, stack):
    template = synth.templates[stack]
    namespace = synth.props[stack].metrics_namespace
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 12
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [topic_ref(template)]
        if props["Namespace"] == namespace:
            assert props["MetricName"] in lambda_metrics.ALL_METRICS, (
                f"{props['MetricName']} is not in ecr_mirror.metrics.ALL_METRICS"
            )
        else:
            assert props["Namespace"] in ("AWS/SQS", "AWS/Lambda")


def test_topic_is_encrypted_with_a_rotated_key_cloudwatch_may_use_and_refuses_plain_transport(synth):
    template = synth.templates[DEFAULT_STACK]
    _, topic = only(template, "AWS::SNS::Topic")
    key_id, key = only(template, "AWS::KMS::Key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    _, policy = only(template, "AWS::SNS::TopicPolicy")
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_email_subscription_only_when_an_address_is_given(synth):
    assert not resources(synth.templates[DEFAULT_STACK], "AWS::SNS::Subscription")
    _, subscription = only(synth.templates[CUSTOM_STACK], "AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    assert subscription["Properties"]["TopicArn"] == topic_ref(synth.templates[CUSTOM_STACK])


@pytest.mark.parametrize("stack", [DEFAULT_STACK, CUSTOM_STACK])
def test_dashboard_shows_the_sync_metrics(synth, stack):
    template = synth.templates[stack]
    namespace = synth.props[stack].metrics_namespace
    _, dashboard = only(template, "AWS::CloudWatch::Dashboard")
    body = json.loads(flat(dashboard["Properties"]["DashboardBody"]))
    shown = set()
    for widget in body["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            if metric[0] == namespace:
                assert metric[2:4] == ["service", "ecr-mirror"], metric
                shown.add(metric[1])
    assert shown <= set(lambda_metrics.ALL_METRICS)
    assert {
        lambda_metrics.TAGS_IN_SYNC,
        lambda_metrics.TAGS_DRIFTED,
        lambda_metrics.TAGS_FAILED,
        lambda_metrics.BYTES_COPIED,
        lambda_metrics.UPSTREAM_RATELIMIT_REMAINING,
    } <= shown
    assert any(w["type"] == "alarm" for w in body["widgets"])
    assert re.search(r"Schedule: `[^`]+`", json.dumps(body))


@pytest.mark.parametrize(("stack", "period"), [(DEFAULT_STACK, 21600), (CUSTOM_STACK, 7200)])
def test_a_row_deferred_for_more_than_two_schedule_periods_alarms(synth, stack, period):
    """Issue 15: the worker reports how long the oldest row it saw has waited for upstream pulls."""
    template = synth.templates[stack]
    alarm = service_alarm(template, synth.props[stack], lambda_metrics.OLDEST_DEFERRAL_SECONDS)
    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 2 * period
    assert alarm["TreatMissingData"] == "notBreaching", "no row waiting is no data"
    assert alarm["AlarmActions"] == [topic_ref(template)]


def test_dashboard_shows_the_pull_budget_per_registry(synth):
    template = synth.templates[DEFAULT_STACK]
    namespace = synth.props[DEFAULT_STACK].metrics_namespace
    _, dashboard = only(template, "AWS::CloudWatch::Dashboard")
    body = json.loads(flat(dashboard["Properties"]["DashboardBody"]))
    searches = [m[0]["expression"] for w in body["widgets"] for m in w.get("properties", {}).get("metrics", [])
                if isinstance(m[0], dict) and "expression" in m[0]]
    for name in lambda_metrics.REGISTRY_METRICS:
        assert any(f"{{{namespace},{lambda_metrics.REGISTRY_DIMENSION},service}}" in s and f'MetricName="{name}"' in s
                   for s in searches), (name, searches)
