"""Redirects, upload locations, pagination links and token realms that must be refused.

Everything here runs over an in-process ``httpx.MockTransport``: the client under test is real,
the network is not, so no packet is ever sent to a metadata or link-local address even if a
check were missing. The transport records every request it is asked to send; "refused before any
connection" means the forbidden host never shows up in that record.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import AuthError, MirrorError, RegistryError, UnsafeRedirectError
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import FAST, RegistryClient, StaticCredentials, check_redirect_target
from ecr_mirror.registry.client import default_http_client

REGISTRY = "registry.example.com"
USER, PASSWORD = "robot", "pw-Redirect-Safety-9f2c"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
DIGEST = "sha256:" + "ab" * 32


class Net:
    """A fake network: ``routes[host](request) -> response``; records every request sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        handler = self.routes.get(request.url.host)
        if handler is None:
            return httpx.Response(599, text=f"no route to {request.url.host}")
        return handler(request)

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.sent]

    def to(self, host: str) -> list[httpx.Request]:
        return [r for r in self.sent if r.url.host == host]


def make_client(net: Net, credentials: dict | None = None, insecure=()) -> RegistryClient:
    http = default_http_client(2, transport=httpx.MockTransport(net))
    return RegistryClient(http, credentials=StaticCredentials(credentials or {}), insecure=insecure, retry=FAST,
                          sleep=lambda _: None)


def redirect_to(location: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(302, headers={"Location": location})


# Every form of a forbidden destination we know of. Comments say what it is.
FORBIDDEN = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # EC2 instance metadata (IMDS)
    "https://169.254.169.254/latest/api/token",
    "http://169.254.170.2/v2/credentials/abc",  # ECS task role credentials
    "http://169.254.170.23/v1/credentials",  # EKS Pod Identity agent
    "http://[fd00:ec2::254]/latest/meta-data/",  # IMDS over IPv6 (not link-local: a ULA)
    "http://[fd00:ec2::23]/v1/credentials",  # EKS Pod Identity over IPv6
    "http://[fe80::1]/",  # IPv6 link-local
    "http://[fe80::a9fe:a9fe%25eth0]/",  # ... with a zone id
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",
    "http://2852039166/",  # 169.254.169.254 as one decimal number (the resolver accepts it)
    "http://0xa9fea9fe/",  # ... as hex
    "http://0xA9.0xFE.0xA9.0xFE/",  # ... dotted hex
    "http://0251.0376.0251.0376/",  # ... dotted octal (httpx refuses to parse it: an invalid URL)
    "http://169.254.43518/",  # ... short form a.b.c
    "http://169.254.169.254./",  # ... trailing dot
    "http://metadata.google.internal/computeMetadata/v1/",  # GCP metadata by name
    "http://METADATA.google.internal./",
    "http://instance-data/latest/meta-data/",  # EC2 metadata by name
    "http://0.0.0.0/",  # unspecified: reaches local services on Linux
    "http://0/",
    "http://[::]/",
    "http://224.0.0.1/",  # multicast
    "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",  # the Lambda runtime API (loopback)
    "http://127.1:9001/",
    "http://localhost:2375/containers/json",
    "http://[::1]/",
    "file:///etc/passwd",
    "file://localhost/proc/self/environ",
    "ftp://ftp.example.com/pub/x",
    "gopher://gopher.example.com/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "//169.254.169.254/latest/meta-data/",  # scheme-relative
    "http://mirror.example.net/v2/blobs/x",  # https -> plain http downgrade
]
FORBIDDEN_HOSTS = {"169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23", "fe80::1",
                   "2852039166", "0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "169.254.43518", "169.254.169.254.",
                   "metadata.google.internal", "metadata.google.internal.", "instance-data", "0.0.0.0", "0", "::",
                   "224.0.0.1", "127.0.0.1", "127.1", "localhost", "::1", "ftp.example.com", "gopher.example.com",
                   "mirror.example.net"}


def _assert_only_registry_contacted(net: Net) -> None:
    assert net.hosts() and set(net.hosts()) == {REGISTRY}, net.hosts()
    assert not FORBIDDEN_HOSTS & {h.lower() for h in net.hosts()}


@pytest.mark.parametrize("location", FORBIDDEN)
def test_manifest_redirect_refused_before_any_connection(location):
    net = Net()
    net.routes[REGISTRY] = redirect_to(location)
    client = make_client(net)
    with pytest.raises(UnsafeRedirectError) as caught:
        client.manifest_head(parse_reference(f"{REGISTRY}/team/app:v1"))
    assert f"HEAD manifest {REGISTRY}/team/app:v1" in str(caught.value)  # names the image
    assert len(net.sent) == 1  # refused, not retried
    _assert_only_registry_contacted(net)


@pytest.mark.parametrize("location", FORBIDDEN)
def test_blob_redirect_refused_before_any_connection(location):
    net = Net()
    net.routes[REGISTRY] = redirect_to(location)
    client = make_client(net, {REGISTRY: {"username": USER, "password": PASSWORD}})
    with pytest.raises(UnsafeRedirectError) as caught, client.blob_open(parse_reference(f"{REGISTRY}/team/app:v1"), DIGEST):
        pass
    assert DIGEST in str(caught.value)
    assert len(net.sent) == 1
    _assert_only_registry_contacted(net)


@pytest.mark.parametrize("location", [loc for loc in FORBIDDEN if not loc.startswith("//")])
def test_upload_location_refused_before_any_connection(location):
    """A destination's upload session ``Location`` is a URL the client will PUT to: the same rules."""
    net = Net()
    net.routes[REGISTRY] = lambda request: httpx.Response(202, headers={"Location": location})
    client = make_client(net)
    with pytest.raises(RegistryError, match="upload Location"):  # UnsafeRedirectError, or unparseable
        client.blob_upload_start(parse_reference(f"{REGISTRY}/team/app:v1"))
    assert [r.method for r in net.sent] == ["POST"]
    _assert_only_registry_contacted(net)


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://[fd00:ec2::254]/"])
def test_tag_list_next_link_refused_before_any_connection(location):
    net = Net()
    net.routes[REGISTRY] = lambda request: httpx.Response(
        200, json={"name": "team/app", "tags": ["v1"]}, headers={"Link": f'<{location}>; rel="next"'}
    )
    client = make_client(net)
    with pytest.raises(UnsafeRedirectError, match="next page"):
        client.tags_list(parse_reference(f"{REGISTRY}/team/app"))
    assert len(net.sent) == 1
    _assert_only_registry_contacted(net)


@pytest.mark.parametrize("location", ["https://cdn.example.net/blobs/x?sig=1", "https://10.1.2.3/blobs/x", "https://[2600:1f18::1]/x",
                                      "/v2/team/app/blobs/elsewhere"])
def test_ordinary_redirects_are_followed_without_credentials(location):
    """The checks do not over-block: a CDN, a private VPC address or a relative path are followed;
    Authorization goes only to the host that asked for it."""
    body = b"layer bytes"
    net = Net()

    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/elsewhere"):
            return httpx.Response(200, content=body)
        if request.headers.get("authorization") != BASIC:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": location})

    net.routes[REGISTRY] = registry
    target = httpx.URL(f"https://{REGISTRY}/").join(location).host
    if target != REGISTRY:
        net.routes[target] = lambda request: httpx.Response(200, content=body)
    client = make_client(net, {REGISTRY: {"username": USER, "password": PASSWORD}})
    with client.blob_open(parse_reference(f"{REGISTRY}/team/app:v1"), DIGEST) as chunks:
        assert b"".join(chunks) == body
    assert net.hosts()[-1] == target
    for request in net.sent:
        if request.url.host != REGISTRY:
            assert "authorization" not in request.headers


def test_redirect_loop_is_bounded():
    net = Net()
    net.routes[REGISTRY] = redirect_to(f"https://{REGISTRY}/v2/team/app/manifests/v1")
    with pytest.raises(UnsafeRedirectError, match="more than 5 redirects"):
        make_client(net).manifest_head(parse_reference(f"{REGISTRY}/team/app:v1"))
    assert len(net.sent) == 6  # the first request and five redirects; never retried


# ---------------------------------------------------------------- token realms


def bearer_registry(realm: str, *, accept_token: str = "tok-123") -> Callable[[httpx.Request], httpx.Response]:
    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":  # its own token endpoint, when the realm is on the same host
            return token_endpoint(accept_token)(request)
        if request.headers.get("authorization") == f"Bearer {accept_token}":
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST,
                                                "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'})
    return registry


def token_endpoint(token: str = "tok-123") -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json={"token": token, "expires_in": 300})


def _secret_in(request: httpx.Request) -> bool:
    text = str(request.url) + json.dumps(dict(request.headers))
    return PASSWORD in text or BASIC.split()[1] in text


@pytest.mark.parametrize(
    ("registry", "realm_host", "gets_credentials"),
    [
        (REGISTRY, REGISTRY, True),  # the registry's own token endpoint
        (REGISTRY, "auth.example.com", True),  # under the registry's parent domain
        ("registry-1.docker.io", "auth.docker.io", True),  # Docker Hub
        ("registry.gitlab.com", "gitlab.com", True),  # GitLab
        (REGISTRY, "evil.example.net", False),  # another domain
        (REGISTRY, "example.com.evil.net", False),
        ("registry.foo.co.uk", "evil.co.uk", False),  # shares only a public suffix
        ("foo.co.uk", "evil.co.uk", False),
        ("ghcr.io", "evil.io", False),  # a bare TLD is no parent
        ("ghcr.io", "auth.ghcr.io.evil.net", False),
        ("10.0.0.5", "10.0.0.6", False),  # IP addresses have no parent domain
    ],
)
def test_credentials_go_only_to_the_registrys_own_realm(registry, realm_host, gets_credentials):
    net = Net()
    net.routes[registry] = bearer_registry(f"https://{realm_host}/token")
    if realm_host != registry:
        net.routes[realm_host] = token_endpoint()
    client = make_client(net, {registry: {"username": USER, "password": PASSWORD}})
    head = client.manifest_head(parse_reference(f"{registry}/team/app:v1"))
    assert head is not None and head.digest == DIGEST  # anonymous tokens still work
    token_requests = [r for r in net.sent if r.url.path == "/token"]
    assert len(token_requests) == 1
    assert (token_requests[0].headers.get("authorization") == BASIC) is gets_credentials
    assert token_requests[0].url.scheme == "https"
    for request in net.sent:
        if request.url.host not in (registry,) and not gets_credentials:
            assert not _secret_in(request)


@pytest.mark.parametrize(
    ("realm", "message"),
    [
        ("http://auth.example.com/token", "down to plain http"),  # credentials over plain http: never
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://[fd00:ec2::254]/token", "fd00:ec2::254"),
        ("https://127.0.0.1:8080/token", "loopback"),  # a public registry pointing at our loopback
        ("file:///etc/passwd", "not an http"),
        ("ftp://auth.example.com/token", "not an http"),
        ("not a url at all", "token realm"),
    ],
)
def test_unsafe_token_realms_are_refused_before_any_connection(realm, message):
    net = Net()
    net.routes[REGISTRY] = lambda request: httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    client = make_client(net, {REGISTRY: {"username": USER, "password": PASSWORD}})
    with pytest.raises(RegistryError) as caught:  # AuthError or UnsafeRedirectError
        client.manifest_head(parse_reference(f"{REGISTRY}/team/app:v1"))
    assert message in str(caught.value)
    assert f"HEAD manifest {REGISTRY}/team/app:v1" in str(caught.value)
    _assert_only_registry_contacted(net)
    assert not any(_secret_in(r) for r in net.sent)


def test_plain_http_realm_allowed_for_a_host_named_insecure():
    net = Net()
    net.routes[REGISTRY] = bearer_registry("http://auth.example.com/token")
    net.routes["auth.example.com"] = token_endpoint()
    client = make_client(net, {REGISTRY: {"username": USER, "password": PASSWORD}}, insecure=["auth.example.com"])
    assert client.manifest_head(parse_reference(f"{REGISTRY}/team/app:v1")) is not None
    (token_request,) = net.to("auth.example.com")
    assert token_request.url.scheme == "http"


@pytest.mark.parametrize("challenge", ['Basic realm="cdn"', 'Bearer realm="https://auth.example.com/token",service="cdn"'])
def test_a_redirected_host_asking_for_credentials_gets_none(challenge):
    """The registry's credentials belong to the registry: a CDN it redirects to that answers 401
    is not given them, whatever its challenge says."""
    net = Net()
    net.routes[REGISTRY] = redirect_to("https://cdn.example.net/blob")
    net.routes["cdn.example.net"] = lambda request: httpx.Response(401, headers={"WWW-Authenticate": challenge})
    net.routes["auth.example.com"] = token_endpoint("cdn-token")
    client = make_client(net, {REGISTRY: {"username": USER, "password": PASSWORD}})
    with pytest.raises(AuthError), client.blob_open(parse_reference(f"{REGISTRY}/team/app:v1"), DIGEST):
        pass
    for request in net.sent:
        if request.url.host != REGISTRY:
            assert not _secret_in(request), request


def test_huge_token_response_is_refused_while_reading():
    net = Net()
    net.routes[REGISTRY] = bearer_registry(f"https://{REGISTRY}/token")
    original = net.routes[REGISTRY]

    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, content=iter([b'{"token": "'] + [b"a" * 65536] * 64 + [b'"}']))
        return original(request)

    net.routes[REGISTRY] = registry
    with pytest.raises(AuthError, match="answered more than"):
        make_client(net).manifest_head(parse_reference(f"{REGISTRY}/team/app:v1"))


@pytest.mark.parametrize("where", ["token", "error", "tags"])
def test_deeply_nested_json_answers_are_clean_errors(where):
    """JSON nested deeper than Python recurses, in a token answer, an error body or a tag list,
    is one clear MirrorError, not a RecursionError escaping (which would stop a whole sync)."""
    nested = b"[" * 200_000 + b"]" * 200_000
    net = Net()

    def registry(request: httpx.Request) -> httpx.Response:
        if where == "token":
            if request.url.path == "/token":
                return httpx.Response(200, content=nested)
            return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="https://{REGISTRY}/token"'})
        if where == "error":
            return httpx.Response(404, content=nested, headers={"Content-Type": "application/json"})
        return httpx.Response(200, content=nested, headers={"Content-Type": "application/json"})

    net.routes[REGISTRY] = registry
    client = make_client(net)
    with pytest.raises(MirrorError):
        if where == "tags":
            client.tags_list(parse_reference(f"{REGISTRY}/team/app"))
        else:
            client.manifest_get(parse_reference(f"{REGISTRY}/team/app:v1"))


# ---------------------------------------------------------------- properties of check_redirect_target

ORIGIN = httpx.URL(f"https://{REGISTRY}/v2/")
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _refused(url: str) -> bool:
    try:
        check_redirect_target(httpx.URL(url), origin=ORIGIN, insecure=frozenset())
    except UnsafeRedirectError:
        return True
    return False


link_local_v4 = st.integers(int(ipaddress.IPv4Address("169.254.0.0")), int(ipaddress.IPv4Address("169.254.255.255")))


@BOUNDED
@given(link_local_v4, st.sampled_from(["dotted", "decimal", "hex", "dotted-hex", "short", "mapped", "trailing-dot"]))
def test_every_notation_of_a_link_local_address_is_refused(number, notation):
    ip = ipaddress.IPv4Address(number)
    a, b, c, d = ip.packed
    host = {
        "dotted": str(ip),
        "decimal": str(number),
        "hex": hex(number),
        "dotted-hex": f"{a:#x}.{b:#x}.{c:#x}.{d:#x}",
        "short": f"{a}.{b}.{c * 256 + d}",
        "mapped": f"[::ffff:{ip}]",
        "trailing-dot": f"{ip}.",
    }[notation]
    assert socket.inet_aton(str(ip)) == ip.packed
    assert _refused(f"https://{host}/latest/meta-data/")


@BOUNDED
@given(st.integers(int(ipaddress.IPv6Address("fe80::")), int(ipaddress.IPv6Address("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))))
def test_every_ipv6_link_local_address_is_refused(number):
    assert _refused(f"https://[{ipaddress.IPv6Address(number)}]/")


url_text = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(["http://", "https://", "ftp://", "file://", "//", "", "HTTPS://"]),
              st.lists(st.sampled_from(list("0123456789abcdefx.:[]%@-") + ["169.254.", "fe80::", "localhost", "example.com"]),
                       max_size=12).map("".join),
              st.sampled_from(["", "/", "/v2/x", ":443/", ":99999/"])).map("".join),
)


@BOUNDED
@given(url_text)
def test_check_redirect_target_raises_nothing_but_unsafe_redirect(text):
    try:
        url = ORIGIN.join(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        return  # the client turns an unparseable Location into UnsafeRedirectError itself
    try:
        check_redirect_target(url, origin=ORIGIN, insecure=frozenset())
    except UnsafeRedirectError:
        return
    # whatever passes is an http(s) URL with a host that is no literal link-local/loopback address
    assert url.scheme in ("http", "https") and url.host
    assert url.scheme == "https" or not ORIGIN.scheme == "https"
