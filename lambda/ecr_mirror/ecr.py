"""The ECR target: registry host, repository creation, token via the registry credential chain.

Bytes go over the registry API (:mod:`ecr_mirror.registry`); boto3 is used for repository
management only. The boto3 client is built at the edge and passed in.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from .errors import AwsError, ConfigError

log = logging.getLogger(__name__)

_REPO_RE = re.compile(r"^(?=.{2,256}$)(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def aws_error(exc: Exception, what: str) -> AwsError:
    """A one-line :class:`AwsError` from a botocore exception (no request ids, no secrets)."""
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(err.get("Code") or type(exc).__name__)
    message = str(err.get("Message") or "").split("\n")[0][:300]
    temporary = code in {"ThrottlingException", "Throttling", "TooManyRequestsException", "ServiceUnavailable", "InternalServerError",
                         "ProvisionedThroughputExceededException", "RequestLimitExceeded"} or type(exc).__name__ in {
        "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
    return AwsError(f"{what}: {code}" + (f": {message}" if message else ""), code=code, temporary=temporary)


def valid_repository_name(name: str) -> bool:
    return bool(_REPO_RE.match(name))


class EcrTarget:
    """Where mirrors are written: an ECR registry (or a stand-in named by ``ECR_MIRROR_TARGET_REGISTRY``)."""

    def __init__(
        self,
        ecr_client: Any,
        *,
        registry_host: str = "",
        tag_mutability: str = "MUTABLE",
        repository_tags: dict[str, str] | None = None,
        registry_id: str = "",
    ) -> None:
        self.ecr = ecr_client
        self.tag_mutability = tag_mutability
        #: the account whose registry this is (``registryId``); empty: the caller's own
        self.registry_id = registry_id
        self._registry = {"registryId": registry_id} if registry_id else {}
        self.repository_tags = repository_tags or {"managed-by": "ecr-mirror"}
        self._host = registry_host
        self._known: set[str] = set()
        self._mutability: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The registry host: ``ECR_MIRROR_TARGET_REGISTRY``, else the ``proxyEndpoint`` ECR reports."""
        if not self._host:
            try:
                data = self.ecr.get_authorization_token()["authorizationData"][0]
            except Exception as exc:  # botocore
                raise aws_error(exc, "ecr:GetAuthorizationToken") from None
            endpoint = str(data.get("proxyEndpoint", ""))
            host = endpoint.split("://", 1)[1] if "://" in endpoint else endpoint  # https:// (ECR), http:// (stand-ins)
            host = host.rstrip("/")
            if not host:
                raise ConfigError("ecr:GetAuthorizationToken returned no proxyEndpoint; set ECR_MIRROR_TARGET_REGISTRY")
            self._host = host
        return self._host

    def ensure_repository(self, name: str) -> str:
        """Create ``name`` if missing (scan on push, AES256 encryption, configured mutability). Returns its mutability."""
        if not valid_repository_name(name):
            raise ConfigError(f"invalid ECR repository name {name!r}")
        with self._lock:
            if name in self._known:
                return self._mutability.get(name, self.tag_mutability)
        mutability = self.tag_mutability
        try:
            answer = self.ecr.describe_repositories(repositoryNames=[name], **self._registry)
            mutability = answer["repositories"][0].get("imageTagMutability", mutability)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code != "RepositoryNotFoundException":
                raise aws_error(exc, f"ecr:DescribeRepositories {name}") from None
            try:
                self.ecr.create_repository(
                    repositoryName=name,
                    imageTagMutability=mutability,
                    imageScanningConfiguration={"scanOnPush": True},
                    encryptionConfiguration={"encryptionType": "AES256"},
                    tags=[{"Key": k, "Value": v} for k, v in self.repository_tags.items()],
                    **self._registry,
                )
                log.info("created ECR repository %s (%s)", name, mutability)
            except Exception as exc2:
                code2 = getattr(exc2, "response", {}).get("Error", {}).get("Code", "")
                if code2 != "RepositoryAlreadyExistsException":
                    raise aws_error(exc2, f"ecr:CreateRepository {name}") from None
        with self._lock:
            self._known.add(name)
            self._mutability[name] = mutability
        return mutability

    def forget(self, name: str) -> None:
        """Drop what :meth:`ensure_repository` remembered about ``name`` (it was deleted under us)."""
        with self._lock:
            self._known.discard(name)
            self._mutability.pop(name, None)

    def is_immutable(self, name: str) -> bool:
        return self.ensure_repository(name).startswith("IMMUTABLE")
