"""Referrers: the signatures, SBOMs and attestations that travel with an image. Pure: no I/O.

Three ways a registry holds what refers to a manifest (its *subject*), all read by
:mod:`ecr_mirror.referrer_copy`:

- the referrers API, ``GET /v2/<name>/referrers/<digest>``: an OCI index of descriptors of the manifests
  whose ``subject`` is ``<digest>`` (distribution-spec v1.1 ``spec.md``, "Listing Referrers");
- the referrers tag schema, for registries without that API: the tag ``<alg>-<ref>`` (``sha256-<hex>``)
  holding an OCI index of the same descriptors (``spec.md``, "Referrers Tag Schema"; a client pushing a
  manifest with ``subject`` keeps it up to date when the registry answers without ``OCI-Subject``,
  "Pushing Manifests with Subject");
- cosign's tags ``sha256-<hex>.sig``, ``.att``, ``.sbom`` (sigstore/cosign ``pkg/oci/remote/remote.go``:
  ``SignatureTag``, ``AttestationTag``, ``SBOMTag``), manifests without ``subject``.

Here: the tag names, the descriptor a referrers list holds for a manifest, merging a destination's tag
schema index without ever dropping an entry (:func:`merge_tag_index`: the one rule, used wherever ecr-mirror
writes that index), which digests of a copied image are subjects (:func:`plan_subjects`), the policy of a
copy and its report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ManifestError, TagImmutableError
from .manifest import ANNOTATION_SOURCE_DIGEST, OCI_INDEX, Descriptor, Manifest, parse_manifest

#: cosign's tag suffixes: signatures, attestations, SBOMs (sigstore/cosign ``pkg/oci/remote/remote.go``)
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
#: how far referrers of referrers are followed: 1 = the image's own referrers only; 2 = also what refers
#: to those (a signature on an SBOM)
DEFAULT_MAX_DEPTH = 2
#: artifact types of signatures: nothing is expected to refer to a signature, so its referrers are not asked for
SIGNATURE_ARTIFACT_TYPES = frozenset({
    "application/vnd.dev.cosign.artifact.sig.v1+json",  # cosign --registry-referrers-mode=oci-1-1
    "application/vnd.dev.sigstore.bundle.v0.3+json",  # cosign v3 bundles
    "application/vnd.cncf.notary.signature",  # Notation (also ECR managed signing)
})
#: distribution-spec "Referrers Tag Schema": ``<alg>-<ref>``, ``<ref>`` cut to 64 characters
_TAG_REF_LIMIT = 64
_SCHEMA_TAG = re.compile(r"^(?P<alg>[a-z0-9]+)-(?P<hex>[0-9a-f]{64})(?P<suffix>\.sig|\.att|\.sbom)?$")

# outcomes of one referrer (ReferrerOutcome.outcome)
COPIED = "copied"
PRESENT = "present"
NOT_APPLICABLE = "not_applicable"

# how a referrer was found (ReferrerOutcome.found_by)
VIA_API = "referrers API"
VIA_TAG_SCHEMA = "referrers tag schema"
VIA_COSIGN_TAG = "cosign tag"


def tag_schema_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>`` (distribution-spec "Referrers Tag Schema")."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise ManifestError(f"not a digest: {digest!r}")
    return f"{algorithm}-{encoded[:_TAG_REF_LIMIT]}"


def cosign_tags(digest: str) -> list[str]:
    """The cosign tags of ``digest``: ``sha256-<hex>.sig``, ``.att``, ``.sbom``."""
    base = tag_schema_tag(digest)
    return [base + suffix for suffix in COSIGN_SUFFIXES]


def digest_tags(tags: Iterable[str]) -> dict[str, list[str]]:
    """Subject digest -> its tag schema and cosign tags among ``tags`` (every other tag ignored).

    ``["v1", "sha256-ab….sig", "sha256-ab…"]`` -> ``{"sha256:ab…": ["sha256-ab…", "sha256-ab….sig"]}``
    (tag schema tag first, then ``.sig``, ``.att``, ``.sbom``).
    """
    out: dict[str, list[str]] = {}
    for tag in tags:
        match = _SCHEMA_TAG.match(tag)
        if match:
            out.setdefault(f"{match['alg']}:{match['hex']}", []).append(tag)
    order = {"": 0, **{s: i + 1 for i, s in enumerate(COSIGN_SUFFIXES)}}
    for found in out.values():
        found.sort(key=lambda t: order[_SCHEMA_TAG.match(t)["suffix"] or ""])  # type: ignore[index]
    return out


def artifact_type(manifest: Manifest) -> str:
    """What a referrers list says a manifest is: its ``artifactType``, else (image manifests, runnable ones
    included) its config's media type, else ``""`` (distribution-spec "Listing Referrers";
    :attr:`~ecr_mirror.manifest.Manifest.artifact_type` for everything but runnable images)."""
    if manifest.artifact_type:
        return manifest.artifact_type
    return manifest.config.media_type if manifest.is_image else ""


def referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The descriptor a referrers list (API answer or tag schema index) holds for ``manifest``:
    ``mediaType``, ``digest``, ``size``, ``artifactType`` (if any) and the manifest's ``annotations``
    (distribution-spec "Listing Referrers")."""
    desc: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)}
    kind = artifact_type(manifest)
    if kind:
        desc["artifactType"] = kind
    annotations = manifest.data.get("annotations")
    if isinstance(annotations, dict) and annotations:
        desc["annotations"] = dict(annotations)
    return desc


def is_signature(descriptor: Descriptor) -> bool:
    """Whether a referrer descriptor is a signature (nothing refers to those; see :data:`SIGNATURE_ARTIFACT_TYPES`)."""
    return descriptor.raw.get("artifactType") in SIGNATURE_ARTIFACT_TYPES


def referrers_index(entries: Sequence[Mapping[str, Any]], annotations: Mapping[str, str] | None = None) -> Manifest:
    """An OCI index listing ``entries`` (a referrers tag schema index), compact JSON in a fixed order."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [dict(e) for e in entries]}
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return parse_manifest(json.dumps(doc, separators=(",", ":")).encode(), OCI_INDEX)


def merge_tag_index(
    existing: Manifest | None, upstream: Manifest | None, add: Sequence[Mapping[str, Any]] = (),
) -> Manifest | None:
    """The tag schema index a destination should hold, or ``None`` when ``existing`` already is it.

    ``existing``: the destination's index (``None``: no tag yet); ``upstream``: the source's index, whose
    entries must all be at the destination already; ``add``: more descriptors (referrers found with the
    source's referrers API, copied to a destination that has no such API; a manifest with a ``subject``
    PUT where the registry answered without ``OCI-Subject``: :func:`referrer_descriptor`).

    No entry of ``existing`` is ever dropped (distribution-spec: a client adds its descriptor to the
    index, it does not replace it). When ``existing`` holds nothing that ``upstream`` lacks and ``add``
    adds nothing new, the upstream bytes are used as they are (ecr-facts.md 8: copy the bytes, never
    rebuild another tool's fallback index). Otherwise a merged index is written: ``existing``'s entries,
    then the new ones, annotated with the upstream index's digest
    (:data:`~ecr_mirror.manifest.ANNOTATION_SOURCE_DIGEST`) so a later copy can tell the upstream index
    is already merged without fetching it.

    Raises :class:`ManifestError` when ``existing`` is not an OCI image index: the tag is left alone
    (distribution-spec "Pushing Manifests with Subject": report the failure, do not replace it).
    """
    if existing is not None and existing.media_type != OCI_INDEX:
        raise ManifestError(f"referrers tag holds a {existing.media_type}, not an OCI image index; left alone")
    have = [e for e in (existing.data.get("manifests") if existing else None) or [] if isinstance(e, dict)]
    up_entries = [e for e in (upstream.data.get("manifests") if upstream else None) or [] if isinstance(e, dict)]
    up_digests = {e.get("digest") for e in up_entries}
    extra = [dict(e) for e in add if e.get("digest") not in up_digests]
    if upstream is not None and not extra and all(e.get("digest") in up_digests for e in have):
        return None if existing is not None and existing.digest == upstream.digest else upstream
    seen = {e.get("digest") for e in have}
    new = []
    for entry in [*up_entries, *extra]:
        if entry.get("digest") not in seen:
            seen.add(entry.get("digest"))
            new.append(dict(entry))
    if not have and not new:
        return None
    annotations = dict((existing.data.get("annotations") or {}) if existing else {})
    if upstream is not None:
        annotations[ANNOTATION_SOURCE_DIGEST] = upstream.digest
    if existing is not None and not new and annotations == (existing.data.get("annotations") or {}):
        return None
    return referrers_index([*have, *new], annotations or None)


def merged_from(existing: Manifest | None, upstream_digest: str) -> bool:
    """Whether ``existing`` (a destination's tag schema index) already holds the upstream index
    ``upstream_digest``: it is those bytes, or a merge annotated with that digest (:func:`merge_tag_index`)."""
    if existing is None:
        return False
    annotations = existing.data.get("annotations") or {}
    return existing.digest == upstream_digest or (
        isinstance(annotations, dict) and annotations.get(ANNOTATION_SOURCE_DIGEST) == upstream_digest
    )


# ---------------------------------------------------------------------- what a copy covers


@dataclass(frozen=True)
class ReferrerPolicy:
    """How a copy treats referrers.

    ``when_unchanged``: discover them even when the image itself was already at the destination (``ecr-mirror
    copy``, asked for now: those of its top-level digest only); a scheduled sync leaves that to the audit.
    ``max_depth``: see :data:`DEFAULT_MAX_DEPTH`. ``refused``: referrer digests the destination refused
    before (HTTP 405; a tag's status records them): not fetched again.
    """

    when_unchanged: bool = True
    max_depth: int = DEFAULT_MAX_DEPTH
    refused: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SubjectPlan:
    """Which upstream digests of a copied image are subjects at the destination.

    ``subjects``: digests the destination holds byte for byte (the index when it is copied unchanged, and
    its children; a single manifest); ``not_applicable``: digest -> why referrers of it cannot apply (the
    upstream index of a rewritten index).
    """

    subjects: tuple[str, ...]
    not_applicable: Mapping[str, str] = field(default_factory=dict)


def plan_subjects(upstream_digest: str, written_digest: str, children: Sequence[Descriptor | str] = ()) -> SubjectPlan:
    """The subjects of an image copied from ``upstream_digest`` and written as ``written_digest`` with
    ``children`` (index entries at the destination, as descriptors or, as a status records them, digests;
    empty for a single manifest).

    Children keep their digests, so their referrers travel. BuildKit attestation entries are not subjects:
    they are attestations themselves (of their image, inside the index), and asking for their referrers
    would cost a request each.
    When the index was rewritten (a platform subset: the digests differ), referrers of the upstream index
    name a digest the destination does not hold: they do not apply (ecr-facts.md 5).
    """
    subjects = [written_digest] if written_digest == upstream_digest else []
    for child in children:
        if isinstance(child, str):
            subjects.append(child)
        elif not child.is_attestation:
            subjects.append(child.digest)
    subjects = list(dict.fromkeys(subjects))
    not_applicable = {}
    if written_digest != upstream_digest:
        not_applicable[upstream_digest] = (
            f"their subject is the upstream index {upstream_digest}; the mirror holds a rewritten index "
            f"{written_digest} (a platform subset), so they do not apply to it"
        )
    return SubjectPlan(tuple(subjects), not_applicable)


@dataclass
class ReferrerOutcome:
    """One referrer (or cosign tag) of one subject, and what became of it at the destination."""

    subject: str
    found_by: str  # VIA_API, VIA_TAG_SCHEMA, VIA_COSIGN_TAG
    outcome: str  # COPIED, PRESENT, NOT_APPLICABLE
    digest: str = ""  # the referrer manifest ("" for a tag not read: a not-applicable one)
    artifact_type: str = ""
    tag: str = ""  # the cosign or tag schema tag it came under, if any
    reason: str = ""  # why it does not apply


@dataclass
class ReferrersReport:
    """What copying an image's referrers did: ``copied`` (written at the destination), ``present`` (there
    already), ``not_applicable`` (found, but they cannot be at the destination: ``reasons``);
    ``tags_written``: cosign and tag schema tags written; ``items``: one :class:`ReferrerOutcome` each;
    ``refused``: referrer digests the destination refused (HTTP 405) and does not hold; ``not_checked``:
    upstream tags (or ``referrers of <digest>``) an unchanged copy left to the next sync copy or the audit,
    its request budget spent; ``error``: the failure that ended the walk (one line; ``None``: none)."""

    copied: int = 0
    present: int = 0
    not_applicable: int = 0
    tags_written: list[str] = field(default_factory=list)
    items: list[ReferrerOutcome] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    error: str | None = None

    def add(self, item: ReferrerOutcome) -> None:
        """Record an outcome and count it."""
        self.items.append(item)
        if item.outcome == COPIED:
            self.copied += 1
        elif item.outcome == PRESENT:
            self.present += 1
        else:
            self.not_applicable += 1

    @property
    def reasons(self) -> list[str]:
        """Why referrers did not apply, each reason once."""
        return list(dict.fromkeys(i.reason for i in self.items if i.outcome == NOT_APPLICABLE and i.reason))

    def counts(self) -> dict[str, Any]:
        """``{copied, present, not_applicable, reasons, refused, error}``: what a row's status and ``sync`` show."""
        return {"copied": self.copied, "present": self.present, "not_applicable": self.not_applicable,
                "reasons": self.reasons, "refused": list(self.refused), "error": self.error}

    def merge(self, other: ReferrersReport) -> None:
        """Add ``other``'s outcomes, tags and notes to this report (an assembled image's sources)."""
        for item in other.items:
            self.add(item)
        self.tags_written.extend(other.tags_written)
        self.refused.extend(d for d in other.refused if d not in self.refused)
        self.not_checked.extend(other.not_checked)
        if other.error:
            self.error = f"{self.error}; {other.error}" if self.error else other.error

    def summary(self) -> str:
        """One line: ``2 referrers copied, 1 present, 1 not applicable (reason)`` (:func:`summary_of`), then
        what an unchanged copy did not check. Not the ``error``: a copy shows that as its warning."""
        text = summary_of({**self.counts(), "error": None})
        if self.not_checked:
            text += (f"; not checked on this unchanged copy (the next sync copy or the audit does): "
                     f"{', '.join(self.not_checked)}")
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (the CLI's ``--json``): the counts, ``tags_written`` and every item."""
        return {**asdict(self), "reasons": self.reasons}


def summary_of(counts: Mapping[str, Any]) -> str:
    """One line from :meth:`ReferrersReport.counts`: ``2 referrers copied, 1 present, 1 not applicable (why)``,
    then ``; not all copied: <error>`` when the walk failed."""
    copied = counts.get("copied") or 0
    text = f"{copied} referrer{'' if copied == 1 else 's'} copied, {counts.get('present') or 0} present"
    if counts.get("not_applicable"):
        text += f", {counts['not_applicable']} not applicable ({'; '.join(counts.get('reasons') or [])})"
    if counts.get("error"):
        text += f"; not all copied: {counts['error']}"
    return text


def with_exclusion_hint(exc: TagImmutableError) -> TagImmutableError:
    """``exc`` (a refused ``sha256-*`` tag: a signature re-pushed, a tag schema index updated) saying how to
    allow it: ECR's ``IMMUTABLE_WITH_EXCLUSION`` with the filter ``sha256-*`` (ecr-facts.md 6)."""
    return TagImmutableError(
        f"{exc}; signatures and referrers update tags named sha256-*: exclude them from tag immutability "
        "(IMMUTABLE_WITH_EXCLUSION with the filter sha256-*)", status=exc.status, codes=exc.codes, url=exc.url,
    )


__all__ = [
    "COPIED",
    "COSIGN_SUFFIXES",
    "DEFAULT_MAX_DEPTH",
    "NOT_APPLICABLE",
    "PRESENT",
    "SIGNATURE_ARTIFACT_TYPES",
    "VIA_API",
    "VIA_COSIGN_TAG",
    "VIA_TAG_SCHEMA",
    "ReferrerOutcome",
    "ReferrerPolicy",
    "ReferrersReport",
    "SubjectPlan",
    "artifact_type",
    "cosign_tags",
    "digest_tags",
    "is_signature",
    "merge_tag_index",
    "merged_from",
    "plan_subjects",
    "referrer_descriptor",
    "referrers_index",
    "summary_of",
    "tag_schema_tag",
    "with_exclusion_hint",
]
