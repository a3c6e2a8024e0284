"""ECR: the target (registry host, repository creation, tag mutability) and its registry credentials.

Bytes go over the registry API (:mod:`ecr_mirror.registry`), authenticated with Basic
``AWS:<password>`` from ``GetAuthorizationToken`` (:class:`EcrCredentials`, a credential provider
of the registry client; ecr-facts.md section 1). boto3 is used for repository management and the
token only. The boto3 clients are built at the edge and passed in.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .aws import aws_error, error_code
from .config import ENV_TARGET_REGISTRY
from .errors import ConfigError
from .reference import ecr_host_region, is_valid_ecr_repository
from .registry.auth import Credential

log = logging.getLogger(__name__)


class EcrTarget:
    """Where mirrors are written: an ECR registry (or a stand-in named by ``ECR_MIRROR_TARGET_REGISTRY``).

    ``ecr_client``: a boto3 ``ecr`` client; ``registry_host``: the registry host, if not the one
    ``GetAuthorizationToken`` reports; ``tag_mutability``: for repositories it creates
    (``MUTABLE``, ``IMMUTABLE``, ...: API_CreateRepository ``imageTagMutability``); ``repository_tags``:
    resource tags on them; ``registry_id``: the account that owns the registry, if not the caller's.
    Raises :class:`~ecr_mirror.errors.AwsError` for failed calls.
    """

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
            except Exception as exc:  # botocore errors, malformed answers
                raise aws_error(exc, "ecr:GetAuthorizationToken") from exc
            endpoint = str(data.get("proxyEndpoint", ""))
            host = endpoint.split("://", 1)[1] if "://" in endpoint else endpoint  # https:// (ECR), http:// (stand-ins)
            host = host.rstrip("/")
            if not host:
                raise ConfigError(f"ecr:GetAuthorizationToken returned no proxyEndpoint; set {ENV_TARGET_REGISTRY}")
            self._host = host
        return self._host

    def ensure_repository(self, name: str) -> str:
        """Create ``name`` if missing (scan on push, AES256 encryption, configured mutability). Returns its mutability.

        Raises :class:`ConfigError` for a name ECR does not accept, :class:`~ecr_mirror.errors.AwsError` otherwise.
        """
        if not is_valid_ecr_repository(name):
            raise ConfigError(f"invalid ECR repository name {name!r}")
        with self._lock:
            if name in self._known:
                return self._mutability.get(name, self.tag_mutability)
        mutability = self.tag_mutability
        try:
            answer = self.ecr.describe_repositories(repositoryNames=[name], **self._registry)
            mutability = answer["repositories"][0].get("imageTagMutability", mutability)
        except Exception as exc:  # botocore errors, malformed answers
            if error_code(exc) != "RepositoryNotFoundException":
                raise aws_error(exc, f"ecr:DescribeRepositories {name}") from exc
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
            except Exception as exc2:  # botocore errors
                if error_code(exc2) != "RepositoryAlreadyExistsException":
                    raise aws_error(exc2, f"ecr:CreateRepository {name}") from exc2
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
        """Whether repository ``name`` refuses to overwrite tags (``IMMUTABLE``, ``IMMUTABLE_WITH_EXCLUSION``)."""
        return self.ensure_repository(name).startswith("IMMUTABLE")


class EcrCredentials:
    """ECR registry hosts get Basic ``AWS:<password>`` from ``GetAuthorizationToken``, cached per region.

    ``client_factory(region)`` returns a boto3 ECR client; it is called lazily, at most once per region.
    Also serves ``extra_hosts`` (e.g. ``ECR_MIRROR_TARGET_REGISTRY`` pointing at a stand-in).
    """

    REFRESH_MARGIN = 15 * 60  # refresh this long before expiresAt

    def __init__(
        self,
        client_factory: Callable[[str], Any],
        *,
        extra_hosts: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._factory = client_factory
        self._extra = {h.lower(): region for h, region in (extra_hosts or {}).items()}
        self._cache: dict[str, tuple[Credential, float]] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def region_for(self, host: str) -> str | None:
        """The AWS region whose token serves ``host``, or ``None`` for a host that is not ECR."""
        if host.lower() in self._extra:
            return self._extra[host.lower()]
        found = ecr_host_region(host)
        return found[1] if found else None

    def credential_for(self, host: str) -> Credential | None:
        """``AWS:<password>`` for an ECR host (one GetAuthorizationToken per region, refreshed 15 minutes
        before ``expiresAt``), ``None`` for other hosts. Raises :class:`~ecr_mirror.errors.AwsError`."""
        region = self.region_for(host)
        if region is None:
            return None
        with self._lock:
            cached = self._cache.get(region)
            if cached and cached[1] - self.REFRESH_MARGIN > self._clock():
                return cached[0]
            try:
                client = self._clients.get(region)
                if client is None:
                    client = self._clients[region] = self._factory(region)
                answer = client.get_authorization_token()
                data = answer["authorizationData"][0]
                user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            except Exception as exc:  # botocore errors, malformed answers
                raise aws_error(exc, f"ecr:GetAuthorizationToken in {region}") from exc
            expires = data.get("expiresAt")
            now = self._clock()
            expires_at = expires.timestamp() if hasattr(expires, "timestamp") else now + 12 * 3600
            if expires_at - self.REFRESH_MARGIN <= now:
                # an expiry already inside the margin (emulators report odd ones): reuse for a short while
                expires_at = now + self.REFRESH_MARGIN + 300
            cred = Credential(user, password)
            self._cache[region] = (cred, expires_at)
            return cred

    def invalidate(self, host: str, refused: str | None = None) -> bool:
        """Forget the cached token for ``host``'s region after the registry refused it (``refused``: the
        ``Authorization`` value sent; a token cached since, by another thread, is kept). True for an ECR host."""
        region = self.region_for(host)
        with self._lock:
            cached = self._cache.get(region or "")
            if cached is not None and (refused is None or cached[0].basic_header() == refused):
                del self._cache[region or ""]
        return region is not None

    def secrets(self) -> Iterable[str]:
        """The ECR passwords fetched so far."""
        return [c.password for c, _ in self._cache.values()]
