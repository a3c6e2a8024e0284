"""tests/support/referrers.py: OCI 1.1 artifacts, the referrers tag schema, and the referrers API front,
against real distribution 2.8 registries."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support.cosign import COSIGN_SIG_ARTIFACT_TYPE, CosignKey, sign, verify
from tests.support.images import (
    IN_TOTO,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    build_index,
    get_blob,
    get_manifest,
    list_tags,
    push_index,
    push_manifest,
)
from tests.support.proxy import Reply
from tests.support.referrers import (
    EMPTY_DESCRIPTOR,
    SPDX_JSON,
    build_artifact,
    build_in_toto,
    build_sbom,
    list_referrers,
    push_referrer,
    referrer_descriptor,
    referrers_index,
    referrers_tag,
    update_referrers_tag,
)

REPO = "team/app"


@pytest.fixture
def pushed_index(registry):
    index = build_index([build_image("linux/amd64", seed=41), build_image("linux/arm64/v8", seed=41)])
    push_index(registry, REPO, index, tag="v1")
    return index


def test_artifact_manifests_carry_artifact_type_subject_and_the_empty_config(pushed_index):
    index = pushed_index
    sbom = build_sbom(index)
    manifest = json.loads(sbom.manifest)
    assert list(manifest) == [
        "schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations"
    ]
    assert manifest["artifactType"] == SPDX_JSON == "application/spdx+json"
    assert manifest["config"] == EMPTY_DESCRIPTOR == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    }
    assert manifest["subject"] == {"mediaType": OCI_INDEX, "digest": index.digest, "size": index.size}
    assert json.loads(sbom.blobs[manifest["layers"][0]["digest"]])["spdxVersion"] == "SPDX-2.3"
    assert sbom.descriptor()["artifactType"] == SPDX_JSON

    child = index.images[0]
    provenance = build_in_toto(child)
    layer = provenance.json["layers"][0]
    assert provenance.artifact_type == IN_TOTO and layer["mediaType"] == IN_TOTO
    assert layer["annotations"] == {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}
    statement = json.loads(provenance.blobs[layer["digest"]])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"] == {"sha256": child.digest.split(":")[1]}
    assert provenance.subject["digest"] == child.digest
    assert build_sbom(index).digest == sbom.digest  # deterministic


def test_referrer_descriptor_and_tag_rules():
    image = build_image(seed=42)
    assert referrers_tag(image.digest) == "sha256-" + image.digest.split(":")[1]
    with pytest.raises(ValueError):
        referrers_tag("latest")
    # an image manifest without artifactType: the config media type stands in
    assert referrer_descriptor(image.manifest)["artifactType"] == "application/vnd.oci.image.config.v1+json"
    # an index without artifactType: none; annotations are copied
    index = build_index([image], annotations={"org.example": "x"})
    desc = referrer_descriptor(index.manifest)
    assert "artifactType" not in desc and desc["annotations"] == {"org.example": "x"}
    assert desc == {"mediaType": OCI_INDEX, "digest": index.digest, "size": index.size,
                    "annotations": {"org.example": "x"}}
    body = json.loads(referrers_index([desc]))
    assert body == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}


def test_plain_distribution_gets_the_tag_schema_index(registry, pushed_index):
    index = pushed_index
    assert httpx.get(f"{registry.url}/v2/{REPO}/referrers/{index.digest}").status_code == 404  # no API in 2.8
    sbom = build_sbom(index)
    result = push_referrer(registry, REPO, sbom)
    assert result.oci_subject is None and result.tag_index is not None
    assert get_manifest(registry, REPO, sbom.digest)[0] == sbom.manifest  # stored byte for byte
    tag = referrers_tag(index.digest)
    assert tag in list_tags(registry, REPO)
    body, content_type, _ = get_manifest(registry, REPO, tag)
    assert content_type == OCI_INDEX and body == result.tag_index
    assert json.loads(body)["manifests"] == [
        {"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": sbom.size, "artifactType": SPDX_JSON,
         "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    ]
    assert [d["digest"] for d in list_referrers(registry, REPO, index.digest)] == [sbom.digest]
    assert list_referrers(registry, REPO, index.digest, artifact_type=IN_TOTO) == []
    assert list_referrers(registry, REPO, index.digest, tag_schema=False) == []
    # tag_schema=False: the referrer is stored but listed nowhere (an upstream without an index)
    child_sbom = build_sbom(index.images[1], seed=1)
    assert push_referrer(registry, REPO, child_sbom, tag_schema=False).tag_index is None
    assert list_referrers(registry, REPO, index.images[1].digest) == []


def test_tag_schema_index_merges_and_never_drops_an_entry(registry, pushed_index):
    index = pushed_index
    # another tool wrote an index first (cosign before PR #5098 wrote entries without annotations);
    # distribution 2.8 checks that an index's entries exist, so the entry is a stored referrer
    other = build_artifact("application/vnd.example.other", b"other", subject=index)
    push_referrer(registry, REPO, other, tag_schema=False)
    foreign_entry = {"mediaType": OCI_MANIFEST, "digest": other.digest, "size": other.size}
    push_manifest(registry, REPO, referrers_tag(index.digest), referrers_index([foreign_entry]), OCI_INDEX)
    sbom, provenance = build_sbom(index), build_in_toto(index)
    push_referrer(registry, REPO, sbom)
    push_referrer(registry, REPO, provenance)
    push_referrer(registry, REPO, sbom)  # again: no duplicate
    entries = json.loads(get_manifest(registry, REPO, referrers_tag(index.digest))[0])["manifests"]
    assert [e["digest"] for e in entries] == [foreign_entry["digest"], sbom.digest, provenance.digest]
    unchanged = update_referrers_tag(registry, REPO, index.digest, referrer_descriptor(sbom.manifest))
    assert json.loads(unchanged)["manifests"] == entries


def test_push_and_list_behind_a_registry_with_the_referrers_api(registry, proxy_factory, pushed_index):
    index = pushed_index
    amd64 = index.images[0]
    front = proxy_factory(registry, referrers=True)
    sbom_index, sbom_child, provenance = build_sbom(index), build_sbom(amd64, seed=2), build_in_toto(amd64)
    for artifact in (sbom_index, sbom_child, provenance):
        result = push_referrer(front, REPO, artifact)
        assert result.oci_subject == artifact.subject["digest"] and result.tag_index is None
    assert not [t for t in list_tags(registry, REPO) if t.startswith("sha256-")]  # no fallback written
    assert [d["digest"] for d in list_referrers(front, REPO, amd64.digest)] == [sbom_child.digest, provenance.digest]
    assert [d["digest"] for d in list_referrers(front, REPO, amd64.digest, IN_TOTO)] == [provenance.digest]
    assert [d["digest"] for d in list_referrers(front, REPO, index.digest)] == [sbom_index.digest]
    assert front.count("GET", "/referrers/") == 3 and front.count("GET", "/manifests/sha256-") == 0

    # a signature on the SBOM: a referrer of a referrer
    key = CosignKey.generate()
    signature = sign(front, REPO, sbom_index.digest, key, mode="referrer")
    (listed,) = list_referrers(front, REPO, sbom_index.digest)
    assert listed["digest"] == signature.digest and listed["artifactType"] == COSIGN_SIG_ARTIFACT_TYPE
    assert verify(front, REPO, sbom_index.digest, key)[0].source == "referrer"
    payload = get_blob(registry, REPO, json.loads(sbom_index.manifest)["layers"][0]["digest"])
    assert json.loads(payload)["spdxVersion"] == "SPDX-2.3"


class _PagedReferrers:
    """A proxy extension answering the referrers API in two pages joined by ``Link`` (scripted here:
    what is under test is the client helper, not a registry)."""

    def __init__(self, pages: list[list[dict]]) -> None:
        self.pages = pages

    def on_request(self, proxy, record):
        if "/referrers/" not in record.path:
            return None
        page = int(parse_qs(record.query).get("page", ["0"])[0])
        headers = [("Content-Type", OCI_INDEX)]
        if page + 1 < len(self.pages):
            headers.append(("Link", f'<{record.path}?page={page + 1}>; rel="next"'))
        return Reply(200, headers, referrers_index(self.pages[page]))


def test_list_referrers_follows_link_pages(registry, proxy_factory, pushed_index):
    index = pushed_index
    artifacts = [build_artifact(f"application/vnd.example.n{i}", b"%d" % i, subject=index) for i in range(3)]
    descriptors = [referrer_descriptor(a.manifest) for a in artifacts]
    front = proxy_factory(registry, extensions=[_PagedReferrers([descriptors[:2], descriptors[2:]])])
    assert list_referrers(front, REPO, index.digest) == descriptors
    assert [r.target for r in front.records] == [
        f"/v2/{REPO}/referrers/{index.digest}", f"/v2/{REPO}/referrers/{index.digest}?page=1"
    ]
    # not filtered by the server (no OCI-Filters-Applied): the helper filters
    assert list_referrers(front, REPO, index.digest, "application/vnd.example.n1") == [descriptors[1]]


def test_oci_subject_can_be_dropped_to_force_the_fallback(registry, proxy_factory, pushed_index):
    """A registry that indexes referrers but does not say so on the PUT: the client keeps the tag index.
    (drop_headers applies to answers the ReferrersProxy makes itself.)"""
    front = proxy_factory(registry, referrers=True)
    front.add_fault("PUT", "/manifests/", "drop_headers", drop=["OCI-Subject"], times=None)
    sbom = build_sbom(pushed_index)
    result = push_referrer(front, REPO, sbom)
    assert result.oci_subject is None and result.tag_index is not None
    assert [d["digest"] for d in list_referrers(front, REPO, pushed_index.digest)] == [sbom.digest]
