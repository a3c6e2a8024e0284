"""Shared pytest fixtures: real registries, proxies, moto. See tests/support/ for the pieces.

Every fixture that needs ``docker-registry`` or ``moto_server`` FAILS when it is missing; none skip.
Import support code as ``tests.support....`` (the project root is put on sys.path here, so the
benchmark and the demo can do the same after adding the root themselves).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.ecr import EcrStandIn, ReferrersProxy  # noqa: E402
from tests.support.images import Index, build_image, build_index  # noqa: E402
from tests.support.moto import MotoServer, boto3_env  # noqa: E402
from tests.support.proxy import RegistryProxy  # noqa: E402
from tests.support.registry import RegistryProcess  # noqa: E402

AUTH_USER = "tester"
AUTH_PASSWORD = "test-password"


class RegistryPair(NamedTuple):
    source: RegistryProcess
    dest: RegistryProcess


@pytest.fixture
def registry_factory() -> Iterator[Callable[..., RegistryProcess]]:
    """``make(**RegistryProcess kwargs)`` -> a started registry, stopped after the test.

    Storage defaults to ``memory`` here (same API, no fsync per blob); pass
    ``storage="filesystem"`` to keep blobs on disk under ``registry.data_dir``.
    """
    started: list[RegistryProcess] = []

    def make(**kwargs: Any) -> RegistryProcess:
        kwargs.setdefault("storage", "memory")
        registry = RegistryProcess(**kwargs)
        started.append(registry)
        return registry.start()

    yield make
    for registry in reversed(started):
        registry.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryProcess]) -> RegistryProcess:
    """A fresh, empty, anonymous registry (memory storage)."""
    return registry_factory()


@pytest.fixture
def registry_pair(registry_factory: Callable[..., RegistryProcess]) -> RegistryPair:
    """Two fresh anonymous registries: ``.source`` and ``.dest``."""
    return RegistryPair(registry_factory(), registry_factory())


@pytest.fixture
def auth_registry(registry_factory: Callable[..., RegistryProcess]) -> RegistryProcess:
    """A registry demanding Basic auth; ``.credentials`` is (AUTH_USER, AUTH_PASSWORD), ``.auth`` an httpx auth."""
    return registry_factory(htpasswd={AUTH_USER: AUTH_PASSWORD})


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., RegistryProxy]]:
    """``make(upstream, **RegistryProxy kwargs)`` -> a started proxy, stopped after the test.

    ``make(upstream, referrers=True, ...)`` gives a :class:`ReferrersProxy`: the same proxy that also
    answers the OCI referrers API from the manifests pushed through it (an upstream that speaks it).
    Teardown fails the test if a proxy hit an internal error (a bug in the proxy, not a fault).
    """
    started: list[RegistryProxy] = []

    def make(upstream: object, *, referrers: bool = False, **kwargs: Any) -> RegistryProxy:
        proxy = (ReferrersProxy if referrers else RegistryProxy)(upstream, **kwargs)
        started.append(proxy)
        return proxy.start()

    yield make
    errors = []
    for proxy in reversed(started):
        proxy.stop()
        errors.extend(proxy.errors)
    assert not errors, f"proxy internal errors: {errors!r}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server per test session (per xdist worker). Prefer ``aws_env``, which resets it."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Reset moto and point boto3 (via environment variables) at it for this test."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(_ROOT / "tests" / ".no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(_ROOT / "tests" / ".no-aws-credentials"))
    for name, value in boto3_env(moto_server.url).items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
def ecr_factory() -> Iterator[Callable[..., EcrStandIn]]:
    """``make(**EcrStandIn kwargs)`` -> a started ECR stand-in, stopped after the test.

    Teardown fails the test if a stand-in hit an internal error (a bug in it, not an answer it chose).
    """
    started: list[EcrStandIn] = []

    def make(**kwargs: Any) -> EcrStandIn:
        standin = EcrStandIn(**kwargs)
        started.append(standin)
        return standin.start()

    yield make
    errors = []
    for standin in reversed(started):
        errors.extend(standin.errors)
        standin.stop()
    assert not errors, f"ECR stand-in internal errors: {errors!r}"


@pytest.fixture
def ecr(aws_env: MotoServer, ecr_factory: Callable[..., EcrStandIn], monkeypatch: pytest.MonkeyPatch) -> EcrStandIn:
    """A started ECR stand-in (tests/support/ecr): boto3's ``ecr`` client goes to it (``AWS_ENDPOINT_URL_ECR``),
    every other AWS API to moto (``aws_env``).

    ``ecr.host``/``ecr.url`` is the registry, ``ecr.credentials``/``ecr.auth`` its Basic credentials,
    ``ecr.client()`` a boto3 client, ``ecr.count(op=...)`` what the ECR side was asked.
    """
    standin = ecr_factory()
    for name, value in standin.env.items():
        monkeypatch.setenv(name, value)
    return standin


@pytest.fixture
def sample_index() -> Index:
    """A small two-platform OCI index (linux/amd64, linux/arm64/v8) with BuildKit attestations."""
    return build_index(
        [build_image("linux/amd64", seed=1), build_image("linux/arm64/v8", seed=1)], attestations=True
    )
