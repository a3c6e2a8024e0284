"""What the stack creates: table, functions and their bundle, queues, schedule, stream trigger, outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_cdk.assertions import Match
from infra_support import (
    CUSTOM_STACK,
    DEFAULT_STACK,
    EXISTING_SECRET_STACK,
    VARIANTS,
    flat,
    function,
    mirror_table,
    only,
    resources,
    state_table,
)

from infra.contract import HANDLER_SCHEDULE, HANDLER_STREAM, HANDLER_WORKER, LAMBDA_DIR, lambda_config

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")

HANDLERS = (HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM)


# -- table ----------------------------------------------------------------------------------------


def test_table_on_demand_pitr_encrypted_streaming_and_retained(synth):
    template = synth.template(DEFAULT_STACK)
    template.resource_count_is("AWS::DynamoDB::Table", 2)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
                "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            },
        },
    )


def test_state_table_keyed_by_pk_and_sk_with_ttl_and_no_stream(synth):
    """What the service records: its own table, so no status write can reach the mirror table's stream."""
    state_id, state = state_table(synth.templates[DEFAULT_STACK])
    assert state["DeletionPolicy"] == state["UpdateReplacePolicy"] == "Retain"
    props = state["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"},
                                             {"AttributeName": "sk", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "StreamSpecification" not in props
    # no event source reads it
    for mapping in resources(synth.templates[DEFAULT_STACK], "AWS::Lambda::EventSourceMapping").values():
        assert state_id not in json.dumps(mapping["Properties"]["EventSourceArn"])


# -- functions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_three_functions_python_313_or_newer_on_arm64(synth, stack):
    template = synth.templates[stack]
    functions = resources(template, "AWS::Lambda::Function")
    assert sorted(f["Properties"]["Handler"] for f in functions.values()) == sorted(HANDLERS)
    for fn in functions.values():
        runtime = fn["Properties"]["Runtime"]
        match = re.fullmatch(r"python3\.(\d+)", runtime)
        assert match and int(match.group(1)) >= 13, runtime
        assert fn["Properties"]["Architectures"] == ["arm64"]


def bundle_dir(synth, stack=DEFAULT_STACK):
    """The staged asset directory the stack's functions deploy."""
    functions = resources(synth.templates[stack], "AWS::Lambda::Function").values()
    keys = {f["Properties"]["Code"]["S3Key"] for f in functions}
    assert len(keys) == 1, "the three functions share one asset"
    (key,) = keys
    return synth.outdir / f"asset.{key.removesuffix('.zip')}"


def test_one_asset_shared_by_the_three_functions_of_every_stack(synth):
    bundles = {bundle_dir(synth, stack) for stack in VARIANTS}
    assert len(bundles) == 1, "one bundle for all stacks"
    assert next(iter(bundles)).is_dir()
    assert [p for p in synth.outdir.iterdir() if p.name.startswith("asset.")] == list(bundles)


def test_the_bundle_is_the_package_plus_its_runtime_dependencies_for_arm64(synth):
    bundle = bundle_dir(synth)
    for handler in HANDLERS:
        module = handler.rsplit(".", 1)[0]
        assert (bundle / (module.replace(".", "/") + ".py")).is_file(), f"{module} is not in the bundle"
    package_files = {
        p.relative_to(LAMBDA_DIR).as_posix()
        for p in (LAMBDA_DIR / "ecr_mirror").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    bundled_files = {p.relative_to(bundle).as_posix() for p in (bundle / "ecr_mirror").rglob("*.py")}
    assert package_files == bundled_files
    # every pinned runtime requirement is installed at its pinned version
    for line in (LAMBDA_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        dist = name.strip().lower().replace("-", "_")
        assert (bundle / f"{dist}-{version.strip()}.dist-info").is_dir(), f"{line} is not in the bundle"
    assert not list(bundle.rglob("__pycache__")), "no .pyc of the build machine's Python"
    assert not list(bundle.rglob("*.egg-info"))
    for shared_object in bundle.rglob("*.so"):
        assert "x86_64" not in shared_object.name, f"{shared_object.name} is not for arm64"
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < 250 * 1024 * 1024, "Lambda's unzipped package limit"


def test_worker_memory_and_timeout_follow_the_options(synth):
    for stack, props in synth.props.items():
        _, worker = function(synth.templates[stack], HANDLER_WORKER)
        assert worker["Properties"]["MemorySize"] == props.worker_memory_mb
        assert worker["Properties"]["Timeout"] == props.worker_timeout_seconds
    _, worker = function(synth.templates[DEFAULT_STACK], HANDLER_WORKER)
    assert (worker["Properties"]["MemorySize"], worker["Properties"]["Timeout"]) == (2048, 900)


def test_functions_log_to_their_own_log_groups_with_retention(synth):
    template = synth.templates[DEFAULT_STACK]
    groups = resources(template, "AWS::Logs::LogGroup")
    assert len(groups) == 3
    assert all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())
    for handler in HANDLERS:
        _, fn = function(template, handler)
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]
        assert group["Ref"] in groups


# -- environment ----------------------------------------------------------------------------------


def environment(template, handler):
    _, fn = function(template, handler)
    return fn["Properties"]["Environment"]["Variables"]


def test_environment_of_each_function(synth):
    template = synth.templates[DEFAULT_STACK]
    table_id, _ = mirror_table(template)
    state_id, _ = state_table(template)
    queue_id, _ = only(template, "AWS::SQS::Queue", lambda _k, r: "RedrivePolicy" in r["Properties"])
    for handler in HANDLERS:
        env = environment(template, handler)
        assert env[lambda_config.ENV_TABLE] == {"Ref": table_id}
        assert env[lambda_config.ENV_STATE_TABLE] == {"Ref": state_id}
        assert env[lambda_config.ENV_QUEUE_URL] == {"Ref": queue_id}
        assert env[lambda_config.ENV_METRICS_NAMESPACE] == "EcrMirror"
        assert env[lambda_config.ENV_REPOSITORY_PREFIX] == "mirror"
        assert env["POWERTOOLS_SERVICE_NAME"] == "ecr-mirror"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == env[lambda_config.ENV_METRICS_NAMESPACE]
        assert lambda_config.ENV_INSECURE_REGISTRIES not in env, "never in a deployed stack"
    worker = environment(template, HANDLER_WORKER)
    assert worker[lambda_config.ENV_TAG_MUTABILITY] == "MUTABLE"
    assert worker[lambda_config.ENV_TIME_RESERVE_SECONDS] == "120"
    assert worker[lambda_config.ENV_PULL_RESERVE] == "10%"  # issue 15: the pull budget's reserve
    assert lambda_config.ENV_HOST_RATES not in worker  # the documented caps apply
    assert lambda_config.ENV_CREDENTIALS_SECRET not in worker  # no secret configured
    assert lambda_config.ENV_TARGET_REGISTRY not in worker  # this account's registry
    for handler in (HANDLER_SCHEDULE, HANDLER_STREAM):
        assert lambda_config.ENV_CREDENTIALS_SECRET not in environment(template, handler)
    # the audit cadence (auditInterval, default 24 h) is the schedule's to apply
    assert environment(template, HANDLER_SCHEDULE)[lambda_config.ENV_AUDIT_INTERVAL_SECONDS] == "86400"
    for handler in (HANDLER_WORKER, HANDLER_STREAM):
        assert lambda_config.ENV_AUDIT_INTERVAL_SECONDS not in environment(template, handler)


def test_environment_follows_the_options(synth):
    custom = synth.templates[CUSTOM_STACK]
    worker = environment(custom, HANDLER_WORKER)
    secret_id, _ = only(custom, "AWS::SecretsManager::Secret")
    assert worker[lambda_config.ENV_CREDENTIALS_SECRET] == {"Ref": secret_id}
    assert worker[lambda_config.ENV_TAG_MUTABILITY] == "IMMUTABLE"
    assert worker[lambda_config.ENV_REPOSITORY_PREFIX] == "team/mirror"
    assert worker[lambda_config.ENV_METRICS_NAMESPACE] == worker["POWERTOOLS_METRICS_NAMESPACE"] == "TeamMirror"
    assert worker[lambda_config.ENV_LOG_LEVEL] == "DEBUG"
    assert worker[lambda_config.ENV_PULL_RESERVE] == "5"
    assert worker[lambda_config.ENV_HOST_RATES] == "public.ecr.aws=5"

    existing = environment(synth.templates[EXISTING_SECRET_STACK], HANDLER_WORKER)
    assert existing[lambda_config.ENV_CREDENTIALS_SECRET] == "ecr-mirror/upstream"
    assert existing[lambda_config.ENV_TARGET_REGISTRY] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_every_variable_the_stack_sets_is_one_the_package_reads(synth):
    """The consistency check: a name the stack sets that config.ALL_ENV does not know fails here."""
    from infra.contract import POWERTOOLS_ENV

    for stack, template in synth.templates.items():
        for fn in resources(template, "AWS::Lambda::Function").values():
            for name in fn["Properties"]["Environment"]["Variables"]:
                if name.startswith("POWERTOOLS_"):
                    assert name in POWERTOOLS_ENV, f"{stack}: {name}"
                else:
                    assert name in lambda_config.ALL_ENV, f"{stack}: {name} is not in ecr_mirror.config.ALL_ENV"


def test_the_names_come_from_the_bundled_package():
    import ecr_mirror.config
    import ecr_mirror.metrics

    assert Path(ecr_mirror.config.__file__).resolve().parent == LAMBDA_DIR / "ecr_mirror"
    assert Path(ecr_mirror.metrics.__file__).resolve().parent == LAMBDA_DIR / "ecr_mirror"


# -- queues ---------------------------------------------------------------------------------------


def queues(template):
    work_id, work = only(template, "AWS::SQS::Queue", lambda _k, r: "RedrivePolicy" in r["Properties"])
    dlq_id, dlq = only(template, "AWS::SQS::Queue", lambda _k, r: "RedrivePolicy" not in r["Properties"])
    return (work_id, work), (dlq_id, dlq)


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_work_queue_visibility_fits_the_worker_and_dlq_is_bounded(synth, stack):
    props = synth.props[stack]
    (work_id, work), (dlq_id, dlq) = queues(synth.templates[stack])
    visibility = work["Properties"]["VisibilityTimeout"]
    assert visibility == min(6 * props.worker_timeout_seconds, 43200)
    assert visibility >= props.worker_timeout_seconds
    redrive = work["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 5
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for queue in (work, dlq):
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_default_queue_numbers(synth):
    (_, work), _ = queues(synth.templates[DEFAULT_STACK])
    assert work["Properties"]["VisibilityTimeout"] == 5400
    assert work["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3


def test_queues_refuse_unencrypted_transport(synth):
    template = synth.template(DEFAULT_STACK)
    template.resource_count_is("AWS::SQS::QueuePolicy", 2)
    template.all_resources_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


# -- triggers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_schedule_rule_runs_the_schedule_function(synth, stack):
    template = synth.templates[stack]
    _, rule = only(template, "AWS::Events::Rule")
    schedule_id, _ = function(template, HANDLER_SCHEDULE)
    assert rule["Properties"]["ScheduleExpression"] == synth.props[stack].schedule_expression
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [schedule_id, "Arn"]}
    _, permission = only(template, "AWS::Lambda::Permission")
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [schedule_id, "Arn"]}


def test_default_schedule_is_every_six_hours(synth):
    _, rule = only(synth.templates[DEFAULT_STACK], "AWS::Events::Rule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(6 hours)"


@pytest.mark.parametrize("stack", list(VARIANTS))
def test_worker_consumes_the_queue_with_partial_failures_and_capped_concurrency(synth, stack):
    template = synth.templates[stack]
    (work_id, _), _ = queues(template)
    worker_id, _ = function(template, HANDLER_WORKER)
    _, mapping = only(
        template,
        "AWS::Lambda::EventSourceMapping",
        lambda _k, r: r["Properties"]["FunctionName"] == {"Ref": worker_id},
    )
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": [work_id, "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # up to 10 rows per invocation (one progress write per 10 rows), gathered for at most a few seconds
    assert props["BatchSize"] == 10
    assert 0 < props["MaximumBatchingWindowInSeconds"] <= 10
    assert props["ScalingConfig"] == {"MaximumConcurrency": synth.props[stack].max_concurrency}


def test_default_worker_concurrency_is_five(synth):
    template = synth.templates[DEFAULT_STACK]
    worker_id, _ = function(template, HANDLER_WORKER)
    _, mapping = only(
        template,
        "AWS::Lambda::EventSourceMapping",
        lambda _k, r: r["Properties"]["FunctionName"] == {"Ref": worker_id},
    )
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == 5


def test_stream_trigger_sends_new_and_changed_rows_to_the_stream_function(synth):
    template = synth.templates[DEFAULT_STACK]
    table_id, _ = mirror_table(template)
    stream_id, _ = function(template, HANDLER_STREAM)
    _, mapping = only(
        template,
        "AWS::Lambda::EventSourceMapping",
        lambda _k, r: r["Properties"]["FunctionName"] == {"Ref": stream_id},
    )
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    assert props["StartingPosition"] == "LATEST"
    # Lambda invokes it only for a row added or changed and not disabled, or removed: never for the
    # migration's or anyone's write of a disabled row (and the service's status writes go to another table)
    patterns = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]
    changed = {"eventName": ["INSERT", "MODIFY"]}
    assert patterns == [
        {**changed, "dynamodb": {"NewImage": {"enabled": [{"exists": False}]}}},
        {**changed, "dynamodb": {"NewImage": {"enabled": {"BOOL": [True]}}}},
        {**changed, "dynamodb": {"NewImage": {"enabled": {"BOOL": [{"exists": False}]}}}},
        {"eventName": ["REMOVE"]},
    ]
    assert 0 < props["MaximumRetryAttempts"] <= 10, "bounded retries: the schedule is the backstop"
    assert props["BisectBatchOnFunctionError"] is True


# -- secret ---------------------------------------------------------------------------------------


def test_secret_created_empty_only_when_asked(synth):
    assert not resources(synth.templates[DEFAULT_STACK], "AWS::SecretsManager::Secret")
    assert not resources(synth.templates[EXISTING_SECRET_STACK], "AWS::SecretsManager::Secret")
    _, secret = only(synth.templates[CUSTOM_STACK], "AWS::SecretsManager::Secret")
    assert secret["Properties"]["SecretString"] == "{}"
    assert "GenerateSecretString" not in secret["Properties"]
    assert secret["DeletionPolicy"] == "Retain"


# -- outputs --------------------------------------------------------------------------------------


def test_outputs(synth):
    template = synth.templates[DEFAULT_STACK]
    outputs = template["Outputs"]
    table_id, _ = mirror_table(template)
    state_id, _ = state_table(template)
    assert outputs["StateTableName"]["Value"] == {"Ref": state_id}
    (queue_id, _), _ = queues(template)
    topic_id, _ = only(template, "AWS::SNS::Topic")
    dashboard_id, _ = only(template, "AWS::CloudWatch::Dashboard")
    assert outputs["TableName"]["Value"] == {"Ref": table_id}
    assert outputs["QueueUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["TopicArn"]["Value"] == {"Ref": topic_id}
    url = flat(outputs["DashboardUrl"]["Value"])
    assert url == (
        "https://<AWS::Region>.console.aws.amazon.com/cloudwatch/home?region=<AWS::Region>"
        f"#dashboards:name=<{dashboard_id}>"
    )
    assert "CredentialsSecretArn" not in outputs
    secret_id, _ = only(synth.templates[CUSTOM_STACK], "AWS::SecretsManager::Secret")
    assert synth.templates[CUSTOM_STACK]["Outputs"]["CredentialsSecretArn"]["Value"] == {"Ref": secret_id}
