"""The pure rules of referrers (ecr_mirror.referrers): tag names, the tag schema merge, which digests are subjects."""

from __future__ import annotations

import json

import pytest

from ecr_mirror.errors import ManifestError
from ecr_mirror.manifest import (
    ANNOTATION_SOURCE_DIGEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
    sha256_digest,
)
from ecr_mirror.referrers import (
    COPIED,
    NOT_APPLICABLE,
    PRESENT,
    VIA_API,
    ReferrerOutcome,
    ReferrersReport,
    cosign_tags,
    digest_tags,
    is_signature,
    merge_tag_index,
    merged_from,
    plan_subjects,
    referrer_descriptor,
    referrers_index,
    summary_of,
    tag_schema_tag,
)

HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"


def entry(n: int, artifact_type: str = "application/spdx+json") -> dict:
    return {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"%d" % n), "size": n + 100,
            "artifactType": artifact_type}


def index_of(*entries: dict, compact: bool = False) -> object:
    """An index as another tool writes it (here: indented, so its bytes differ from ours)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}
    raw = json.dumps(doc, separators=(",", ":")) if compact else json.dumps(doc, indent=2)
    return parse_manifest(raw.encode(), OCI_INDEX)


def digests(manifest) -> list[str]:
    return [e["digest"] for e in manifest.data["manifests"]]


def test_tag_names_follow_the_tag_schema_and_cosign():
    """distribution-spec "Referrers Tag Schema": ``<alg>-<ref>``; cosign ``remote.SignatureTag`` and friends."""
    assert tag_schema_tag(DIGEST) == f"sha256-{HEX}"
    assert cosign_tags(DIGEST) == [f"sha256-{HEX}.sig", f"sha256-{HEX}.att", f"sha256-{HEX}.sbom"]
    assert tag_schema_tag("sha512:" + "c" * 128) == "sha512-" + "c" * 64  # <ref> cut to 64 characters
    with pytest.raises(ManifestError, match="not a digest"):
        tag_schema_tag("latest")


def test_digest_tags_groups_a_tag_list_by_subject():
    other = "cd" * 32
    tags = ["v1", f"sha256-{HEX}.sbom", f"sha256-{HEX}", "latest", f"sha256-{other}.sig", f"sha256-{HEX}.sig",
            f"sha256-{HEX}.sig.bak", f"sha256-{HEX[:10]}", f"sha256-{HEX}.att"]
    assert digest_tags(tags) == {
        DIGEST: [f"sha256-{HEX}", f"sha256-{HEX}.sig", f"sha256-{HEX}.att", f"sha256-{HEX}.sbom"],
        f"sha256:{other}": [f"sha256-{other}.sig"],
    }


def test_referrer_descriptor_as_the_referrers_api_lists_it():
    """distribution-spec "Listing Referrers": artifactType, else the config media type; the manifest's annotations."""
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
                "layers": [], "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    raw = json.dumps(artifact).encode()
    m = parse_manifest(raw, OCI_MANIFEST)
    assert referrer_descriptor(m) == {"mediaType": OCI_MANIFEST, "digest": sha256_digest(raw), "size": len(raw),
                                      "artifactType": "application/spdx+json",
                                      "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    cosign_sig = {**artifact, "config": {**artifact["config"], "mediaType": "application/vnd.oci.image.config.v1+json"}}
    del cosign_sig["artifactType"], cosign_sig["annotations"]
    m = parse_manifest(json.dumps(cosign_sig).encode(), OCI_MANIFEST)
    assert referrer_descriptor(m)["artifactType"] == "application/vnd.oci.image.config.v1+json"
    assert "annotations" not in referrer_descriptor(m)


def test_merge_keeps_the_upstream_bytes_when_nothing_else_is_listed():
    """ecr-facts.md 8: copy another tool's fallback index byte for byte, never rebuild it."""
    upstream = index_of(entry(1), entry(2))
    assert merge_tag_index(None, upstream) is upstream
    older = index_of(entry(1))  # the destination has an older subset: upstream's bytes replace it
    assert merge_tag_index(older, upstream) is upstream
    assert merge_tag_index(upstream, upstream) is None  # already there: nothing to write
    assert merged_from(upstream, upstream.digest) and not merged_from(older, upstream.digest)


def test_merge_never_drops_an_entry_and_records_the_upstream_digest():
    mirror_only = entry(9, "application/vnd.example.local")
    existing = index_of(entry(1), mirror_only)
    upstream = index_of(entry(1), entry(2))
    merged = merge_tag_index(existing, upstream)
    assert digests(merged) == [entry(1)["digest"], mirror_only["digest"], entry(2)["digest"]]
    assert merged.data["manifests"][1] == mirror_only  # kept exactly
    assert merged.data["annotations"] == {ANNOTATION_SOURCE_DIGEST: upstream.digest}
    assert merged_from(merged, upstream.digest)  # a later copy needs not fetch upstream's index again
    assert merge_tag_index(merged, upstream) is None  # idempotent
    # upstream dropped an entry: the destination keeps it
    shrunk = index_of(entry(2))
    again = merge_tag_index(merged, shrunk)
    assert digests(again) == digests(merged) and again.data["annotations"][ANNOTATION_SOURCE_DIGEST] == shrunk.digest


def test_merge_adds_referrers_found_through_an_api():
    """A source with the referrers API, a destination without: the descriptors are added to its tag index."""
    existing = index_of(entry(1))
    merged = merge_tag_index(existing, None, [entry(1), entry(3)])
    assert digests(merged) == [entry(1)["digest"], entry(3)["digest"]]
    assert "annotations" not in merged.data
    assert merge_tag_index(merged, None, [entry(3)]) is None
    assert merge_tag_index(None, None, []) is None  # never an empty index
    assert digests(merge_tag_index(None, None, [entry(4)])) == [entry(4)["digest"]]


def test_merge_adds_a_pushed_referrer_once_and_leaves_a_tag_that_is_no_oci_index_alone():
    """A manifest with a subject PUT without OCI-Subject (distribution-spec "Pushing Manifests with Subject"):
    its descriptor is added (artifactType from the config when it has none), never twice; a tag holding
    something other than an OCI index is reported, not replaced."""
    config = {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": sha256_digest(b"c"), "size": 1}
    helm = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
                                      "subject": {"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 9}}).encode())
    first = merge_tag_index(None, None, [referrer_descriptor(helm)])
    assert first.media_type == OCI_INDEX and digests(first) == [helm.digest]
    assert first.data["manifests"][0]["artifactType"] == "application/vnd.cncf.helm.config.v1+json"
    assert merge_tag_index(first, None, [referrer_descriptor(helm)]) is None  # no duplicates
    with pytest.raises(ManifestError, match="not an OCI image index"):
        merge_tag_index(helm, None, [entry(1)])


def test_referrers_index_is_deterministic_compact_oci_index():
    a = referrers_index([entry(1)])
    assert a.raw == referrers_index([entry(1)]).raw and a.media_type == OCI_INDEX
    assert b"\n" not in a.raw and a.children[0].digest == entry(1)["digest"]


def descriptor(digest: str, *, attestation: bool = False) -> Descriptor:
    raw = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 10,
           "platform": {"os": "linux", "architecture": "amd64"}}
    if attestation:
        raw["annotations"] = {"vnd.docker.reference.type": "attestation-manifest",
                              "vnd.docker.reference.digest": digest}
        raw["platform"] = {"os": "unknown", "architecture": "unknown"}
    return Descriptor.from_json(raw, where="test")


def test_plan_subjects_identical_copy_covers_the_index_and_its_images():
    amd, arm, att = sha256_digest(b"amd"), sha256_digest(b"arm"), sha256_digest(b"att")
    plan = plan_subjects(DIGEST, DIGEST, [descriptor(amd), descriptor(arm), descriptor(att, attestation=True)])
    assert plan.subjects == (DIGEST, amd, arm) and plan.not_applicable == {}
    assert plan_subjects(DIGEST, DIGEST).subjects == (DIGEST,)  # a single manifest
    assert plan_subjects(DIGEST, DIGEST, [amd, att]).subjects == (DIGEST, amd, att)  # digests from a status record


def test_plan_subjects_rewritten_index_upstream_referrers_do_not_apply():
    arm, written = sha256_digest(b"arm"), sha256_digest(b"subset")
    plan = plan_subjects(DIGEST, written, [descriptor(arm)])
    assert plan.subjects == (arm,)
    (why,) = plan.not_applicable.values()
    assert list(plan.not_applicable) == [DIGEST] and "rewritten index" in why and written in why


def test_report_counts_and_summary():
    report = ReferrersReport()
    report.add(ReferrerOutcome(DIGEST, VIA_API, COPIED, "sha256:1"))
    report.add(ReferrerOutcome(DIGEST, VIA_API, PRESENT, "sha256:2"))
    report.add(ReferrerOutcome(DIGEST, VIA_API, NOT_APPLICABLE, "sha256:3", reason="the index was rewritten"))
    report.add(ReferrerOutcome(DIGEST, VIA_API, NOT_APPLICABLE, "sha256:4", reason="the index was rewritten"))
    assert (report.copied, report.present, report.not_applicable) == (1, 1, 2)
    assert report.summary() == "1 referrer copied, 1 present, 2 not applicable (the index was rewritten)"
    assert report.as_dict()["reasons"] == ["the index was rewritten"] and len(report.as_dict()["items"]) == 4
    assert summary_of(report.counts()) == report.summary()
    assert summary_of({"copied": 0, "present": 2}) == "0 referrers copied, 2 present"


def test_signatures_are_recognised_by_artifact_type():
    sig = Descriptor.from_json({**entry(1, "application/vnd.dev.cosign.artifact.sig.v1+json")}, where="t")
    notation = Descriptor.from_json({**entry(2, "application/vnd.cncf.notary.signature")}, where="t")
    sbom = Descriptor.from_json(entry(3), where="t")
    assert is_signature(sig) and is_signature(notation) and not is_signature(sbom)
