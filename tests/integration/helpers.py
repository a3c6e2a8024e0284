"""Small helpers for integration tests: a product client pointed at test registries."""

from __future__ import annotations

from ecr_mirror.copy import Copier
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import FAST, RegistryClient, StaticCredentials
from ecr_mirror.registry.client import default_http_client


def make_client(credentials: dict | None = None, *, insecure=(), retry=FAST, timeout: float | None = None) -> RegistryClient:
    http = default_http_client(8)
    if timeout is not None:
        import httpx

        http.timeout = httpx.Timeout(timeout)
    return RegistryClient(http, credentials=StaticCredentials(credentials or {}), insecure=insecure, retry=retry)


def copier(client: RegistryClient | None = None, **kwargs) -> Copier:
    return Copier(client or make_client(), concurrency=kwargs.pop("concurrency", 4), **kwargs)


def ref(host: str, path: str):
    return parse_reference(f"{host}/{path}")
