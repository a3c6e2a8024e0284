"""Image references: Docker's normalisation, validation messages, hosts (loopback, ECR)."""

from __future__ import annotations

import pytest

from ecr_mirror.errors import MirrorError, ReferenceError_
from ecr_mirror.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Reference,
    ecr_host_region,
    host_without_port,
    is_loopback_host,
    parse_reference,
    parse_repository,
    validate_digest,
    validate_tag,
)

SHA = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "ab" * 64


# ---------------------------------------------------------------- normalisation, as Docker does it

NORMALISED = [
    # text, registry, repository, tag, digest
    ("golang", "docker.io", "library/golang", "latest", None),
    ("golang:1.22", "docker.io", "library/golang", "1.22", None),
    ("library/golang", "docker.io", "library/golang", "latest", None),
    ("docker.io/golang", "docker.io", "library/golang", "latest", None),
    ("docker.io/library/golang:latest", "docker.io", "library/golang", "latest", None),
    ("index.docker.io/golang", "docker.io", "library/golang", "latest", None),
    ("index.docker.io/myorg/app:v1", "docker.io", "myorg/app", "v1", None),
    ("registry-1.docker.io/library/golang", "docker.io", "library/golang", "latest", None),
    ("myorg/app", "docker.io", "myorg/app", "latest", None),
    ("myorg/team/app:1", "docker.io", "myorg/team/app", "1", None),
    ("ghcr.io/owner/repo:tag", "ghcr.io", "owner/repo", "tag", None),
    ("quay.io/org/a_b__c-d.e--f:V1.0_rc-1", "quay.io", "org/a_b__c-d.e--f", "V1.0_rc-1", None),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None),  # no library/ outside Docker Hub
    ("public.ecr.aws/docker/library/redis:7", "public.ecr.aws", "docker/library/redis", "7", None),
    ("localhost/x", "localhost", "x", "latest", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
    ("[::1]:5000/x:tag", "[::1]:5000", "x", "tag", None),
    ("[::1]/x", "[::1]", "x", "latest", None),
    ("registry:5000/x", "registry:5000", "x", "latest", None),  # a colon makes it a host
    ("Example.COM/x", "example.com", "x", "latest", None),  # host names are case-insensitive
    ("MyRegistry/app", "MyRegistry", "app", "latest", None),  # uppercase first part is a host (Docker)
    # bare "localhost:5000" is the image docker.io/library/localhost with tag 5000, as in Docker
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    (f"golang@{SHA}", "docker.io", "library/golang", None, SHA),
    (f"golang:1.22@{SHA}", "docker.io", "library/golang", "1.22", SHA),
    (f"localhost:5000/x@{SHA}", "localhost:5000", "x", None, SHA),
    (f"localhost:5000/x:t@{SHA512}", "localhost:5000", "x", "t", SHA512),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), NORMALISED)
def test_parse_normalises_like_docker(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("text", [row[0] for row in NORMALISED])
def test_str_round_trips(text):
    ref = parse_reference(text)
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)


def test_str_is_fully_qualified():
    assert str(parse_reference("golang")) == "docker.io/library/golang:latest"
    assert str(parse_reference(f"golang:1.22@{SHA}")) == f"docker.io/library/golang:1.22@{SHA}"
    assert str(parse_reference(f"golang@{SHA}")) == f"docker.io/library/golang@{SHA}"
    assert str(parse_reference("golang", default_tag=None)) == "docker.io/library/golang"


def test_docker_hub_aliases_are_one_registry():
    refs = {parse_reference(t) for t in ("golang", "docker.io/golang", "index.docker.io/library/golang")}
    assert refs == {Reference("docker.io", "library/golang", "latest")}


def test_api_host():
    assert parse_reference("golang").api_host == DOCKER_HUB_API == "registry-1.docker.io"
    assert parse_reference("index.docker.io/x/y").api_host == "registry-1.docker.io"
    assert parse_reference("ghcr.io/a/b").api_host == "ghcr.io"
    assert parse_reference("localhost:5000/a").api_host == "localhost:5000"
    assert parse_reference("golang").registry == DOCKER_HUB


def test_name_and_identifier():
    ref = parse_reference(f"ghcr.io/a/b:t@{SHA}")
    assert ref.name == "ghcr.io/a/b"
    assert ref.identifier == SHA  # a pinned digest wins over the tag
    assert parse_reference("ghcr.io/a/b:t").identifier == "t"
    assert parse_reference("ghcr.io/a/b", default_tag=None).identifier == "latest"


def test_default_tag():
    assert parse_reference("golang", default_tag="stable").tag == "stable"
    assert parse_reference("golang", default_tag=None).tag is None
    assert parse_reference(f"golang@{SHA}").tag is None  # a digest alone gets no tag


def test_with_tag_with_digest_in_repository():
    ref = parse_reference(f"ghcr.io/a/b:t@{SHA}")
    assert ref.with_tag("v2") == Reference("ghcr.io", "a/b", "v2", None)
    assert ref.with_digest(SHA512) == Reference("ghcr.io", "a/b", None, SHA512)
    assert ref.in_repository("c/d") == Reference("ghcr.io", "c/d", "t", SHA)
    with pytest.raises(ReferenceError_, match="invalid tag"):
        ref.with_tag("bad tag")
    with pytest.raises(ReferenceError_, match="invalid tag"):
        ref.with_tag("v1\n")  # a trailing newline is not part of a valid tag
    with pytest.raises(ReferenceError_, match="digest"):
        ref.with_digest("sha256:abc")


def test_parse_repository():
    assert parse_repository("golang") == Reference("docker.io", "library/golang", None, None)
    assert parse_repository("localhost:5000/a/b") == Reference("localhost:5000", "a/b", None, None)
    for text in ("golang:1", f"golang@{SHA}"):
        with pytest.raises(ReferenceError_, match="without a tag or digest"):
            parse_repository(text)


# ---------------------------------------------------------------- rejected, with a message naming the problem

INVALID = [
    ("", "empty repository name"),
    ("golang latest", "whitespace"),
    (" golang", "whitespace"),
    ("golang\n", "whitespace"),
    ("golang\t:1", "whitespace"),
    ("Golang", "must be lowercase"),
    ("docker.io/Library/golang", "must be lowercase"),
    ("ghcr.io/Owner/repo:v1", "must be lowercase"),
    ("golang:", "invalid tag ''"),
    ("golang:-x", "invalid tag '-x'"),
    ("golang:.x", "invalid tag '.x'"),
    ("golang:a+b", "invalid tag 'a+b'"),
    ("golang:" + "a" * 129, "invalid tag"),
    ("golang@sha256:abc", "sha256 needs 64 lowercase hex digits, got 3"),
    ("golang@sha256:" + "a" * 65, "got 65"),
    ("golang@sha256:" + "A" * 64, "lowercase hex"),
    ("golang@sha256:" + "g" * 64, "lowercase hex"),
    ("golang@md5:" + "a" * 32, "unsupported algorithm 'md5'"),
    ("golang@sha256", "expected sha256:<64 hex digits>"),
    ("golang@", "expected sha256:<64 hex digits>"),
    ("https://ghcr.io/owner/repo:v1", "drop the scheme"),
    ("docker://golang", "drop the scheme"),
    (f"@{SHA}", "empty repository name"),
    (":v1", "empty repository name"),
    ("ghcr.io/", "bad repository name ''"),
    ("ghcr.io//x", "bad repository name"),
    ("a..b", "bad repository name"),
    ("a/-b", "bad repository name"),
    ("golang:bad/tag", "bad registry host 'golang:bad'"),
    ("-bad.host/x", "bad registry host"),
    ("host_with_underscore.com/x", "bad registry host"),
    ("ghcr.io/" + "a" * 250, "longer than 255"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_references_are_rejected_clearly(text, fragment):
    with pytest.raises(ReferenceError_) as info:
        parse_reference(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message or text == ""  # names the reference it refused
    assert "\n" not in message  # one line, fit for the CLI
    assert isinstance(info.value, MirrorError)


@pytest.mark.parametrize("value", [None, 42, b"golang", ["golang"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(ReferenceError_, match="not a string"):
        parse_reference(value)


def test_validate_digest_and_tag():
    assert validate_digest(SHA) == SHA
    assert validate_digest("sha384:" + "c" * 96)
    assert validate_digest(SHA512) == SHA512
    assert validate_tag("v1.2.3-rc_1") == "v1.2.3-rc_1"
    assert validate_tag("a" * 128)
    for bad in ("a" * 129, "", "-x", "é", "v1\n"):
        with pytest.raises(ReferenceError_):
            validate_tag(bad)
    for bad in (SHA + "\n", "sha256:" + "a" * 63, SHA.upper(), "sha256:" + "a" * 64 + "=", None, 1):
        with pytest.raises(ReferenceError_):
            validate_digest(bad)


# ---------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost:5000", "registry.localhost:443", "127.0.0.1", "127.0.0.1:5000",
     "127.1.2.3:80", "::1", "[::1]", "[::1]:5000"],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["ghcr.io", "docker.io", "10.0.0.1:5000", "0.0.0.0", "169.254.169.254", "[::2]:5000", "localhost.example.com",
     "127.0.0.1.nip.io", "[fe80::1]", ""],
)
def test_not_loopback_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("host", "bare"),
    [("localhost:5000", "localhost"), ("ghcr.io", "ghcr.io"), ("[::1]:5000", "::1"), ("[::1]", "::1"),
     ("::1", "::1"), ("127.0.0.1:5000", "127.0.0.1")],
)
def test_host_without_port(host, bare):
    assert host_without_port(host) == bare


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", ("123456789012", "us-east-1")),
        ("123456789012.dkr.ecr.eu-central-2.amazonaws.com:443", ("123456789012", "eu-central-2")),
        ("123456789012.DKR.ECR.US-WEST-2.AMAZONAWS.COM", ("123456789012", "us-west-2")),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", ("123456789012", "us-gov-west-1")),
        ("123456789012.dkr-ecr.us-east-2.on.aws", ("123456789012", "us-east-2")),
        ("123456789012.dkr-ecr-fips.us-east-2.on.aws", ("123456789012", "us-east-2")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ("123456789012", "cn-north-1")),
        ("123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", ("123456789012", "cn-northwest-1")),
    ],
)
def test_ecr_host_region(host, expected):
    assert ecr_host_region(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "public.ecr.aws",
        "ghcr.io",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # 11 digits
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com",  # 13 digits
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com\n",
        "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "api.ecr.us-east-1.amazonaws.com",
        "",
    ],
)
def test_not_ecr_hosts(host):
    assert ecr_host_region(host) is None


def test_standard_ecr_hosts_in_each_partition():
    assert ecr_host_region("123456789012.dkr.ecr.us-east-1.amazonaws.com") == ("123456789012", "us-east-1")
    assert ecr_host_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn") == ("123456789012", "cn-north-1")


def test_ecr_reference_parses():
    ref = parse_reference("123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/golang:1.22")
    assert ref.registry == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert ref.repository == "mirror/golang"
    assert ecr_host_region(ref.registry) == ("123456789012", "us-east-1")
