"""HTTP stays inside ``registry/``: httpx's errors become the package's at one point, blob bodies come
out as bytes, and every response's rate-limit headers are recorded per host. (In-process: httpx's
MockTransport plays the network.)"""

from __future__ import annotations

import httpx
import pytest

from ecr_mirror.errors import RegistryError, TransportError, UnsafeRedirectError
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import FAST, RateLimit, RegistryClient
from ecr_mirror.registry.transport import parse_ratelimit

DIGEST = "sha256:" + "b" * 64
REF = parse_reference("registry.example.com/team/app:v1")


class BreaksAfter(httpx.SyncByteStream):
    """A body that yields ``pieces`` and then fails as a dropped connection does."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    def __iter__(self):
        yield from self.pieces
        raise httpx.ReadError("connection reset by peer")


def make_client(handler, sleeps: list[float] | None = None) -> RegistryClient:
    return RegistryClient(httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST,
                          sleep=(sleeps if sleeps is not None else []).append)


def test_blob_open_yields_bytes():
    client = make_client(lambda request: httpx.Response(200, stream=httpx.ByteStream(b"layer bytes")))
    with client.blob_open(REF, DIGEST) as chunks:
        pieces = list(chunks)
    assert pieces and all(type(p) is bytes for p in pieces) and b"".join(pieces) == b"layer bytes"


def test_a_body_cut_short_is_our_transport_error_naming_the_blob():
    client = make_client(lambda request: httpx.Response(200, stream=BreaksAfter(b"first piece")))
    with pytest.raises(TransportError) as caught, client.blob_open(REF, DIGEST) as chunks:
        assert next(chunks) == b"first piece"
        next(chunks)
    assert DIGEST in str(caught.value) and "ReadError" in str(caught.value) and caught.value.temporary
    assert isinstance(caught.value.__cause__, httpx.ReadError)  # the cause stays attached


@pytest.mark.parametrize("raised", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("bad")])
def test_send_failures_become_transport_errors_and_are_retried(raised):
    calls = []

    def handler(request):
        calls.append(request)
        raise raised

    sleeps: list[float] = []
    client = make_client(handler, sleeps)
    with pytest.raises(TransportError) as caught:
        client.manifest_head(REF)
    assert type(raised).__name__ in str(caught.value) and "HEAD manifest" in str(caught.value)
    assert len(calls) == FAST.attempts and len(sleeps) == FAST.attempts - 1


def test_a_malformed_redirect_location_is_unsafe_not_a_crash():
    client = make_client(lambda request: httpx.Response(302, headers={"Location": "http://[::1"}))
    with pytest.raises(UnsafeRedirectError):
        client.manifest_head(REF)


def test_error_answers_carry_status_codes_and_retry_after():
    def handler(request):
        return httpx.Response(429, headers={"Retry-After": "0.1"}, json={"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]})

    sleeps: list[float] = []
    with pytest.raises(RegistryError) as caught:
        make_client(handler, sleeps).manifest_get(REF)
    err = caught.value
    assert (err.status, err.codes, err.temporary, err.retry_after) == (429, ("TOOMANYREQUESTS",), True, 0.1)
    assert sleeps == [0.1] * (FAST.attempts - 1)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, RateLimit(remaining=76, limit=100, window=21600.0)),
    ({"ratelimit-remaining": "5"}, RateLimit(remaining=5)),
    ({"ratelimit-limit": "200;w=3600", "ratelimit-remaining": "0"}, RateLimit(remaining=0, limit=200, window=3600.0)),
    ({"ratelimit-remaining": "many"}, None),
    ({}, None),
    # data from a registry that makes no sense is read as absent, never stored or turned into a time
    ({"ratelimit-limit": "10;w=1e23", "ratelimit-remaining": "5;w=1e23"}, RateLimit(remaining=5, limit=10)),
    ({"ratelimit-remaining": "5;w=99999999999999999999999"}, RateLimit(remaining=5)),
    ({"ratelimit-remaining": "5;w=nan"}, RateLimit(remaining=5)),
    ({"ratelimit-remaining": "5;w=inf"}, RateLimit(remaining=5)),
    ({"ratelimit-remaining": "5;w=-100"}, RateLimit(remaining=5)),
    ({"ratelimit-remaining": "5;w=0"}, RateLimit(remaining=5)),
    ({"ratelimit-remaining": "9" * 41}, None),
    ({"ratelimit-remaining": "-3"}, None),
    ({"ratelimit-remaining": "1_000"}, None),
    ({"ratelimit-limit": "-5", "ratelimit-remaining": "3"}, RateLimit(remaining=3)),
])
def test_ratelimit_headers(headers, expected):
    assert parse_ratelimit(httpx.Headers(headers)) == expected


@pytest.mark.parametrize(("retry_after", "window", "wait"), [
    ("0", None, 60.0),  # a 429 says the pulls are spent: not a loop back into it every second
    ("Wed, 21 Oct 2015 07:28:00 GMT", None, 60.0),  # a date in the past
    ("inf", None, None),  # unreadable: the window decides, else unknown
    ("nan", "21600", 21600.0),
    ("1e30", None, 7 * 24 * 3600.0),  # capped at the longest window believed
    ("Fri, 01 Jan 9999 00:00:00 GMT", None, 7 * 24 * 3600.0),
    ("120", None, 120.0),
])
def test_a_429s_wait_is_one_that_makes_sense(retry_after, window, wait):
    import time

    from ecr_mirror.registry.transport import pull_limit_reached

    headers = {"Retry-After": retry_after}
    if window:
        headers.update({"ratelimit-limit": f"100;w={window}", "ratelimit-remaining": f"0;w={window}"})
    resp = httpx.Response(429, headers=headers, request=httpx.Request("GET", "https://registry.example/v2/x/manifests/1"))
    before = time.time()
    exc = pull_limit_reached(resp, "too many requests")
    if wait is None:
        assert exc.retry_at is None
    else:
        assert before + wait - 1 <= exc.retry_at <= time.time() + wait + 1


def test_ratelimit_is_recorded_per_host_from_every_response():
    def handler(request):
        remaining = "7;w=21600" if request.url.host == "registry-1.docker.io" else "3"
        return httpx.Response(404, headers={"ratelimit-remaining": remaining, "ratelimit-limit": "100;w=21600"})

    client = make_client(handler)
    assert client.manifest_head(parse_reference("golang:1.22")) is None
    assert client.manifest_head(parse_reference("ghcr.io/a/b:1")) is None
    assert client.ratelimit("registry-1.docker.io") == RateLimit(remaining=7, limit=100, window=21600.0)
    assert client.ratelimit("ghcr.io") == RateLimit(remaining=3, limit=100, window=21600.0)
    assert client.ratelimit("quay.io") is None
