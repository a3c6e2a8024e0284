"""Challenge parsing, credential sources, token cache, retry policy, scheme choice (pure or in-process)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import boto3
import httpx
import pytest
from moto import mock_aws

from ecr_mirror.ecr import EcrCredentials
from ecr_mirror.errors import AuthError, ConfigError
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import (
    FAST,
    ChainCredentials,
    DockerConfigCredentials,
    RegistryClient,
    StaticCredentials,
    parse_challenge,
)
from ecr_mirror.registry.auth import TokenCache, token_from_response
from ecr_mirror.registry.safety import realm_may_get_credentials
from ecr_mirror.registry.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    "header, scheme, params",
    [
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/golang:pull"',
         "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/golang:pull"}),
        ('Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"',
         "basic", {"realm": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/", "service": "ecr.amazonaws.com"}),
        ('bearer realm="https://ghcr.io/token", service="ghcr.io" ,scope="repository:a/b:pull,push"',
         "bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:a/b:pull,push"}),
        ('Bearer realm=https://quay.io/v2/auth,service=quay.io', "bearer", {"realm": "https://quay.io/v2/auth", "service": "quay.io"}),
        ('Bearer realm="a\\"b"', "bearer", {"realm": 'a"b'}),
    ],
)
def test_parse_challenge(header, scheme, params):
    ch = parse_challenge(header)
    assert ch is not None and ch.scheme == scheme and ch.params == params


@pytest.mark.parametrize("header", [None, "", "realm=x"])
def test_parse_challenge_rejects_garbage(header):
    assert parse_challenge(header) is None


def test_docker_config_auths(tmp_path, monkeypatch):
    cfg = {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpass").decode()},
        "ghcr.io": {"username": "octo", "password": "ghp_x"},
        "quay.io": {"identitytoken": "refresh-token"},
    }}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    creds = DockerConfigCredentials()
    hub = creds.credential_for("registry-1.docker.io")
    assert (hub.username, hub.password) == ("hubuser", "hubpass")
    assert creds.credential_for("docker.io") == hub
    assert creds.credential_for("ghcr.io").password == "ghp_x"
    assert creds.credential_for("quay.io").token_kind == "identitytoken"
    assert creds.credential_for("example.com") is None
    assert "hubpass" not in repr(hub)


def test_docker_config_missing_file_is_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nope"))
    assert DockerConfigCredentials().credential_for("ghcr.io") is None


def test_docker_config_broken_json_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{not json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match="not valid JSON"):
        DockerConfigCredentials().credential_for("ghcr.io")


def test_static_credentials_validate():
    with pytest.raises(ConfigError, match="'docker.io'"):
        StaticCredentials({"docker.io": {"username": "u"}})
    creds = StaticCredentials({"docker.io": {"username": "u", "password": "p"}})
    assert creds.credential_for("registry-1.docker.io").username == "u"


@mock_aws
def test_ecr_credentials_from_get_authorization_token_cached():
    calls = []

    def factory(region):
        calls.append(region)
        return boto3.client("ecr", region_name=region)

    creds = EcrCredentials(factory)
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    first = creds.credential_for(host)
    assert first.username == "AWS" and first.password
    assert creds.credential_for(host) is first  # cached
    assert calls == ["eu-west-1"]
    assert creds.credential_for("ghcr.io") is None
    assert creds.invalidate("ghcr.io") is False  # not ECR's: nothing fresh to fetch
    assert creds.invalidate(host, "Basic not-the-cached-one") is True  # refreshed since: the cached token stays
    assert creds.credential_for(host) is first
    assert creds.invalidate(host, first.basic_header()) is True
    assert creds.credential_for(host) is not first
    assert calls == ["eu-west-1"]  # one client per region, reused


def test_chain_first_provider_wins():
    a = StaticCredentials({"ghcr.io": {"username": "a", "password": "pa"}})
    b = StaticCredentials({"ghcr.io": {"username": "b", "password": "pb"}, "quay.io": {"username": "q", "password": "pq"}})
    chain = ChainCredentials(a, b)
    assert chain.credential_for("ghcr.io").username == "a"
    assert chain.credential_for("quay.io").username == "q"
    assert set(chain.secrets()) == {"pa", "pb", "pq"}


def test_token_cache_expiry():
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("h", "s", "tok", 60)
    assert cache.get("h", "s").value == "tok"
    now[0] += 56  # within the safety margin of expiry: treated as expired
    assert cache.get("h", "s") is None


def test_token_response_defaults_and_errors():
    assert token_from_response({"token": "t"}) == ("t", 60.0)
    assert token_from_response({"access_token": "t", "expires_in": 300}) == ("t", 300.0)
    with pytest.raises(AuthError):
        token_from_response({"nothing": 1})


@pytest.mark.parametrize(
    "registry, realm, allowed",
    [
        ("registry-1.docker.io", "https://auth.docker.io/token", True),
        ("ghcr.io", "https://ghcr.io/token", True),
        ("quay.io", "https://quay.io/v2/auth", True),
        ("ghcr.io", "https://evil.example/token", False),
        ("127.0.0.1:5000", "http://127.0.0.1:6000/token", True),
        ("127.0.0.1:5000", "http://10.0.0.1/token", False),
    ],
)
def test_credentials_go_only_to_the_registrys_own_realm(registry, realm, allowed):
    assert realm_may_get_credentials(registry, httpx.URL(realm)) is allowed


def test_retry_after_and_backoff():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    policy = RetryPolicy(base_delay=1, max_delay=8, max_retry_after=5)
    assert policy.delay(1, "2") == 2.0
    assert policy.delay(1, "100") == 5  # capped
    for attempt in range(1, 8):
        d = policy.delay(attempt)
        assert 0 < d <= 8
    assert not policy.should_retry(policy.attempts, 0, 0)


def test_scheme_http_only_for_loopback_and_named_insecure_hosts():
    client = RegistryClient(httpx.Client(), insecure={"registry.internal:5000"}, retry=FAST)
    assert client.scheme("localhost:5000") == "http"
    assert client.scheme("127.0.0.1:5000") == "http"
    assert client.scheme("[::1]:5000") == "http"
    assert client.scheme("registry.internal:5000") == "http"
    assert client.scheme("registry.internal:6000") == "https"
    assert client.scheme("ghcr.io") == "https"


def test_ratelimit_remaining_is_read():
    def handle(request):
        return httpx.Response(200, headers={
            "docker-content-digest": "sha256:" + "a" * 64,
            "content-type": "application/vnd.oci.image.index.v1+json",
            "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"})

    client = RegistryClient(httpx.Client(transport=httpx.MockTransport(handle)), retry=FAST)
    client.manifest_head(parse_reference("golang:1.22"))
    assert {host: seen.remaining for host, seen in client.ratelimits.snapshot().items()} == {"registry-1.docker.io": 76}


def test_every_manifest_request_sends_the_full_accept_list():
    seen = []

    def handle(request):
        seen.append(request.headers.get("accept"))
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    client = RegistryClient(httpx.Client(transport=httpx.MockTransport(handle)), retry=FAST)
    client.manifest_head(parse_reference("ghcr.io/a/b:1"))
    for media in ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.docker.distribution.manifest.v2+json"):
        assert media in seen[0]


def test_oversized_manifest_refused_whatever_content_length_says():
    from ecr_mirror.errors import ManifestError

    def body():
        for _ in range(5):
            yield b"x" * (1 << 20)

    def handle(request):
        return httpx.Response(200, headers={"content-length": "100", "content-type": "application/vnd.oci.image.manifest.v1+json"},
                              stream=httpx.ByteStream(b"".join(body())))

    client = RegistryClient(httpx.Client(transport=httpx.MockTransport(handle)), retry=FAST)
    with pytest.raises(ManifestError, match="larger than"):
        client.manifest_get(parse_reference("ghcr.io/a/b:1"))


def test_token_expiry_timestamp_type_irrelevant():
    # expiresAt as returned by boto3 is a datetime; a near-past one is still usable for a short while
    class Fake:
        def get_authorization_token(self):
            past = datetime.now(timezone.utc) - timedelta(days=1)
            return {"authorizationData": [{"authorizationToken": base64.b64encode(b"AWS:pw").decode(), "expiresAt": past}]}

    n = []
    creds = EcrCredentials(lambda region: n.append(region) or Fake())
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert creds.credential_for(host).password == "pw"
    creds.credential_for(host)
    assert n == ["us-east-1"]
