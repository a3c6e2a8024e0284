"""Fixtures of the integration tests beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_mirror.handlers import _common
from tests.integration.passes import AtomicWrites, Deployment
from tests.support.ecr import EcrStandIn


@pytest.fixture
def fast_ecr(aws_env: object, ecr_factory: Callable[..., EcrStandIn], monkeypatch: pytest.MonkeyPatch) -> EcrStandIn:
    """Like ``ecr``, without the stand-in's PutImage rate limit (10/s, as ECR's): for tests that count
    requests or race syncs, where 429s and their retries would make the outcome depend on timing."""
    standin = ecr_factory(put_image_rate=None)
    for name, value in standin.env.items():
        monkeypatch.setenv(name, value)
    return standin


@pytest.fixture
def dynamodb_endpoint() -> None:
    """Where boto3's DynamoDB goes for a :func:`deployment`: moto itself (``aws_env``). A test module
    overrides it to put something in front (tests/integration/test_leases.py: atomic writes)."""
    return None


@pytest.fixture
def atomic_dynamodb(aws_env: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[AtomicWrites]:
    """DynamoDB (moto) with DynamoDB's atomic conditional writes (:class:`~tests.integration.passes.AtomicWrites`):
    a module whose syncs race returns it from its own ``dynamodb_endpoint``."""
    proxy = AtomicWrites(aws_env).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_endpoint: None,
    fast_ecr: EcrStandIn,
    registry_factory: Callable[..., Any],
    proxy_factory: Callable[..., Any],
    tmp_path: Path,
) -> Iterator[Deployment]:
    """A mirror deployment in this process (tests/integration/passes.py): tables created, environment set,
    ECR = ``fast_ecr``; ``.upstream`` a registry and ``.proxy`` the counting proxy in front of it."""
    d = Deployment(fast_ecr, docker_config=str(tmp_path / "no-docker-config"))
    d.apply_env(monkeypatch.setenv)
    d.create_tables()
    d.upstream = registry_factory()
    d.proxy = proxy_factory(d.upstream)
    yield d
    _common.reset()
