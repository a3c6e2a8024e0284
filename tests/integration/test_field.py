"""Images and registries from the field (issue 13), against real docker-registry processes.

Kind 1: every kind of descriptor a manifest or index can hold gets what the specs ask (copy, recurse,
skip): non-distributable layers are neither fetched nor pushed (unless a copy opts in), nested indexes
are recursed, artifact and unknown entries copied by digest, ``subject`` never followed.
Kind 2: ``--arch-tags`` tells every child apart, or refuses before anything is written.
Kind 3: optional protocol behaviour is not taken for granted: a manifest HEAD answering 404 while GET
works, HEADs without Content-Length, tag lists paged without Link, PUTs without Location, manifest PUTs
without OCI-Subject.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_mirror import drift
from ecr_mirror.errors import CopyError, ManifestError, NotFoundError
from ecr_mirror.manifest import Platform
from tests.integration.helpers import copier, make_client, ref
from tests.integration.test_service import Service
from tests.support import field as fl
from tests.support import images as im
from tests.support.quirks import TagPager
from tests.support.referrers import build_sbom, referrer_descriptor, referrers_tag

EXE = str(Path(sys.executable).parent / "ecr-mirror")
WRITES = ("PUT", "POST", "PATCH", "DELETE")


@pytest.fixture
def lenient(registry_factory):
    """``make()`` -> a registry that, like ECR, accepts manifests whose foreign layers carry ``urls``."""
    return lambda: registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))


def writes(proxy) -> list[tuple[str, str]]:
    return [(r.method, r.target) for r in proxy.records if r.method in WRITES]


def foreign_layer(index: im.Index) -> str:
    (digest,) = {d for child in index.children for d in child.foreign}
    return digest


# ---------------------------------------------------------------------- kind 1: non-distributable layers


@pytest.mark.parametrize("oci", [False, True], ids=["docker-foreign", "oci-nondistributable"])
def test_windows_list_with_a_foreign_layer_is_copied_digest_identical(lenient, proxy_factory, oci):
    """The issue's example: linux/amd64 + windows/amd64 whose base layer lives at its urls, not in the registry."""
    src, dst = lenient(), lenient()
    index = fl.windows_manifest_list(oci=oci)
    im.push_index(src, "win/app", index, "ltsc")
    front = proxy_factory(src)
    foreign = foreign_layer(index)
    with copier() as c:
        report = c.copy(ref(front.host, "win/app:ltsc"), ref(dst.host, "mirror/app:ltsc"))
    assert report.digest == index.digest and report.nondistributable_skipped == 1 and report.warnings == []
    assert im.get_manifest(dst, "mirror/app", "ltsc")[0] == index.manifest
    windows = index.image_for("windows/amd64")
    assert im.get_manifest(dst, "mirror/app", windows.digest)[0] == windows.manifest  # byte for byte
    assert front.count(path_contains=foreign) == 0  # never fetched
    assert not im.blob_exists(dst, "mirror/app", foreign)  # never pushed
    for child in index.children:
        assert all(im.blob_exists(dst, "mirror/app", d) for d in child.blob_digests if d not in child.foreign)


def test_a_destination_that_insists_on_foreign_layers_is_named_as_the_reason(lenient, registry_factory):
    """Plain distribution refuses a manifest whose foreign layer it does not hold (``MANIFEST_BLOB_UNKNOWN``); the
    copy says why, in one line naming the layer and the ways out, instead of the registry's bare code."""
    src, strict = lenient(), registry_factory()  # strict: distribution's default (no urls allowed)
    index = fl.windows_manifest_list()
    im.push_index(src, "win/app", index, "ltsc")
    with copier(make_client()) as c, pytest.raises(CopyError) as caught:
        c.copy(ref(src.host, "win/app:ltsc"), ref(strict.host, "mirror/app:ltsc"))
    message = str(caught.value)
    assert "non-distributable layer(s)" in message and foreign_layer(index) in message
    assert "--allow-nondistributable-artifacts" in message and "\n" not in message
    assert im.list_tags(strict, "mirror/app") == []  # the tag was never written


def test_windows_example_with_the_cli_and_into_the_ecr_standin(lenient, ecr, tmp_path):
    src, dst = lenient(), lenient()
    index = fl.windows_manifest_list()
    im.push_index(src, "win/app", index, "ltsc")
    result = subprocess.run([EXE, "copy", "--json", f"{src.host}/win/app:ltsc", f"{dst.host}/mirror/app:ltsc"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "no-docker-config")})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["digest"] == index.digest and doc["nondistributable_skipped"] == 1
    # ECR takes the same manifests, the foreign layer absent
    ecr.create_repository("mirror/app")
    client = make_client({ecr.host: dict(zip(("username", "password"), ecr.credentials))})
    with copier(client) as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(ecr.host, "mirror/app:ltsc"))
        assert c.find_missing(ref(ecr.host, f"mirror/app@{index.digest}")) is None
    assert report.digest == index.digest
    assert not im.blob_exists(ecr, "mirror/app", foreign_layer(index), auth=ecr.auth)


def test_opted_in_foreign_layers_come_from_their_urls(lenient, registry_factory, proxy_factory):
    cdn = registry_factory()
    cdn_front = proxy_factory(cdn)
    index = fl.windows_manifest_list(foreign_urls=lambda digest: [f"{cdn_front.url}/v2/cdn/blobs/{digest}"])
    foreign = foreign_layer(index)
    im.push_blob(cdn, "cdn", foreign, index.image_for("windows/amd64").layers[0].data)
    src, dst = lenient(), lenient()
    im.push_index(src, "win/app", index, "ltsc")
    with copier() as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc"), allow_nondistributable=True)
    assert report.digest == index.digest
    assert (report.nondistributable_copied, report.nondistributable_skipped, report.warnings) == (1, 0, [])
    assert im.get_blob(dst, "app", foreign) == index.image_for("windows/amd64").layers[0].data
    assert cdn_front.count("GET", foreign) == 1
    assert all(r.authorization is None for r in cdn_front.records)  # no credentials to a URL from a manifest


def test_opted_in_foreign_layers_come_from_the_source_registry_first(lenient, registry_factory, proxy_factory):
    cdn_front = proxy_factory(registry_factory())
    index = fl.windows_manifest_list(oci=True, foreign_urls=lambda digest: [f"{cdn_front.url}/v2/cdn/blobs/{digest}"])
    foreign = foreign_layer(index)
    src, dst = lenient(), lenient()
    im.push_index(src, "win/app", index, "ltsc")
    im.push_blob(src, "win/app", foreign, index.image_for("windows/amd64").layers[0].data)  # this registry serves it
    with copier() as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc"), allow_nondistributable=True)
    assert report.nondistributable_copied == 1 and im.blob_exists(dst, "app", foreign)
    assert cdn_front.records == []


@pytest.mark.parametrize("why", ["unreachable", "unsafe-url", "destination-refuses"])
def test_opted_in_foreign_layers_left_out_where_they_cannot_be_copied(lenient, registry_factory, proxy_factory, why):
    cdn_front = proxy_factory(registry_factory())  # serves nothing
    urls = (["http://169.254.169.254/latest/meta-data/layer"] if why == "unsafe-url"
            else lambda digest: [f"{cdn_front.url}/v2/cdn/blobs/{digest}"])
    index = fl.windows_manifest_list(foreign_urls=urls)
    foreign = foreign_layer(index)
    if why == "destination-refuses":
        im.push_blob(cdn_front, "cdn", foreign, index.image_for("windows/amd64").layers[0].data)
    src, dst = lenient(), lenient()
    im.push_index(src, "win/app", index, "ltsc")
    dst_front = proxy_factory(dst)
    dst_front.add_fault("PUT", foreign.split(":")[1], "status", status=400, times=None)
    with copier() as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst_front.host, "app:ltsc"), allow_nondistributable=True)
    assert report.digest == index.digest and im.head_manifest(dst, "app", "ltsc") == index.digest
    assert (report.nondistributable_copied, report.nondistributable_skipped) == (0, 1)
    (warning,) = report.warnings
    assert f"non-distributable layer {foreign} left out" in warning and "\n" not in warning
    expected = {"unreachable": "404", "unsafe-url": "refused redirect", "destination-refuses": "HTTP 400"}[why]
    assert expected in warning
    assert not im.blob_exists(dst, "app", foreign)


def test_sync_knows_foreign_layers_are_absent_by_design(monkeypatch, ecr, registry_factory, proxy_factory):
    """The completeness check at the target (the ECR stand-in, which takes foreign-layer manifests as ECR does)
    must not call a Windows image `broken` for lacking its base layer; a row may opt in to copying it."""
    upstream = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    service = Service(monkeypatch, ecr, upstream, proxy_factory(upstream))
    cdn = registry_factory()
    index = fl.windows_manifest_list(foreign_urls=lambda digest: [f"{cdn.url}/v2/cdn/blobs/{digest}"])
    foreign = foreign_layer(index)
    im.push_blob(cdn, "cdn", foreign, index.image_for("windows/amd64").layers[0].data)
    im.push_index(service.upstream, "win/app", index, "ltsc")
    service.add("win", "--source", service.source("win/app"), "--tag", "ltsc", "--target-repository", "mirror/win")
    service.add("win-full", "--source", service.source("win/app"), "--tag", "ltsc", "--target-repository", "mirror/full",
                "--allow-nondistributable-artifacts")
    for audit in ((), ("--audit",)):  # the completeness check at the target is the audit's
        service.cli("sync", *audit)
        for row_id in ("win", "win-full"):
            record = service.state(row_id, "ltsc")
            assert record["state"] == drift.IN_SYNC and record["target_digest"] == index.digest, record
    auth = service.ecr.auth
    assert not im.blob_exists(service.ecr, "mirror/win", foreign, auth=auth)
    assert im.blob_exists(service.ecr, "mirror/full", foreign, auth=auth)
    rows = {r["id"]: r for r in json.loads(service.cli("list", "--json").output)}
    assert "allow_nondistributable_artifacts" in rows["win-full"]["attributes"]


# ---------------------------------------------------------------------- kind 1: nested indexes, artifacts, unknown entries


def test_nested_index_is_recursed_and_audited(registry_pair):
    src, dst = registry_pair
    tree = fl.nested_index()
    fl.push_tree(src, "nested/app", tree, tag="v1")
    with copier() as c:
        report = c.copy(ref(src.host, "nested/app:v1"), ref(dst.host, "app:v1"))
        assert report.digest == tree.digest
        for node in fl.manifests_in(tree):
            assert im.get_manifest(dst, "app", node.digest)[0] == node.manifest
        top = ref(dst.host, f"app@{tree.digest}")
        assert c.find_missing(top) is None
        grandchild = tree.entries[0].images[1]
        im.delete_manifest(dst, "app", grandchild.digest)  # as a lifecycle rule would
        assert c.find_missing(top) == f"child manifest {grandchild.digest}"
        repaired = c.copy(ref(src.host, "nested/app:v1"), ref(dst.host, "app:v1"), force=True)
        assert repaired.digest == tree.digest and c.find_missing(top) is None
    with copier() as c, pytest.raises(ManifestError, match="inside its 1 nested index"):
        c.copy(ref(src.host, "nested/app:v1"), ref(dst.host, "app:amd"), platforms=[Platform.parse("linux/amd64")])


def test_index_with_artifact_and_unknown_entries_copied_by_digest(registry_pair, proxy_factory):
    src, dst = registry_pair
    tree = fl.index_with_artifact_entry(unknown_media_type=True)
    fl.push_tree(src, "odd/app", tree, tag="v1")
    front = proxy_factory(src)
    with copier() as c:
        report = c.copy(ref(front.host, "odd/app:v1"), ref(dst.host, "app:v1"))
        assert report.digest == tree.digest
        for entry in tree.json["manifests"]:
            assert im.head_manifest(dst, "app", entry["digest"]) == entry["digest"]
        odd = tree.json["manifests"][-1]
        assert odd["mediaType"] == fl.UNKNOWN_ENTRY_TYPE and front.count("GET", odd["digest"]) == 1
        # a platform subset keeps only images (and their attestations): artifacts without a platform go
        subset = c.copy(ref(front.host, "odd/app:v1"), ref(dst.host, "app:amd"), platforms=[Platform.parse("linux/amd64")])
    kept = json.loads(im.get_manifest(dst, "app", "amd")[0])["manifests"]
    assert subset.digest != tree.digest and [e["digest"] for e in kept] == [tree.image_for("linux/amd64").digest]


def test_subject_is_not_followed_and_the_tag_schema_stands_in_for_oci_subject(registry_factory, proxy_factory, ecr):
    """A manifest with a subject is copied without fetching its subject (it need not exist anywhere); where the
    destination answers its PUT without OCI-Subject, the referrers tag schema index is kept as the spec asks."""
    subject = im.build_image("linux/amd64", seed=71)  # pushed nowhere
    sbom = build_sbom(subject, seed=71)
    src = registry_factory()
    im.push_image(src, "team/app", sbom, "sbom")
    front = proxy_factory(src)
    plain, with_api = registry_factory(), registry_factory()
    api_front = proxy_factory(with_api, referrers=True)  # tests.support.ecr.ReferrersProxy: the referrers API
    dropping = proxy_factory(registry_factory(), referrers=True)
    dropping.add_fault("PUT", "/manifests/", "drop_headers", drop=["OCI-Subject"], times=None)
    tag = referrers_tag(subject.digest)
    expected = json.loads(json.dumps(referrer_descriptor(sbom.manifest, sbom.media_type)))
    ecr.create_repository("team/app")
    ecr_client = make_client({ecr.host: dict(zip(("username", "password"), ecr.credentials))})
    for dest, client in ((plain, None), (dropping, None), (api_front, None), (ecr, ecr_client)):
        with copier(client) as c:
            for dest_tag in ("sbom", "again"):
                report = c.copy(ref(front.host, "team/app:sbom"), ref(dest.host, f"team/app:{dest_tag}"))
                assert report.digest == sbom.digest and report.warnings == []
        auth = ecr.auth if dest is ecr else None
        if dest in (plain, dropping):
            index = json.loads(im.get_manifest(dest, "team/app", tag)[0])
            assert index["manifests"] == [expected]  # once, though pushed twice
        else:  # the registry indexed the subject itself (OCI-Subject came back): no tag written
            assert tag not in im.list_tags(dest, "team/app", auth=auth)
    assert front.count(path_contains=subject.digest) == 0
    with copier() as c:  # an artifact has no platform: asked for arch tags, it says so instead of failing
        report = c.copy(ref(front.host, "team/app:sbom"), ref(plain.host, "team/app:tagged"), arch_tags=True)
    assert report.arch_tags == [] and report.warnings == [f"{front.host}/team/app:sbom is not an image "
                                                          f"({sbom.artifact_type}): no arch tag written"]


# ---------------------------------------------------------------------- kind 2: arch tags tell every child apart


def test_arch_tags_tell_windows_os_versions_apart(lenient):
    src, dst = lenient(), lenient()
    index = fl.windows_versions_index()
    im.push_index(src, "win/app", index, "ltsc")
    with copier() as c:
        report = c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc"), arch_tags=True)
    assert report.arch_tags == [f"ltsc-amd64-{v}" for v in fl.WINDOWS_OS_VERSIONS]
    for tag, child in zip(report.arch_tags, index.children, strict=True):
        assert im.head_manifest(dst, "app", tag) == child.digest


def test_arch_tags_that_cannot_tell_two_images_apart_refuse_before_writing(registry_pair, proxy_factory):
    src, dst = registry_pair
    version = fl.WINDOWS_OS_VERSIONS[0]
    twins = im.build_index([fl.build_windows_image(version, seed=1, foreign=False),
                            fl.build_windows_image(version, seed=2, foreign=False)])
    assert twins.children[0].digest != twins.children[1].digest
    im.push_index(src, "win/app", twins, "ltsc")
    dst_front = proxy_factory(dst)
    with copier() as c, pytest.raises(CopyError, match="would both be tagged <tag>-amd64") as info:
        c.copy(ref(src.host, "win/app:ltsc"), ref(dst_front.host, "app:ltsc"), arch_tags=True)
    assert all(child.digest in str(info.value) for child in twins.children)
    assert writes(dst_front) == []
    with copier() as c:  # without arch tags the same index copies as it is
        assert c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc")).digest == twins.digest


# ---------------------------------------------------------------------- kind 3: optional protocol behaviour


def _index(seed: int = 81) -> im.Index:
    return im.build_index([im.build_image("linux/amd64", seed=seed), im.build_image("linux/arm64/v8", seed=seed)])


def test_manifest_head_404_while_get_works_in_copy(registry_pair, proxy_factory):
    """Harbor/Nexus behind some proxies: the copy confirms a 404 with a GET, and reuses what that GET read."""
    src, dst = registry_pair
    index = _index()
    im.push_index(src, "app", index, "v1")
    front = proxy_factory(src)
    front.add_fault("HEAD", "/manifests/", "status", status=404, times=None)
    with copier() as c:
        report = c.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1"))
        assert report.digest == index.digest and im.get_manifest(dst, "app", "v1")[0] == index.manifest
        assert front.count("HEAD", "/manifests/v1") == 1 and front.count("GET", "/manifests/v1") == 1
        assert front.count("GET", f"/manifests/{index.digest}") == 0  # the top manifest is read once
        front.reset()
        with pytest.raises(NotFoundError, match="not found"):
            c.copy(ref(front.host, "app:nope"), ref(dst.host, "app:nope"))
        assert front.requests == [("HEAD", "/v2/app/manifests/nope"), ("GET", "/v2/app/manifests/nope")]


def test_manifest_head_404_while_get_works_in_assemble(registry_pair, proxy_factory):
    src, dst = registry_pair
    amd, arm = im.build_image("linux/amd64", seed=82), im.build_image("linux/arm64/v8", seed=82)
    im.push_image(src, "app", amd, "amd")
    im.push_image(src, "app", arm, "arm")
    front = proxy_factory(src)
    front.add_fault("HEAD", "/manifests/", "status", status=404, times=None)
    with copier() as c:
        report = c.assemble(ref(dst.host, "app:v1"), [ref(front.host, "app:amd"), ref(front.host, "app:arm")])
    assert report.platforms == ["linux/amd64", "linux/arm64/v8"]
    assert [d["digest"] for d in json.loads(im.get_manifest(dst, "app", "v1")[0])["manifests"]] == [amd.digest, arm.digest]
    assert front.count("GET", "/manifests/") == 2  # one GET per source: the confirming GET is the one used


def test_upstream_head_404_in_sync_is_not_an_upstream_deletion(monkeypatch, ecr, registry_factory, proxy_factory):
    upstream = registry_factory()
    service = Service(monkeypatch, ecr, upstream, proxy_factory(upstream))
    index = _index(83)
    im.push_index(upstream, "app", index, "v1")
    service.proxy.add_fault("HEAD", "/manifests/", "status", status=404, times=None)
    service.add("app", "--source", service.source("app"), "--tag", "v1,gone")
    for _ in range(2):
        service.cli("sync", ok=False)  # `gone` fails: it really is missing
        record = service.state("app", "v1")
        assert record["state"] == drift.IN_SYNC and record["upstream_digest"] == index.digest, record
        gone = service.state("app", "gone")
        assert gone["state"] == drift.FAILED and "not found upstream" in gone["error"]


def test_heads_without_content_length(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = _index(84)
    im.push_index(src, "app", index, "v1")
    src_front, dst_front = proxy_factory(src), proxy_factory(dst)
    for front in (src_front, dst_front):
        front.add_fault("HEAD", "", "drop_headers", drop=["Content-Length"], times=None)
    client = make_client()
    with copier(client) as c:
        first = c.copy(ref(src_front.host, "app:v1"), ref(dst_front.host, "app:v1"))
        head = client.manifest_head(ref(src_front.host, "app:v1"))
        assert head is not None and head.digest == index.digest and head.size is None
        other = c.copy(ref(src_front.host, "app:v1"), ref(dst_front.host, "other:v1"))  # blobs found present by HEAD
        src_front.reset()
        again = c.copy(ref(src_front.host, "app:v1"), ref(dst_front.host, "app:v1"))
    assert first.digest == other.digest == index.digest
    assert other.blobs_copied == 0 and other.blobs_skipped + other.blobs_mounted == first.blobs_copied
    assert again.unchanged and src_front.requests == [("HEAD", "/v2/app/manifests/v1")]


def test_tag_lists_paged_without_link(registry, proxy_factory):
    image = im.build_image(seed=85)
    tags = ["1.0", "1.1", "1.2", "2.0", "latest"]
    for tag in tags:
        im.push_image(registry, "paged", image, tag=tag)
    for link in (False, True):
        front = proxy_factory(registry, extensions=[TagPager(page_size=2, link=link)])
        assert make_client().tags_list(ref(front.host, "paged"), page_size=2) == tags
        assert front.count("GET", "/tags/list") == 3
    # distribution 2.8 ignores n and last: a full page asks once more, gets nothing new, and stops
    plain = proxy_factory(registry)
    assert make_client().tags_list(ref(plain.host, "paged"), page_size=len(tags)) == tags
    assert plain.count("GET", "/tags/list") == 2


def test_puts_without_location(registry_pair, proxy_factory):
    """ECR's manifest PUT has no Location (rust-oci-client#33); nothing reads it after a PUT."""
    src, dst = registry_pair
    index = im.build_index([im.build_image("linux/amd64", seed=86)], attestations=True)
    im.push_index(src, "app", index, "v1")
    dst_front = proxy_factory(dst)
    fault = dst_front.add_fault("PUT", "", "drop_headers", drop=["Location"], times=None)
    with copier() as c:
        report = c.copy(ref(src.host, "app:v1"), ref(dst_front.host, "app:v1"))
    assert report.digest == index.digest and im.head_manifest(dst, "app", "v1") == index.digest
    assert fault.fired == dst_front.count("PUT") > report.blobs_copied  # blob and manifest PUTs alike


def test_nested_tree_of_a_docker_list(registry_pair):
    """A Docker manifest list as an entry of an OCI index: recursed like any index."""
    src, dst = registry_pair
    inner = im.build_index([im.build_image("linux/amd64", seed=87, oci=False)], oci=False)
    tree = fl.build_nested_index([inner, im.build_image("linux/ppc64le", seed=87)])
    fl.push_tree(src, "mixed", tree, tag="v1")
    with copier() as c:
        assert c.copy(ref(src.host, "mixed:v1"), ref(dst.host, "mixed:v1")).digest == tree.digest
    assert im.get_manifest(dst, "mixed", inner.digest)[1] == im.DOCKER_LIST
