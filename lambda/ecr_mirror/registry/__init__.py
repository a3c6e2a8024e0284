"""OCI distribution client over httpx: the only part of ecr-mirror that speaks HTTP.

- :mod:`.client`: :class:`RegistryClient`, the endpoints (manifests, tags, blobs);
- :mod:`.auth`: credential providers, challenges, bearer tokens (:class:`~.auth.Authenticator`);
- :mod:`.retry`: :class:`RetryPolicy` and the one :func:`~.retry.retry` helper;
- :mod:`.safety`: redirect, address and scheme checks (SSRF guards);
- :mod:`.transport`: httpx calls, httpx errors translated, per-host rate limits.
"""

from .auth import (
    ChainCredentials,
    Challenge,
    Credential,
    DockerConfigCredentials,
    NoCredentials,
    StaticCredentials,
    parse_challenge,
)
from .client import ManifestHead, RegistryClient, default_http_client
from .retry import FAST, RetryPolicy, retry
from .safety import check_redirect_target
from .transport import RateLimit

__all__ = [
    "FAST",
    "ChainCredentials",
    "Challenge",
    "Credential",
    "DockerConfigCredentials",
    "ManifestHead",
    "NoCredentials",
    "RateLimit",
    "RegistryClient",
    "RetryPolicy",
    "StaticCredentials",
    "check_redirect_target",
    "default_http_client",
    "parse_challenge",
    "retry",
]
