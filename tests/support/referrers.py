"""OCI 1.1 artifacts and referrers for tests: artifact manifests with ``artifactType`` and ``subject``, the
referrers tag schema fallback, and referrer discovery as a client does it.

    sbom = build_sbom(index)                              # an SPDX SBOM whose subject is the index
    push_referrer(registry, "team/app", sbom)             # by digest; distribution 2.8 sends no OCI-Subject,
                                                          # so the sha256-<hex> tag index is updated too
    assert [d["digest"] for d in list_referrers(registry, "team/app", index.digest)] == [sbom.digest]

Distribution 2.8 stores manifests with ``subject`` but has no referrers API (``/v2/<name>/referrers/<digest>``
answers 404) and never sends ``OCI-Subject``. For an upstream that has the API, push through
:class:`tests.support.ecr.ReferrersProxy` (``proxy_factory(registry, referrers=True)``): it answers the
endpoint from what was pushed through it and sends ``OCI-Subject``, so :func:`push_referrer` writes no
tag schema index there.

Sources: image-spec v1.1 ``manifest.md`` (``artifactType``, ``subject``, the empty descriptor) and
``descriptor.md``; distribution-spec v1.1 ``spec.md`` ("Listing Referrers", "Referrers Tag Schema",
"Pushing Manifests with Subject").
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .images import (
    _CREATED,
    IN_TOTO,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    RegistryError,
    _base,
    _check,
    _ClientScope,
    get_manifest,
    push_blob,
    sha256_digest,
)

__all__ = [
    "EMPTY_DESCRIPTOR",
    "OCI_EMPTY",
    "SPDX_JSON",
    "Artifact",
    "ReferrerPush",
    "build_artifact",
    "build_in_toto",
    "build_sbom",
    "list_referrers",
    "push_referrer",
    "referrer_descriptor",
    "referrers_index",
    "referrers_tag",
    "subject_descriptor",
    "update_referrers_tag",
]

OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
#: image-spec manifest.md "Guidance for an Empty Descriptor" (with the optional embedded ``data``)
EMPTY_DESCRIPTOR = {
    "mediaType": OCI_EMPTY,
    "digest": sha256_digest(EMPTY_JSON),
    "size": len(EMPTY_JSON),
    "data": base64.b64encode(EMPTY_JSON).decode(),
}
SPDX_JSON = "application/spdx+json"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
#: distribution-spec: the referrers tag schema is ``<alg>-<ref>``, ``<ref>`` at most 64 characters
_TAG_REF_LIMIT = 64
_DIGEST = re.compile(r"^(?P<alg>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)$")


def _compact(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it (what oras, cosign and regclient push)."""
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class Artifact(Image):
    """An OCI 1.1 artifact manifest (an :class:`Image` whose descriptor carries ``artifactType``).

    ``annotations`` are the manifest's annotations (the referrers API lists them); ``subject`` is the
    subject descriptor, or None.
    """

    artifact_type: str = ""
    subject: dict[str, Any] | None = None

    def descriptor(self) -> dict[str, Any]:
        desc = super().descriptor()
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        return desc


def subject_descriptor(node: Image | Index | Mapping[str, Any]) -> dict[str, Any]:
    """The ``subject`` descriptor (mediaType, digest, size) of an image, index, artifact or descriptor."""
    if isinstance(node, Mapping):
        return {"mediaType": node["mediaType"], "digest": node["digest"], "size": node["size"]}
    return {"mediaType": node.media_type, "digest": node.digest, "size": node.size}


def build_artifact(
    artifact_type: str,
    payload: bytes,
    *,
    subject: Image | Index | Mapping[str, Any] | None = None,
    layer_media_type: str | None = None,
    layer_annotations: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Artifact:
    """An OCI image manifest used as an artifact (image-spec v1.1 manifest.md, "Guidelines for Artifact Usage").

    ``artifactType`` set, the empty descriptor as config, one layer holding ``payload`` (media type
    ``layer_media_type``, default ``artifact_type``), ``subject`` (an image, index, artifact or descriptor)
    if given, and manifest ``annotations``. Compact JSON, field order as oras writes it.
    """
    layer: dict[str, Any] = {
        "mediaType": layer_media_type or artifact_type,
        "digest": sha256_digest(payload),
        "size": len(payload),
    }
    if layer_annotations:
        layer["annotations"] = dict(layer_annotations)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": dict(EMPTY_DESCRIPTOR),
        "layers": [layer],
    }
    subject_desc = subject_descriptor(subject) if subject is not None else None
    if subject_desc is not None:
        manifest["subject"] = subject_desc
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = _compact(manifest)
    return Artifact(
        manifest=manifest_bytes,
        media_type=OCI_MANIFEST,
        digest=sha256_digest(manifest_bytes),
        config={},
        config_bytes=EMPTY_JSON,
        config_digest=EMPTY_DESCRIPTOR["digest"],
        layers=(),
        blobs={EMPTY_DESCRIPTOR["digest"]: EMPTY_JSON, layer["digest"]: payload},
        annotations=dict(annotations) if annotations else None,
        artifact_type=artifact_type,
        subject=subject_desc,
    )


def build_sbom(
    subject: Image | Index | Mapping[str, Any] | None, *, name: str = "ecr-mirror-test", seed: int = 0
) -> Artifact:
    """An SPDX 2.3 JSON SBOM (artifactType ``application/spdx+json``) attached to ``subject``."""
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{seed}",
        "documentNamespace": f"https://example.invalid/spdx/{name}/{seed}",
        "creationInfo": {"created": _CREATED, "creators": ["Tool: ecr-mirror-tests"]},
        "packages": [
            {
                "name": f"package-{seed}",
                "SPDXID": "SPDXRef-Package-0",
                "versionInfo": f"1.0.{seed}",
                "downloadLocation": "NOASSERTION",
            }
        ],
    }
    return build_artifact(
        SPDX_JSON,
        json.dumps(document, indent=1).encode(),
        subject=subject,
        annotations={"org.opencontainers.image.created": _CREATED},
    )


def build_in_toto(
    subject: Image | Index | Mapping[str, Any],
    *,
    predicate_type: str = SLSA_PROVENANCE_V1,
    predicate: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Artifact:
    """An in-toto v1 statement about ``subject`` as a referrer (artifactType ``application/vnd.in-toto+json``).

    The layer carries the ``in-toto.io/predicate-type`` annotation, as BuildKit and oras-attached
    attestations do.
    """
    desc = subject_descriptor(subject)
    statement = {
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": f"ecr-mirror-test-{seed}", "digest": {"sha256": desc["digest"].split(":", 1)[1]}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate)
        if predicate is not None
        else {"buildDefinition": {"buildType": "https://example.invalid/ecr-mirror-tests", "externalParameters": {}}},
    }
    return build_artifact(
        IN_TOTO,
        _compact(statement),
        subject=desc,
        layer_annotations={"in-toto.io/predicate-type": predicate_type},
        annotations={"org.opencontainers.image.created": _CREATED},
    )


# ---------------------------------------------------------------------- descriptors and the tag schema


def referrers_tag(digest: str) -> str:
    """The referrers tag schema tag of a subject digest: ``sha256:<hex>`` -> ``sha256-<hex>``
    (distribution-spec "Referrers Tag Schema": ``<alg>-<ref>``, ``<ref>`` cut to 64 characters)."""
    match = _DIGEST.match(digest)
    if match is None:
        raise ValueError(f"not a digest: {digest!r}")
    return f"{match.group('alg')}-{match.group('hex')[:_TAG_REF_LIMIT]}"


def referrer_descriptor(manifest: bytes, media_type: str | None = None) -> dict[str, Any]:
    """The descriptor a referrers list holds for ``manifest`` (distribution-spec "Listing Referrers").

    ``artifactType`` is the manifest's, else (image manifests) its config media type, else absent
    (indexes); ``annotations`` are the manifest's. ``media_type`` defaults to the manifest's own.
    """
    doc = json.loads(manifest)
    desc: dict[str, Any] = {
        "mediaType": media_type or doc.get("mediaType") or OCI_MANIFEST,
        "digest": sha256_digest(manifest),
        "size": len(manifest),
    }
    artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    if artifact_type:
        desc["artifactType"] = artifact_type
    if doc.get("annotations"):
        desc["annotations"] = dict(doc["annotations"])
    return desc


def referrers_index(descriptors: Iterable[Mapping[str, Any]]) -> bytes:
    """An OCI image index listing ``descriptors``: the body of a referrers answer or tag schema index."""
    return _compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [dict(d) for d in descriptors]})


def update_referrers_tag(
    registry: object,
    repo: str,
    subject_digest: str,
    descriptor: Mapping[str, Any],
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> bytes:
    """Add ``descriptor`` to the referrers tag schema index of ``subject_digest`` and push it.

    As distribution-spec "Pushing Manifests with Subject" tells a client to when the registry has no
    referrers API: pull the ``sha256-<hex>`` tag (an empty index if there is none), add the descriptor
    unless an entry has its digest, push the index under the tag. Entries already there are kept.
    Returns the index bytes now under the tag.
    """
    tag = referrers_tag(subject_digest)
    with _ClientScope(client, auth) as http:
        try:
            body, _, _ = get_manifest(registry, repo, tag, client=http)
            entries = list(json.loads(body).get("manifests") or [])
        except RegistryError as exc:
            if exc.status != 404:
                raise
            entries = []
        if any(entry.get("digest") == descriptor["digest"] for entry in entries):
            return body
        entries.append(dict(descriptor))
        index = referrers_index(entries)
        url = f"{_base(registry)}/v2/{repo}/manifests/{tag}"
        _check(http.put(url, content=index, headers={"Content-Type": OCI_INDEX}), f"PUT referrers tag {tag}", 201)
    return index


@dataclass(frozen=True)
class ReferrerPush:
    digest: str
    oci_subject: str | None  # the OCI-Subject header of the PUT answer (the registry indexed the subject)
    tag_index: bytes | None  # the referrers tag schema index pushed, if one was


def push_referrer(
    registry: object,
    repo: str,
    artifact: Image,
    auth: httpx.Auth | None = None,
    *,
    tag_schema: bool | None = None,
    client: httpx.Client | None = None,
) -> ReferrerPush:
    """Push a manifest that has a ``subject`` (its blobs, then the manifest by digest), as a client does.

    ``tag_schema=None`` (default) follows distribution-spec: when the PUT answer has no ``OCI-Subject``
    header, also update the ``sha256-<hex>`` tag schema index of the subject. ``True`` always updates
    it, ``False`` never (to build an upstream that has the referrer but no index).
    """
    subject = json.loads(artifact.manifest).get("subject")
    if subject is None:
        raise ValueError(f"manifest {artifact.digest} has no subject")
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        sizes = artifact.blob_sizes
        for digest in artifact.blob_digests:
            push_blob(base, repo, digest, artifact.blobs[digest], sizes[digest], client=http)
        url = f"{base}/v2/{repo}/manifests/{artifact.digest}"
        response = _check(
            http.put(url, content=artifact.manifest, headers={"Content-Type": artifact.media_type}),
            f"PUT referrer {artifact.digest}",
            201,
        )
        oci_subject = response.headers.get("OCI-Subject")
        index = None
        if tag_schema or (tag_schema is None and oci_subject is None):
            descriptor = referrer_descriptor(artifact.manifest, artifact.media_type)
            index = update_referrers_tag(base, repo, subject["digest"], descriptor, client=http)
    return ReferrerPush(artifact.digest, oci_subject, index)


def list_referrers(
    registry: object,
    repo: str,
    digest: str,
    artifact_type: str | None = None,
    auth: httpx.Auth | None = None,
    *,
    tag_schema: bool = True,
    client: httpx.Client | None = None,
) -> list[dict[str, Any]]:
    """The referrers of ``digest``, as a distribution-spec 1.1 client finds them.

    The referrers API, following ``Link`` pages; if it answers 404 (the registry has no such API), the
    ``sha256-<hex>`` tag schema index (when ``tag_schema``; none there: no referrers). ``artifact_type``
    is filtered here when the registry did not (no ``OCI-Filters-Applied``).
    """
    base = _base(registry)
    found: list[dict[str, Any]] = []
    filtered = True
    with _ClientScope(client, auth) as http:
        url: httpx.URL | None = httpx.URL(f"{base}/v2/{repo}/referrers/{digest}")
        if artifact_type:
            url = url.copy_add_param("artifactType", artifact_type)
        while url is not None:
            response = http.get(url, headers={"Accept": OCI_INDEX})
            if response.status_code == 404 and url.path.endswith(digest) and not found:
                if not tag_schema:
                    return []
                found, filtered = _tag_schema_entries(http, base, repo, digest), False
                break
            _check(response, f"GET referrers of {digest}", 200)
            found.extend(response.json().get("manifests") or [])
            filtered = filtered and "artifactType" in response.headers.get("OCI-Filters-Applied", "")
            link = response.links.get("next", {}).get("url")
            url = response.url.join(link) if link else None
    if artifact_type and not filtered:
        found = [d for d in found if d.get("artifactType") == artifact_type]
    return found


def _tag_schema_entries(http: httpx.Client, base: str, repo: str, digest: str) -> list[dict[str, Any]]:
    try:
        body, _, _ = get_manifest(base, repo, referrers_tag(digest), client=http)
    except RegistryError as exc:
        if exc.status == 404:
            return []
        raise
    return list(json.loads(body).get("manifests") or [])
