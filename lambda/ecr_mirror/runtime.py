"""Edge wiring shared by the CLI and the Lambda handlers: build the clients once, pass them in.

Nothing here runs at import time.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any

from .aws import aws_error
from .config import Settings
from .errors import ConfigError
from .ecr import EcrCredentials
from .registry import ChainCredentials, DockerConfigCredentials, RegistryClient, StaticCredentials
from .registry.client import default_http_client
from .registry.interrupt import Interrupter
from .registry.retry import RetryPolicy

log = logging.getLogger(__name__)


def boto3_client(service: str, region: str | None = None) -> Any:
    """A boto3 client for ``service`` with botocore's standard retry mode (5 attempts, which
    ecr-mirror does not repeat) and a pool for 32 concurrent calls; region from the environment
    unless given. Raises :class:`ConfigError` when no region is configured."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    cfg = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="ecr-mirror/0.1", max_pool_connections=32)
    try:
        return boto3.client(service, region_name=region, config=cfg)
    except NoRegionError as exc:
        raise ConfigError(
            f"no AWS region for {service}: set AWS_REGION (or AWS_DEFAULT_REGION, or region in the AWS config file for your profile)"
        ) from exc


def read_stack_outputs(stack: str) -> tuple[dict[str, str], str]:
    """``({OutputKey: OutputValue}, region)`` of CloudFormation stack ``stack`` (a name, in the configured
    region, or a stack ARN, in its own region): one DescribeStacks call. Raises :class:`ConfigError` when
    there is no such stack, :class:`~ecr_mirror.errors.AwsError` when the call fails."""
    from .aws import error_code

    parts = stack.split(":")
    region = parts[3] if stack.startswith("arn:") and len(parts) > 5 and parts[2] == "cloudformation" else None
    client = boto3_client("cloudformation", region)
    region = client.meta.region_name
    try:
        answer = client.describe_stacks(StackName=stack)
    except Exception as exc:  # botocore errors
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            raise ConfigError(f"stack {stack} not found in region {region}: deploy it (cdk deploy), or set "
                              "AWS_REGION to the region it is in") from exc
        raise aws_error(exc, f"CloudFormation DescribeStacks {stack}") from exc
    stacks = answer.get("Stacks") or []
    if not stacks:
        raise ConfigError(f"stack {stack} not found in region {region}")
    outputs = {str(o.get("OutputKey")): str(o.get("OutputValue", "")) for o in stacks[0].get("Outputs") or []}
    return outputs, region


def load_secret_credentials(secret_id: str, secrets_client: Any) -> StaticCredentials:
    """Upstream credentials from a Secrets Manager secret: ``{"docker.io": {"username": …, "password": …}}``.

    Raises :class:`~ecr_mirror.errors.AwsError` when the secret cannot be read, :class:`ConfigError`
    when it is not that shape.
    """
    try:
        answer = secrets_client.get_secret_value(SecretId=secret_id)
    except Exception as exc:  # botocore errors, malformed answers
        raise aws_error(exc, f"secretsmanager:GetSecretValue {secret_id}") from exc
    text = answer.get("SecretString") or "{}"
    try:
        doc = json.loads(text)
    except ValueError as exc:  # the message says where it failed, never the secret's text
        raise ConfigError(f"secret {secret_id} is not JSON (expected {{\"host\": {{\"username\": …, \"password\": …}}}})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"secret {secret_id} must be a JSON object keyed by registry host")
    return StaticCredentials(doc, source=f"secret {secret_id}")


def build_registry_client(
    settings: Settings,
    *,
    insecure: Iterable[str] = (),
    static: StaticCredentials | None = None,
    docker_config: bool = True,
    ecr: bool = True,
    target_region: str | None = None,
    retry: RetryPolicy | None = None,
    ca_file: str | None = None,
) -> RegistryClient:
    """The registry client of the CLI and the worker, from ``settings``.

    Credentials, first match wins: ``static`` (CLI flags, the Secrets Manager secret), the Docker
    config file (``docker_config``), ECR tokens for ECR hosts and for ``settings.target_registry``
    (``ecr``; a stand-in's region is ``target_region``, else boto3's, else ``us-east-1``). Plain
    http for ``settings.insecure_registries`` and ``insecure``; https trusts ``ca_file`` besides the
    default CAs. Requests are held to each host's request-rate cap (``settings.host_rates``, else the
    documented ones: :meth:`RegistryClient.pace_hosts`). ``client.abort()`` cuts off its connections.
    Nothing is contacted here.
    """
    providers: list[Any] = []
    if static is not None:
        providers.append(static)
    if docker_config:
        providers.append(DockerConfigCredentials())
    if ecr:
        extra = {}
        if settings.target_registry:
            import boto3

            extra[settings.target_registry] = target_region or boto3.session.Session().region_name or "us-east-1"
        providers.append(EcrCredentials(lambda region: boto3_client("ecr", region), extra_hosts=extra))
    interrupter = Interrupter()
    client = RegistryClient(
        default_http_client(settings.concurrency, ca_file=ca_file, interrupter=interrupter),
        credentials=ChainCredentials(*providers),
        insecure={*settings.insecure_registries, *insecure},
        retry=retry,
        interrupter=interrupter,
    )
    client.pace_hosts(dict(settings.host_rates))
    client.pace_manifest_puts(settings.put_image_rate)
    if settings.target_registry:
        client.put_pace_hosts.add(settings.target_registry.lower())
    return client


class Redactor:
    """Replaces known secret values in text (logs, errors, JSON) with ``<redacted>``.

    The edge (CLI output, handler logs) passes text through one of these; errors inside the
    package keep their causes (``raise ... from exc``) and are redacted here, on the way out.
    Values shorter than 4 characters are not treated as secrets. ``Authorization: Basic|Bearer``
    values are redacted whatever they are.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._sources: list[Any] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these values from now on."""
        self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def watch(self, source: Any) -> None:
        """Also redact whatever ``source()`` returns at redaction time (e.g. ``client.secrets``)."""
        self._sources.append(source)

    def __call__(self, text: str) -> str:
        for source in self._sources:
            try:
                self.add(source())
            except Exception:  # noqa: BLE001, S110 - a source that cannot list its secrets (a broken config) has none to
                pass  # hide; no log line here: the log handlers call this very method
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, "<redacted>")
        return re.sub(r"(?i)(authorization:\s*(?:basic|bearer)\s+)\S+", r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """A logging filter (for handlers) that passes every record's message and traceback through a :class:`Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # formatters use exc_text when set: a traceback (with its chained causes) redacted once, here
            record.exc_text = self.redactor("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


def redact_logs(redactor: Redactor, handlers: Iterable[logging.Handler] = ()) -> None:
    """Put a :class:`RedactingFilter` on every handler of the root logger and on ``handlers`` (once each)."""
    for handler in (*logging.getLogger().handlers, *handlers):
        if not any(isinstance(f, RedactingFilter) and f.redactor is redactor for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))


#: loggers that print raw AWS request and response bodies at DEBUG (tokens, secret strings): never below INFO
CHATTY_AWS_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def quiet_aws_loggers() -> None:
    """Raise :data:`CHATTY_AWS_LOGGERS` to INFO if they would log below it."""
    for name in CHATTY_AWS_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def ecr_target_for(settings: Settings, host: str) -> Any | None:
    """The :class:`~ecr_mirror.ecr.EcrTarget` that owns registry ``host``, or ``None`` if it is not ECR.

    ECR hosts: ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`` and the dual-stack
    ``dkr-ecr[-fips]`` forms (:func:`~ecr_mirror.reference.ecr_host_region`; ecr-facts.md 1), and the
    host named by ``ECR_MIRROR_TARGET_REGISTRY``. Repositories it creates get the settings ``sync``
    gives them (tag mutability from ``ECR_MIRROR_TAG_MUTABILITY``, scan on push, AES256).
    """
    from .ecr import EcrTarget
    from .reference import ecr_host_region

    found = ecr_host_region(host)
    if found is None and host.lower() != settings.target_registry.lower():
        return None
    client = boto3_client("ecr", found[1] if found else None)
    return EcrTarget(client, registry_host=host, tag_mutability=settings.tag_mutability, registry_id=found[0] if found else "")


def build_syncer(
    settings: Settings, store: Any, *, insecure: Iterable[str] = (), retry: RetryPolicy | None = None, docker_config: bool = False,
    ca_file: str | None = None,
) -> Any:
    """The worker's object graph: registry client (with upstream secret + ECR token), copier, ECR target, syncer.

    ``store`` is the state store (:class:`~ecr_mirror.store.StateTable`). Reads the Secrets Manager
    secret when ``settings.credentials_secret`` names one (raises :class:`~ecr_mirror.errors.AwsError`
    or :class:`ConfigError` if it cannot). Upstream pulls are spent through a pull budget kept in ``store``
    (:class:`~ecr_mirror.budget.PullBudget`, reserve ``settings.pull_reserve``). Close ``syncer.copier`` and
    ``syncer.client.http`` when done.
    """
    from .budget import PullBudget
    from .copy import Copier
    from .ecr import EcrTarget
    from .sync import Syncer

    static = None
    if settings.credentials_secret:
        static = load_secret_credentials(settings.credentials_secret, boto3_client("secretsmanager"))
    ecr_client = boto3_client("ecr")
    client = build_registry_client(
        settings, insecure=insecure, static=static, docker_config=docker_config, target_region=ecr_client.meta.region_name, retry=retry,
        ca_file=ca_file,
    )
    if all(hasattr(store, m) for m in ("budget_get", "budget_take", "budget_settle", "budget_announce")):
        client.use_budget(PullBudget(store, reserve=settings.pull_reserve))
    target = EcrTarget(ecr_client, registry_host=settings.target_registry, tag_mutability=settings.tag_mutability)
    copier = Copier(client, concurrency=settings.concurrency)
    return Syncer(store=store, copier=copier, target=target, repository_prefix=settings.repository_prefix)


__all__ = [
    "CHATTY_AWS_LOGGERS",
    "Redactor",
    "RedactingFilter",
    "boto3_client",
    "build_registry_client",
    "build_syncer",
    "ecr_target_for",
    "load_secret_credentials",
    "read_stack_outputs",
    "quiet_aws_loggers",
    "redact_logs",
]
