"""OCI distribution client: auth, retries, safe redirects, manifests and blobs over httpx."""

from .auth import (
    ChainCredentials,
    Challenge,
    Credential,
    DockerConfigCredentials,
    EcrCredentials,
    NoCredentials,
    StaticCredentials,
    parse_challenge,
)
from .client import ManifestHead, RegistryClient, check_redirect_target, default_http_client
from .retry import FAST, RetryPolicy

__all__ = [
    "FAST",
    "ChainCredentials",
    "Challenge",
    "Credential",
    "DockerConfigCredentials",
    "EcrCredentials",
    "ManifestHead",
    "NoCredentials",
    "RegistryClient",
    "RetryPolicy",
    "StaticCredentials",
    "check_redirect_target",
    "default_http_client",
    "parse_challenge",
]
