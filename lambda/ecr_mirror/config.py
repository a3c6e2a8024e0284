"""Configuration: every ``ECR_MIRROR_*`` environment variable, named and read in one place.

The CDK stack imports the ``ENV_*`` names from here, so the stack and the code cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .budget import parse_host_rates, parse_reserve
from .errors import ConfigError

ENV_TABLE = "ECR_MIRROR_TABLE"
ENV_STATE_TABLE = "ECR_MIRROR_STATE_TABLE"
ENV_QUEUE_URL = "ECR_MIRROR_QUEUE_URL"
ENV_REPOSITORY_PREFIX = "ECR_MIRROR_REPOSITORY_PREFIX"
ENV_TARGET_REGISTRY = "ECR_MIRROR_TARGET_REGISTRY"
ENV_TAG_MUTABILITY = "ECR_MIRROR_TAG_MUTABILITY"
ENV_CREDENTIALS_SECRET = "ECR_MIRROR_CREDENTIALS_SECRET"
ENV_METRICS_NAMESPACE = "ECR_MIRROR_METRICS_NAMESPACE"
ENV_INSECURE_REGISTRIES = "ECR_MIRROR_INSECURE_REGISTRIES"
ENV_CONCURRENCY = "ECR_MIRROR_CONCURRENCY"
ENV_TIME_RESERVE_SECONDS = "ECR_MIRROR_TIME_RESERVE_SECONDS"
ENV_LOG_LEVEL = "ECR_MIRROR_LOG_LEVEL"
ENV_AUDIT_INTERVAL_SECONDS = "ECR_MIRROR_AUDIT_INTERVAL_SECONDS"
ENV_PULL_RESERVE = "ECR_MIRROR_PULL_RESERVE"
ENV_HOST_RATES = "ECR_MIRROR_HOST_RATES"
#: manifest PUTs per second per ECR registry (``PutImage``), default :data:`DEFAULT_PUT_IMAGE_RATE`; 0: no cap.
#: Not set by the stack (the functions use the default, ECR's own quota); for a raised quota or a test
ENV_PUT_IMAGE_RATE = "ECR_MIRROR_PUT_IMAGE_RATE"

#: every variable the Lambda functions read; infra tests check the stack sets only these
ALL_ENV = (
    ENV_TABLE,
    ENV_STATE_TABLE,
    ENV_QUEUE_URL,
    ENV_REPOSITORY_PREFIX,
    ENV_TARGET_REGISTRY,
    ENV_TAG_MUTABILITY,
    ENV_CREDENTIALS_SECRET,
    ENV_METRICS_NAMESPACE,
    ENV_INSECURE_REGISTRIES,
    ENV_CONCURRENCY,
    ENV_TIME_RESERVE_SECONDS,
    ENV_LOG_LEVEL,
    ENV_AUDIT_INTERVAL_SECONDS,
    ENV_PULL_RESERVE,
    ENV_HOST_RATES,
)

#: the CLI's ``--stack``: a deployed stack whose outputs give the CLI its settings (the CLI's only; not
#: a variable the functions read)
ENV_STACK = "ECR_MIRROR_STACK"
#: stack output key -> :class:`Settings` field: what ``--stack`` reads (infra/stack.py writes every one
#: from the values it gives the functions, so a laptop ``sync`` and the worker agree)
STACK_OUTPUTS = {
    "TableName": "table",
    "StateTableName": "state_table",
    "RepositoryPrefix": "repository_prefix",
    "TagMutability": "tag_mutability",
    "TargetRegistry": "target_registry",
}
#: the stack output naming the stack's region (where its tables and registry are)
OUTPUT_REGION = "Region"

DEFAULT_REPOSITORY_PREFIX = "mirror"
#: ECR's default ``PutImage`` quota: 10 per second per account and region (ecr-facts.md section 1)
DEFAULT_PUT_IMAGE_RATE = 10.0
DEFAULT_METRICS_NAMESPACE = "EcrMirror"
DEFAULT_TAG_MUTABILITY = "MUTABLE"
TAG_MUTABILITY_VALUES = ("MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION")
DEFAULT_CONCURRENCY = 8
DEFAULT_TIME_RESERVE_SECONDS = 120
DEFAULT_LOG_LEVEL = "INFO"
#: how often a scheduled pass is an audit pass (every tag checked at ECR, children included): 24 h
DEFAULT_AUDIT_INTERVAL_SECONDS = 24 * 3600
#: the state table's name when only the mirror table is named (local use): ``<table>-state``
STATE_TABLE_SUFFIX = "-state"


def default_state_table(table: str) -> str:
    """``<table>-state``: the state table beside mirror table ``table`` when none is named ("" for "")."""
    return f"{table}{STATE_TABLE_SUFFIX}" if table else ""


def settings_from_stack(base: Settings, stack: str, outputs: Mapping[str, str]) -> Settings:
    """``base`` with what stack ``stack``'s ``outputs`` (``{OutputKey: OutputValue}``) say: every
    :data:`STACK_OUTPUTS` field. Raises :class:`ConfigError` when one is missing (not an ecr-mirror stack,
    or one deployed by a version without them) or a value is not one the functions accept."""
    missing = [key for key in STACK_OUTPUTS if key not in outputs]
    if missing:
        raise ConfigError(f"stack {stack} has no output {', '.join(missing)}: is it an ecr-mirror stack? "
                          "(a stack deployed by an older version gets them with cdk deploy)")
    values = {name: str(outputs[key]).strip() for key, name in STACK_OUTPUTS.items()}
    values["repository_prefix"] = values["repository_prefix"].strip("/")
    if values["tag_mutability"] not in TAG_MUTABILITY_VALUES:
        raise ConfigError(f"stack {stack}: output TagMutability={values['tag_mutability']!r} is not one of "
                          f"{', '.join(TAG_MUTABILITY_VALUES)}")
    return replace(base, **values)
#: the slowest request rate accepted (one request every 10 s): below it a cap is a hang, not a limit
MIN_RATE = 0.1


def _rate(name: str, raw: str, default: float) -> float:
    """A rate per second from variable ``name`` (empty: ``default``; 0: no cap); :class:`ConfigError` otherwise."""
    raw = raw.strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number (requests per second; 0 for no cap)") from exc
    if not (value == 0 or MIN_RATE <= value < float("inf")):
        raise ConfigError(f"{name}={raw!r} must be 0 (no cap) or a rate of at least {MIN_RATE} requests per second")
    return value


def _named(name: str, parse: Any, raw: str) -> Any:
    """``parse(raw)``, a :class:`ConfigError` naming the variable ``name`` when it does not parse."""
    try:
        return parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _split_hosts(value: str) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in value.split(",") if h.strip())


@dataclass(frozen=True)
class Settings:
    """What the service reads from its environment. Build it once, at the edge.

    ``table``/``queue_url``: the mirror table's name and the work queue's URL; ``state_table``: the
    table of what the service records (default ``<table>-state``, :func:`default_state_table`);
    ``audit_interval_seconds``: a scheduled pass audits when the last audit is older; ``repository_prefix``:
    the first path component(s) of default ECR repository names; ``target_registry``: the registry
    host mirrors go to (empty: the account's ECR registry); ``tag_mutability``: for repositories the
    service creates; ``credentials_secret``: Secrets Manager id of upstream credentials;
    ``insecure_registries``: hosts spoken to over plain http; ``concurrency``: blob transfers in
    flight; ``time_reserve_seconds``: the worker stops starting rows this long before its timeout;
    ``pull_reserve``: pulls of an upstream's announced limit never spent (``"10%"`` or a count, read by
    :func:`ecr_mirror.budget.parse_reserve`: ``(fraction, pulls)``); ``host_rates``: request-rate caps,
    ``(host, requests per second)`` pairs (:func:`ecr_mirror.budget.parse_host_rates`); ``put_image_rate``:
    manifest PUTs per second per ECR registry (0: no cap).
    """

    table: str = ""
    state_table: str = ""
    queue_url: str = ""
    repository_prefix: str = DEFAULT_REPOSITORY_PREFIX
    target_registry: str = ""
    tag_mutability: str = DEFAULT_TAG_MUTABILITY
    credentials_secret: str = ""
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    insecure_registries: frozenset[str] = field(default_factory=frozenset)
    concurrency: int = DEFAULT_CONCURRENCY
    time_reserve_seconds: int = DEFAULT_TIME_RESERVE_SECONDS
    log_level: str = DEFAULT_LOG_LEVEL
    audit_interval_seconds: int = DEFAULT_AUDIT_INTERVAL_SECONDS
    pull_reserve: tuple[float, int | None] = (0.10, None)
    host_rates: tuple[tuple[str, float], ...] = ()
    put_image_rate: float = DEFAULT_PUT_IMAGE_RATE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``ECR_MIRROR_*`` variables of ``environ`` (default ``os.environ``); raises :class:`ConfigError`."""
        env = os.environ if environ is None else environ

        def integer(name: str, default: int, minimum: int = 1) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is not an integer") from exc
            if value < minimum:
                raise ConfigError(f"{name}={value} must be at least {minimum}")
            return value

        mutability = env.get(ENV_TAG_MUTABILITY, "").strip().upper() or DEFAULT_TAG_MUTABILITY
        if mutability not in TAG_MUTABILITY_VALUES:
            raise ConfigError(
                f"{ENV_TAG_MUTABILITY}={mutability!r} is not one of {', '.join(TAG_MUTABILITY_VALUES)}"
            )
        prefix = env.get(ENV_REPOSITORY_PREFIX, "").strip().strip("/")
        table = env.get(ENV_TABLE, "").strip()
        return cls(
            table=table,
            state_table=env.get(ENV_STATE_TABLE, "").strip() or default_state_table(table),
            queue_url=env.get(ENV_QUEUE_URL, "").strip(),
            repository_prefix=prefix if ENV_REPOSITORY_PREFIX in env else DEFAULT_REPOSITORY_PREFIX,
            target_registry=env.get(ENV_TARGET_REGISTRY, "").strip(),
            tag_mutability=mutability,
            credentials_secret=env.get(ENV_CREDENTIALS_SECRET, "").strip(),
            metrics_namespace=env.get(ENV_METRICS_NAMESPACE, "").strip() or DEFAULT_METRICS_NAMESPACE,
            insecure_registries=_split_hosts(env.get(ENV_INSECURE_REGISTRIES, "")),
            concurrency=integer(ENV_CONCURRENCY, DEFAULT_CONCURRENCY),
            time_reserve_seconds=integer(ENV_TIME_RESERVE_SECONDS, DEFAULT_TIME_RESERVE_SECONDS, 0),
            log_level=env.get(ENV_LOG_LEVEL, "").strip().upper() or DEFAULT_LOG_LEVEL,
            audit_interval_seconds=integer(ENV_AUDIT_INTERVAL_SECONDS, DEFAULT_AUDIT_INTERVAL_SECONDS, 0),
            pull_reserve=_named(ENV_PULL_RESERVE, parse_reserve, env.get(ENV_PULL_RESERVE, "")),
            host_rates=tuple(_named(ENV_HOST_RATES, parse_host_rates, env.get(ENV_HOST_RATES, "")).items()),
            put_image_rate=_rate(ENV_PUT_IMAGE_RATE, env.get(ENV_PUT_IMAGE_RATE, ""), DEFAULT_PUT_IMAGE_RATE),
        )
