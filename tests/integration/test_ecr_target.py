"""The product against ECR's own rules (the ECR stand-in, tests/support/ecr): what a plain registry let pass.

Each test names the ECR behaviour it pins (sources in ``ecr-facts.md``) and would fail on the product
as it was before the stricter stand-in: a copy or assemble into a repository that does not exist, a
``proxyEndpoint`` that is not ``https://``, an ECR token that expired before its ``expiresAt`` (``403
DENIED``), a tag re-pushed with the same digest into an immutable repository. The rest pin what
already held and now runs against ECR's answers instead of distribution's: blob GETs redirected to a
layer bucket that refuses ``Authorization``, ``PutImage`` throttling, cross-repository mounts only
when the account enables them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_mirror.config import Settings
from ecr_mirror.copy import Copier
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.errors import AuthError
from ecr_mirror.registry import RegistryClient, RetryPolicy, StaticCredentials
from ecr_mirror.registry.client import default_http_client
from ecr_mirror.runtime import build_registry_client, ecr_target_for
from tests.integration.helpers import copier, ref
from tests.support import images as im

ECR_MIRROR = str(Path(sys.executable).with_name("ecr-mirror"))


def _index(seed: int, *, attestations: bool = False) -> im.Index:
    return im.build_index(
        [im.build_image("linux/amd64", seed=seed, layer_size=2_000), im.build_image("linux/arm64/v8", seed=seed, layer_size=2_000)],
        attestations=attestations,
    )


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ecr-mirror ARGS`` in its own process with this test's environment (boto3 ``ecr`` -> the stand-in)."""
    full = {**os.environ, "DOCKER_CONFIG": "/nonexistent-docker-config", **env}
    return subprocess.run([ECR_MIRROR, *args], env=full, capture_output=True, text=True, timeout=120)


def ecr_client(ecr, retry: RetryPolicy | None = None, **kwargs) -> RegistryClient:
    """The client the CLI builds: ECR credentials from GetAuthorizationToken (refreshed when refused)."""
    return build_registry_client(Settings(target_registry=ecr.host), docker_config=False, retry=retry, **kwargs)


def static_client(ecr, *, retry: RetryPolicy | None = None, sleep=None) -> RegistryClient:
    user, password = ecr.credentials
    extra = {"sleep": sleep} if sleep is not None else {}
    return RegistryClient(default_http_client(4), credentials=StaticCredentials({ecr.host: {"username": user, "password": password}}),
                          retry=retry, **extra)


# ---------------------------------------------------------------- repositories: ECR does not create on push


def test_copy_and_assemble_create_the_ecr_repository_first(ecr, registry):
    """ECR: "The repository must already exist" (ecr-facts.md 1; docker/cli#5275): a push into a repository
    not created through the API answers 404 NAME_UNKNOWN. `copy` and `assemble` create it first, as `sync`
    does, with the configured settings (ECR_MIRROR_TAG_MUTABILITY, scan on push, AES256)."""
    index = _index(1)
    im.push_index(registry, "library/app", index, "v1")
    amd, arm = index.image_for("linux/amd64"), index.image_for("linux/arm64/v8")
    im.push_image(registry, "tool", amd, "1.0-amd64")
    im.push_image(registry, "tool", arm, "1.0-arm64")
    env = {"ECR_MIRROR_TARGET_REGISTRY": ecr.host, "ECR_MIRROR_TAG_MUTABILITY": "IMMUTABLE"}

    copied = cli("copy", f"{registry.host}/library/app:v1", f"{ecr.host}/team/app:v1", **env)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.strip() == index.digest
    assembled = cli("assemble", f"{ecr.host}/team/tool:1.0", f"{registry.host}/tool:1.0-amd64", f"{registry.host}/tool:1.0-arm64", **env)
    assert assembled.returncode == 0, assembled.stderr

    api = ecr.client()
    repos = {r["repositoryName"]: r for r in api.describe_repositories()["repositories"]}
    assert sorted(repos) == ["team/app", "team/tool"]
    for name, repo in repos.items():
        assert repo["imageTagMutability"] == "IMMUTABLE", name
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
        assert api.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [{"Key": "managed-by", "Value": "ecr-mirror"}]
    assert ecr.tags("team/app") == {"v1": index.digest}
    assert ecr.tags("team/tool") == {"1.0": assembled.stdout.strip()}
    assert ecr.count(op="CreateRepository") == 2

    # an existing repository is used as it is: described, not created again
    ecr.reset_counts()
    again = cli("copy", f"{registry.host}/library/app:v1", f"{ecr.host}/team/app:v1", **env)
    assert again.returncode == 0, again.stderr
    assert ecr.count(op="DescribeRepositories") == 1 and ecr.count(op="CreateRepository") == 0
    assert ecr.count(op="PutImage") == 0  # unchanged: nothing written


def test_copy_to_a_registry_that_is_not_ecr_creates_nothing(ecr, registry_pair):
    """Only ECR hosts (and ECR_MIRROR_TARGET_REGISTRY) get a repository created: other registries create on push."""
    src, dst = registry_pair
    im.push_image(src, "app", im.build_image(seed=2), "v1")
    out = cli("copy", f"{src.host}/app:v1", f"{dst.host}/team/app:v1", ECR_MIRROR_TARGET_REGISTRY=ecr.host)
    assert out.returncode == 0, out.stderr
    assert ecr.count(face="api") == 0


def test_copy_pushes_anyway_when_the_role_may_not_describe_repositories(ecr, registry):
    """A role allowed to push but not to call DescribeRepositories: the copy goes ahead (with a warning) into
    a repository that exists, and fails with ECR's own NAME_UNKNOWN where it does not."""
    im.push_image(registry, "app", im.build_image(seed=3), "v1")
    ecr.create_repository("team/app")
    denied = "User is not authorized to perform: ecr:DescribeRepositories"
    ecr.add_api_fault("DescribeRepositories", "AccessDeniedException", denied, times=None)
    out = cli("copy", f"{registry.host}/app:v1", f"{ecr.host}/team/app:v1", ECR_MIRROR_TARGET_REGISTRY=ecr.host)
    assert out.returncode == 0, out.stderr
    assert "warning: cannot check repository team/app" in out.stderr and "AccessDeniedException" in out.stderr
    assert ecr.tags("team/app") == {"v1": im.build_image(seed=3).digest}
    missing = cli("copy", f"{registry.host}/app:v1", f"{ecr.host}/team/other:v1", ECR_MIRROR_TARGET_REGISTRY=ecr.host)
    assert missing.returncode == 1
    assert "NAME_UNKNOWN: The repository with name 'team/other' does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_ecr_hosts_are_recognised_with_their_region_and_account(aws_env):
    """Which destinations count as ECR for `copy`/`assemble` (ecr-facts.md 1: standard, China, FIPS, dual-stack)."""
    settings = Settings(target_registry="127.0.0.1:5000", tag_mutability="IMMUTABLE_WITH_EXCLUSION")
    for host, region in [
        ("210987654321.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1"),
        ("210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("210987654321.dkr-ecr.us-east-2.on.aws", "us-east-2"),
    ]:
        target = ecr_target_for(settings, host)
        assert isinstance(target, EcrTarget), host
        assert (target.host, target.ecr.meta.region_name, target.registry_id) == (host, region, "210987654321")
        assert target.tag_mutability == "IMMUTABLE_WITH_EXCLUSION"
    own = ecr_target_for(settings, "127.0.0.1:5000")
    assert own is not None and own.host == "127.0.0.1:5000" and own.registry_id == ""
    for other in ("docker.io", "ghcr.io", "public.ecr.aws", "127.0.0.1:5001", "123456789012.dkr.ecr.us-east-1.example.com"):
        assert ecr_target_for(settings, other) is None, other


def test_registry_host_comes_from_proxy_endpoint_whatever_its_scheme(ecr):
    """Without ECR_MIRROR_TARGET_REGISTRY the host is GetAuthorizationToken's ``proxyEndpoint``: ``https://…``
    at ECR, ``http://…`` at the stand-in; the scheme is not part of the host."""
    endpoint = ecr.client().get_authorization_token()["authorizationData"][0]["proxyEndpoint"]
    assert endpoint == f"http://{ecr.host}"
    assert EcrTarget(ecr.client()).host == ecr.host


# ---------------------------------------------------------------- the registry API face


def test_blob_get_follows_the_redirect_to_the_layer_bucket_without_credentials(ecr, registry):
    """ECR answers a blob GET with a redirect to its S3 layer bucket (ecr-facts.md 7, vpc-endpoints), which
    refuses a request carrying Authorization as well as the presigned URL: the product follows it and sends
    no credentials there (ecr-facts.md 4: never forward Authorization across hosts)."""
    image = im.build_image("linux/arm64/v8", seed=4)
    ecr.create_repository("team/app")
    im.push_image(ecr, "team/app", image, "v1", auth=ecr.auth)
    with copier(static_client(ecr)) as c:
        report = c.copy(ref(ecr.host, "team/app:v1"), ref(registry.host, "copy/app:v1"), arch_tags=True)
    assert report.digest == image.digest and report.arch_tags == ["v1-arm64"]
    blobs = len(image.blob_digests)
    assert ecr.count("GET", "/blobs/", status=307) == blobs + 1  # + the config, read for the platform
    assert ecr.count("GET", face="layer", status=200) == blobs + 1
    assert all(r.authorization is None for r in ecr.bucket.records)
    assert im.get_manifest(registry, "copy/app", "v1")[2] == image.digest


def test_cross_repository_mount_only_when_the_account_enables_it(ecr, registry):
    """ECR mounts a blob from another repository only with the BLOB_MOUNTING account setting ENABLED; otherwise
    it answers 202 and an upload session (ecr-facts.md 2, blob-mounting.html): the product uploads then."""
    index = _index(5)
    im.push_index(registry, "app", index, "v1")
    for name in ("team/a", "team/b", "team/c"):
        ecr.create_repository(name)
    blobs = sum(len(c.blob_digests) for c in index.children)
    with copier(static_client(ecr)) as c:
        c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/a:v1"))
        ecr.reset_counts()
        refused = c.copy(ref(ecr.host, "team/a:v1"), ref(ecr.host, "team/b:v1"))
        assert (refused.blobs_mounted, refused.blobs_copied) == (0, blobs)
        assert ecr.count("POST", "?mount=", status=202) == blobs  # asked, refused, uploaded instead
        assert ecr.count("GET", face="layer") == blobs  # the bytes came back out through the layer bucket
        ecr.set_account_setting("BLOB_MOUNTING", "ENABLED")
        ecr.reset_counts()
        mounted = c.copy(ref(ecr.host, "team/a:v1"), ref(ecr.host, "team/c:v1"))
    assert (mounted.blobs_mounted, mounted.blobs_copied, mounted.bytes_copied) == (blobs, 0, 0)
    assert ecr.count("POST", "?mount=", status=201) == blobs
    assert ecr.count(op="CompleteLayerUpload") == 0 and ecr.count(face="layer") == 0
    assert ecr.tags("team/b") == ecr.tags("team/c") == {"v1": index.digest}


@pytest.mark.parametrize("where", [r"/manifests/sha256:", r"/blobs/uploads/"], ids=["manifest-put", "streamed-blob-put"])
def test_expired_ecr_token_is_refreshed_and_the_request_tried_once_more(ecr, registry, where):
    """ECR answers a token that expired (or was revoked) before its ``expiresAt`` with 403 DENIED "Your
    authorization token has expired", not 401 (aws/aws-cli#6580): the product fetches a new token and tries
    once more; a streamed blob is started again."""
    index = _index(6)
    im.push_index(registry, "app", index, "v1")
    ecr.create_repository("team/app")
    fault = ecr.add_fault(method="PUT", path=where, action="expire_tokens", times=1)
    client = ecr_client(ecr)
    with copier(client) as c:
        report = c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"))
    assert fault.fired == 1
    assert report.digest == index.digest and ecr.tags("team/app") == {"v1": index.digest}
    assert ecr.count(status=403) >= 1  # every request in flight with the old token was refused once
    assert ecr.count(op="GetAuthorizationToken") == 2  # the first token, and one fresh one


def test_a_403_that_persists_fails_after_one_fresh_token(ecr, registry):
    """A 403 that a fresh token does not cure (a denied role) is an error, not a loop."""
    im.push_image(registry, "app", im.build_image(seed=7), "v1")
    ecr.create_repository("team/app")
    ecr.add_fault(method="PUT", path=r"/manifests/v1$", action="status", status=403, times=None,
                  body=json.dumps({"errors": [{"code": "DENIED", "message": "not authorized to perform: ecr:PutImage"}]}).encode())
    with copier(ecr_client(ecr)) as c, pytest.raises(AuthError, match="HTTP 403 DENIED"):
        c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"))
    assert ecr.count("PUT", "/manifests/v1") == 2
    assert ecr.count(op="GetAuthorizationToken") == 2


def moved_clock(ecr):
    """A clock for the stand-in's PutImage rate window that only the client's waits move: ``(now, waits,
    sleep)``, ``now[0]`` the time, ``waits`` every wait asked for, ``sleep`` the client's sleep."""
    now: list[float] = [0.0]
    ecr.limiter.clock = lambda: now[0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    return now, waits, sleep


def test_put_image_throttling_is_retried_with_backoff(ecr_factory, registry):
    """ECR's PutImage quota (10/s by default; ecr-facts.md 2) answers 429 TOOMANYREQUESTS "Rate exceeded":
    each manifest PUT refused is tried again after a growing, jittered wait. The stand-in's rate window runs on
    a clock the client's waits move forward, so nothing really sleeps."""
    ecr = ecr_factory(put_image_rate=1, repositories=["team/app"])
    now, waits, sleep = moved_clock(ecr)

    index = _index(8, attestations=True)  # 4 children, then the index: 5 PutImage calls
    im.push_index(registry, "app", index, "v1")
    with Copier(static_client(ecr, retry=RetryPolicy(), sleep=sleep), concurrency=2) as c:
        report = c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"))
    assert report.digest == index.digest and ecr.tags("team/app") == {"v1": index.digest}
    assert ecr.throttled >= 4  # one PutImage per second of (moved) clock
    assert ecr.count(op="PutImage", status=429) == ecr.throttled == len(waits)
    assert ecr.count(op="PutImage", status=201) == 5
    assert all(0.25 <= w <= 20 for w in waits)  # RetryPolicy: base 0.5 s, full jitter over the upper half


def test_manifest_puts_are_paced_to_the_put_image_quota_and_draw_no_429(ecr_factory, registry):
    """A burst of manifest PUTs (an index, its children, its arch tags) held to ECR's PutImage rate by the client
    itself: no 429 drawn, so none counted as a failure or retried into the quota. The stand-in's rate window and
    the client's pacer run on one clock the client's waits move forward, so nothing really sleeps."""
    ecr = ecr_factory(put_image_rate=2, repositories=["team/app"])
    now, waits, sleep = moved_clock(ecr)

    index = _index(9, attestations=True)  # 4 children, 2 arch tags, then the index: 7 PutImage calls
    im.push_index(registry, "app", index, "v1")
    client = static_client(ecr, retry=RetryPolicy(), sleep=sleep)
    client.put_pace_hosts.add(ecr.host)  # a stand-in host, not named like ECR: paced as the target registry is
    client.pace_manifest_puts(2, clock=lambda: now[0])
    with Copier(client, concurrency=2) as c:
        report = c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"), arch_tags=True)
    assert report.digest == index.digest and len(report.arch_tags) == 2
    assert ecr.throttled == 0 and ecr.count(op="PutImage", status=429) == 0
    assert ecr.count(op="PutImage", status=201) == 7
    assert sum(waits) >= (7 - 2) / 2  # 7 PUTs at 2/s (the window allows 2 at once): at least 2.5 s of waits


def test_put_image_rate_comes_from_the_environment():
    from ecr_mirror.config import DEFAULT_PUT_IMAGE_RATE, Settings
    from ecr_mirror.errors import ConfigError

    assert Settings.from_env({}).put_image_rate == DEFAULT_PUT_IMAGE_RATE == 10.0
    assert Settings.from_env({"ECR_MIRROR_PUT_IMAGE_RATE": "25"}).put_image_rate == 25.0
    assert Settings.from_env({"ECR_MIRROR_PUT_IMAGE_RATE": "0"}).put_image_rate == 0.0
    for bad in ("fast", "-1", "nan", "inf", "1e-7"):  # 1e-7: a hang of 115 days, not a cap
        with pytest.raises(ConfigError, match="ECR_MIRROR_PUT_IMAGE_RATE"):
            Settings.from_env({"ECR_MIRROR_PUT_IMAGE_RATE": bad})


# ---------------------------------------------------------------- immutable tags: same digest, refused anyway


def test_final_tag_put_applied_but_its_answer_lost_in_an_immutable_repository(ecr, registry):
    """ECR refuses to overwrite an immutable tag even with the same digest (TAG_INVALID; ecr-facts.md 3,
    aws/containers-roadmap#2179). When the tag PUT took effect but its answer was lost (a 500, a reset), the
    retry is refused: the product checks the tag and succeeds when it holds the digest it pushed."""
    index = _index(9)
    im.push_index(registry, "app", index, "v1")
    ecr.create_repository("team/app", mutability="IMMUTABLE")
    lost = ecr.add_fault(method="PUT", path=r"/manifests/v1$", action="status", status=500, forward=True, times=1)
    with copier(static_client(ecr)) as c:
        report = c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"))
    assert lost.fired == 1 and report.digest == index.digest
    assert ecr.count("PUT", "/manifests/v1", status=400) == 1  # the retry, refused as immutable
    assert ecr.tags("team/app") == {"v1": index.digest}


def test_rerun_after_arch_tags_were_written_in_an_immutable_repository(ecr, registry):
    """A copy with arch tags that failed before its last write (the index tag) left the arch tags in place; in an
    immutable repository the rerun must not fail on re-writing them with the digests they already hold."""
    index = _index(10)
    im.push_index(registry, "app", index, "1.0")
    ecr.create_repository("team/app", mutability="IMMUTABLE")
    failing = ecr.add_fault(method="PUT", path=r"/manifests/1\.0$", action="status", status=400, times=None)
    with copier(static_client(ecr)) as c:
        with pytest.raises(Exception, match="PUT manifest"):
            c.copy(ref(registry.host, "app:1.0"), ref(ecr.host, "team/app:1.0"), arch_tags=True)
        assert sorted(ecr.tags("team/app")) == ["1.0-amd64", "1.0-arm64"]
        ecr.clear_faults()
        report = c.copy(ref(registry.host, "app:1.0"), ref(ecr.host, "team/app:1.0"), arch_tags=True)
    assert failing.fired >= 1
    assert report.digest == index.digest and sorted(report.arch_tags) == ["1.0-amd64", "1.0-arm64"]
    assert ecr.tags("team/app") == {
        "1.0": index.digest,
        "1.0-amd64": index.image_for("linux/amd64").digest,
        "1.0-arm64": index.image_for("linux/arm64/v8").digest,
    }
