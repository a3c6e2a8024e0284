"""Stack configuration: the ``cdk.json`` context options, their defaults, parsing and validation.

Every option is read from the CDK context, so it can live in ``cdk.json`` or be given on the
command line with ``-c key=value`` (``cdk deploy -c alarmEmail=ops@example.com``). Inside
another CDK app, pass the same settings as keyword arguments:
``EcrMirror(scope, "Mirror", alarm_email="ops@example.com")``.

=========================== ==================== =====================================================
context key                 default              meaning
=========================== ==================== =====================================================
``scheduleExpression``      ``rate(6 hours)``    EventBridge schedule of the full sync: ``rate(...)`` or
                                                 ``cron(...)``
``schedulePeriodMinutes``   (from the rate)      longest gap between two scheduled runs; required only
                                                 for ``cron(...)``; the "no successful sync" alarm fires
                                                 after two such periods
``repositoryPrefix``        ``mirror``           ECR repositories are ``<prefix>/<source path>``; IAM
                                                 push rights cover ``repository/<prefix>/*`` only
``tagMutability``           ``MUTABLE``          tag mutability of repositories the service creates:
                                                 ``MUTABLE``, ``IMMUTABLE``, ``MUTABLE_WITH_EXCLUSION``,
                                                 ``IMMUTABLE_WITH_EXCLUSION``
``alarmEmail``              (none)               e-mail address subscribed to the alarm topic
``credentialsSecretName``   (none)               name of an EXISTING Secrets Manager secret with
                                                 upstream credentials
                                                 (``{"docker.io": {"username": ..., "password": ...}}``)
``createCredentialsSecret`` ``false``            ``true``: the stack creates the secret, holding ``{}``,
                                                 for you to fill (its ARN is an output); cannot be
                                                 combined with ``credentialsSecretName``
``workerMemoryMb``          ``2048``             worker memory, 128-10240 MB (CPU, so sha256 speed,
                                                 scales with it)
``workerTimeoutSeconds``    ``900``              worker timeout, 60-900 s
``maxConcurrency``          ``5``                most worker invocations at once (SQS event source
                                                 maximum concurrency, 2-1000); keeps ECR's
                                                 per-account API rates (PutImage 10/s) in reach
``metricsNamespace``        ``EcrMirror``        CloudWatch namespace of the EMF metrics and alarms
``targetRegistry``          (none)               ECR registry host to write to, e.g.
                                                 ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``;
                                                 default: this account and region; IAM follows it
``logLevel``                ``INFO``             log level of the functions
``auditInterval``           ``24 hours``         how often a scheduled pass is an audit pass (every tag
                                                 checked at ECR from the repositories' image lists,
                                                 index children included): ``<n> minutes|hours|days``,
                                                 a number of hours, or ``0`` (every pass audits)
``rowsFile``                (none)               a rows file (YAML, as ``ecr-mirror apply -f`` reads),
                                                 relative to the project directory: validated at synth,
                                                 applied to the mirror table at deploy (infra/rows.py)
``pullReserve``             ``10%``              upstream pulls the service never spends of a limit an
                                                 upstream announces (Docker Hub's ``ratelimit-*``), kept
                                                 for people pulling by hand: ``<n>%`` or a count
``hostRates``               (none)               request-rate caps, ``host=<per second>,...``; default
                                                 ``public.ecr.aws``: 1/s anonymous, 10/s with credentials
=========================== ==================== =====================================================

"(none)" is an empty string in ``cdk.json``; an empty value (``-c key=``) always means the default.
``app.py`` also reads ``stackName`` (default ``EcrMirror``), the CloudFormation stack name.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .contract import lambda_budget, lambda_config, lambda_errors, lambda_reference, lambda_rowsfile


class ConfigurationError(ValueError):
    """A context option or construct property that the stack cannot be built with."""


#: context key -> field name of :class:`EcrMirrorProps`
CONTEXT_KEYS: dict[str, str] = {
    "scheduleExpression": "schedule_expression",
    "schedulePeriodMinutes": "schedule_period_minutes",
    "repositoryPrefix": "repository_prefix",
    "tagMutability": "tag_mutability",
    "alarmEmail": "alarm_email",
    "credentialsSecretName": "credentials_secret_name",
    "createCredentialsSecret": "create_credentials_secret",
    "workerMemoryMb": "worker_memory_mb",
    "workerTimeoutSeconds": "worker_timeout_seconds",
    "maxConcurrency": "max_concurrency",
    "metricsNamespace": "metrics_namespace",
    "targetRegistry": "target_registry",
    "logLevel": "log_level",
    "auditInterval": "audit_interval",
    "rowsFile": "rows_file",
    "pullReserve": "pull_reserve",
    "hostRates": "host_rates",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\(\s*\S+(?:\s+\S+){5}\s*\)")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# <account>.dkr.ecr.<region>.amazonaws.com (also -fips, and the .com.cn / other partition suffixes)
_ECR_HOST = re.compile(r"(\d{12})\.dkr(?:-fips)?\.ecr\.([a-z]{2}(?:-[a-z]+)+-\d+)\.[a-z0-9.-]+")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_INTERVAL = re.compile(r"(\d+)(?:\s*(minutes?|hours?|days?))?")

#: seconds the worker keeps in reserve before its timeout (handed to ECR_MIRROR_TIME_RESERVE_SECONDS)
_MAX_TIME_RESERVE = lambda_config.DEFAULT_TIME_RESERVE_SECONDS


@dataclass(frozen=True)
class EcrMirrorProps:
    """Settings of one mirror deployment; see the module docstring for each field's context key."""

    schedule_expression: str = "rate(6 hours)"
    schedule_period_minutes: int | None = None
    repository_prefix: str = lambda_config.DEFAULT_REPOSITORY_PREFIX
    tag_mutability: str = lambda_config.DEFAULT_TAG_MUTABILITY
    alarm_email: str | None = None
    credentials_secret_name: str | None = None
    create_credentials_secret: bool = False
    worker_memory_mb: int = 2048
    worker_timeout_seconds: int = 900
    max_concurrency: int = 5
    metrics_namespace: str = lambda_config.DEFAULT_METRICS_NAMESPACE
    target_registry: str | None = None
    log_level: str = "INFO"
    audit_interval: str = "24 hours"
    rows_file: str | None = None
    pull_reserve: str = "10%"
    host_rates: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_context(cls, node: _Node) -> EcrMirrorProps:
        """Read every option from a construct node's context (``cdk.json`` and ``-c``)."""
        raw = {key: node.try_get_context(key) for key in CONTEXT_KEYS}
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EcrMirrorProps:
        """Build from context-style values (camelCase keys; strings from ``-c`` are converted)."""
        unknown = sorted(set(raw) - set(CONTEXT_KEYS))
        if unknown:
            raise ConfigurationError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(CONTEXT_KEYS)}")
        defaults = cls.__dataclass_fields__
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = CONTEXT_KEYS[key]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # not set: keep the default
            default = defaults[name].default
            values[name] = _convert(key, value, default, name)
        return cls(**values)

    def to_context(self) -> dict[str, Any]:
        """The context dictionary that :meth:`from_context` reads back into these props."""
        out: dict[str, Any] = {}
        for key, name in CONTEXT_KEYS.items():
            value = getattr(self, name)
            out[key] = "" if value is None else value
        return out

    def replace(self, **changes: Any) -> EcrMirrorProps:
        return dataclasses.replace(self, **changes)

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the context key of the first bad option."""
        self.schedule_period_seconds  # noqa: B018  (parses and checks the schedule)
        self.stale_alarm_window  # noqa: B018
        if not lambda_reference.is_ecr_repository_path(self.repository_prefix or ""):
            raise ConfigurationError(
                f"repositoryPrefix={self.repository_prefix!r}: must be a non-empty ECR repository name prefix "
                "(lowercase letters, digits, '.', '_', '-', components separated by '/'); "
                "IAM push rights are scoped to it"
            )
        if self.tag_mutability not in lambda_config.TAG_MUTABILITY_VALUES:
            raise ConfigurationError(
                f"tagMutability={self.tag_mutability!r}: must be one of "
                f"{', '.join(lambda_config.TAG_MUTABILITY_VALUES)}"
            )
        if self.alarm_email is not None and not _EMAIL.fullmatch(self.alarm_email):
            raise ConfigurationError(f"alarmEmail={self.alarm_email!r} is not an e-mail address")
        if self.credentials_secret_name is not None and self.create_credentials_secret:
            raise ConfigurationError(
                "credentialsSecretName and createCredentialsSecret=true exclude each other: "
                "name an existing secret, or let the stack create one"
            )
        _check_range("workerMemoryMb", self.worker_memory_mb, 128, 10240)
        _check_range("workerTimeoutSeconds", self.worker_timeout_seconds, 60, 900)
        _check_range("maxConcurrency", self.max_concurrency, 2, 1000)
        namespace = self.metrics_namespace
        if not namespace or len(namespace) > 255 or namespace.startswith("AWS/") or ":" in namespace:
            raise ConfigurationError(
                f"metricsNamespace={namespace!r}: 1-255 characters, no ':', and not starting with 'AWS/'"
            )
        if self.target_registry is not None and not _ECR_HOST.fullmatch(self.target_registry):
            raise ConfigurationError(
                f"targetRegistry={self.target_registry!r}: must be an ECR registry host "
                "<account>.dkr.ecr.<region>.amazonaws.com (IAM rights are derived from it)"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(f"logLevel={self.log_level!r}: one of {', '.join(LOG_LEVELS)}")
        self.audit_interval_seconds  # noqa: B018  (parses and checks the audit interval)
        self.rows_json  # noqa: B018  (reads and validates the rows file)
        for key, value, parse in (("pullReserve", self.pull_reserve, lambda_budget.parse_reserve),
                                  ("hostRates", self.host_rates, lambda_budget.parse_host_rates)):
            try:
                parse(value)
            except lambda_config.ConfigError as exc:
                raise ConfigurationError(f"{key}={value!r}: {exc}") from exc

    # -- derived values -------------------------------------------------------------------------

    @property
    def schedule_period_seconds(self) -> int:
        """The longest gap between two scheduled runs, in seconds."""
        expression = self.schedule_expression.strip()
        rate = _RATE.fullmatch(expression)
        if rate:
            count, unit = int(rate.group(1)), rate.group(2)
            if count < 1:
                raise ConfigurationError(f"scheduleExpression={expression!r}: the rate must be at least 1")
            if (count == 1) != (not unit.endswith("s")):
                raise ConfigurationError(
                    f"scheduleExpression={expression!r}: EventBridge wants the singular unit for 1 "
                    "and the plural otherwise ('rate(1 hour)', 'rate(6 hours)')"
                )
            period = count * _UNIT_SECONDS[unit.rstrip("s")]
            if self.schedule_period_minutes is not None and self.schedule_period_minutes * 60 != period:
                raise ConfigurationError(
                    f"schedulePeriodMinutes={self.schedule_period_minutes} contradicts "
                    f"scheduleExpression={expression!r}"
                )
            return period
        if _CRON.fullmatch(expression):
            if self.schedule_period_minutes is None:
                raise ConfigurationError(
                    f"scheduleExpression={expression!r}: a cron schedule needs schedulePeriodMinutes, the longest "
                    "gap between two runs, for the 'no successful sync' alarm"
                )
            _check_range("schedulePeriodMinutes", self.schedule_period_minutes, 1, 7 * 24 * 60 // 2)
            return self.schedule_period_minutes * 60
        raise ConfigurationError(
            f"scheduleExpression={expression!r}: expected 'rate(<n> <minutes|hours|days>)' or a 6-field 'cron(...)'"
        )

    @property
    def stale_alarm_window(self) -> tuple[int, int]:
        """(period seconds, evaluation periods) of the "no successful sync for two schedule periods" alarm.

        CloudWatch limits period x evaluation periods to 1 day for periods under an hour and to
        7 days otherwise; periods are multiples of 60 s and at most 1 day here.
        """
        stale = 2 * self.schedule_period_seconds
        period = min(self.schedule_period_seconds, 86400)
        period = max(60, period - period % 60)
        evaluations = math.ceil(stale / period)
        limit = 86400 if period < 3600 else 7 * 86400
        if period * evaluations > limit:
            raise ConfigurationError(
                f"scheduleExpression={self.schedule_expression!r}: two schedule periods exceed what a CloudWatch alarm "
                "can evaluate (7 days); schedule the sync more often"
            )
        return period, evaluations

    @property
    def audit_interval_seconds(self) -> int:
        """``auditInterval`` in seconds (a bare number is hours; ``0``: every pass audits)."""
        text = str(self.audit_interval).strip().lower()
        match = _INTERVAL.fullmatch(text)
        if match is None:
            raise ConfigurationError(
                f"auditInterval={self.audit_interval!r}: expected '<n> minutes|hours|days' (e.g. '24 hours'), "
                "a number of hours, or 0"
            )
        count, unit = int(match.group(1)), (match.group(2) or "hours").rstrip("s")
        seconds = count * _UNIT_SECONDS[unit]
        if seconds > 30 * 86400:
            raise ConfigurationError(
                f"auditInterval={self.audit_interval!r}: at most 30 days (pass records, which the schedule reads "
                "to find the last audit, expire after 30 days)"
            )
        return seconds

    @property
    def rows_json(self) -> str | None:
        """The rows of ``rowsFile`` as the JSON rows document the stack hands its rows custom resource
        (:func:`ecr_mirror.rowsfile.rows_json`); None without a rows file. The file is read and validated
        as ``ecr-mirror apply -f`` does, against ``repositoryPrefix``; a bad one raises
        :class:`ConfigurationError` with its first problem (and how many more there are)."""
        if self.rows_file is None:
            return None
        path = Path(self.rows_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"rowsFile={self.rows_file!r}: cannot read it: {exc.strerror or exc}") from None
        try:
            rows = lambda_rowsfile.load_rows_yaml(data, name=self.rows_file, prefix=self.repository_prefix)
        except lambda_errors.MirrorError as exc:
            raise ConfigurationError(f"rowsFile: {exc}") from None
        return lambda_rowsfile.rows_json(rows)

    @property
    def worker_time_reserve_seconds(self) -> int:
        """Seconds before its timeout at which the worker stops starting new work."""
        return max(10, min(_MAX_TIME_RESERVE, self.worker_timeout_seconds // 5))

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        """Visibility timeout of the work queue.

        AWS's guidance for SQS event sources is at least six times the function timeout (room for
        retries when Lambda throttles the poller's batches); SQS caps it at 12 hours.
        """
        return min(6 * self.worker_timeout_seconds, 12 * 3600)

    @property
    def target_account_and_region(self) -> tuple[str, str] | None:
        """(account, region) of ``target_registry``; None means this stack's account and region."""
        if self.target_registry is None:
            return None
        match = _ECR_HOST.fullmatch(self.target_registry)
        assert match is not None  # validated
        return match.group(1), match.group(2)


class _Node(Protocol):
    def try_get_context(self, key: str) -> Any: ...


def _check_range(key: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{key}={value!r}: must be an integer from {low} to {high}")


def _convert(key: str, value: Any, default: Any, name: str) -> Any:
    """Context values from ``-c`` arrive as strings; cdk.json may hold JSON types."""
    if isinstance(default, bool) or name == "create_credentials_secret":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise ConfigurationError(f"{key}={value!r}: expected true or false")
    if isinstance(default, int) or name == "schedule_period_minutes":
        if isinstance(value, bool):
            raise ConfigurationError(f"{key}={value!r}: expected an integer")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigurationError(f"{key}={value!r}: expected an integer") from None
    text = str(value).strip()
    if name in ("tag_mutability", "log_level"):
        return text.upper()
    if name == "repository_prefix":
        return text.strip("/")
    return text
