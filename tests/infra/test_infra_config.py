"""Context options: defaults, cdk.json, parsing of -c strings, validation, derived numbers. No synthesis."""

from __future__ import annotations

import re

import pytest
from infra_support import cdk_json

import infra.config as config_module
from infra.config import CONTEXT_KEYS, ConfigurationError, EcrMirrorProps

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")


def test_cdk_json_context_holds_every_option_with_its_default():
    context = cdk_json()["context"]
    defaults = EcrMirrorProps().to_context()
    for key in CONTEXT_KEYS:
        assert key in context, f"cdk.json lacks {key}"
        assert context[key] == defaults[key], f"cdk.json {key}={context[key]!r}, default is {defaults[key]!r}"
    assert EcrMirrorProps.from_mapping({k: context[k] for k in CONTEXT_KEYS}) == EcrMirrorProps()


def test_cdk_json_runs_the_app_and_watches_the_sources():
    doc = cdk_json()
    assert doc["app"].endswith("app.py")


def test_the_documented_table_lists_every_option_and_its_default():
    doc = config_module.__doc__
    for key, name in CONTEXT_KEYS.items():
        line = next((ln for ln in doc.splitlines() if ln.startswith(f"``{key}``")), None)
        assert line is not None, f"{key} is not documented in infra/config.py"
        default = getattr(EcrMirrorProps(), name)
        if default is None or default is False or name == "schedule_period_minutes":
            continue
        assert str(default) in line, f"documented default of {key} is not {default!r}: {line!r}"


def test_defaults():
    props = EcrMirrorProps()
    assert props.schedule_expression == "rate(6 hours)"
    assert props.repository_prefix == "mirror"
    assert props.tag_mutability == "MUTABLE"
    assert props.alarm_email is None and props.credentials_secret_name is None
    assert props.create_credentials_secret is False
    assert (props.worker_memory_mb, props.worker_timeout_seconds, props.max_concurrency) == (2048, 900, 5)
    assert props.metrics_namespace == "EcrMirror" and props.target_registry is None


def test_command_line_strings_are_converted():
    props = EcrMirrorProps.from_mapping(
        {
            "workerMemoryMb": "4096",
            "workerTimeoutSeconds": "300",
            "maxConcurrency": "10",
            "createCredentialsSecret": "true",
            "tagMutability": "immutable",
            "repositoryPrefix": "/team/mirror/",
            "alarmEmail": "ops@example.com",
            "scheduleExpression": "rate(1 day)",
            "logLevel": "debug",
        }
    )
    assert (props.worker_memory_mb, props.worker_timeout_seconds, props.max_concurrency) == (4096, 300, 10)
    assert props.create_credentials_secret is True
    assert props.tag_mutability == "IMMUTABLE"
    assert props.repository_prefix == "team/mirror"
    assert props.log_level == "DEBUG"
    assert EcrMirrorProps.from_mapping({"alarmEmail": "", "targetRegistry": None}).alarm_email is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"repositoryPrefix": "/"}, "repositoryPrefix"),
        ({"repositoryPrefix": "Mirror"}, "repositoryPrefix"),
        ({"repositoryPrefix": "mirror/*"}, "repositoryPrefix"),
        ({"tagMutability": "SOMETIMES"}, "tagMutability"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"credentialsSecretName": "x", "createCredentialsSecret": True}, "exclude each other"),
        ({"createCredentialsSecret": "maybe"}, "createCredentialsSecret"),
        ({"workerMemoryMb": "64"}, "workerMemoryMb"),
        ({"workerMemoryMb": "lots"}, "workerMemoryMb"),
        ({"workerTimeoutSeconds": "901"}, "workerTimeoutSeconds"),
        ({"maxConcurrency": "1"}, "maxConcurrency"),
        ({"metricsNamespace": "AWS/Lambda"}, "metricsNamespace"),
        ({"targetRegistry": "registry.example.com"}, "targetRegistry"),
        ({"scheduleExpression": "every 6 hours"}, "scheduleExpression"),
        ({"scheduleExpression": "rate(1 hours)"}, "singular"),
        ({"scheduleExpression": "rate(6 hour)"}, "singular"),
        ({"scheduleExpression": "cron(0 3 * * ? *)"}, "schedulePeriodMinutes"),
        ({"scheduleExpression": "rate(6 hours)", "schedulePeriodMinutes": "60"}, "contradicts"),
        ({"scheduleExpression": "rate(5 days)"}, "7 days"),
        ({"logLevel": "LOUD"}, "logLevel"),
        ({"pullReserve": "lots"}, "pullReserve"),
        ({"pullReserve": "150%"}, "pullReserve"),
        ({"hostRates": "public.ecr.aws"}, "hostRates"),
        ({"hostRates": "public.ecr.aws=0"}, "hostRates"),
        ({"noSuchOption": "1"}, "unknown option"),
    ],
)
def test_bad_options_are_refused_naming_the_key(options, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        EcrMirrorProps.from_mapping(options)


def test_an_empty_prefix_is_refused_as_a_construct_property():
    # (in the context an empty value means "the default"; as a property it would mean "every repository")
    with pytest.raises(ConfigurationError, match="repositoryPrefix"):
        EcrMirrorProps(repository_prefix="")


@pytest.mark.parametrize(
    ("expression", "period_minutes", "window"),
    [
        ("rate(6 hours)", None, (21600, 2)),  # default: alarm after 12 h without success
        ("rate(30 minutes)", None, (1800, 2)),
        ("rate(1 day)", None, (86400, 2)),
        ("rate(3 days)", None, (86400, 6)),
        ("cron(0 3 * * ? *)", 1440, (86400, 2)),
    ],
)
def test_no_success_alarm_window_is_two_schedule_periods(expression, period_minutes, window):
    props = EcrMirrorProps(schedule_expression=expression, schedule_period_minutes=period_minutes)
    period, evaluations = props.stale_alarm_window
    assert (period, evaluations) == window
    assert period * evaluations >= 2 * props.schedule_period_seconds
    assert period % 60 == 0 and period * evaluations <= (86400 if period < 3600 else 7 * 86400)


@pytest.mark.parametrize(("timeout", "visibility"), [(900, 5400), (600, 3600), (60, 360)])
def test_visibility_timeout_is_six_worker_timeouts(timeout, visibility):
    props = EcrMirrorProps(worker_timeout_seconds=timeout)
    assert props.queue_visibility_timeout_seconds == visibility
    assert props.queue_visibility_timeout_seconds <= 12 * 3600


def test_time_reserve_fits_in_the_timeout():
    for timeout in (60, 300, 900):
        reserve = EcrMirrorProps(worker_timeout_seconds=timeout).worker_time_reserve_seconds
        assert 10 <= reserve <= timeout // 4


def test_target_registry_gives_the_account_and_region_of_iam():
    props = EcrMirrorProps(target_registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    assert props.target_account_and_region == ("123456789012", "eu-west-1")
    assert EcrMirrorProps().target_account_and_region is None


@pytest.mark.parametrize(
    "value, seconds",
    [("24 hours", 86400), ("1 hour", 3600), ("90 minutes", 5400), ("2 days", 172800), ("12", 43200), ("0", 0), (6, 21600)],
)
def test_audit_interval_forms(value, seconds):
    assert EcrMirrorProps.from_mapping({"auditInterval": value}).audit_interval_seconds == seconds
    assert EcrMirrorProps().audit_interval_seconds == 86400


@pytest.mark.parametrize("value", ["daily", "1 week", "-1 hours", "31 days"])
def test_bad_audit_interval_is_refused_naming_the_key(value):
    with pytest.raises(ConfigurationError, match="auditInterval"):
        EcrMirrorProps.from_mapping({"auditInterval": value})
