"""Copying an image's referrers: signatures, SBOMs, attestations (see :mod:`ecr_mirror.referrers`).

:class:`ReferrerCopy` runs once per image copy, after the image (the subjects) is at the destination:

1. Discovery at the source, for each subject digest (:func:`~ecr_mirror.referrers.plan_subjects`): the
   referrers API (a registry answering 404 has none: it is not asked again by this copier, and the
   ``sha256-<hex>`` tag schema index is read instead); one ``tags/list`` of the repository (cosign tags and
   tag schema tags of every subject, at once); then the same for the referrers found, up to
   :attr:`~ecr_mirror.referrers.ReferrerPolicy.max_depth` (signatures are not asked about).
2. Nothing is fetched that the destination holds: a referrer found by the API or in a tag index is
   fetched only when the destination lacks its digest; a cosign or tag schema tag is compared by HEAD
   at both ends, its manifest fetched only when the digests differ (a tag schema index the destination
   merged records the upstream digest it holds, so a merge is not fetched again either). A referrer the
   destination refused (HTTP 405) is not fetched again by this copier, nor when the policy lists it.
3. At the destination, byte for byte, by the copy engine's descriptor rules
   (:meth:`~ecr_mirror.copy.Copier.copy_content`: an index referrer's entries by digest, nested indexes
   recursed, required blobs, non-distributable layers as the copy says), then the referrer manifest by
   digest (its subject is there already), cosign tags as tags. Where the destination has no referrers API
   (404 on it, no ``OCI-Subject`` on the PUT) or refuses it for a subject (405: ECR,
   aws/containers-roadmap#2783), its tag schema index is kept, merged, never an entry dropped
   (:meth:`~ecr_mirror.copy.Copier.referrers_tag_merge`); an upstream tag schema index is mirrored as a tag
   in any case, so the next copy can compare it by HEAD.

Costs at the source for one image (subjects: the index, if copied unchanged, and its image children):
the ``tags/list`` pages (one per 1,000 tags; none when the caller passes the tags it just listed), plus 1
referrers API request per subject and per non-signature referrer found short of the last level (1 in all
when the registry has no API), plus 1 HEAD per cosign or tag schema tag found; manifest and blob GETs
only for what the destination lacks.

A *shallow* walk (an unchanged image re-copied by hand, issue 14) looks at the top-level digest only and
makes at most :data:`SHALLOW_BUDGET` upstream requests: the referrers API, the tag list, then HEADs of that
digest's own tags, ``.sig`` first (a re-signed image); what the budget leaves out is reported
(``not_checked``) and found by the next sync copy or the audit.

A failure ends the walk and is the report's ``error``: the image is in place by then, so the caller
reports it as a warning (:meth:`~ecr_mirror.copy.Copier.copy`). No HTTP here: it talks to a
:class:`~ecr_mirror.registry.client.RegistryClient` through the copier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import Deadline, Interrupted, ManifestError, MirrorError, RegistryError, TagImmutableError
from .manifest import Descriptor, Manifest
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
    merged_from,
    plan_subjects,
    tag_schema_tag,
    with_exclusion_hint,
)
from .rows import Row

if TYPE_CHECKING:
    from .copy import Copier, CopyReport
    from .registry.client import ManifestHead

log = logging.getLogger(__name__)

#: ECR refuses some manifests with a subject, or lists of their referrers, with 405 (aws/containers-roadmap#2783)
REFUSED_STATUS = 405
#: upstream requests a shallow walk (an unchanged image) may make, none a manifest or blob GET (issue 14)
SHALLOW_BUDGET = 3
#: the order a shallow walk HEADs a digest's tags in: a re-signed image first
_SHALLOW_ORDER = (".sig", "", ".att", ".sbom")


def _refused_reason(host: str) -> str:
    return f"{host} refused this manifest with a subject (HTTP 405; aws/containers-roadmap#2783)"


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
    the image's :class:`~ecr_mirror.copy.CopyReport` (referrer blobs count in its blob counters);
    ``shallow``: the top-level subject only, within :data:`SHALLOW_BUDGET` upstream requests;
    ``allow_nondistributable``: as the image's copy. Use once: :meth:`run`.
    """

    def __init__(
        self, copier: Copier, source: Reference, destination: Reference, policy: ReferrerPolicy, report: CopyReport,
        *, shallow: bool = False, allow_nondistributable: bool = False,
    ) -> None:
        self.copier = copier
        self.client = copier.client
        self.source = source
        self.destination = destination
        self.policy = policy
        self.report = report
        self.shallow = shallow
        self.allow_nondistributable = allow_nondistributable
        self.out = ReferrersReport()
        self._budget: int | None = SHALLOW_BUDGET if shallow else None
        self._tags: dict[str, list[str]] | None = None
        self._dest_indexes: dict[str, Manifest | None | _Unset] = {}

    # ------------------------------------------------------------ the walk

    def run(self, plan: SubjectPlan, source_tags: Sequence[str] | None = None) -> ReferrersReport:
        """Discover and copy the referrers of ``plan.subjects``; count those of ``plan.not_applicable``.
        ``source_tags``: the source repository's tags, if just listed (else they are listed here, once).
        Raises only :class:`~ecr_mirror.errors.Deadline` and :class:`~ecr_mirror.errors.Interrupted`; another
        failure is the report's ``error``."""
        if source_tags is not None:
            self._tags = digest_tags(source_tags)
        try:
            self._walk(plan)
        except (Deadline, Interrupted):
            raise
        except MirrorError as exc:
            self.out.error = str(exc)
            log.warning("referrers of %s not all copied: %s", self.destination, exc)
        return self.out

    def _walk(self, plan: SubjectPlan) -> None:
        level = list(dict.fromkeys(plan.subjects))
        seen = set(level)
        for _ in range(1 if self.shallow else self.policy.max_depth):  # each round: referrers of `level`
            nxt: list[str] = []
            for subject in level:
                for found in self._subject(subject):
                    if found.digest not in seen and not is_signature(found):
                        seen.add(found.digest)
                        nxt.append(found.digest)
            level = nxt
        for digest, reason in plan.not_applicable.items():
            self._not_applicable(digest, reason)

    def _afford(self) -> bool:
        """Whether one more upstream request fits the budget (a shallow walk's); counts it."""
        if self._budget is None:
            return True
        if self._budget <= 0:
            return False
        self._budget -= 1
        return True

    def _not_applicable(self, digest: str, reason: str) -> None:
        """Count what refers to ``digest`` (not at the destination) without fetching any of it."""
        listed = self._source_referrers(digest)
        for d in listed or []:
            kind = str(d.raw.get("artifactType") or "")
            self.out.add(ReferrerOutcome(digest, VIA_API, NOT_APPLICABLE, d.digest, kind, reason=reason))
        for tag in self._source_tags(digest):
            if tag == tag_schema_tag(digest) and listed is not None:
                continue  # the registry has the API: its tag schema index is not what clients read
            via = VIA_TAG_SCHEMA if tag == tag_schema_tag(digest) else VIA_COSIGN_TAG
            self.out.add(ReferrerOutcome(digest, via, NOT_APPLICABLE, tag=tag, reason=reason))

    def _subject(self, subject: str) -> list[Descriptor]:
        """Bring the referrers of one subject (at the destination) over; returns those now there."""
        schema_tag = tag_schema_tag(subject)
        listed = self._source_referrers(subject)
        tags = [t for t in self._source_tags(subject) if t != schema_tag or listed is None]
        if self.shallow:
            tags.sort(key=lambda t: _SHALLOW_ORDER.index(t[len(schema_tag):]))
        heads: dict[str, ManifestHead | None] = {}
        for tag in tags:
            if self._afford():
                heads[tag] = self.client.manifest_head(self.source.with_tag(tag))
            else:
                self.out.not_checked.append(tag)
        found: list[_Found] = [_Found(d, VIA_API) for d in listed or []]
        upstream_index: Manifest | None = None
        known: set[str] = set()  # referrer digests the destination is known to hold
        head = heads.get(schema_tag)
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
        for tag, cosign_head in heads.items():
            if tag != schema_tag and cosign_head is not None:  # None: removed since the tag list was read
                self._cosign_tag(subject, tag, cosign_head)
        return here

    # ------------------------------------------------------------ the source

    def _source_tags(self, digest: str) -> list[str]:
        """``digest``'s tag schema and cosign tags at the source (the repository's tags listed once)."""
        if self._tags is None:
            if not self._afford():
                self.out.not_checked.append(f"tags of {digest}")
                return []
            self._tags = digest_tags(self.client.tags_list(self.source))
        return self._tags.get(digest, [])

    def _source_referrers(self, digest: str) -> list[Descriptor] | None:
        """The source's referrers API answer for ``digest``; ``None`` if it has none (or refuses this subject)."""
        if self.copier.referrers_api.get(self.source.api_host) is not False and not self._afford():
            self.out.not_checked.append(f"referrers of {digest}")
            return None
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
        listing: set[str] | None = None
        needs_tag_schema = False
        if any(f.descriptor.digest not in known for f in found):
            answer = self._referrers_api(self.destination, subject)
            listing = {d.digest for d in answer} if answer is not None else None
            if listing is None:
                existing = self._dest_index(subject)
                known = known | {d.digest for d in (existing.children if existing else [])}
        here: list[Descriptor] = []
        for f in found:
            d = f.descriptor
            kind = str(d.raw.get("artifactType") or "")
            if d.digest in known or (listing is not None and d.digest in listing):
                outcome, reason, indexed = PRESENT, "", True
            else:
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
        written = self.copier.referrers_tag_merge(self.destination, subject, upstream=upstream, add=add)
        if written is not None:
            self.out.tags_written.append(tag_schema_tag(subject))
            self._dest_indexes[subject] = written

    # ------------------------------------------------------------ copying

    def _copy_referrer(self, d: Descriptor) -> tuple[str, str, bool]:
        """``(outcome, reason, indexed)`` of bringing referrer ``d`` (not listed at the destination) over:
        ``PRESENT`` when the destination holds it all the same, ``COPIED``, or ``NOT_APPLICABLE`` when the
        destination refuses it (HTTP 405, remembered: not fetched again); ``indexed`` when the destination
        said ``OCI-Subject`` (it lists the referrer through its API)."""
        target = self.destination.with_digest(d.digest)
        if self.client.manifest_head(target) is not None:
            return PRESENT, "", False  # there, not listed: the tag schema lists it
        refusal = (target.api_host, target.repository, d.digest)
        if refusal in self.copier.referrers_refused or d.digest in self.policy.refused:
            self._refused(d.digest)
            return NOT_APPLICABLE, _refused_reason(target.api_host) + "; not fetched again", False
        m = self.copier.fetch_entry(self.source, d)
        self.copier.copy_content(self.source, self.destination, m, self.report,
                                 allow_nondistributable=self.allow_nondistributable)
        try:
            answer = self.client.manifest_put(target, m)
        except RegistryError as exc:
            if exc.status != REFUSED_STATUS:
                raise
            if self.client.manifest_head(target) is not None:  # stored, but not indexed: the tag schema lists it
                log.info("%s answered 405 to referrer %s but holds it: listing it in the tag schema",
                         self.destination.name, m.digest)
                return COPIED, "", False
            self.copier.referrers_refused.add(refusal)
            self._refused(d.digest)
            return NOT_APPLICABLE, _refused_reason(target.api_host), False
        self.report.add(manifests_copied=1)
        return COPIED, "", answer.oci_subject is not None

    def _refused(self, digest: str) -> None:
        if digest not in self.out.refused:
            self.out.refused.append(digest)

    def _cosign_tag(self, subject: str, tag: str, head: ManifestHead) -> None:
        """A cosign tag as a tag: copied when the destination's tag is not at the source's digest."""
        target = self.destination.with_tag(tag)
        dest = self.client.manifest_head(target)
        if dest is not None and dest.digest == head.digest:
            self.out.add(ReferrerOutcome(subject, VIA_COSIGN_TAG, PRESENT, head.digest, tag=tag))
            return
        m = self.client.manifest_get(self.source.with_digest(head.digest), media_type=head.media_type or None)
        self.copier.copy_content(self.source, self.destination, m, self.report,
                                 allow_nondistributable=self.allow_nondistributable)
        try:
            self.client.manifest_put(target, m)
        except TagImmutableError as exc:
            raise with_exclusion_hint(exc) from exc
        self.report.add(manifests_copied=1)
        self.out.tags_written.append(tag)
        kind = str(m.data.get("artifactType") or "")
        self.out.add(ReferrerOutcome(subject, VIA_COSIGN_TAG, COPIED, m.digest, kind, tag=tag))


def copy_referrers(
    copier: Copier, source: Reference, destination: Reference, plan: SubjectPlan, policy: ReferrerPolicy,
    report: CopyReport, source_tags: Sequence[str] | None = None, *, shallow: bool = False,
    allow_nondistributable: bool = False,
) -> ReferrersReport:
    """Copy what refers to ``plan.subjects`` from ``source``'s repository to ``destination``'s (see the module
    docstring); ``report`` gets the blob counts. Returns the :class:`~ecr_mirror.referrers.ReferrersReport`
    (a failure is its ``error``). Raises only :class:`~ecr_mirror.errors.Deadline` and
    :class:`~ecr_mirror.errors.Interrupted`."""
    walk = ReferrerCopy(copier, source, destination, policy, report, shallow=shallow,
                        allow_nondistributable=allow_nondistributable)
    return walk.run(plan, source_tags)


def audit_referrers(
    copier: Copier, row: Row, tag: str, target_host: str, *, upstream_digest: str, target_digest: str,
    children: Sequence[str], source_tags: Sequence[str] | None = None, refused: Iterable[str] = (),
) -> ReferrersReport | None:
    """The completeness audit's referrer step for one tag at the target (issue 14; design-12 "The audit").

    Call it for each tag of ``row`` the audit finds complete, with what the tag's status records:
    ``upstream_digest`` (``synced_upstream_digest``), ``target_digest`` (the digest ecr-mirror wrote),
    ``children`` (the written index's child digests, in order; empty for a single manifest) and ``refused``
    (``referrers_refused``: not fetched again); ``source_tags``: the upstream repository's tags if the audit
    listed them once for the row (a source row's tags share one repository), else each call lists them.
    Upstream: what the module docstring counts, no manifest or blob GET unless something is new; a signature
    or SBOM added upstream after the image was mirrored arrives within one audit interval. ``None`` when the
    row turns referrers off. Raises only :class:`~ecr_mirror.errors.Deadline` and
    :class:`~ecr_mirror.errors.Interrupted` (a failure is the report's ``error``).
    """
    if not row.referrers:
        return None
    destination = Reference(target_host, row.target_repository, tag)
    policy = ReferrerPolicy(when_unchanged=True, refused=frozenset(refused))
    options = {"allow_nondistributable": row.allow_nondistributable_artifacts}
    if row.assemble is not None:  # each image of an assembled index came from its own source
        out = ReferrersReport()
        for src, child in zip(row.assemble, children):
            out.merge(copier.copy_referrers(src, destination, plan_subjects(child, child), policy, **options))
        return out
    assert row.source is not None
    plan = plan_subjects(upstream_digest, target_digest, children)
    return copier.copy_referrers(row.source.with_tag(tag), destination, plan, policy, source_tags=source_tags,
                                 **options)


__all__ = ["SHALLOW_BUDGET", "ReferrerCopy", "audit_referrers", "copy_referrers"]
