"""Signatures, SBOMs and attestations travel with the image (issue 14), against real registries.

Upstreams: plain distribution 2.8 (no referrers API: the ``sha256-<hex>`` tag schema and cosign's
``.sig``/``.att``/``.sbom`` tags) and the same behind a ReferrersProxy (the OCI 1.1 referrers API).
Destinations: the ECR stand-in (answers the API, ``OCI-Subject`` on PUT) and plain distribution 2.8.
Signatures are made as cosign makes them and checked at the mirror by the independent verifier in
tests/support/cosign.py; upstream requests are counted by the proxies.
"""

from __future__ import annotations

import json

import pytest

from ecr_mirror.manifest import Platform
from ecr_mirror.referrer_copy import SHALLOW_BUDGET, audit_referrers
from ecr_mirror.referrers import NOT_APPLICABLE, ReferrerPolicy, tag_schema_tag
from ecr_mirror.rows import parse_row
from ecr_mirror.status import PASS_PK
from tests.integration.helpers import copier, make_client, ref
from tests.support import images as im
from tests.support.cosign import (
    CosignKey,
    VerificationError,
    attach_sbom,
    attest,
    read_sbom,
    sign,
    verify,
    verify_attestation,
)
from tests.support.proxy import Reply
from tests.support.referrers import (
    build_artifact,
    build_in_toto,
    build_sbom,
    list_referrers,
    push_referrer,
    referrers_index,
)

REPO = "team/app"
MIRROR = "mirror/app"
SLSA = "https://slsa.dev/provenance/v0.2"
REFER = ReferrerPolicy()


def two_platforms(seed: int) -> im.Index:
    return im.build_index([im.build_image("linux/amd64", seed=seed), im.build_image("linux/arm64/v8", seed=seed)])


def copy(c, source_host: str, dest_host: str, tag: str = "v1", **kwargs):
    return c.copy(ref(source_host, f"{REPO}:{tag}"), ref(dest_host, f"{MIRROR}:{tag}"), referrers=REFER, **kwargs)


def content_gets(proxy) -> list[str]:
    """Manifest and blob GETs (what Docker Hub counts as pulls)."""
    return [t for m, t in proxy.requests if m == "GET" and ("/manifests/" in t or "/blobs/" in t)]


def referrer_digests(registry, repo: str, digest: str, **kwargs) -> list[str]:
    return [d["digest"] for d in list_referrers(registry, repo, digest, **kwargs)]


def ecr_client(ecr, host: str | None = None):
    """A product client with the stand-in's credentials (for ``host``: a proxy in front of it)."""
    user, password = ecr.credentials
    return make_client({host or ecr.host: {"username": user, "password": password}})


# ---------------------------------------------------------------------- upstream without the API


def test_tag_schema_and_cosign_tags_travel_and_verify_at_a_mirror_without_the_api(registry_pair, proxy_factory):
    """Upstream and mirror are plain distribution 2.8: cosign tags are copied as tags, tag schema indexes
    byte for byte; referrers of a referrer too. An unchanged copy looks at the index's own tags only, in 3
    upstream requests, none a manifest or blob GET; a re-signed upstream image gets its new signature on the
    next copy, a new SBOM on a child at the audit."""
    src, dst = registry_pair
    index = two_platforms(11)
    amd, arm = index.image_for("linux/amd64"), index.image_for("linux/arm64/v8")
    im.push_index(src, REPO, index, "v1")
    key = CosignKey.generate()
    sign(src, REPO, index.digest, key)  # sha256-<index>.sig
    attest(src, REPO, index.digest, key, SLSA, {"builder": {"id": "https://example.invalid/ci"}})  # .att
    child_sbom_bytes = b'{"spdxVersion":"SPDX-2.3","name":"amd64"}'
    attach_sbom(src, REPO, amd.digest, child_sbom_bytes)  # sha256-<amd64>.sbom
    sbom = build_sbom(index, seed=1)  # OCI 1.1 artifacts: tag schema indexes upstream (2.8 sends no OCI-Subject)
    provenance = build_in_toto(amd, seed=2)
    for artifact in (sbom, provenance):
        assert push_referrer(src, REPO, artifact).tag_index is not None
    sbom_signature = sign(src, REPO, sbom.digest, key, mode="referrer")  # a referrer of a referrer
    up = proxy_factory(src)

    with copier() as c:
        report = copy(c, up.host, dst.host)
    r = report.referrers
    assert (r.copied, r.present, r.not_applicable) == (6, 0, 0), r.items
    assert {i.found_by for i in r.items} == {"cosign tag", "referrers tag schema"}
    # at the mirror, as a verifier sees it
    assert [v.source for v in verify(dst, MIRROR, index.digest, key)] == ["tag"]
    (statement,) = verify_attestation(dst, MIRROR, index.digest, key, predicate_type=SLSA)
    assert statement["predicate"] == {"builder": {"id": "https://example.invalid/ci"}}
    assert read_sbom(dst, MIRROR, amd.digest) == ("text/spdx+json", child_sbom_bytes)
    assert referrer_digests(dst, MIRROR, index.digest) == [sbom.digest]
    assert referrer_digests(dst, MIRROR, amd.digest) == [provenance.digest]
    assert [v.manifest_digest for v in verify(dst, MIRROR, sbom.digest, key)] == [sbom_signature.digest]
    for subject in (index.digest, amd.digest, sbom.digest):  # the fallback indexes, byte for byte
        tag = tag_schema_tag(subject)
        assert im.get_manifest(dst, MIRROR, tag)[0] == im.get_manifest(src, REPO, tag)[0]

    # unchanged: the index's own tags, .sig first, as far as 3 upstream requests reach; nothing fetched
    up.reset()
    with copier() as c:
        again = copy(c, up.host, dst.host)
    assert again.unchanged and (again.referrers.copied, again.referrers.present) == (0, 1)
    schema = tag_schema_tag(index.digest)
    assert again.referrers.not_checked == [schema, f"{schema}.att"] and again.warnings == []
    assert content_gets(up) == []
    assert up.requests == [
        ("HEAD", f"/v2/{REPO}/manifests/v1"),
        ("GET", f"/v2/{REPO}/referrers/{index.digest}"),  # 404: no API
        ("GET", f"/v2/{REPO}/tags/list?n=1000"),
        ("HEAD", f"/v2/{REPO}/manifests/{schema}.sig"),
    ]

    # re-signed upstream (cosign appends a signature and moves the tag) and a new SBOM on the other child
    rotated = CosignKey.generate()
    sign(src, REPO, index.digest, rotated)
    arm_sbom = build_sbom(arm, seed=3)
    push_referrer(src, REPO, arm_sbom)
    with pytest.raises(VerificationError):
        verify(dst, MIRROR, index.digest, rotated)
    up.reset()
    with copier() as c:
        third = copy(c, up.host, dst.host)
    assert third.unchanged and third.referrers.copied == 1
    assert verify(dst, MIRROR, index.digest, rotated) and verify(dst, MIRROR, index.digest, key)
    # fetched: the moved .sig tag and its blobs; nothing that was there already
    assert [t for t in content_gets(up) if "/manifests/" in t] == [
        f"/v2/{REPO}/manifests/{im.head_manifest(src, REPO, f'{schema}.sig')}"]
    assert referrer_digests(dst, MIRROR, arm.digest) == []  # a child's: not an unchanged copy's to look for
    # the audit (or the next copy that writes the image) walks every subject: the new SBOM arrives
    row = parse_row({"id": "app", "source": f"{up.host}/{REPO}", "tags": ["v1"], "target_repository": MIRROR})
    up.reset()
    with copier() as c:
        audit = audit_referrers(c, row, "v1", dst.host, upstream_digest=index.digest, target_digest=index.digest,
                                children=[d.digest for d in index.children])
    assert audit.copied == 1 and audit.error is None
    assert referrer_digests(dst, MIRROR, arm.digest) == [arm_sbom.digest]
    assert sorted(t for t in content_gets(up) if "/manifests/" in t) == sorted([
        f"/v2/{REPO}/manifests/{im.head_manifest(src, REPO, tag_schema_tag(arm.digest))}",
        f"/v2/{REPO}/manifests/{arm_sbom.digest}",
    ])


def test_tag_schema_upstream_to_ecr_is_indexed_by_its_referrers_api(registry, proxy_factory, ecr_factory):
    """Into the ECR stand-in: each referrer's PUT carries its subject, so ECR's referrers API lists it; the
    upstream tag index travels as a tag too (byte for byte), which lets the next copy compare it by HEAD."""
    index = two_platforms(12)
    im.push_index(registry, REPO, index, "v1")
    key = CosignKey.generate()
    sign(registry, REPO, index.digest, key)
    sbom = build_sbom(index.image_for("linux/arm64/v8"), seed=4)
    push_referrer(registry, REPO, sbom)
    ecr = ecr_factory(repositories=[MIRROR], put_image_rate=None)
    up = proxy_factory(registry)
    with copier(ecr_client(ecr)) as c:
        report = copy(c, up.host, ecr.host)
        assert report.referrers.copied == 2
        arm = index.image_for("linux/arm64/v8").digest
        assert referrer_digests(ecr, MIRROR, arm, auth=ecr.auth, tag_schema=False) == [sbom.digest]  # the API answers
        assert verify(ecr, MIRROR, index.digest, key, auth=ecr.auth)[0].source == "tag"
        assert ecr.tags(MIRROR)[tag_schema_tag(arm)] == im.head_manifest(registry, REPO, tag_schema_tag(arm))
        up.reset()
        again = copy(c, up.host, ecr.host)
    # unchanged: the index's .sig compared by HEAD (the arm64 child's SBOM is the audit's to look at again)
    assert (again.referrers.present, again.referrers.not_checked) == (1, []) and content_gets(up) == []


# ---------------------------------------------------------------------- upstream with the API


def test_referrers_api_upstream_to_ecr_oci_artifacts_on_index_and_child(registry, proxy_factory, ecr_factory):
    """OCI 1.1 artifacts with artifactType and subject on the index and a child, a signature of the SBOM;
    all found through the upstream's referrers API and listed by ECR's: no tag schema tag is written."""
    front = proxy_factory(registry, referrers=True)
    index = two_platforms(13)
    amd = index.image_for("linux/amd64")
    im.push_index(front, REPO, index, "v1")
    key = CosignKey.generate()
    index_signature = sign(front, REPO, index.digest, key, mode="referrer")
    sbom, child_sbom, provenance = build_sbom(index, seed=1), build_sbom(amd, seed=2), build_in_toto(amd, seed=3)
    for artifact in (sbom, child_sbom, provenance):
        assert push_referrer(front, REPO, artifact).tag_index is None  # the API indexed it
    sbom_signature = sign(front, REPO, sbom.digest, key, mode="referrer")
    assert not [t for t in im.list_tags(registry, REPO) if t.startswith("sha256-")]
    ecr = ecr_factory(repositories=[MIRROR], put_image_rate=None)
    front.reset()
    with copier(ecr_client(ecr)) as c:
        report = copy(c, front.host, ecr.host)
        assert report.referrers.copied == 5 and {i.found_by for i in report.referrers.items} == {"referrers API"}
        assert report.referrers.tags_written == [] and set(ecr.tags(MIRROR)) == {"v1"}
        (found,) = verify(ecr, MIRROR, index.digest, key, auth=ecr.auth, sources=("referrer",))
        assert found.manifest_digest == index_signature.digest
        assert verify(ecr, MIRROR, sbom.digest, key, auth=ecr.auth, sources=("referrer",))[0].manifest_digest == (
            sbom_signature.digest)
        assert referrer_digests(ecr, MIRROR, amd.digest, auth=ecr.auth) == [child_sbom.digest, provenance.digest]
        for artifact in (sbom, child_sbom, provenance):  # byte for byte
            assert im.get_manifest(ecr, MIRROR, artifact.digest, auth=ecr.auth)[0] == artifact.manifest

        # cold, the three subjects and the three non-signature referrers were asked about; not the signatures
        asked = [t.rsplit("/", 1)[1] for m, t in front.requests if "/referrers/" in t]
        assert sorted(asked) == sorted([index.digest, amd.digest, index.image_for("linux/arm64/v8").digest,
                                        sbom.digest, child_sbom.digest, provenance.digest])
        front.reset()
        again = copy(c, front.host, ecr.host)
    # unchanged: the index's referrers only (its signature and SBOM), nothing fetched
    assert (again.referrers.copied, again.referrers.present) == (0, 2)
    assert content_gets(front) == []
    assert front.requests == [("HEAD", f"/v2/{REPO}/manifests/v1"), ("GET", f"/v2/{REPO}/referrers/{index.digest}"),
                              ("GET", f"/v2/{REPO}/tags/list?n=1000")]


def test_api_upstream_to_a_mirror_without_it_keeps_a_merged_tag_index(registry_pair, proxy_factory):
    """A destination without the API gets the tag schema index, merged: an entry it already had (pushed at
    the mirror) is never dropped; an unchanged copy writes nothing there."""
    src, dst = registry_pair
    front = proxy_factory(src, referrers=True)
    index = two_platforms(14)
    im.push_index(front, REPO, index, "v1")
    sbom = build_sbom(index, seed=1)
    push_referrer(front, REPO, sbom)
    with copier() as c:
        assert copy(c, front.host, dst.host).referrers.copied == 1
    assert referrer_digests(dst, MIRROR, index.digest) == [sbom.digest]
    local = build_artifact("application/vnd.example.scan+json", b'{"findings":[]}', subject=index)
    push_referrer(dst, MIRROR, local)  # someone adds a scan result at the mirror
    provenance = build_in_toto(index, seed=2)
    push_referrer(front, REPO, provenance)  # and upstream gets provenance
    mirror = proxy_factory(dst)
    with copier() as c:
        report = copy(c, front.host, mirror.host)
        assert (report.referrers.copied, report.referrers.present) == (1, 1)
        assert referrer_digests(dst, MIRROR, index.digest) == [sbom.digest, local.digest, provenance.digest]
        mirror.reset()
        again = copy(c, front.host, mirror.host)
    assert again.referrers.present == 2 and mirror.count("PUT") == 0 and mirror.count("POST") == 0


# ---------------------------------------------------------------------- rewritten indexes, refusals


def test_platform_subset_children_referrers_travel_index_referrers_do_not_apply(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = two_platforms(15)
    amd, arm = index.image_for("linux/amd64"), index.image_for("linux/arm64/v8")
    im.push_index(src, REPO, index, "v1")
    key = CosignKey.generate()
    sign(src, REPO, index.digest, key)
    push_referrer(src, REPO, build_sbom(index, seed=1))
    arm_sbom, amd_sbom = build_sbom(arm, seed=2), build_sbom(amd, seed=3)
    push_referrer(src, REPO, arm_sbom)
    push_referrer(src, REPO, amd_sbom)
    up = proxy_factory(src)
    with copier() as c:
        report = copy(c, up.host, dst.host, platforms=[Platform.parse("linux/arm64")])
    r = report.referrers
    assert report.digest != index.digest
    assert (r.copied, r.not_applicable) == (1, 2)
    assert referrer_digests(dst, MIRROR, arm.digest) == [arm_sbom.digest]
    assert im.head_manifest(dst, MIRROR, amd_sbom.digest) is None  # the amd64 image is not mirrored: nor its SBOM
    skipped = [i for i in r.items if i.outcome == NOT_APPLICABLE]
    assert {i.tag for i in skipped} == {tag_schema_tag(index.digest), tag_schema_tag(index.digest) + ".sig"}
    (reason,) = r.reasons
    assert index.digest in reason and report.digest in reason and "rewritten index" in reason
    assert not [t for t in im.list_tags(dst, MIRROR) if t.startswith(tag_schema_tag(index.digest))]
    assert not [t for _, t in up.requests if tag_schema_tag(index.digest) in t]  # counted from the tag list only


def test_ecr_405_for_an_index_subject_falls_back_to_the_tag_schema(registry, proxy_factory, ecr_factory):
    """ECR answers 405 for some referrers whose subject is an index (aws/containers-roadmap#2783; the stand-in
    does not model it: faults play it). A refused listing: the tag schema index is written at ECR; a refused
    manifest that ECR did store: listed in the tag schema; one it did not: not applicable, and why."""
    front = proxy_factory(registry, referrers=True)
    index = two_platforms(16)
    im.push_index(front, REPO, index, "v1")
    sbom, provenance = build_sbom(index, seed=1), build_in_toto(index, seed=2)
    scan = build_artifact("application/vnd.example.scan", b"{}", subject=index)
    for artifact in (sbom, scan, provenance):
        push_referrer(front, REPO, artifact)
    ecr = ecr_factory(repositories=[MIRROR], put_image_rate=None)
    ecr.add_fault("GET", f"/referrers/{index.digest}", "status", status=405, times=None)
    ecr.add_fault("PUT", f"/manifests/{provenance.digest}", "status", status=405, times=None)
    # in front of ECR: a PUT that reaches it (stored) but answers 405
    stored_but_refused = proxy_factory(ecr)
    stored_but_refused.add_fault("PUT", f"/manifests/{scan.digest}", "status", status=405, forward=True, times=None)
    with copier(ecr_client(ecr, stored_but_refused.host)) as c:
        report = copy(c, front.host, stored_but_refused.host)
        # the refusal is remembered for the run: the next copy does not fetch the refused referrer again
        front.reset()
        again = copy(c, front.host, stored_but_refused.host)
    r = report.referrers
    assert (r.copied, r.not_applicable) == (2, 1) and r.refused == [provenance.digest] and r.error is None
    (refused,) = [i for i in r.items if i.outcome == NOT_APPLICABLE]
    assert refused.digest == provenance.digest
    assert "HTTP 405" in refused.reason and "containers-roadmap#2783" in refused.reason
    assert again.unchanged and (again.referrers.present, again.referrers.not_applicable) == (2, 1)
    assert again.referrers.refused == [provenance.digest] and "not fetched again" in again.referrers.reasons[0]
    assert front.count("GET", provenance.digest) == 0 and content_gets(front) == []
    index_bytes = im.get_manifest(ecr, MIRROR, tag_schema_tag(index.digest), auth=ecr.auth)[0]
    assert [d["digest"] for d in json.loads(index_bytes)["manifests"]] == [sbom.digest, scan.digest]
    assert im.head_manifest(ecr, MIRROR, "v1", auth=ecr.auth) == index.digest  # the image itself is there


def test_immutable_repository_refusing_a_moved_signature_tag_says_how_to_allow_it(registry, ecr_factory):
    """cosign re-pushes ``.sig`` when it signs again (ecr-facts.md 6); an IMMUTABLE repository refuses that.
    The image is in place: the copy stands, with a warning saying how to allow it."""
    index = two_platforms(23)
    im.push_index(registry, REPO, index, "v1")
    sign(registry, REPO, index.digest, CosignKey.generate())
    ecr = ecr_factory(put_image_rate=None)
    ecr.create_repository(MIRROR, mutability="IMMUTABLE")
    with copier(ecr_client(ecr)) as c:
        assert copy(c, registry.host, ecr.host).referrers.copied == 1
        sign(registry, REPO, index.digest, CosignKey.generate())
        refused = copy(c, registry.host, ecr.host)
    assert refused.unchanged and refused.digest == index.digest
    assert "IMMUTABLE_WITH_EXCLUSION with the filter sha256-*" in refused.referrers.error
    (warning,) = refused.warnings
    assert warning.startswith(f"{ecr.host}/{MIRROR}:v1: the image is in place, but its referrers were not all copied: ")
    assert "IMMUTABLE_WITH_EXCLUSION with the filter sha256-*" in warning
    ecr.create_repository("mirror/open", mutability="IMMUTABLE_WITH_EXCLUSION", exclusions=["sha256-*"])
    with copier(ecr_client(ecr)) as c:
        report = c.copy(ref(registry.host, f"{REPO}:v1"), ref(ecr.host, "mirror/open:v1"), referrers=REFER)
        sign(registry, REPO, index.digest, CosignKey.generate())
        again = c.copy(ref(registry.host, f"{REPO}:v1"), ref(ecr.host, "mirror/open:v1"), referrers=REFER)
    assert report.referrers.copied == 1 and again.referrers.copied == 1


# ---------------------------------------------------------------------- assemble, the client


def test_assembled_images_keep_their_signatures(registry_pair):
    src, dst = registry_pair
    amd, arm = im.build_image("linux/amd64", seed=17), im.build_image("linux/arm64/v8", seed=17)
    im.push_image(src, REPO, amd, "1.0-amd64")
    im.push_image(src, REPO, arm, "1.0-arm64")
    key = CosignKey.generate()
    for image in (amd, arm):
        sign(src, REPO, image.digest, key)
    with copier() as c:
        sources = [ref(src.host, f"{REPO}:1.0-amd64"), ref(src.host, f"{REPO}:1.0-arm64")]
        report = c.assemble(ref(dst.host, f"{MIRROR}:1.0"), sources, referrers=REFER)
    assert report.referrers.copied == 2
    for image in (amd, arm):
        assert verify(dst, MIRROR, image.digest, key)


class _PagedReferrers:
    """The referrers API in two pages joined by ``Link`` (what is under test is the client, not a registry)."""

    def __init__(self, pages: list[list[dict]]) -> None:
        self.pages = pages

    def on_request(self, proxy, record):
        if "/referrers/" not in record.path:
            return None
        page = int(record.query.removeprefix("page=") or 0)
        headers = [("Content-Type", im.OCI_INDEX)]
        if page + 1 < len(self.pages):
            headers.append(("Link", f'<{record.path}?page={page + 1}>; rel="next"'))
        return Reply(200, headers, referrers_index(self.pages[page]))


def test_client_referrers_list_follows_link_pages_and_says_none_on_404(registry, proxy_factory):
    index = two_platforms(18)
    im.push_index(registry, REPO, index, "v1")
    artifacts = [build_artifact(f"application/vnd.example.n{i}", b"%d" % i, subject=index) for i in range(3)]
    descriptors = [a.descriptor() for a in artifacts]
    paged = proxy_factory(registry, extensions=[_PagedReferrers([descriptors[:2], descriptors[2:]])])
    client = make_client()
    listed = client.referrers_list(ref(paged.host, REPO), index.digest)
    assert [d.raw for d in listed] == descriptors
    assert [r.target for r in paged.records] == [f"/v2/{REPO}/referrers/{index.digest}",
                                                 f"/v2/{REPO}/referrers/{index.digest}?page=1"]
    assert client.referrers_list(ref(registry.host, REPO), index.digest) is None  # distribution 2.8: no API
    assert client.referrers_tag_get(ref(registry.host, REPO), index.digest) is None


# ---------------------------------------------------------------------- the command, the rows


def cli_on_a_table(monkeypatch, ecr, tmp_path):
    """The CLI (in process) pointed at a fresh mirror table (moto) and the ECR stand-in: ``(table, run)``,
    ``run(*args)`` returning the output of a command that must exit 0."""
    import uuid

    from click.testing import CliRunner

    from ecr_mirror.cli import main as cli

    table = "mirror-" + uuid.uuid4().hex[:8]
    for name, value in {"ECR_MIRROR_TABLE": table, "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
                        "ECR_MIRROR_REPOSITORY_PREFIX": "mirror", "DOCKER_CONFIG": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return table, run


def upstream_counts(requests: dict[str, dict[str, int]], host: str) -> tuple[dict[str, int], int]:
    """``(requests to host by method, how many beyond the one HEAD of the tag)``."""
    counted = requests.get(host, {})
    return counted, sum(counted.values()) - 1


@pytest.mark.parametrize("upstream_api", [False, True], ids=["tag-schema-upstream", "referrers-api-upstream"])
def test_cli_copy_of_a_signed_sbom_image_counts_requests(ecr, registry, proxy_factory, upstream_api):
    """`ecr-mirror copy` always discovers referrers: the request counts of a cold and an unchanged copy of a
    signed image with an SBOM on the index and one on the amd64 child (issue 14), per host and method.
    Unchanged: at most 3 more upstream requests than the tag's HEAD, none a manifest or blob GET; a re-signed
    image gets its new signature on the next copy."""
    from tests.integration.test_cli import run

    up = proxy_factory(registry, referrers=upstream_api)
    index = two_platforms(19)
    amd = index.image_for("linux/amd64")
    im.push_index(up, REPO, index, "v1")
    key = CosignKey.generate()
    mode = "referrer" if upstream_api else "tag"
    sign(up, REPO, index.digest, key, mode=mode)
    for artifact in (build_sbom(index, seed=1), build_sbom(amd, seed=2)):
        push_referrer(up, REPO, artifact)
    ecr.create_repository(MIRROR)
    env = {"ECR_MIRROR_TARGET_REGISTRY": ecr.host}
    args = ("copy", "--json", f"{up.host}/{REPO}:v1", f"{ecr.host}/{MIRROR}:v1")
    up.reset()
    ecr.reset_counts()
    cold = run(*args, env=env)
    assert cold.returncode == 0, cold.stderr
    first = json.loads(cold.stdout)
    assert first["referrers"]["copied"] == 3 and first["referrers"]["not_applicable"] == 0
    assert verify(ecr, MIRROR, index.digest, key, auth=ecr.auth)
    up.reset()
    second = json.loads(run(*args, env=env).stdout)
    assert second["unchanged"] and second["referrers"]["copied"] == 0
    assert content_gets(up) == []
    counted, extra = upstream_counts(second["requests"], up.host)
    assert extra <= SHALLOW_BUDGET
    kind = "API" if upstream_api else "tag schema"
    print(f"\n{kind} upstream, cold: {first['requests']}\n  unchanged: {second['requests']}")
    if upstream_api:  # HEAD of the tag; the referrers API for the index (its signature and SBOM), the tag list
        assert counted == {"HEAD": 1, "GET": 2} and second["referrers"]["present"] == 2
        assert second["referrers"]["not_checked"] == []
    else:  # HEAD of the tag; the API probe (404), the tag list, HEAD of the index's .sig (its tag index: not reached)
        assert counted == {"HEAD": 2, "GET": 2} and second["referrers"]["present"] == 1
        assert second["referrers"]["not_checked"] == [tag_schema_tag(index.digest)]
    # re-signed upstream: the next copy brings the new signature, fetching only it
    rotated = CosignKey.generate()
    new_signature = sign(up, REPO, index.digest, rotated, mode=mode)
    up.reset()
    third = json.loads(run(*args, env=env).stdout)
    assert third["unchanged"] and third["referrers"]["copied"] == 1 and third["warnings"] == []
    assert verify(ecr, MIRROR, index.digest, rotated, auth=ecr.auth)
    assert [t for t in content_gets(up) if "/manifests/" in t] == [f"/v2/{REPO}/manifests/{new_signature.digest}"]
    assert upstream_counts(third["requests"], up.host)[1] - len(content_gets(up)) <= SHALLOW_BUDGET
    bare = json.loads(run("copy", "--json", "--no-referrers", f"{up.host}/{REPO}:v1", f"{ecr.host}/{MIRROR}:v1",
                          env=env).stdout)
    assert bare["referrers"] is None and bare["requests"][up.host] == {"HEAD": 1}
    # a platform subset: what could not apply, and why, in --json and in the one line on stderr (the index's two
    # signatures and SBOM through the API; else its .sig and tag schema tags)
    ecr.create_repository("mirror/arm")
    subset = run("copy", "--platform", "linux/arm64", f"{up.host}/{REPO}:v1", f"{ecr.host}/mirror/arm:v1", env=env)
    assert subset.returncode == 0, subset.stderr
    skipped = 3 if upstream_api else 2
    assert f"0 referrers copied, 0 present, {skipped} not applicable (their subject is the upstream index" in (
        subset.stderr)
    doc = json.loads(run("copy", "--json", "--platform", "linux/arm64", f"{up.host}/{REPO}:v1",
                         f"{ecr.host}/mirror/arm:v1", env=env).stdout)
    assert doc["unchanged"] and doc["referrers"]["not_applicable"] == skipped
    assert "rewritten index" in doc["referrers"]["reasons"][0]
    assert {i["outcome"] for i in doc["referrers"]["items"]} == {"not_applicable"}


def test_sync_copies_referrers_with_a_tag_and_asks_nothing_more_on_an_unchanged_pass(ecr, registry, proxy_factory,
                                                                                      monkeypatch, tmp_path):
    """Rows (default on, ``--no-referrers`` off): the referrers come with the copied tag and the row status
    says how many; a pass over the unchanged tag costs one upstream HEAD, as before (the audit re-discovers)."""
    _, run = cli_on_a_table(monkeypatch, ecr, tmp_path)
    up = proxy_factory(registry)
    index = two_platforms(20)
    amd = index.image_for("linux/amd64")
    im.push_index(registry, REPO, index, "v1")
    key = CosignKey.generate()
    sign(registry, REPO, index.digest, key)
    push_referrer(registry, REPO, build_sbom(amd, seed=1))
    run("table", "create")
    run("add", "app", "--source", f"{up.host}/{REPO}", "--tag", "v1", "--target-repository", "mirror/app")
    run("add", "bare", "--source", f"{up.host}/{REPO}", "--tag", "v1", "--target-repository", "mirror/bare",
        "--no-referrers")
    first = {r["id"]: r for r in json.loads(run("sync", "--json"))}
    assert first["app"]["action"] == "copied" and first["app"]["referrers"] == {
        "copied": 2, "present": 0, "not_applicable": 0, "reasons": [], "refused": [], "error": None}
    assert first["bare"]["action"] == "copied" and first["bare"]["referrers"] is None
    assert verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)
    assert referrer_digests(ecr, "mirror/app", amd.digest, auth=ecr.auth)
    with pytest.raises(VerificationError):
        verify(ecr, "mirror/bare", index.digest, key, auth=ecr.auth)
    status = {r["id"]: r for r in json.loads(run("status", "--json"))}
    assert (status["app"]["referrers_copied"], status["app"]["referrers_not_applicable"]) == (2, 0)
    assert status["bare"]["referrers_copied"] is None

    up.reset()
    again = {r["id"]: r for r in json.loads(run("sync", "--json"))}
    assert [again[i]["state"] for i in ("app", "bare")] == ["in_sync", "in_sync"]
    assert again["app"]["referrers"] is None  # not looked at: that is the audit's
    assert up.requests == [("HEAD", f"/v2/{REPO}/manifests/v1")] * 2  # one per row, nothing more

    # upstream moves v1 to a new, signed image: the pass that copies it brings the new signature
    newer = two_platforms(21)
    im.push_index(registry, REPO, newer, "v1")
    sign(registry, REPO, newer.digest, key)
    line = run("sync", "--id", "app")
    assert "app:v1  in_sync  (copied: upstream moved)  [1 referrer copied, 0 present]" in line, line
    assert verify(ecr, "mirror/app", newer.digest, key, auth=ecr.auth)


def test_referrer_failures_after_the_image_are_warnings_and_405_refusals_are_remembered(
        ecr, registry, proxy_factory, monkeypatch, tmp_path):
    """Once the image is written, a referrer that cannot be copied does not fail the copy: ``copy`` exits 0 with
    a ``warning:`` line on stderr (``warnings`` and ``referrers.error`` in ``--json``); ``sync`` keeps the tag
    ``in_sync`` and records ``referrers_error``. A referrer ECR refuses with 405 and does not store is recorded
    in the tag's status (``referrers_refused``) and not fetched upstream again when the tag is copied again."""
    import uuid

    from click.testing import CliRunner

    from ecr_mirror.cli import main as cli

    for name, value in {"ECR_MIRROR_TABLE": "mirror-" + uuid.uuid4().hex[:8], "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
                        "ECR_MIRROR_REPOSITORY_PREFIX": "mirror", "DOCKER_CONFIG": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)

    def run(*args: str):
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    front = proxy_factory(registry, referrers=True)
    index = two_platforms(24)
    im.push_index(front, REPO, index, "v1")
    sbom, provenance = build_sbom(index, seed=1), build_in_toto(index, seed=2)
    for artifact in (sbom, provenance):
        push_referrer(front, REPO, artifact)
    sign(front, REPO, index.digest, CosignKey.generate())  # a .sig tag
    ecr.add_fault("PUT", f"/manifests/{provenance.digest}", "status", status=405, times=None)  # refused, not stored
    ecr.add_fault("PUT", "/manifests/sha256-", "status", status=400, times=None)  # the .sig tag cannot be written

    ecr.create_repository("mirror/one")
    copied = run("copy", f"{front.host}/{REPO}:v1", f"{ecr.host}/mirror/one:v1")
    assert copied.stdout.strip() == index.digest
    assert im.head_manifest(ecr, "mirror/one", "v1", auth=ecr.auth) == index.digest
    (warning,) = [line for line in copied.stderr.splitlines() if line.startswith("ecr-mirror: warning: ")]
    assert warning.startswith(f"ecr-mirror: warning: {ecr.host}/mirror/one:v1: the image is in place, but its "
                              "referrers were not all copied: ") and "HTTP 400" in warning
    doc = json.loads(run("copy", "--json", f"{front.host}/{REPO}:v1", f"{ecr.host}/mirror/one:v1").stdout)
    assert doc["unchanged"] and (doc["referrers"]["present"], doc["referrers"]["not_applicable"]) == (1, 1)
    assert doc["referrers"]["refused"] == [provenance.digest] and "HTTP 400" in doc["referrers"]["error"]
    assert doc["warnings"] == [warning.removeprefix("ecr-mirror: warning: ")]

    run("table", "create")
    run("add", "app", "--source", f"{front.host}/{REPO}", "--tag", "v1", "--target-repository", "mirror/app")
    (first,) = json.loads(run("sync", "--json").stdout)
    assert (first["state"], first["action"], first["error"]) == ("in_sync", "copied", None)
    assert first["referrers"]["refused"] == [provenance.digest] and "HTTP 400" in first["referrers"]["error"]
    (status,) = json.loads(run("status", "--json").stdout)
    assert status["state"] == "in_sync" and "HTTP 400" in status["referrers_error"]
    assert status["referrers_refused"] == provenance.digest

    # the tag is copied again (its image expired at the target, which the audit finds): the refused referrer is
    # not fetched again
    ecr.lifecycle_expire("mirror/app", [index.digest])
    front.reset()
    line = run("sync", "--audit", "--id", "app").stdout
    assert "app:v1  in_sync  (copied: target tag does not exist)" in line and "not fetched again" in line, line
    assert front.count("GET", provenance.digest) == 0
    (status,) = json.loads(run("status", "--json").stdout)
    assert status["referrers_refused"] == provenance.digest


def test_audit_hook_brings_a_signature_added_after_the_image_was_mirrored(registry_pair, proxy_factory):
    """:func:`ecr_mirror.referrer_copy.audit_referrers`, the call the completeness audit makes per tag with what
    the tag's status records (digests, children): no GET upstream unless something is new."""
    from ecr_mirror.referrer_copy import audit_referrers
    from ecr_mirror.rows import parse_row

    src, dst = registry_pair
    up = proxy_factory(src)
    index = two_platforms(22)
    arm = index.image_for("linux/arm64/v8")
    im.push_index(src, REPO, index, "v1")
    full = parse_row({"id": "app", "source": f"{up.host}/{REPO}", "tags": ["v1"], "target_repository": MIRROR})
    subset = parse_row({"id": "arm", "source": f"{up.host}/{REPO}", "tags": ["v1"], "target_repository": "mirror/arm",
                        "platforms": ["linux/arm64"]})
    off = parse_row({"id": "off", "source": f"{up.host}/{REPO}", "tags": ["v1"], "referrers": False})
    with copier() as c:
        copied = c.copy(ref(up.host, f"{REPO}:v1"), ref(dst.host, f"{MIRROR}:v1"))
        written = c.copy(ref(up.host, f"{REPO}:v1"), ref(dst.host, "mirror/arm:v1"), platforms=subset.platforms)
        assert copied.referrers is None  # the image only: signed afterwards
        key = CosignKey.generate()
        sign(src, REPO, index.digest, key)
        sign(src, REPO, arm.digest, key)
        children = [c_.digest for c_ in index.children]
        up.reset()
        report = audit_referrers(c, full, "v1", dst.host, upstream_digest=index.digest, target_digest=index.digest,
                                 children=children)
        assert report.copied == 2 and verify(dst, MIRROR, index.digest, key) and verify(dst, MIRROR, arm.digest, key)
        sub = audit_referrers(c, subset, "v1", dst.host, upstream_digest=index.digest, target_digest=written.digest,
                              children=[arm.digest])
        assert (sub.copied, sub.not_applicable) == (1, 1) and verify(dst, "mirror/arm", arm.digest, key)
        assert audit_referrers(c, off, "v1", dst.host, upstream_digest=index.digest, target_digest=index.digest,
                               children=children) is None
        up.reset()
        again = audit_referrers(c, full, "v1", dst.host, upstream_digest=index.digest, target_digest=index.digest,
                                children=children)
    assert again.present == 2 and content_gets(up) == []


# ---------------------------------------------------------------------- the completeness audit


def test_sync_audit_brings_a_signature_added_upstream_after_the_image_reached_the_mirror(
        ecr, registry, proxy_factory, monkeypatch, tmp_path):
    """A signature and an SBOM added upstream after the image was mirrored: a plain pass over the unchanged tag
    asks upstream one HEAD and nothing more (the mirror still lacks them); ``sync --audit`` discovers and copies
    them (the signature verifies at the mirror), fetching upstream only what is new; the next audit fetches
    nothing and writes no status. A row with referrers off is audited without a referrer request; a referrer the
    target refuses (HTTP 405) is recorded and not fetched again by the next audit."""
    import boto3

    table, run = cli_on_a_table(monkeypatch, ecr, tmp_path)

    def status(row_id: str) -> dict:
        return next(r for r in json.loads(run("status", "--json")) if r["id"] == row_id)

    def attempts() -> dict[str, str]:
        """Every tag status's ``last_attempt`` (moved by every status write; pass records left out)."""
        items = boto3.resource("dynamodb").Table(f"{table}-state").scan()["Items"]
        return {f"{i['pk']} {i['sk']}": str(i.get("last_attempt")) for i in items if i["pk"] != PASS_PK}

    up = proxy_factory(registry, referrers=True)
    index = two_platforms(25)
    amd = index.image_for("linux/amd64")
    im.push_index(up, REPO, index, "v1")
    run("table", "create")
    run("add", "app", "--source", f"{up.host}/{REPO}", "--tag", "v1", "--target-repository", "mirror/app")
    run("add", "bare", "--source", f"{up.host}/{REPO}", "--tag", "v1", "--target-repository", "mirror/bare",
        "--no-referrers")
    first = {r["id"]: r for r in json.loads(run("sync", "--json"))}
    assert first["app"]["action"] == "copied" and first["app"]["referrers"]["copied"] == 0

    # signed, with an SBOM on the amd64 child, after the image reached the mirror
    key = CosignKey.generate()
    signature = sign(up, REPO, index.digest, key, mode="referrer")
    sbom = build_sbom(amd, seed=3)
    push_referrer(up, REPO, sbom)

    up.reset()
    plain = {r["id"]: r for r in json.loads(run("sync", "--json"))}
    assert [plain[i]["state"] for i in ("app", "bare")] == ["in_sync", "in_sync"]
    assert plain["app"]["referrers"] is None
    assert up.requests == [("HEAD", f"/v2/{REPO}/manifests/v1")] * 2  # 0 extra upstream requests
    with pytest.raises(VerificationError):
        verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)

    up.reset()
    audited = {r["id"]: r for r in json.loads(run("sync", "--audit", "--json", "--id", "app"))}
    assert audited["app"]["state"] == "in_sync" and audited["app"]["referrers"]["copied"] == 2
    assert verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)
    assert referrer_digests(ecr, "mirror/app", amd.digest, auth=ecr.auth) == [sbom.digest]
    assert sorted(t for t in content_gets(up) if "/manifests/" in t) == sorted(
        f"/v2/{REPO}/manifests/{d}" for d in (signature.digest, sbom.digest))  # only what is new
    audit_cost = {m: sum(1 for m_, _ in up.requests if m_ == m) for m in ("HEAD", "GET")}
    print(f"\naudit that found a signature and an SBOM: {audit_cost} upstream ({up.requests})")
    recorded = status("app")
    assert (recorded["referrers_copied"], recorded["referrers_error"]) == (2, None)

    # the next audit: nothing new upstream, nothing fetched; the status records "present" once, then is not written
    up.reset()
    again = json.loads(run("sync", "--audit", "--json", "--id", "app"))[0]
    assert again["referrers"]["copied"] == 0 and again["referrers"]["present"] == 2 and content_gets(up) == []
    # HEAD of the tag; the tag list (once for the row); the referrers API for the index, each child and the SBOM
    # (referrers of referrers: a signature is not asked about)
    assert sorted(up.requests) == sorted([
        ("HEAD", f"/v2/{REPO}/manifests/v1"), ("GET", f"/v2/{REPO}/tags/list?n=1000"),
        *[("GET", f"/v2/{REPO}/referrers/{d}")
          for d in (index.digest, *(c.digest for c in index.children), sbom.digest)],
    ])
    assert status("app")["referrers_present"] == 2
    before = attempts()
    assert any(k.endswith("tag#v1") for k in before)
    run("sync", "--audit", "--id", "app")
    assert attempts() == before

    # the row with referrers off: the audit asks upstream one HEAD, and the mirror stays unsigned
    up.reset()
    run("sync", "--audit", "--id", "bare")
    assert up.requests == [("HEAD", f"/v2/{REPO}/manifests/v1")]
    with pytest.raises(VerificationError):
        verify(ecr, "mirror/bare", index.digest, key, auth=ecr.auth)

    # a referrer the target refuses with 405 (and does not store): recorded, and not fetched again
    provenance = build_in_toto(index, seed=4)
    push_referrer(up, REPO, provenance)
    ecr.add_fault("PUT", f"/manifests/{provenance.digest}", "status", status=405, times=None)
    run("sync", "--audit", "--id", "app")
    assert status("app")["referrers_refused"] == provenance.digest
    up.reset()
    refused = json.loads(run("sync", "--audit", "--json", "--id", "app"))[0]
    assert refused["state"] == "in_sync" and refused["referrers"]["refused"] == [provenance.digest]
    assert up.count("GET", provenance.digest) == 0


def test_worker_audit_pass_brings_a_signature_added_after_the_image_was_mirrored(
        monkeypatch, ecr, registry_factory, proxy_factory):
    """The service: the schedule's audit pass (every ``ECR_MIRROR_AUDIT_INTERVAL_SECONDS``) brings a signature
    added upstream since the image was mirrored; the passes between audits ask one HEAD per tag."""
    from ecr_mirror.handlers import _common
    from tests.integration.test_service import Service

    upstream = registry_factory()
    svc = Service(monkeypatch, ecr, upstream, proxy_factory(upstream))
    try:
        index = two_platforms(26)
        im.push_index(upstream, REPO, index, "v1")
        svc.add("app", "--source", svc.source(REPO), "--tag", "v1", "--target-repository", "mirror/app")
        svc.run_schedule()  # the first pass audits (no audit on record) and copies the image
        assert svc.drain() == {"batchItemFailures": []}
        key = CosignKey.generate()
        sign(upstream, REPO, index.digest, key)
        svc.proxy.reset()
        svc.run_schedule()  # not an audit: the interval has not passed
        assert svc.drain() == {"batchItemFailures": []}
        assert svc.proxy.requests == [("HEAD", f"/v2/{REPO}/manifests/v1")]
        with pytest.raises(VerificationError):
            verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)
        monkeypatch.setenv("ECR_MIRROR_AUDIT_INTERVAL_SECONDS", "0")
        _common.reset()
        svc.run_schedule()
        assert svc.drain() == {"batchItemFailures": []}
        assert verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)
        record = svc.state("app", "v1")
        assert (record["state"], record["referrers_copied"]) == ("in_sync", 1)
    finally:
        _common.reset()


def test_sync_audit_of_an_assemble_row_brings_a_signature_added_to_one_of_its_images(
        ecr, registry, monkeypatch, tmp_path):
    """An assemble row's images come from several sources: the audit asks each for the referrers of its image
    (the children the status records), so a signature added to one of them after the assembly arrives."""
    _, run = cli_on_a_table(monkeypatch, ecr, tmp_path)
    amd, arm = im.build_image("linux/amd64", seed=27), im.build_image("linux/arm64/v8", seed=27)
    im.push_image(registry, REPO, amd, "1.0-amd64")
    im.push_image(registry, REPO, arm, "1.0-arm64")
    run("table", "create")
    run("add", "joined", "--assemble", f"{registry.host}/{REPO}:1.0-amd64", "--assemble",
        f"{registry.host}/{REPO}:1.0-arm64", "--tag", "1.0", "--target-repository", "mirror/joined")
    (first,) = json.loads(run("sync", "--json"))
    assert first["state"] == "in_sync" and first["referrers"]["copied"] == 0
    key = CosignKey.generate()
    sign(registry, REPO, arm.digest, key)
    (audited,) = json.loads(run("sync", "--audit", "--json"))
    assert audited["state"] == "in_sync" and audited["referrers"]["copied"] == 1, audited
    assert verify(ecr, "mirror/joined", arm.digest, key, auth=ecr.auth)
