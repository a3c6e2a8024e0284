"""tests/support/referrers.py: OCI 1.1 artifacts, the referrers tag schema, and the referrers API front,
against real distribution 2.8 registries."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.cosign import COSIGN_SIG_ARTIFACT_TYPE, CosignKey, sign, verify
from tests.support.images import (
    IN_TOTO,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryError,
    build_image,
    build_index,
    get_blob,
    get_manifest,
    list_tags,
    push_index,
    push_manifest,
)
from tests.support.referrers import (
    EMPTY_DESCRIPTOR,
    SPDX_JSON,
    ReferrersAPI,
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


def test_referrers_api_front_answers_from_what_was_pushed(registry, proxy_factory, pushed_index):
    index = pushed_index
    amd64 = index.images[0]
    api = ReferrersAPI()
    front = proxy_factory(registry, extensions=[api])
    sbom_index, sbom_child, provenance = build_sbom(index), build_sbom(amd64, seed=2), build_in_toto(amd64)
    for artifact in (sbom_index, sbom_child, provenance):
        result = push_referrer(front, REPO, artifact)
        assert result.oci_subject == artifact.subject["digest"] and result.tag_index is None
    assert not [t for t in list_tags(registry, REPO) if t.startswith("sha256-")]  # no fallback written

    response = httpx.get(f"{front.url}/v2/{REPO}/referrers/{amd64.digest}")
    assert response.status_code == 200 and response.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in response.headers
    listed = response.json()
    assert listed["mediaType"] == OCI_INDEX
    assert listed["manifests"] == [
        referrer_descriptor(sbom_child.manifest), referrer_descriptor(provenance.manifest)
    ]
    filtered = httpx.get(f"{front.url}/v2/{REPO}/referrers/{amd64.digest}", params={"artifactType": IN_TOTO})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [provenance.digest]
    assert [d["digest"] for d in list_referrers(front, REPO, index.digest)] == [sbom_index.digest]

    # nothing refers to the arm64 child: an empty list, never a 404; a bad digest: 400
    empty = httpx.get(f"{front.url}/v2/{REPO}/referrers/{index.images[1].digest}")
    assert empty.status_code == 200 and empty.json()["manifests"] == []
    assert httpx.get(f"{front.url}/v2/{REPO}/referrers/latest").status_code == 400

    # deleting a referrer by digest removes it from the list
    assert httpx.delete(f"{front.url}/v2/{REPO}/manifests/{provenance.digest}").status_code == 202
    assert [d["digest"] for d in api.referrers(REPO, amd64.digest)] == [sbom_child.digest]


def test_referrers_api_pages_with_link_and_lists_referrers_of_referrers(registry, proxy_factory, pushed_index):
    index = pushed_index
    front = proxy_factory(registry, extensions=[ReferrersAPI(page_size=2)])
    artifacts = [build_artifact(f"application/vnd.example.n{i}", b"%d" % i, subject=index) for i in range(5)]
    for artifact in artifacts:
        push_referrer(front, REPO, artifact)
    first = httpx.get(f"{front.url}/v2/{REPO}/referrers/{index.digest}")
    assert len(first.json()["manifests"]) == 2 and first.links["next"]["url"].startswith(f"/v2/{REPO}/referrers/")
    front.reset()
    assert [d["digest"] for d in list_referrers(front, REPO, index.digest)] == [a.digest for a in artifacts]
    assert front.count("GET", "/referrers/") == 3

    # a signature on the SBOM: a referrer of a referrer
    sbom = build_sbom(index)
    push_referrer(front, REPO, sbom)
    key = CosignKey.generate()
    signature = sign(front, REPO, sbom.digest, key, mode="referrer")
    (listed,) = list_referrers(front, REPO, sbom.digest)
    assert listed["digest"] == signature.digest and listed["artifactType"] == COSIGN_SIG_ARTIFACT_TYPE
    assert verify(front, REPO, sbom.digest, key)[0].source == "referrer"
    payload = get_blob(registry, REPO, json.loads(sbom.manifest)["layers"][0]["digest"])
    assert json.loads(payload)["spdxVersion"] == "SPDX-2.3"


def test_oci_subject_can_be_dropped_to_force_the_fallback(registry, proxy_factory, pushed_index):
    """A registry that indexes referrers but does not say so on the PUT: the client keeps the tag index."""
    front = proxy_factory(registry, extensions=[ReferrersAPI()])
    front.add_fault("PUT", "/manifests/", "drop_headers", drop=["OCI-Subject"], times=None)
    sbom = build_sbom(pushed_index)
    result = push_referrer(front, REPO, sbom)
    assert result.oci_subject is None and result.tag_index is not None
    assert [d["digest"] for d in list_referrers(front, REPO, pushed_index.digest)] == [sbom.digest]


def test_a_referrer_stored_behind_a_failed_answer_is_still_listed(registry, proxy_factory, pushed_index):
    """forward=True faults: upstream stored the referrer though the client saw a 500; the API lists it,
    as a registry with the API would."""
    api = ReferrersAPI()
    front = proxy_factory(registry, extensions=[api])
    sbom = build_sbom(pushed_index)
    front.add_fault("PUT", f"/manifests/{sbom.digest}", "status", status=500, forward=True)
    with pytest.raises(RegistryError, match="HTTP 500"):
        push_referrer(front, REPO, sbom)
    assert [d["digest"] for d in api.referrers(REPO, pushed_index.digest)] == [sbom.digest]
