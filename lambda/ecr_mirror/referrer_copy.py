"""Copying an image's referrers: signatures, SBOMs, attestations (see :mod:`ecr_mirror.referrers`).

:class:`ReferrerCopy` runs once per image copy, after the image (the subjects) is at the destination:

1. Discovery at the source, for each subject digest (:func:`~ecr_mirror.referrers.plan_subjects`):
   one ``tags/list`` of the repository (cosign tags and tag schema tags of every subject, at once); the
   referrers API per subject (a registry answering 404 has none: it is not asked again by this copier,
   and the ``sha256-<hex>`` tag schema index is read instead); then the same for the referrers found, up
   to :attr:`~ecr_mirror.referrers.ReferrerPolicy.max_depth` (signatures are not asked about).
2. Nothing is fetched that the destination holds: a referrer found by the API or in a tag index is
   fetched only when the destination lacks its digest; a cosign or tag schema tag is compared by HEAD
   at both ends, its manifest fetched only when the digests differ (a tag schema index the destination
   merged records the upstream digest it holds, so a merge is not fetched again either).
3. At the destination, byte for byte: blobs, then the referrer manifest by digest (its subject is there
   already), cosign tags as tags. Where the destination has no referrers API (404 on it, no ``OCI-Subject``
   on the PUT) or refuses it for a subject (405: ECR, aws/containers-roadmap#2783), its tag schema index
   is kept, merged, never an entry dropped (:func:`~ecr_mirror.referrers.merge_tag_index`); an upstream tag
   schema index is mirrored as a tag in any case, so the next copy can compare it by HEAD.

Costs at the source for one image (subjects: the index, if copied unchanged, and its image children):
the ``tags/list`` pages (one per 1,000 tags; none when the caller passes the tags it just listed), plus 1
referrers API request per subject and per non-signature referrer found short of the last level (1 in all
when the registry has no API), plus 1 HEAD per cosign or tag schema tag found; manifest and blob GETs
only for what the destination lacks.

No HTTP here: it talks to a :class:`~ecr_mirror.registry.client.RegistryClient` through the copier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import DigestMismatchError, ManifestError, RegistryError, TagImmutableError
from .manifest import MANIFEST_TYPES, Descriptor, Manifest
from .reference import Reference
from .referrers import (
    COPIED,
    NOT_APPLICABLE,
    PRESENT,
    VIA_API,
    VIA_COSIGN_TAG,
    VIA_TAG_SCHEMA,
    ReferrerOutcome,
    ReferrerPolicy,
    ReferrersReport,
    SubjectPlan,
    digest_tags,
    is_signature,
    merge_tag_index,
    merged_from,
    plan_subjects,
    tag_schema_tag,
)
from .rows import Row

if TYPE_CHECKING:
    from .copy import Copier, CopyReport

log = logging.getLogger(__name__)

#: ECR refuses some manifests with a subject, or lists of their referrers, with 405 (aws/containers-roadmap#2783)
REFUSED_STATUS = 405


@dataclass
class _Found:
    """A referrer found for a subject, and how."""

    descriptor: Descriptor
    found_by: str


class _Unset:
    """Marks a destination tag index not read yet."""


_UNSET = _Unset()


class ReferrerCopy:
    """Copies the referrers of one image from ``source``'s repository to ``destination``'s.

    ``copier``: the :class:`~ecr_mirror.copy.Copier` (its client, blob transfers and caches); ``report``:
    the image's :class:`~ecr_mirror.copy.CopyReport` (referrer blobs count in its blob counters).
    Use once: :meth:`run`. Raises what the client raises; a refusal by the destination (405) is an outcome.
    """

    def __init__(
        self, copier: Copier, source: Reference, destination: Reference, policy: ReferrerPolicy, report: CopyReport,
    ) -> None:
        self.copier = copier
        self.client = copier.client
        self.source = source
        self.destination = destination
        self.policy = policy
        self.report = report
        self.out = ReferrersReport()
        self._dest_indexes: dict[str, Manifest | None | _Unset] = {}

    # ------------------------------------------------------------ the walk

    def run(self, plan: SubjectPlan, source_tags: Sequence[str] | None = None) -> ReferrersReport:
        """Discover and copy the referrers of ``plan.subjects``; count those of ``plan.not_applicable``.
        ``source_tags``: the source repository's tags, if just listed (else they are listed here)."""
        if not plan.subjects and not plan.not_applicable:
            return self.out
        tags = digest_tags(self.client.tags_list(self.source) if source_tags is None else source_tags)
        for digest, reason in plan.not_applicable.items():
            self._not_applicable(digest, reason, tags.get(digest, []))
        level = list(dict.fromkeys(plan.subjects))
        seen = set(level)
        for _ in range(self.policy.max_depth):  # each round copies the referrers of the digests in `level`
            nxt: list[str] = []
            for subject in level:
                for found in self._subject(subject, tags.get(subject, [])):
                    if found.digest not in seen and not is_signature(found):
                        seen.add(found.digest)
                        nxt.append(found.digest)
            level = nxt
        return self.out

    def _not_applicable(self, digest: str, reason: str, tags: list[str]) -> None:
        """Count what refers to ``digest`` (not at the destination) without fetching any of it."""
        listed = self._source_referrers(digest)
        for d in listed or []:
            kind = str(d.raw.get("artifactType") or "")
            self.out.add(ReferrerOutcome(digest, VIA_API, NOT_APPLICABLE, d.digest, kind, reason=reason))
        for tag in tags:
            if tag == tag_schema_tag(digest) and listed is not None:
                continue  # the registry has the API: its tag schema index is not what clients read
            via = VIA_TAG_SCHEMA if tag == tag_schema_tag(digest) else VIA_COSIGN_TAG
            self.out.add(ReferrerOutcome(digest, via, NOT_APPLICABLE, tag=tag, reason=reason))

    def _subject(self, subject: str, tags: list[str]) -> list[Descriptor]:
        """Bring the referrers of one subject (at the destination) over; returns those now there."""
        schema_tag = tag_schema_tag(subject)
        found: list[_Found] = []
        upstream_index: Manifest | None = None
        known: set[str] = set()  # referrer digests the destination is known to hold
        listed = self._source_referrers(subject)
        if listed is not None:
            found = [_Found(d, VIA_API) for d in listed]
        elif schema_tag in tags:
            head = self.client.manifest_head(self.source.with_tag(schema_tag))
            if head is not None:
                existing = self._dest_index(subject)
                if merged_from(existing, head.digest):  # nothing new upstream: read nothing there
                    assert isinstance(existing, Manifest)
                    found = [_Found(d, VIA_TAG_SCHEMA) for d in existing.children]
                    known = {d.digest for d in existing.children}
                else:
                    upstream_index = self.client.manifest_get(self.source.with_digest(head.digest))
                    if not upstream_index.is_index:
                        raise ManifestError(f"{self.source.name}:{schema_tag} is not an index of referrers")
                    found = [_Found(d, VIA_TAG_SCHEMA) for d in upstream_index.children]
        here = self._settle(subject, found, known, upstream_index)
        for tag in tags:
            if tag != schema_tag:
                self._cosign_tag(subject, tag)
        return here

    # ------------------------------------------------------------ the source

    def _source_referrers(self, digest: str) -> list[Descriptor] | None:
        """The source's referrers API answer for ``digest``; ``None`` if it has none (or refuses this subject)."""
        return self._referrers_api(self.source, digest)

    def _referrers_api(self, ref: Reference, digest: str) -> list[Descriptor] | None:
        host = ref.api_host
        if self.copier.referrers_api.get(host) is False:
            return None
        try:
            listed = self.client.referrers_list(ref, digest)
        except RegistryError as exc:
            if exc.status != REFUSED_STATUS:
                raise
            log.info("%s refuses the referrers API for %s (HTTP 405): using the tag schema", ref.name, digest)
            return None
        self.copier.referrers_api[host] = listed is not None
        return listed

    # ------------------------------------------------------------ the destination

    def _dest_index(self, subject: str) -> Manifest | None:
        """The destination's tag schema index of ``subject`` (read once per run)."""
        cached = self._dest_indexes.get(subject, _UNSET)
        if isinstance(cached, _Unset):
            cached = self.client.referrers_tag_get(self.destination, subject)
            self._dest_indexes[subject] = cached
        return cached

    def _settle(
        self, subject: str, found: list[_Found], known: set[str], upstream_index: Manifest | None,
    ) -> list[Descriptor]:
        """Make every referrer in ``found`` present at the destination and listed for ``subject`` there."""
        if not found:
            return []
        unknown = [f for f in found if f.descriptor.digest not in known]
        listing: set[str] | None = None
        needs_tag_schema = False
        if unknown:
            answer = self._referrers_api(self.destination, subject)
            listing = {d.digest for d in answer} if answer is not None else None
            needs_tag_schema = listing is None
            if listing is None:
                existing = self._dest_index(subject)
                known = known | {d.digest for d in (existing.children if existing else [])}
        here: list[Descriptor] = []
        for f in found:
            d = f.descriptor
            kind = str(d.raw.get("artifactType") or "")
            if d.digest in known or (listing is not None and d.digest in listing):
                self.out.add(ReferrerOutcome(subject, f.found_by, PRESENT, d.digest, kind))
                here.append(d)
                continue
            if listing is None and self.client.manifest_head(self.destination.with_digest(d.digest)) is not None:
                self.out.add(ReferrerOutcome(subject, f.found_by, PRESENT, d.digest, kind))
                here.append(d)
                continue
            outcome, reason, indexed = self._copy_referrer(d)
            self.out.add(ReferrerOutcome(subject, f.found_by, outcome, d.digest, kind, reason=reason))
            if outcome != NOT_APPLICABLE:
                here.append(d)
                needs_tag_schema = needs_tag_schema or not indexed
        if upstream_index is not None or needs_tag_schema:
            self._write_tag_index(subject, here, upstream_index)
        return here

    def _write_tag_index(self, subject: str, here: list[Descriptor], upstream_index: Manifest | None) -> None:
        """Merge what is now at the destination into its tag schema index of ``subject`` (never dropping one)."""
        present = {d.digest for d in here}
        upstream = upstream_index
        if upstream is not None and not all(c.digest in present for c in upstream.children):
            upstream = None  # some could not be copied: list only those that are there
        add = [d.raw for d in here] if upstream is None else []
        merged = merge_tag_index(self._dest_index(subject), upstream, add)
        if merged is None:
            return
        tag = tag_schema_tag(subject)
        self._put_tag(tag, merged)
        self._dest_indexes[subject] = merged

    def _put_tag(self, tag: str, manifest: Manifest) -> None:
        try:
            self.client.manifest_put(self.destination.with_tag(tag), manifest)
        except TagImmutableError as exc:
            raise TagImmutableError(
                f"{exc}; signatures and referrers update tags named sha256-*: exclude them from tag immutability "
                "(IMMUTABLE_WITH_EXCLUSION with the filter sha256-*)", status=exc.status, codes=exc.codes, url=exc.url,
            ) from exc
        self.out.tags_written.append(tag)

    # ------------------------------------------------------------ copying

    def _fetch(self, descriptor: Descriptor) -> Manifest:
        """GET a manifest by digest at the source, checked against its descriptor's size."""
        m = self.client.manifest_get(self.source.with_digest(descriptor.digest))
        if descriptor.size and len(m.raw) != descriptor.size:
            raise DigestMismatchError(
                f"manifest {descriptor.digest} is {len(m.raw)} bytes, its descriptor says {descriptor.size}",
                expected=descriptor.digest,
            )
        return m

    def _content(self, m: Manifest) -> None:
        """Blobs of ``m`` (and of its children, for an index) at the destination, children by digest."""
        if not m.is_index:
            self.copier.copy_blobs(self.source, self.destination, m, self.report)
            return
        for child in m.children:
            target = self.destination.with_digest(child.digest)
            if self.client.manifest_head(target) is not None:
                continue
            cm = self._fetch(child)
            if cm.is_index:
                raise ManifestError(
                    f"referrer {m.digest} lists another index {child.digest}; nested indexes are not supported")
            self.copier.copy_blobs(self.source, self.destination, cm, self.report)
            self.client.manifest_put(target, cm)

    def _copy_referrer(self, d: Descriptor) -> tuple[str, str, bool]:
        """``(outcome, reason, indexed)`` of copying referrer ``d``: ``indexed`` when the destination said
        ``OCI-Subject`` (it lists the referrer through its API)."""
        if d.media_type not in MANIFEST_TYPES:
            return NOT_APPLICABLE, f"media type {d.media_type} is not a manifest ecr-mirror copies", False
        m = self._fetch(d)
        self._content(m)
        target = self.destination.with_digest(m.digest)
        try:
            indexed = self.client.referrer_put(target, m) is not None
        except RegistryError as exc:
            if exc.status != REFUSED_STATUS:
                raise
            if self.client.manifest_head(target) is not None:  # stored, but not indexed: the tag schema lists it
                log.info("%s answered 405 to referrer %s but holds it: listing it in the tag schema",
                         self.destination.name, m.digest)
                return COPIED, "", False
            return NOT_APPLICABLE, (
                f"{self.destination.api_host} refused this manifest with a subject (HTTP 405; "
                "aws/containers-roadmap#2783)"
            ), False
        return COPIED, "", indexed

    def _cosign_tag(self, subject: str, tag: str) -> None:
        """A cosign tag as a tag: copied when the destination's tag is not at the source's digest."""
        head = self.client.manifest_head(self.source.with_tag(tag))
        if head is None:
            return  # removed since the tag list was read
        target = self.destination.with_tag(tag)
        dest = self.client.manifest_head(target)
        if dest is not None and dest.digest == head.digest:
            self.out.add(ReferrerOutcome(subject, VIA_COSIGN_TAG, PRESENT, head.digest, tag=tag))
            return
        m = self.client.manifest_get(self.source.with_digest(head.digest))
        self._content(m)
        self._put_tag(tag, m)
        kind = str(m.data.get("artifactType") or "")
        self.out.add(ReferrerOutcome(subject, VIA_COSIGN_TAG, COPIED, m.digest, kind, tag=tag))


def copy_referrers(
    copier: Copier, source: Reference, destination: Reference, plan: SubjectPlan, policy: ReferrerPolicy,
    report: CopyReport, source_tags: Sequence[str] | None = None,
) -> ReferrersReport:
    """Copy what refers to ``plan.subjects`` from ``source``'s repository to ``destination``'s (see the module
    docstring); ``report`` gets the blob counts. Returns the :class:`~ecr_mirror.referrers.ReferrersReport`."""
    return ReferrerCopy(copier, source, destination, policy, report).run(plan, source_tags)


def audit_referrers(
    copier: Copier, row: Row, tag: str, target_host: str, *, upstream_digest: str, target_digest: str,
    children: Sequence[str], source_tags: Sequence[str] | None = None,
) -> ReferrersReport | None:
    """The completeness audit's referrer step for one tag at the target (issue 14; design-12 "The audit").

    Call it for each tag of ``row`` the audit finds complete, with what the tag's status records:
    ``upstream_digest`` (``synced_upstream_digest``), ``target_digest`` (the digest ecr-mirror wrote) and
    ``children`` (the written index's child digests, in order; empty for a single manifest);
    ``source_tags``: the upstream repository's tags if the audit listed them once for the row (a source
    row's tags share one repository), else each call lists them. Upstream: what the module docstring
    counts, no manifest or blob GET unless something is new; a signature or SBOM added upstream after the
    image was mirrored arrives within one audit interval. ``None`` when the row turns referrers off.
    Raises what :meth:`~ecr_mirror.copy.Copier.copy_referrers` raises.
    """
    if not row.referrers:
        return None
    destination = Reference(target_host, row.target_repository, tag)
    policy = ReferrerPolicy(when_unchanged=True)
    if row.assemble is not None:  # each image of an assembled index came from its own source
        reports = [copier.copy_referrers(src, destination, plan_subjects(child, child), policy)
                   for src, child in zip(row.assemble, children)]
        return merge_reports(reports)
    assert row.source is not None
    plan = plan_subjects(upstream_digest, target_digest, children)
    return copier.copy_referrers(row.source.with_tag(tag), destination, plan, policy, source_tags=source_tags)


def merge_reports(reports: Iterable[ReferrersReport]) -> ReferrersReport:
    """One report of several (an assembled image's sources)."""
    out = ReferrersReport()
    for r in reports:
        for item in r.items:
            out.add(item)
        out.tags_written.extend(r.tags_written)
    return out


__all__ = ["ReferrerCopy", "audit_referrers", "copy_referrers", "merge_reports"]
