"""The pull budget's pure parts (issue 15): settings, pull estimates, request-rate caps, 429s never retried."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ecr_mirror import budget
from ecr_mirror.budget import DEFAULT_TAG_PULLS, HostPacer, expected_pulls, parse_host_rates, parse_reserve
from ecr_mirror.config import ENV_HOST_RATES, ENV_PULL_RESERVE, Settings
from ecr_mirror.errors import ConfigError, PullLimitReached, RegistryError
from ecr_mirror.registry.retry import RetryPolicy, retry
from ecr_mirror.registry.transport import error_for_response


class FakeClock:
    """Seconds that move only when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_reserve_is_a_percentage_or_a_number_of_pulls():
    assert parse_reserve("") == (0.10, None)
    assert parse_reserve("25%") == (0.25, None)
    assert parse_reserve("5") == (0.0, 5)
    assert parse_reserve(0) == (0.0, 0)
    for bad in ("ten", "-1", "100%", "5.5"):
        with pytest.raises(ConfigError, match="pull reserve"):
            parse_reserve(bad)


def test_host_rates_parse_and_bad_entries_are_named():
    assert parse_host_rates("public.ecr.aws=1, Quay.io=2.5") == {"public.ecr.aws": 1.0, "quay.io": 2.5}
    assert parse_host_rates("") == {}
    for bad in ("public.ecr.aws", "=3", "quay.io=0", "quay.io=fast", "quay.io=1e-7", "quay.io=inf", "quay.io=nan"):
        with pytest.raises(ConfigError, match="host rate"):
            parse_host_rates(bad)


def test_settings_read_the_budget_variables_and_name_them_when_bad():
    s = Settings.from_env({ENV_PULL_RESERVE: "3", ENV_HOST_RATES: "public.ecr.aws=10"})
    assert s.pull_reserve == (0.0, 3) and dict(s.host_rates) == {"public.ecr.aws": 10.0}
    assert Settings.from_env({}).pull_reserve == (0.10, None)
    with pytest.raises(ConfigError, match=ENV_PULL_RESERVE):
        Settings.from_env({ENV_PULL_RESERVE: "lots"})
    with pytest.raises(ConfigError, match=ENV_HOST_RATES):
        Settings.from_env({ENV_HOST_RATES: "x"})


def test_a_tag_is_expected_to_cost_its_index_and_each_child():
    assert expected_pulls(2) == 3
    assert expected_pulls(0) == 1  # a single-platform image: its manifest only
    assert expected_pulls(None) == DEFAULT_TAG_PULLS


def test_the_reserve_of_a_limit():
    b = budget.PullBudget(store=None)  # type: ignore[arg-type] - not asked here
    assert b.reserve_of(100) == 10 and b.reserve_of(10) == 1 and b.reserve_of(7) == 1
    assert budget.PullBudget(store=None, reserve=(0.0, 5)).reserve_of(3) == 3  # type: ignore[arg-type]


def _per_second(times: list[float]) -> Counter[int]:
    return Counter(int(t + 1e-6) for t in times)  # (0.1 added ten times is 0.9999999999999999)


@pytest.mark.parametrize(("authenticated", "rate"), [(False, 1), (True, 10)])
def test_public_ecr_requests_are_held_to_the_documented_rate(authenticated, rate):
    """public.ecr.aws: 1 request/s anonymous, 10/s authenticated (ecr-facts.md section 4), counted per second
    of a fake clock (no time is measured)."""
    clock = FakeClock()
    pacer = HostPacer({}, authenticated=lambda host: authenticated, sleep=clock.sleep, clock=clock)
    times = []
    for _ in range(5 * rate):
        pacer("public.ecr.aws")
        times.append(clock())
    assert max(_per_second(times).values()) <= rate
    assert len(_per_second(times)) >= 5  # the requests went through, spread over the seconds
    # another host is not held back at all
    before = clock()
    for _ in range(50):
        pacer("registry-1.docker.io")
    assert clock() == before


def test_a_configured_rate_overrides_the_default():
    clock = FakeClock()
    pacer = HostPacer({"public.ecr.aws": 4, "quay.io": 2}, sleep=clock.sleep, clock=clock)
    assert pacer.rate("public.ecr.aws") == 4 and pacer.rate("quay.io") == 2 and pacer.rate("ghcr.io") is None
    times = []
    for _ in range(20):
        pacer("quay.io")
        times.append(clock())
    assert max(_per_second(times).values()) <= 2


def _answer(status: int, headers: dict[str, str]) -> httpx.Response:
    request = httpx.Request("GET", "https://registry-1.docker.io/v2/library/alpine/manifests/3")
    return httpx.Response(status, headers=headers, content=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"limit"}]}',
                          request=request)


@pytest.mark.parametrize("retry_after", ["120", None])
def test_a_429_with_the_pull_limit_headers_is_never_retried(retry_after):
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
    if retry_after:
        headers["retry-after"] = retry_after
    calls = []

    def operation():
        calls.append(1)
        raise error_for_response(_answer(429, headers), "GET manifest")

    with pytest.raises(PullLimitReached) as caught:
        retry(RetryPolicy(attempts=5, base_delay=0), operation, sleep=lambda s: None)
    assert len(calls) == 1
    exc = caught.value
    assert not exc.temporary and exc.host == "registry-1.docker.io" and exc.status == 429
    assert exc.retry_at is not None  # Retry-After, else the announced window


def test_a_429_without_the_headers_and_a_5xx_keep_their_retries():
    for status in (429, 503):
        calls = []

        def operation():
            calls.append(1)
            raise error_for_response(_answer(status, {}), "GET manifest")

        with pytest.raises(RegistryError) as caught:
            retry(RetryPolicy(attempts=3, base_delay=0), operation, sleep=lambda s: None)
        assert not isinstance(caught.value, PullLimitReached)
        assert len(calls) == 3


def test_the_budget_module_is_pure():
    tree = ast.parse(Path(budget.__file__).read_text())
    imported = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"httpx", "boto3", "botocore"}
