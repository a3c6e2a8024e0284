"""tests/support/ratelimit.py: Docker Hub's pull-limit semantics in front of a real registry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest

from tests.support.images import MANIFEST_ACCEPT, BearerAuth, build_image, build_index, push_index
from tests.support.ratelimit import DOCKER_HUB_LIMIT_MESSAGE, ManualClock, PullLimiter, parse_ratelimit

ACCEPT = {"Accept": MANIFEST_ACCEPT}


@pytest.fixture
def hub_image(registry):
    index = build_index([build_image("linux/amd64", seed=51), build_image("linux/arm64/v8", seed=51)])
    push_index(registry, "library/app", index, tag="1.0")
    return index


def _remaining(response: httpx.Response) -> int:
    count, window = parse_ratelimit(response.headers["ratelimit-remaining"])
    assert window == 21600
    return count


def test_every_answer_carries_the_headers_and_only_manifest_gets_count(registry, proxy_factory, hub_image):
    limiter = PullLimiter(limit=5, window=21600)
    hub = proxy_factory(registry, extensions=[limiter])
    base = f"{hub.url}/v2/library/app"
    with httpx.Client() as client:
        head = client.head(f"{base}/manifests/1.0", headers=ACCEPT)
        assert head.status_code == 200
        assert head.headers["ratelimit-limit"] == "5;w=21600"
        assert head.headers["ratelimit-remaining"] == "5;w=21600"
        assert head.headers["docker-ratelimit-source"] == "127.0.0.1"
        layer = hub_image.images[0].layers[0].digest
        blob = client.get(f"{base}/blobs/{layer}")
        assert blob.status_code == 200 and _remaining(blob) == 5  # blobs are free
        assert _remaining(client.get(f"{base}/tags/list")) == 5
        assert _remaining(client.get(f"{hub.url}/v2/")) == 5
        # a manifest GET spends one pull, by tag or by digest; its own answer shows what is left
        assert _remaining(client.get(f"{base}/manifests/1.0", headers=ACCEPT)) == 4
        assert _remaining(client.get(f"{base}/manifests/{hub_image.images[0].digest}", headers=ACCEPT)) == 3
        assert _remaining(client.head(f"{base}/manifests/1.0", headers=ACCEPT)) == 3
    stats = limiter.current
    assert (stats.pulls, stats.heads, stats.rejected, stats.other) == (2, 2, 0, 3)
    assert limiter.spent == 2 and limiter.remaining == 3
    assert parse_ratelimit("100") == (100, None)
    with pytest.raises(ValueError):
        parse_ratelimit("lots")


def test_a_spent_window_answers_429_until_the_test_refills_it(registry, proxy_factory, hub_image):
    clock = ManualClock()
    limiter = PullLimiter(limit=2, window=600, clock=clock)
    hub = proxy_factory(registry, extensions=[limiter])
    url = f"{hub.url}/v2/library/app/manifests/1.0"
    with httpx.Client() as client:
        assert [client.get(url, headers=ACCEPT).status_code for _ in range(2)] == [200, 200]
        refused = client.get(url, headers=ACCEPT)
        assert refused.status_code == 429
        assert refused.json()["errors"] == [
            {"code": "TOOMANYREQUESTS", "message": DOCKER_HUB_LIMIT_MESSAGE, "detail": None}
        ]
        assert refused.headers["Retry-After"] == "600"
        assert refused.headers["ratelimit-remaining"] == "0;w=600"
        head = client.head(url, headers=ACCEPT)  # version checks still work
        assert head.status_code == 200 and head.headers["ratelimit-remaining"] == "0;w=600"
        clock.advance(599.5)
        assert client.get(url, headers=ACCEPT).headers["Retry-After"] == "1"
        assert limiter.seconds_to_refill() == 1
        limiter.refill()
        assert client.get(url, headers=ACCEPT).status_code == 200
    assert hub.count("GET", "/manifests/", status=429) == 2  # the proxy's own count agrees
    first, second = limiter.windows
    assert (first.pulls, first.rejected, first.heads) == (2, 2, 1)
    assert (second.number, second.pulls, second.rejected, second.started_at) == (1, 1, 0, 599.5)
    assert (limiter.spent, limiter.rejected) == (3, 2)


def test_the_window_rolls_by_the_clock_and_retry_after_is_optional(registry, proxy_factory, hub_image):
    clock = ManualClock(start=1000)
    limiter = PullLimiter(limit=1, window=60, clock=clock, retry_after=False)
    hub = proxy_factory(registry, extensions=[limiter])
    url = f"{hub.url}/v2/library/app/manifests/1.0"
    with httpx.Client() as client:
        assert client.get(url, headers=ACCEPT).status_code == 200
        refused = client.get(url, headers=ACCEPT)
        assert refused.status_code == 429 and "Retry-After" not in refused.headers
        clock.advance(130)  # two windows later: the third window started at 1120
        assert client.get(url, headers=ACCEPT).status_code == 200
    assert [(w.number, w.started_at, w.pulls) for w in limiter.windows] == [(0, 1000, 1), (1, 1120, 1)]


def test_bearer_challenges_do_not_spend_pulls(registry, proxy_factory, hub_image):
    limiter = PullLimiter(limit=3)
    hub = proxy_factory(registry, bearer=True, extensions=[limiter])
    with httpx.Client(auth=BearerAuth()) as client:
        response = client.get(f"{hub.url}/v2/library/app/manifests/1.0", headers=ACCEPT)
    assert response.status_code == 200 and _remaining(response) == 2
    assert hub.count("GET", "/manifests/", status=401) == 1 and limiter.spent == 1


_PULLER = textwrap.dedent(
    """
    import json, sys, httpx
    url, n = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    seen = []
    with httpx.Client() as client:
        for _ in range(n):
            r = client.get(url, headers={"Accept": "application/vnd.oci.image.index.v1+json"})
            seen.append([r.status_code, r.headers["ratelimit-remaining"]])
    print(json.dumps(seen))
    """
)


def test_two_processes_at_once_never_overspend_a_window(registry, proxy_factory, hub_image):
    limiter = PullLimiter(limit=10)
    hub = proxy_factory(registry, extensions=[limiter])
    url = f"{hub.url}/v2/library/app/manifests/1.0"
    procs = [
        subprocess.Popen([sys.executable, "-c", _PULLER, url, "15"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    assert [proc.stdout.readline() for proc in procs] == ["ready\n", "ready\n"]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    answers = [answer for result in results for answer in result]
    ok = sorted(int(remaining.split(";")[0]) for status, remaining in answers if status == 200)
    assert ok == list(range(10))  # every pull saw its own remaining count: none spent twice
    assert sum(1 for status, _ in answers if status == 429) == 20
    assert (limiter.spent, limiter.rejected, limiter.remaining) == (10, 20, 0)
