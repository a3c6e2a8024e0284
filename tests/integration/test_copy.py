"""The copy engine against real docker-registry processes."""

from __future__ import annotations

import json

import pytest

from ecr_mirror import manifest as mf
from ecr_mirror.errors import CopyError, DigestMismatchError, ManifestError
from ecr_mirror.manifest import Platform
from tests.integration.helpers import copier, make_client, ref
from tests.support import images as im


def _index(oci: bool = True, attestations: bool = True, seed: int = 1):
    return im.build_index(
        [im.build_image("linux/amd64", seed=seed, oci=oci), im.build_image("linux/arm64/v8", seed=seed, oci=oci)],
        oci=oci, attestations=attestations,
    )


@pytest.mark.parametrize("oci", [True, False], ids=["oci-index", "docker-list"])
def test_full_index_copied_digest_identical(registry_pair, oci):
    src, dst = registry_pair
    index = _index(oci=oci)
    digest = im.push_index(src, "library/golang", index, "1.19.2")
    with copier() as c:
        report = c.copy(ref(src.host, "library/golang:1.19.2"), ref(dst.host, "mirror/golang:1.19.2"))
    assert report.digest == digest == index.digest
    raw, content_type, got = im.get_manifest(dst, "mirror/golang", "1.19.2")
    assert raw == index.manifest and got == digest
    assert content_type.split(";")[0] == index.media_type
    # every child, attestations included, is there by digest, and every blob
    for child in index.children:
        assert im.head_manifest(dst, "mirror/golang", child.digest) == child.digest
        for blob in child.blob_digests:
            assert im.blob_exists(dst, "mirror/golang", blob)
    assert report.platforms == ["linux/amd64", "linux/arm64/v8"]
    assert report.blobs_copied == sum(len(c.blob_digests) for c in index.children) - report.blobs_skipped


def test_single_manifest_copied(registry_pair):
    src, dst = registry_pair
    image = im.build_image("linux/arm64/v8", seed=7, oci=False)
    digest = im.push_image(src, "app", image, "v1")
    with copier() as c:
        report = c.copy(ref(src.host, "app:v1"), ref(dst.host, "copy/app:v1"))
    assert report.digest == digest
    raw, _, _ = im.get_manifest(dst, "copy/app", "v1")
    assert raw == image.manifest


def test_platform_subset_rewrites_index_deterministically(registry_pair, registry_factory):
    src, dst = registry_pair
    index = _index(oci=True, attestations=True)
    im.push_index(src, "app", index, "v1")
    arm = index.image_for("linux/arm64/v8")
    with copier() as c:
        r1 = c.copy(ref(src.host, "app:v1"), ref(dst.host, "a/app:v1"), platforms=[Platform.parse("linux/arm64")])
        other = registry_factory()
        r2 = c.copy(ref(src.host, "app:v1"), ref(other.host, "b/app:v1"), platforms=[Platform.parse("linux/arm64")])
    assert r1.digest == r2.digest != index.digest  # same input, same bytes
    raw, content_type, _ = im.get_manifest(dst, "a/app", "v1")
    doc = json.loads(raw)
    assert content_type.split(";")[0] == mf.OCI_INDEX
    kept = [d["digest"] for d in doc["manifests"]]
    attestation = [d for d in index.json["manifests"] if d.get("annotations", {}).get(mf.ATTESTATION_DIGEST_KEY) == arm.digest]
    assert kept == [arm.digest, attestation[0]["digest"]]
    assert doc["annotations"][mf.ANNOTATION_SOURCE_DIGEST] == index.digest
    assert doc["annotations"][mf.ANNOTATION_SOURCE_REF] == f"{src.host}/app:v1"
    # kept descriptors are byte-identical to the source's
    src_doc = index.json["manifests"]
    assert doc["manifests"] == [d for d in src_doc if d["digest"] in kept]
    # the amd64 image was not copied
    amd = index.image_for("linux/amd64")
    assert im.head_manifest(dst, "a/app", amd.digest) is None


def test_subset_of_every_platform_keeps_original_bytes(registry_pair):
    src, dst = registry_pair
    index = _index(attestations=False)
    im.push_index(src, "app", index, "v1")
    with copier() as c:
        r = c.copy(ref(src.host, "app:v1"), ref(dst.host, "app:v1"),
                   platforms=[Platform.parse("linux/amd64"), Platform.parse("linux/arm64")])
    assert r.digest == index.digest


def test_variant_given_must_match(registry_pair):
    src, dst = registry_pair
    im.push_index(src, "app", _index(), "v1")
    with copier() as c, pytest.raises(ManifestError, match="linux/arm64/v7"):
        c.copy(ref(src.host, "app:v1"), ref(dst.host, "app:v1"), platforms=[Platform.parse("linux/arm64/v7")])
    assert im.head_manifest(dst, "app", "v1") is None


def test_unchanged_recopy_makes_no_source_get(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "v1")
    proxy = proxy_factory(src)
    with copier() as c:
        c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:v1"))
        assert proxy.count("GET") > 0
        proxy.reset()
        report = c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:v1"))
    assert report.unchanged
    assert proxy.count("GET") == 0
    assert proxy.count("HEAD") == 1
    assert len(proxy.records) == 1


def test_unchanged_platform_subset_makes_no_source_get(registry_pair, proxy_factory):
    src, dst = registry_pair
    im.push_index(src, "app", _index(), "v1")
    proxy = proxy_factory(src)
    arm = [Platform.parse("linux/arm64")]
    with copier() as c:
        c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:arm"), platforms=arm)
        proxy.reset()
        report = c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:arm"), platforms=arm)
    assert report.unchanged
    assert proxy.requests == [("HEAD", "/v2/app/manifests/v1")]


def test_arch_tags(registry_pair):
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "1.0")
    with copier() as c:
        report = c.copy(ref(src.host, "app:1.0"), ref(dst.host, "app:1.0"), arch_tags=True)
    assert sorted(report.arch_tags) == ["1.0-amd64", "1.0-arm64"]
    assert im.head_manifest(dst, "app", "1.0-amd64") == index.image_for("linux/amd64").digest
    assert im.head_manifest(dst, "app", "1.0-arm64") == index.image_for("linux/arm64/v8").digest
    assert sorted(im.list_tags(dst, "app")) == ["1.0", "1.0-amd64", "1.0-arm64"]


@pytest.mark.parametrize("oci", [True, False], ids=["oci", "docker"])
def test_assemble_across_registries(registry_factory, oci):
    a, b, dst = registry_factory(), registry_factory(), registry_factory()
    amd = im.build_image("linux/amd64", seed=3, oci=oci)
    arm = im.build_image("linux/arm64/v8", seed=3, oci=oci)
    im.push_image(a, "app", amd, "1.0-amd64")
    im.push_image(b, "other/app", arm, "1.0-arm64")
    with copier() as c:
        report = c.assemble(ref(dst.host, "app:1.0"), [ref(a.host, "app:1.0-amd64"), ref(b.host, "other/app:1.0-arm64")])
    raw, content_type, digest = im.get_manifest(dst, "app", "1.0")
    doc = json.loads(raw)
    assert content_type.split(";")[0] == (mf.OCI_INDEX if oci else mf.DOCKER_LIST)
    assert [(d["digest"], d["platform"]) for d in doc["manifests"]] == [
        (amd.digest, {"architecture": "amd64", "os": "linux"}),
        (arm.digest, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    assert report.digest == digest
    for blob in arm.blob_digests:
        assert im.blob_exists(dst, "app", blob)


def test_assemble_refuses_duplicate_platforms(registry_pair):
    src, dst = registry_pair
    im.push_image(src, "app", im.build_image("linux/amd64", seed=1), "a")
    im.push_image(src, "app", im.build_image("linux/amd64", seed=2), "b")
    with copier() as c, pytest.raises(CopyError, match="both linux/amd64"):
        c.assemble(ref(dst.host, "app:1"), [ref(src.host, "app:a"), ref(src.host, "app:b")])
    assert im.head_manifest(dst, "app", "1") is None


def test_htpasswd_source_and_destination(registry_factory):
    src = registry_factory(htpasswd={"alice": "s3cret-a"})
    dst = registry_factory(htpasswd={"bob": "s3cret-b"})
    index = _index()
    import httpx

    im.push_index(src, "app", index, "v1", auth=httpx.BasicAuth("alice", "s3cret-a"))
    client = make_client({src.host: {"username": "alice", "password": "s3cret-a"},
                          dst.host: {"username": "bob", "password": "s3cret-b"}})
    with copier(client) as c:
        assert c.copy(ref(src.host, "app:v1"), ref(dst.host, "app:v1")).digest == index.digest
    anonymous = make_client()
    with copier(anonymous) as c, pytest.raises(Exception, match="requires credentials"):
        c.copy(ref(src.host, "app:v1"), ref(dst.host, "app:v2"))


def test_bearer_token_realm(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "v1")
    front = proxy_factory(src, credentials=("carol", "pw-carol"))
    client = make_client({front.host: {"username": "carol", "password": "pw-carol"}})
    with copier(client) as c:
        assert c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1")).digest == index.digest
    # one token for the repository's pull scope, fetched with the credentials, reused afterwards
    assert len(front.token_requests) == 1
    assert front.token_requests[0].scopes == ["repository:app:pull"]
    # a wrong password is a clear auth error
    bad = make_client({front.host: {"username": "carol", "password": "nope"}})
    with copier(bad) as c, pytest.raises(Exception, match="token endpoint .* refused"):
        c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v3"))


def test_token_expiring_mid_copy_is_refreshed(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "v1")
    front = proxy_factory(src, bearer=True)
    front.add_fault(method="GET", path=r"/blobs/", action="expire_tokens", times=1)
    with copier() as c:
        assert c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1")).digest == index.digest
    assert len(front.token_requests) >= 2


@pytest.mark.parametrize(
    "fault",
    [
        dict(method="GET", path=r"/blobs/", action="status", status=429, headers={"Retry-After": "0"}, times=2),
        dict(method="GET", path=r"/blobs/", action="status", status=429, times=2),
        dict(method="GET", path=r"/manifests/", action="status", status=503, times=3),
        dict(method="GET", path=r"/blobs/", action="status", status=500, times=2),
        dict(method="GET", path=r"/blobs/", action="reset_mid_body", after_bytes=1000, times=2),
        dict(method="GET", path=r"/blobs/", action="truncate", after_bytes=1000, times=2),
        dict(method="GET", path=r"/manifests/sha256", action="reset", times=1),
    ],
    ids=["429-retry-after", "429", "503-manifest", "500-blob", "reset-mid-blob", "truncated-blob", "reset-manifest"],
)
def test_faults_at_source_are_survived(registry_pair, proxy_factory, fault):
    src, dst = registry_pair
    index = im.build_index([im.build_image("linux/amd64", seed=5, layer_size=300_000),
                            im.build_image("linux/arm64", seed=5, layer_size=300_000)])
    im.push_index(src, "app", index, "v1")
    proxy = proxy_factory(src)
    rule = proxy.add_fault(**fault)
    with copier() as c:
        report = c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:v1"))
    assert rule.fired == fault["times"]
    assert report.digest == index.digest
    assert im.get_manifest(dst, "app", "v1")[2] == index.digest


def test_corrupted_blob_refused_and_tag_untouched(registry_pair, proxy_factory):
    src, dst = registry_pair
    old = im.build_image("linux/amd64", seed=10)
    im.push_image(dst, "app", old, "v1")
    index = _index(seed=11)
    im.push_index(src, "app", index, "v1")
    proxy = proxy_factory(src)
    layer = index.image_for("linux/arm64/v8").layers[0]
    proxy.add_fault(method="GET", path=f"/blobs/{layer.digest}", action="corrupt", times=None)
    with copier() as c, pytest.raises(DigestMismatchError) as caught:
        c.copy(ref(proxy.host, "app:v1"), ref(dst.host, "app:v1"))
    assert layer.digest in str(caught.value)
    assert im.head_manifest(dst, "app", "v1") == old.digest  # tag as it was
    assert not im.blob_exists(dst, "app", layer.digest)  # bad bytes never committed


def test_cross_host_redirect_gets_no_credentials(registry_pair, proxy_factory):
    """Blob GETs redirected to another host (a CDN) must not carry the registry's Authorization."""
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "v1")
    cdn = proxy_factory(src)  # another host:port, serving the blobs
    front = proxy_factory(src, credentials=("dave", "pw-dave"))
    front.add_fault(method="GET", path=r"/blobs/", action="redirect",
                    location=lambda method, target: f"{cdn.url}{target}", times=None)
    client = make_client({front.host: {"username": "dave", "password": "pw-dave"}})
    with copier(client) as c:
        assert c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1")).digest == index.digest
    assert cdn.count("GET", "/blobs/") > 0
    assert all(a is None for a in cdn.authorizations())
    assert any(a and a.startswith("Bearer ") for a in front.authorizations("/manifests/"))


def test_destination_failing_final_put_leaves_tag(registry_pair, proxy_factory):
    src, dst = registry_pair
    old = im.build_image("linux/amd64", seed=20)
    im.push_image(dst, "app", old, "v1")
    index = _index(seed=21)
    im.push_index(src, "app", index, "v1")
    proxy = proxy_factory(dst)
    proxy.add_fault(method="PUT", path=r"/manifests/v1$", action="status", status=400, times=None)
    with copier() as c, pytest.raises(Exception, match="PUT manifest"):
        c.copy(ref(src.host, "app:v1"), ref(proxy.host, "app:v1"))
    assert im.head_manifest(dst, "app", "v1") == old.digest
