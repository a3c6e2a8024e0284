"""The copy engine: index -> child manifests -> blobs, every digest verified, the tag written last.

What it does with each kind of descriptor (decided in :mod:`ecr_mirror.manifest`; the README has the
table with the spec sections): index entries that are image or artifact manifests are copied by digest
(their required blobs first); an index inside an index is recursed into, up to
:data:`~ecr_mirror.manifest.MAX_INDEX_DEPTH`; an entry of a media type it does not know is fetched by
digest (accepting that type) and copied as what it turns out to be, or as opaque bytes; non-distributable
layers (Docker foreign, OCI ``nondistributable``, any layer with ``urls``) are neither fetched nor
pushed unless the copy opts in (``allow_nondistributable``), and the manifest is copied byte for byte
either way; ``subject`` is never followed (a manifest PUT whose registry does not answer ``OCI-Subject``
gets the referrers tag schema index updated instead, as distribution-spec 1.1 asks:
:meth:`Copier.referrers_tag_merge`, the one place that index is written).

Guarantees:
- An unchanged re-copy (destination tag already at the source digest) costs one HEAD at the
  source and makes no GET there.
- Children are pushed by digest before the index; the tag is the last write, so a copy that
  fails leaves the destination tag as it was.
- Blob bytes are hashed and counted while streaming; the final chunk is held back until the
  digest is confirmed, so bytes that do not match their digest are never committed.
- Memory is bounded by (concurrency x chunk size), whatever the layer size.
- A blob that fails (source GET, upload session, PUT) is restarted as a whole under the client's
  retry budget: at most ``RetryPolicy.attempts`` GETs of it at the source.
- A manifest PUT the destination refuses because a blob or child it names is unknown
  (``MANIFEST_BLOB_UNKNOWN``/``BLOB_UNKNOWN``: another copy into the same repository may be moving that
  blob at the same moment) re-checks what it names at the destination, copies what is really missing,
  and is retried once.
- Asked to (``referrers=``), the image's signatures, SBOMs and attestations follow it once it is at the
  destination (:mod:`ecr_mirror.referrer_copy`).

No HTTP here: the engine talks to a :class:`~ecr_mirror.registry.client.RegistryClient` and sees only
the package's errors and ``bytes`` (it imports with httpx unavailable).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .budget import carry
from .errors import (
    CopyError,
    Deadline,
    DigestMismatchError,
    Interrupted,
    ManifestError,
    MirrorError,
    NotFoundError,
    ReferenceError_,
    RegistryError,
    TagImmutableError,
)
from .manifest import (
    ANNOTATION_SOURCE_DIGEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    ENTRY_INDEX,
    MAX_INDEX_DEPTH,
    OCI_INDEX,
    Descriptor,
    Manifest,
    Platform,
    arch_tag_suffixes,
    build_index,
    entry_kind,
    rewrite_index,
    select_children,
)
from .reference import Reference, check_tag
from .referrer_copy import copy_referrers
from .referrers import (
    ReferrerPolicy,
    ReferrersReport,
    SubjectPlan,
    merge_tag_index,
    plan_subjects,
    referrer_descriptor,
    tag_schema_tag,
    with_exclusion_hint,
)

if TYPE_CHECKING:  # the engine needs the client's methods, not its module (which imports httpx)
    from contextlib import AbstractContextManager

    from .registry.client import ManifestPut, RegistryClient

    #: opens a blob's bytes: ``with opener() as chunks: ...``
    Opener = Callable[[], AbstractContextManager[Iterator[bytes]]]

log = logging.getLogger(__name__)

#: bytes per write of a blob upload (socket reads are joined up to this size)
CHUNK_SIZE = 1 << 20
#: largest image config read (to learn its platform), in bytes
MAX_CONFIG_BYTES = 4 << 20
#: ``progress(n)``: ``n`` more bytes of blob were sent
ProgressFn = Callable[[int], None]
#: OCI error codes of a manifest PUT that names content the registry does not (yet) see (distribution-spec
#: "Error Codes"; ECR: "manifest blob unknown", ecr-facts.md section 3)
_BLOB_UNKNOWN = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})


@dataclass(frozen=True)
class _KnownHead:
    """What the caller already knows about the destination tag (in place of a HEAD)."""

    digest: str
    media_type: str


class CopyProgress:
    """What a copy reports while it runs, for a progress display; every method is a no-op here.

    ``destination`` is the reference written (``str``); ``label`` says which part of the image a blob
    belongs to: its platform (``linux/arm64/v8``), ``attestations``, or ``image`` (a single image whose
    platform was not read); blobs under a nested index without a platform count toward the entry that
    lists them (:func:`part_label`). Sizes are bytes, from the manifests' descriptors, so the total is
    known as soon as the manifests are read; non-distributable layers left out are never in it. Labels
    are first named in index order, a nested index's entries once it is read. Called from several
    threads at once.
    """

    def planned(self, destination: str, label: str, size: int) -> None:
        """A blob of ``size`` bytes is part of the copy."""

    def moved(self, destination: str, label: str, n: int) -> None:
        """``n`` more bytes of a blob were sent; negative when a blob restarts and takes back what it had sent."""

    def settled(self, destination: str, label: str, size: int) -> None:
        """Planned bytes that will not be sent (the blob was already there or mounted, a non-distributable
        layer was left out, the copy failed): ``size`` leaves the total."""


def part_label(d: Descriptor, parent: str = "image") -> str:
    """The :class:`CopyProgress` label of an index entry: ``attestations``, else its platform, else
    ``parent`` (the label of the index it is in: an entry of a nested index without platforms counts
    toward the part that lists it)."""
    if d.is_attestation or (d.platform is not None and d.platform.is_unknown):
        return "attestations"
    return str(d.platform) if d.platform is not None else parent


@dataclass
class CopyReport:
    """What one copy (or assemble) did.

    ``source``/``destination``: the references as given; ``digest``/``media_type``: what the
    destination tag holds now; ``platforms``: the platforms written (``os/arch[/variant]``);
    ``unchanged``: the destination already held it, nothing was written. Counts: manifests
    written or found present; blobs uploaded, found present, or mounted from another repository;
    ``bytes_copied``: blob bytes uploaded (referrers' blobs included); non-distributable layer descriptors
    left out (absent by design) or copied (opted in). ``arch_tags``: the ``<tag>-<arch>`` tags written;
    ``arch_tag_digests``: ``{arch tag: digest}`` of every arch tag the destination holds for the image after
    the copy, written now or found in place (recorded, so the audit can tell an arch tag overwritten by hand);
    ``warnings``: one line each, what was done short of the ideal without failing the copy (a
    non-distributable layer that could not be copied, a referrers tag left alone, referrers that could not
    be copied after the image was written); ``requests``: ``{host: {method: count}}``, filled in by the
    CLI; ``source_digest``: the upstream digest copied; ``referrers``: what became of its referrers
    (``None``: not asked for); :attr:`children`: the manifests the written index references (for the
    audit). Thread-safe counters (:meth:`add`, :meth:`warn`).
    """

    source: str
    destination: str
    digest: str = ""
    media_type: str = ""
    platforms: list[str] = field(default_factory=list)
    unchanged: bool = False
    manifests_copied: int = 0
    manifests_skipped: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    nondistributable_skipped: int = 0
    nondistributable_copied: int = 0
    arch_tags: list[str] = field(default_factory=list)
    arch_tag_digests: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    source_digest: str = ""
    referrers: ReferrersReport | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: the manifest this copy wrote under the tag (``None``: nothing written)
    _written: Manifest | None = field(default=None, repr=False, compare=False)
    #: entries of nested indexes this copy wrote
    _nested: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def children(self) -> list[str] | None:
        """The manifest digests the index written under the tag references, nested indexes' entries
        included (``[]`` for a single manifest; ``None`` when this copy wrote nothing under the tag)."""
        if self._written is None:
            return None
        own = [c.digest for c in self._written.children] if self._written.is_index else []
        with self._lock:
            return own + self._nested

    def add_children(self, digests: Iterable[str]) -> None:
        """Record the entries of a nested index this copy wrote."""
        with self._lock:
            self._nested.extend(digests)

    @property
    def written(self) -> Manifest | None:
        """The manifest this copy wrote under the destination tag (``None`` when it wrote nothing)."""
        return self._written

    def wrote(self, m: Manifest) -> None:
        """Record ``m`` as what this copy wrote under the destination tag (``digest``, ``media_type``)."""
        self.digest, self.media_type, self._written = m.digest, m.media_type, m

    def add(self, **counts: int) -> None:
        """Add to counters by name, e.g. ``add(blobs_copied=1, bytes_copied=n)``."""
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def warn(self, message: str) -> None:
        """Record a one-line warning (also logged)."""
        log.warning("%s", message)
        with self._lock:
            self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the CLI's ``--json``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["referrers"] = self.referrers.as_dict() if self.referrers is not None else None
        return out


def verified_chunks(chunks: Iterable[bytes], descriptor: Descriptor, *, progress: ProgressFn | None = None) -> Iterator[bytes]:
    """Yield ``chunks`` while hashing and counting; the last chunk only once the digest matches.

    Raises :class:`DigestMismatchError` (naming the digest) on too many bytes, too few, or a wrong hash,
    before the final chunk is released, so an upload fed from here never completes with bad bytes.
    """
    digest, size = descriptor.digest, descriptor.size
    algorithm = digest.split(":", 1)[0]
    h = hashlib.new(algorithm)
    n = 0
    pending: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        n += len(chunk)
        if n > size:
            raise DigestMismatchError(f"blob {digest} is larger than its descriptor's {size} bytes; refused", expected=digest)
        h.update(chunk)
        if pending is not None:
            yield pending
            if progress:
                progress(len(pending))
        pending = chunk
    if n != size:
        raise DigestMismatchError(f"blob {digest} ended after {n} of {size} bytes", expected=digest)
    actual = f"{algorithm}:{h.hexdigest()}"
    if actual != digest:
        raise DigestMismatchError(f"blob {digest} has bytes that hash to {actual}; refused", expected=digest, actual=actual)
    if pending is not None:
        yield pending
        if progress:
            progress(len(pending))


def coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Join the socket's small reads into ``size``-byte writes with one copy (``b"".join``).

    httpx's own ``iter_raw(chunk_size)`` buffers through BytesIO (two copies); the profile showed
    16% of a large copy's CPU there.
    """
    batch: list[bytes] = []
    held = 0
    for piece in pieces:
        batch.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(batch)
            batch, held = [], 0
    if batch:
        yield b"".join(batch)


class Copier:
    """Copies images between registries with bounded concurrency. Reuse one for many copies.

    ``concurrency``: blob transfers in flight (manifests: as many, at least 2); ``progress``: told
    what is to be copied and how far it got (:class:`CopyProgress`). Close it (or use it as a context
    manager) to stop its threads; after the client's ``abort()`` closing does not wait for them.
    """

    def __init__(self, client: RegistryClient, *, concurrency: int = 8, progress: CopyProgress | None = None) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.progress = progress or CopyProgress()
        self._blob_pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="blob")
        self._manifest_pool = ThreadPoolExecutor(max(2, self.concurrency), thread_name_prefix="manifest")
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str, str], Future[str]] = {}
        #: (registry host, digest) -> repositories there known to hold the blob (mount candidates)
        self._known: dict[tuple[str, str], set[str]] = {}
        #: (registry host, repository, subject digest) -> lock of that referrers tag's read-modify-write
        self._tag_locks: dict[tuple[str, str, str], threading.Lock] = {}
        #: registry host -> whether it answers the referrers API (absent: not asked yet)
        self.referrers_api: dict[str, bool] = {}
        #: (registry host, repository, referrer digest): referrers that destination refused (HTTP 405) and does
        #: not hold; not fetched again for the life of this copier
        self.referrers_refused: set[tuple[str, str, str]] = set()

    def close(self) -> None:
        """Stop the worker threads (waiting for running transfers unless the client was aborted; dropping queued ones)."""
        interrupter = getattr(self.client, "interrupter", None)
        wait = not (interrupter is not None and interrupter.interrupted)
        self._blob_pool.shutdown(wait=wait, cancel_futures=True)
        self._manifest_pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ public

    def copy(
        self,
        source: Reference,
        destination: Reference,
        *,
        platforms: Sequence[Platform] | None = None,
        arch_tags: bool = False,
        expected_digest: str | None = None,
        source_digest: str | None = None,
        force: bool = False,
        allow_nondistributable: bool = False,
        referrers: ReferrerPolicy | None = None,
        source_tags: Sequence[str] | None = None,
        destination_digest: str | None = None,
        destination_checked: bool = False,
    ) -> CopyReport:
        """Copy ``source`` to ``destination`` (a tag), then, with ``referrers``, its signatures, SBOMs and
        attestations (:meth:`copy_referrers`). ``source_tags``: the source repository's tags, if the caller
        just listed them. ``destination_checked``: the caller already knows what the destination tag holds,
        ``destination_digest`` (None: no such tag), e.g. from ECR's DescribeImages: no HEAD of it here.

        Which referrers are looked for: after a copy that wrote the image, those of every digest the
        destination now holds (the index when copied unchanged, its children) and their referrers, to
        :attr:`~ecr_mirror.referrers.ReferrerPolicy.max_depth`; when the image was already there, only if
        ``referrers.when_unchanged``, and then only those of the top-level digest, in at most
        :data:`~ecr_mirror.referrer_copy.SHALLOW_BUDGET` upstream requests, none a manifest or blob GET
        unless something is new (issue 14: children and deeper levels are the next sync copy's and the
        audit's). A referrer failure once the image is in place does not raise: it is
        ``report.referrers.error`` and a line in ``report.warnings``.

        The image is :meth:`_copy_image`'s work: the other arguments, and the errors raised, are its.
        """
        report = self._copy_image(source, destination, platforms=platforms, arch_tags=arch_tags,
                                  expected_digest=expected_digest, source_digest=source_digest, force=force,
                                  allow_nondistributable=allow_nondistributable,
                                  known_destination=(destination_digest,) if destination_checked else None)
        if referrers is None or (report.unchanged and not referrers.when_unchanged):
            return report
        written = report.written
        children = written.children if written is not None and written.is_index else []
        plan = plan_subjects(report.source_digest, report.digest, children)
        report.referrers = self.copy_referrers(
            source, destination, plan, referrers, report, source_tags=source_tags, shallow=report.unchanged,
            allow_nondistributable=allow_nondistributable,
        )
        self._warn_referrers(report)
        return report

    def _copy_image(
        self, source: Reference, destination: Reference, *, platforms: Sequence[Platform] | None, arch_tags: bool,
        expected_digest: str | None, source_digest: str | None, force: bool, allow_nondistributable: bool,
        known_destination: tuple[str | None] | None = None,
    ) -> CopyReport:
        """Copy ``source`` to ``destination`` (a tag). ``platforms=None`` copies every platform digest-identical.

        ``expected_digest``: the destination digest a previous copy of this source produced (platform
        subsets), so an unchanged subset is recognised without a source GET. ``source_digest``: the source
        digest if the caller already did the HEAD. ``force``: re-check and repair every child and blob even
        if the destination tag already points at the right digest (a ``broken`` image).
        ``allow_nondistributable``: also copy non-distributable layers, from the source registry or their
        ``urls``, where the bytes can be fetched and the destination takes them (else they are left out,
        with a warning in the report).

        Raises :class:`NotFoundError` (no such source: a HEAD 404 is confirmed with a GET first),
        :class:`CopyError` (no tag, platforms not there, arch tags that cannot tell two images apart:
        before anything is written), :class:`ManifestError`, :class:`DigestMismatchError`,
        :class:`RegistryError`. On an error the destination tag is as it was.
        """
        if not destination.tag:
            raise CopyError(f"destination {destination} needs a tag")
        report = CopyReport(str(source), str(destination))
        platforms = list(platforms) if platforms else None
        fetched: Manifest | None = None
        if source_digest is None:
            head = self.client.manifest_head(source, confirm_missing=True)
            if head is None:
                raise NotFoundError(f"source {source} not found")
            source_digest, fetched = head.digest, head.manifest
        report.source_digest = source_digest
        if known_destination is not None:  # known to the caller: (digest,) or (None,) for no such tag
            dest_head: Any = _KnownHead(known_destination[0], "") if known_destination[0] else None
        else:
            dest_head = self.client.manifest_head(destination)
        if dest_head is not None and not force:
            if (platforms is None and dest_head.digest == source_digest) or (platforms is not None and (
                dest_head.digest == expected_digest or self._dest_records_source(destination, dest_head.digest, source_digest, platforms)
            )):
                self._unchanged(report, dest_head.digest, dest_head.media_type)
                if arch_tags:  # the image is there; its arch tags may not be (asked for since: issue 13)
                    self._arch_tags_in_place(source, destination, report)
                return report
        src = fetched if fetched is not None and fetched.digest == source_digest else (
            self.client.manifest_get(source.with_digest(source_digest))
        )
        tally = _Tally(self.progress)
        job = _Job(source, destination, report, force, allow_nondistributable, progress=tally)
        with tally.until_done():
            if src.is_index:
                self._copy_index(job, src, platforms, arch_tags, dest_head.digest if dest_head and not force else None)
            else:
                self._copy_single(job, src, platforms, arch_tags)
        return report

    def copy_referrers(
        self, source: Reference, destination: Reference, plan: SubjectPlan, policy: ReferrerPolicy | None = None,
        report: CopyReport | None = None, *, source_tags: Sequence[str] | None = None, shallow: bool = False,
        allow_nondistributable: bool = False,
    ) -> ReferrersReport:
        """Copy the signatures, SBOMs and attestations of ``plan.subjects`` (digests ``destination``'s
        repository holds byte for byte: :func:`~ecr_mirror.referrers.plan_subjects`) from ``source``'s
        repository, and count those of ``plan.not_applicable``. The one call a sync or an audit makes for a
        tag already at the destination. ``report`` (optional) gets the blob counts; ``source_tags``: the
        source repository's tags if the caller just listed them (else one ``tags/list`` is made);
        ``shallow``: an unchanged image (see :meth:`copy`); ``allow_nondistributable`` as in :meth:`copy`.

        Raises only :class:`~ecr_mirror.errors.Deadline` and :class:`~ecr_mirror.errors.Interrupted` (Ctrl-C):
        any other failure ends the walk and is the returned report's ``error`` (what was done until then is
        counted). See
        :mod:`ecr_mirror.referrer_copy` for what is read and written.
        """
        report = report or CopyReport(str(source), str(destination))
        return copy_referrers(self, source, destination, plan, policy or ReferrerPolicy(), report, source_tags,
                              shallow=shallow, allow_nondistributable=allow_nondistributable)

    def fetch_entry(self, source: Reference, d: Descriptor) -> Manifest:
        """GET the manifest ``d`` names from ``source``'s repository by digest (accepting ``d``'s media type:
        :meth:`~ecr_mirror.registry.client.RegistryClient.manifest_get`), checked against ``d``'s size.
        Raises what ``manifest_get`` raises, :class:`DigestMismatchError`."""
        m = self.client.manifest_get(source.with_digest(d.digest), media_type=d.media_type)
        if len(m.raw) != d.size:
            raise DigestMismatchError(f"manifest {d.digest} is {len(m.raw)} bytes, its descriptor says {d.size}", expected=d.digest)
        return m

    def copy_content(
        self, source: Reference, destination: Reference, m: Manifest, report: CopyReport, *,
        allow_nondistributable: bool = False,
    ) -> None:
        """Everything manifest ``m`` (fetched from ``source``'s repository) needs at ``destination``'s before it
        can be PUT there, by the descriptor rules of :mod:`ecr_mirror.manifest`, as a copy does for an index
        entry: an index's entries by digest (nested indexes recursed), a manifest's required blobs
        (non-distributable layers left out unless ``allow_nondistributable``). Not ``m`` itself, and not its
        ``subject``. Raises what :meth:`copy` raises."""
        self._copy_needs(_Job(source, destination, report, allow_nondistributable=allow_nondistributable), m, 1)

    def referrers_tag_merge(
        self, destination: Reference, subject: str, *, upstream: Manifest | None = None,
        add: Sequence[Mapping[str, Any]] = (),
    ) -> Manifest | None:
        """Bring ``destination``'s referrers tag schema index of ``subject`` (the tag ``sha256-<hex>``) up to date:
        ``upstream``'s index merged in (its bytes as they are when nothing else is listed) and ``add``
        descriptors added, never an entry dropped (:func:`~ecr_mirror.referrers.merge_tag_index`).

        The one place that index is written (a manifest PUT without ``OCI-Subject``: :meth:`_put`; the
        referrers copy), read and written under one lock per (registry, repository, subject), so two writers
        in this copier never lose each other's entry. Returns the index written (``None``: the tag was up to date).
        Raises :class:`ManifestError` when the tag holds something other than an OCI index (left alone, as
        distribution-spec 1.1 asks), :class:`TagImmutableError` (saying how to allow it), what the client raises.
        """
        tag_ref = destination.with_tag(tag_schema_tag(subject))
        with self._lock:
            lock = self._tag_locks.setdefault((tag_ref.api_host, tag_ref.repository, subject), threading.Lock())
        with lock:
            current = self.client.referrers_tag_get(destination, subject)
            merged = merge_tag_index(current, upstream, add)
            if merged is None:
                return None
            try:
                self.client.manifest_put(tag_ref, merged)
            except TagImmutableError as exc:
                raise with_exclusion_hint(exc) from exc
            return merged

    def assemble(
        self, destination: Reference, sources: Sequence[Reference], *, allow_nondistributable: bool = False,
        referrers: ReferrerPolicy | None = None, arch_tags: bool = False,
    ) -> CopyReport:
        """Join single-platform images (from any registries) into one index at ``destination`` (a tag).

        Each source's platform comes from its config. The index is a Docker manifest list when every
        source is a Docker manifest, else an OCI index. Unchanged when the destination index already
        lists exactly these images. ``allow_nondistributable`` as in :meth:`copy`. ``referrers``: the referrers
        of each source image follow it (those of a source that is an index of one image do not apply to the
        new index), as in :meth:`copy`. ``arch_tags``: also tag each image ``<tag>-<arch>`` (written before
        the index; on an unchanged index, those missing are written). Raises :class:`CopyError` (no sources,
        an index of several platforms, an artifact, two sources of one platform) and what :meth:`copy` raises.
        """
        if not destination.tag:
            raise CopyError(f"destination {destination} needs a tag")
        if not sources:
            raise CopyError("assemble needs at least one source image")
        report = CopyReport(" + ".join(map(str, sources)), str(destination))
        heads = []
        for src in sources:
            head = self.client.manifest_head(src, confirm_missing=True)
            if head is None:
                raise NotFoundError(f"source {src} not found")
            heads.append(head)
        dest_head = self.client.manifest_head(destination)
        if dest_head is not None and dest_head.media_type in (OCI_INDEX, DOCKER_LIST):
            current = self.client.manifest_get(destination.with_digest(dest_head.digest))
            if [c.digest for c in current.children] == [h.digest for h in heads]:
                self._unchanged(report, current.digest, current.media_type)
                if arch_tags:
                    self._arch_tags_in_place(sources[0], destination, report, top=current)
                if referrers is not None and referrers.when_unchanged:
                    pairs = [(s, h.digest, h.digest) for s, h in zip(sources, heads)]
                    self._assembled_referrers(destination, pairs, referrers, report, shallow=True,
                                              allow_nondistributable=allow_nondistributable)
                return report

        def resolve(i: int) -> tuple[Reference, Manifest, Platform]:
            src, head = sources[i], heads[i]
            m = head.manifest if head.manifest is not None else self.client.manifest_get(src.with_digest(head.digest))
            if m.is_index:
                images = [c for c in m.children if not c.is_attestation and not (c.platform and c.platform.is_unknown)]
                if len(images) != 1:
                    raise CopyError(f"assemble source {src} is an index of {len(images)} platforms; give single-platform images")
                m = self.client.manifest_get(src.with_digest(images[0].digest), media_type=images[0].media_type)
                if m.is_index:
                    raise ManifestError(f"assemble source {src}: an index inside an index is not supported")
            if not m.is_image:
                raise CopyError(f"assemble source {src} is not an image ({m.artifact_type or m.media_type})")
            platform = Platform.from_config(self._config_json(src, m))
            return src, m, platform

        resolved = list(self._manifest_pool.map(resolve, range(len(sources))))
        seen: dict[Platform, Reference] = {}
        for src, _, platform in resolved:
            if platform in seen:
                raise CopyError(f"assemble: {seen[platform]} and {src} are both {platform}")
            seen[platform] = src
        tally = _Tally(self.progress)
        jobs = [_Job(src, destination, report, allow_nondistributable=allow_nondistributable, label=str(p), progress=tally)
                for src, _, p in resolved]
        with tally.until_done():
            for job in jobs:  # announce the parts in the order given (a display draws them in this order)
                tally.planned(str(destination), job.label, 0)
            futures = [self._manifest_pool.submit(self._copy_manifest, job, m) for job, (_, m, _) in zip(jobs, resolved)]
            self._wait_all(futures)
            media = DOCKER_LIST if all(m.media_type == DOCKER_MANIFEST for _, m, _ in resolved) else OCI_INDEX
            index = build_index([(m, p) for _, m, p in resolved], media)

            def repair() -> None:
                self._wait_all([self._manifest_pool.submit(self._copy_manifest, job, m, put=False)
                                for job, (_, m, _) in zip(jobs, resolved)])

            if arch_tags:  # the images are in place: their arch tags before the index tag, as a copy does
                self._arch_tags_in_place(sources[0], destination, report, top=index)
            self._put_rechecked(destination, index, repair)
        report.add(manifests_copied=1)
        report.wrote(index)
        report.platforms = [str(p) for _, _, p in resolved]
        if referrers is not None:
            pairs = [(src, head.digest, m.digest) for (src, m, _), head in zip(resolved, heads)]
            self._assembled_referrers(destination, pairs, referrers, report, shallow=False,
                                      allow_nondistributable=allow_nondistributable)
        return report

    def _assembled_referrers(
        self, destination: Reference, pairs: Sequence[tuple[Reference, str, str]], policy: ReferrerPolicy,
        report: CopyReport, *, shallow: bool, allow_nondistributable: bool,
    ) -> None:
        """Referrers of each assembled image ``(source, upstream digest, image digest)`` follow it."""
        reports = []
        for src, upstream, image in pairs:
            reason = (f"their subject is the upstream index {upstream}; the image {image} was taken from it "
                      "into a new index, so they do not apply to it")
            plan = SubjectPlan((image,), {upstream: reason} if upstream != image else {})
            reports.append(self.copy_referrers(src, destination, plan, policy, report, shallow=shallow,
                                               allow_nondistributable=allow_nondistributable))
        merged = ReferrersReport()
        for one in reports:
            merged.merge(one)
        report.referrers = merged
        self._warn_referrers(report)

    @staticmethod
    def _warn_referrers(report: CopyReport) -> None:
        """A referrer failure once the image is in place: one warning line, the copy itself stands."""
        if report.referrers is not None and report.referrers.error:
            report.warn(f"{report.destination}: the image is in place, but its referrers were not all copied: "
                        f"{report.referrers.error}")

    def find_missing(self, ref: Reference, *, blobs: bool = True, verified: set[str] | None = None) -> str | None:
        """What of the manifest ``ref`` (at a registry, usually by digest) is gone: ``None`` when complete,
        else one line naming the first absent manifest or blob.

        Walks what a copy writes (the same rules): every index entry, nested indexes to
        :data:`~ecr_mirror.manifest.MAX_INDEX_DEPTH`; with ``blobs``, every required blob (HEAD), skipping
        non-distributable layers, which are absent by design, and digests in ``verified`` (seen present
        during this pass; found ones are added). ``subject`` is not followed. Raises what the client raises
        for anything but a 404.
        """
        verified = set() if verified is None else verified

        def walk(m: Manifest, depth: int) -> str | None:
            if m.is_index:
                if depth > MAX_INDEX_DEPTH:
                    return None  # a copy refuses deeper trees; nothing below was written
                for child in m.children:
                    try:
                        found = self.client.manifest_get(ref.with_digest(child.digest), media_type=child.media_type)
                    except NotFoundError:
                        return f"child manifest {child.digest}"
                    gone = walk(found, depth + 1)
                    if gone:
                        return gone
                return None
            for blob in m.required_blobs if blobs else []:
                if blob.digest in verified:
                    continue
                if self.client.blob_head(ref, blob.digest) is None:
                    return f"blob {blob.digest}"
                verified.add(blob.digest)
            return None

        try:
            top = self.client.manifest_get(ref)
        except NotFoundError:
            return f"manifest {ref.identifier}"
        return walk(top, 1)

    # ------------------------------------------------------------ internals

    def _unchanged(self, report: CopyReport, digest: str, media_type: str) -> CopyReport:
        report.unchanged = True
        report.digest = digest
        report.media_type = media_type
        return report

    def _dest_records_source(self, destination: Reference, dest_digest: str, source_digest: str, platforms: Sequence[Platform]) -> bool:
        """An OCI index we rewrote records its source digest: compare it, reading only the destination."""
        try:
            current = self.client.manifest_get(destination.with_digest(dest_digest))
        except Interrupted:
            raise
        except MirrorError:
            return False
        if current.media_type != OCI_INDEX:
            return False
        annotations = current.data.get("annotations") or {}
        if annotations.get(ANNOTATION_SOURCE_DIGEST) != source_digest:
            return False
        have = [c.platform for c in current.children if c.platform and not c.is_attestation]
        return all(any(want.matches(p) for p in have) for want in platforms) and all(
            any(want.matches(p) for want in platforms) for p in have
        )

    def _arch_tags_in_place(self, source: Reference, destination: Reference, report: CopyReport, *,
                            top: Manifest | None = None) -> None:
        """The ``<tag>-<arch>`` tags of an image already at ``destination`` (``report.digest``, or ``top``):
        write those that do not point at their image yet, from what the destination holds (issue 13: a row
        that gains ``arch_tags``, ``copy --arch-tags`` onto an existing tag must not leave them unwritten).
        Reads only the destination: the index (unless given), a HEAD per arch tag, and for each tag to write
        its manifest (GET by digest) before the PUT; no source request, no blob. Suffixes as in a copy
        (:func:`~ecr_mirror.manifest.arch_tag_suffixes`: :class:`CopyError` before anything is written when two
        images would get one tag). ``report.arch_tags`` lists the tags written."""
        if top is None:
            top = self.client.manifest_get(destination.with_digest(report.digest))
        wanted: list[tuple[Descriptor | None, str]]
        if top.is_index:
            wanted = [(d, self._arch_tag(destination, suffix)) for d, suffix in arch_tag_suffixes(top.children)]
        elif top.is_image:
            platform = Platform.from_config(self._config_json(destination, top))
            wanted = [(None, self._arch_tag(destination, platform.architecture))]
        else:
            report.warn(f"{source} is not an image ({top.artifact_type or top.media_type}): no arch tag written")
            return
        for d, tag in wanted:
            digest = top.digest if d is None else d.digest
            tag_ref = destination.with_tag(tag)
            head = self.client.manifest_head(tag_ref)
            report.arch_tag_digests[tag] = digest
            if head is not None and head.digest == digest:
                continue
            m = top if d is None else self.client.manifest_get(destination.with_digest(digest), media_type=d.media_type)
            self._put_tag(tag_ref, m)
            report.arch_tags.append(tag)

    @staticmethod
    def _arch_tag(destination: Reference, suffix: str) -> str:
        tag = f"{destination.tag}-{suffix}"
        try:
            return check_tag(tag)
        except ReferenceError_ as exc:
            raise CopyError(f"arch tag for {destination}: {exc}") from exc

    def _copy_single(self, job: _Job, manifest: Manifest, platforms: Sequence[Platform] | None, arch_tags: bool) -> None:
        source, destination, report = job.source, job.destination, job.report
        platform: Platform | None = None
        if platforms and not manifest.is_image:
            what = manifest.artifact_type or manifest.media_type
            raise CopyError(f"{source} is not an image ({what}); platforms do not apply")
        if (platforms or arch_tags) and manifest.is_image:
            platform = Platform.from_config(self._config_json(source, manifest))
            if platforms and not any(want.matches(platform) for want in platforms):
                wanted = ", ".join(map(str, platforms))
                raise CopyError(f"{source} is a single {platform} image, not {wanted}")
        tag = self._arch_tag(destination, platform.architecture) if arch_tags and platform is not None else None
        if arch_tags and tag is None:
            report.warn(f"{source} is not an image ({manifest.artifact_type or manifest.media_type}): no arch tag written")
        self._copy_manifest(replace(job, label=str(platform)) if platform else job, manifest, put=False)
        if tag is not None:
            self._put_tag(destination.with_tag(tag), manifest)
            report.arch_tags.append(tag)
            report.arch_tag_digests[tag] = manifest.digest
        self._put(job, destination, manifest)
        report.add(manifests_copied=1)
        report.wrote(manifest)
        report.platforms = [str(platform)] if platform else []

    def _copy_index(
        self, job: _Job, index: Manifest, platforms: Sequence[Platform] | None, arch_tags: bool, dest_digest: str | None,
    ) -> None:
        destination, report = job.destination, job.report
        children = select_children(index, platforms)
        out = rewrite_index(index, children, source=str(job.source)) if platforms else index
        if dest_digest == out.digest:
            self._unchanged(report, out.digest, out.media_type)
            if arch_tags:
                self._arch_tags_in_place(job.source, destination, report, top=out)
            return
        # every arch tag is decided before anything is written: two images one tag cannot tell apart refuse the copy
        suffixes = arch_tag_suffixes(children) if arch_tags else []
        tags = [(d.digest, self._arch_tag(destination, suffix)) for d, suffix in suffixes]
        need = {digest for digest, _ in tags}
        self._announce(job, children)
        copy_child = carry(self._copy_child)  # its manifest GETs draw from this tag's pull reservation
        futures = [self._manifest_pool.submit(copy_child, job, d, 2, d.digest in need) for d in children]
        manifests = self._wait_all(futures)
        by_digest = {m.digest: m for m in manifests if m is not None}
        for digest, tag in dict.fromkeys(tags):
            self._put_tag(destination.with_tag(tag), by_digest[digest])
            report.arch_tags.append(tag)
            report.arch_tag_digests[tag] = digest
        self._put(job, destination, out)
        report.add(manifests_copied=1)
        report.wrote(out)
        report.platforms = [
            str(c.platform) for c in children if c.platform and not c.platform.is_unknown and not c.is_attestation
        ]

    def _copy_child(self, job: _Job, d: Descriptor, depth: int, need_manifest: bool = False) -> Manifest | None:
        """Copy index entry ``d`` (at ``depth``; the top-level index is 1) by digest, as its kind asks.

        Runs on the manifest pool; the entries of a nested index are copied in this thread (no pool
        thread waits on another). Returns the manifest when ``need_manifest`` (or it was fetched anyway).
        """
        target = job.destination.with_digest(d.digest)
        if not job.force and self.client.manifest_head(target) is not None:
            job.report.add(manifests_skipped=1)
            return self.client.manifest_get(target, media_type=d.media_type) if need_manifest else None
        m = self.fetch_entry(job.source, d)
        job = replace(job, label=part_label(d, job.label))
        self._copy_needs(job, m, depth)
        self._put(job, target, m)
        job.report.add(manifests_copied=1)
        return m

    def _copy_needs(self, job: _Job, m: Manifest, depth: int) -> None:
        """What ``m`` (at ``depth``) needs at the destination before its PUT: an index's entries, recursed up to
        :data:`~ecr_mirror.manifest.MAX_INDEX_DEPTH`; an image, artifact or opaque manifest's blobs."""
        if m.is_index:
            if depth > MAX_INDEX_DEPTH:
                raise ManifestError(
                    f"index {job.source} nests indexes more than {MAX_INDEX_DEPTH} deep (at {m.digest}); refused"
                )
            children = m.children
            self._announce(job, children)
            for child in children:
                self._copy_child(job, child, depth + 1)
            if depth > 1:  # a nested index: the audit checks its entries too
                job.report.add_children(c.digest for c in children)
        else:
            self._copy_manifest(job, m, put=False)

    def _announce(self, job: _Job, children: Sequence[Descriptor]) -> None:
        """Tell the progress display the parts of an index in index order (it draws them in this order);
        an entry that is an index without a platform is announced by its own entries when it is read."""
        for d in children:
            if d.platform is not None or entry_kind(d) != ENTRY_INDEX:
                job.progress.planned(str(job.destination), part_label(d, job.label), 0)

    def _copy_manifest(self, job: _Job, m: Manifest, *, put: bool = True) -> None:
        """An image, artifact or opaque manifest: its required blobs (and, opted in, its non-distributable
        layers), then, with ``put``, the manifest by digest. Non-distributable layers left out are not
        part of the progress total."""
        required = m.required_blobs
        foreign = m.nondistributable_layers if job.allow_nondistributable else []
        for b in [*required, *foreign]:
            job.progress.planned(str(job.destination), job.label, b.size)
        futures = [self._blob_pool.submit(self._copy_blob, job, b) for b in required]
        futures += [self._blob_pool.submit(self._copy_nondistributable, job, d) for d in foreign]
        if not job.allow_nondistributable and m.nondistributable_layers:
            job.report.add(nondistributable_skipped=len(m.nondistributable_layers))
        self._wait_all(futures)
        if put:
            self._put(job, job.destination.with_digest(m.digest), m)
            job.report.add(manifests_copied=1)

    def _put(self, job: _Job, ref: Reference, m: Manifest) -> None:
        """PUT ``m`` at ``ref``; for a manifest with a ``subject`` that the registry did not index
        (no ``OCI-Subject`` in the answer), add it to the subject's referrers tag schema index
        (distribution-spec 1.1, "Pushing Manifests with Subject"; :meth:`referrers_tag_merge`). A tag that
        cannot take it is left alone, with a warning."""
        answer = self._put_rechecked(ref, m, lambda: self._copy_needs(job, m, 1))
        if answer is None:  # an immutable tag already holding ``m``: written before
            return
        try:
            subject = m.subject
        except ManifestError:
            subject = None  # a malformed subject: nothing a referrers list could name
        if subject is None or answer.oci_subject is not None:
            return
        try:
            self.referrers_tag_merge(job.destination, subject.digest, add=[referrer_descriptor(m)])
        except (ManifestError, TagImmutableError) as exc:
            job.report.warn(f"referrers tag {tag_schema_tag(subject.digest)} of {subject.digest} not updated for "
                            f"{m.digest}: {exc}")

    def _put_rechecked(self, ref: Reference, m: Manifest, repair: Callable[[], None]) -> ManifestPut | None:
        """:meth:`_put_tag`; if the destination says a blob or child manifest ``m`` names is unknown, run
        ``repair`` (check again at the destination what ``m`` names, copy what is missing) and PUT once more."""
        try:
            return self._put_tag(ref, m)
        except RegistryError as exc:
            if not _BLOB_UNKNOWN & set(exc.codes):
                raise
            log.warning("PUT manifest %s: %s; re-checking what it names, then trying once more", ref, exc)
            repair()
            try:
                return self._put_tag(ref, m)
            except RegistryError as again:
                foreign = m.nondistributable_layers if m.is_image else []
                if not foreign or not _BLOB_UNKNOWN & set(again.codes):
                    raise
                raise CopyError(
                    f"{ref}: the destination refuses the manifest: it names {len(foreign)} non-distributable "
                    f"layer(s) (e.g. Windows base layers, {foreign[0].digest}) that are left out by design, and "
                    "this registry insists on holding every layer. Copy into a registry that accepts them (ECR; "
                    "distribution with validation.manifests.urls.allow), or opt in to copying them "
                    f"(--allow-nondistributable-artifacts) where their bytes are reachable ({again})"
                ) from again

    def _put_tag(self, ref: Reference, m: Manifest) -> ManifestPut | None:
        """PUT ``m`` at ``ref``; ``None`` when ``ref``'s tag is immutable and already holds ``m``'s digest: ECR
        refuses that re-push even with the same digest (TAG_INVALID; aws/containers-roadmap#2179), as on a
        retry after a PUT whose answer was lost, or a rerun after the arch tags were written."""
        try:
            return self.client.manifest_put(ref, m)
        except TagImmutableError:
            head = self.client.manifest_head(ref)
            if head is None or head.digest != m.digest:
                raise
            return None

    def _wait_all(self, futures: Sequence[Future[Any]]) -> list[Any]:
        """Wait for every future (so nothing is left running), then raise the first error."""
        results, first_error = [], None
        for f in futures:
            try:
                results.append(f.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
        return results

    def _config_json(self, source: Reference, m: Manifest) -> dict[str, Any]:
        cfg = m.config
        if cfg.size > MAX_CONFIG_BYTES:
            raise ManifestError(f"config {cfg.digest} of {source} is {cfg.size} bytes, too large")

        def read() -> bytes:
            with self.client.blob_open(source, cfg.digest) as chunks:
                return b"".join(verified_chunks(chunks, cfg))

        data = self.client.retrying(read, what=f"read config {cfg.digest} of {source}")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ManifestError(f"config {cfg.digest} of {source} is not JSON") from exc
        if not isinstance(doc, dict):
            raise ManifestError(f"config {cfg.digest} of {source} is not a JSON object")
        return doc

    def _copy_nondistributable(self, job: _Job, d: Descriptor) -> None:
        """Opted in: copy a non-distributable layer from the source registry, else from each of its
        ``urls`` in turn; where none serves the right bytes or the destination refuses them, leave it
        out (as without the option) with a warning, and out of the progress total."""
        openers: list[tuple[str, Opener]] = [("the source registry", lambda: self.client.blob_open(job.source, d.digest))]
        openers += [(url, lambda url=url: self.client.blob_open_url(job.source, url, d.digest)) for url in d.urls]
        failures = []
        for where, opener in openers:
            try:
                self._copy_blob(job, d, opener)
            except (Deadline, Interrupted):
                raise
            except MirrorError as exc:
                failures.append(f"{where}: {exc}")
                continue
            job.report.add(nondistributable_copied=1)
            return
        job.report.add(nondistributable_skipped=1)
        job.progress.settled(str(job.destination), job.label, d.size)
        job.report.warn(f"non-distributable layer {d.digest} left out ({'; '.join(failures)})")

    def _copy_blob(self, job: _Job, d: Descriptor, opener: Opener | None = None) -> str:
        """Blob ``d`` of ``job`` at its destination (:meth:`_transfer_blob`), once per destination repository
        however many copies in flight ask for it. Returns the digest."""
        destination, report = job.destination, job.report
        key = (destination.api_host, destination.repository, d.digest)
        with self._lock:
            running = self._inflight.get(key)
            if running is None:
                mine: Future[str] = Future()
                self._inflight[key] = mine
        if running is not None:
            running.result()  # another copy is moving the same blob into the same repository
            report.add(blobs_skipped=1)
            job.progress.settled(str(destination), job.label, d.size)
            return d.digest
        try:
            outcome = self._transfer_blob(job, d, opener)
            mine.set_result(outcome)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:  # dedupe only transfers in flight: a later copy checks the destination again
            with self._lock:
                self._inflight.pop(key, None)
        with self._lock:
            self._known.setdefault((destination.api_host, d.digest), set()).add(destination.repository)
        return d.digest

    def _transfer_blob(self, job: _Job, d: Descriptor, opener: Opener | None = None) -> str:
        """Blob ``d`` at ``job``'s destination: found there (HEAD), mounted from a repository known to hold
        it, or streamed from ``opener`` (default: the source registry) into an upload, retried as a whole.
        Progress: ``settled`` when nothing moved, else every byte sent (taken back on a restart or a failure)."""
        client, source, destination, report, label, progress = (
            self.client, job.source, job.destination, job.report, job.label, job.progress,
        )
        dest = str(destination)
        if client.blob_head(destination, d.digest) is not None:
            report.add(blobs_skipped=1)
            progress.settled(dest, label, d.size)
            return "skipped"
        sessions: list[str] = []  # an upload session a mount attempt opened (202): used by the first try
        with self._lock:
            candidates = sorted(self._known.get((destination.api_host, d.digest), set()) - {destination.repository})
        if not candidates and source.api_host == destination.api_host and source.repository != destination.repository:
            candidates = [source.repository]
        if candidates:
            try:
                location = client.blob_upload_start(destination, mount=d.digest, mount_from=candidates[0])
            except RegistryError as exc:  # a registry that fails the mount: upload normally
                log.info("mount of %s from %s failed (%s); uploading", d.digest, candidates[0], exc)
            else:
                if location is None:
                    report.add(blobs_mounted=1)
                    progress.settled(dest, label, d.size)
                    return "mounted"
                sessions.append(location)
        open_blob = opener or (lambda: client.blob_open(source, d.digest))

        sent = 0  # bytes of this blob reported as sent, taken back when the transfer restarts or fails

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            progress.moved(dest, label, n)

        def take_back() -> None:
            nonlocal sent
            if sent:
                progress.moved(dest, label, -sent)
                sent = 0

        def transfer() -> None:
            take_back()
            with open_blob() as chunks:
                # a session is used once: a broken upload cannot be resumed (ECR), the next try opens another
                location = sessions.pop() if sessions else client.blob_upload_start(destination)
                body = coalesce(verified_chunks(chunks, d, progress=advance), CHUNK_SIZE)
                client.blob_upload_finish(destination, location, d.digest, d.size, body)

        try:
            client.retrying(transfer, what=f"copy blob {d.digest}")
        except BaseException:
            take_back()  # a non-distributable layer tried from its next URL starts from nothing
            raise
        report.add(blobs_copied=1, bytes_copied=d.size)
        return "copied"


@dataclass(frozen=True)
class _Job:
    """One copy's fixed parts, handed down the tree: where from and to, its report, its options."""

    source: Reference
    destination: Reference
    report: CopyReport
    force: bool = False
    allow_nondistributable: bool = False
    #: the :class:`CopyProgress` label of the part being copied (an index entry's platform, ...)
    label: str = "image"
    #: where progress goes: the copier's, through this copy's :class:`_Tally`
    progress: CopyProgress = field(default_factory=CopyProgress)


class _Tally(CopyProgress):
    """One copy's progress, passed on to ``inner`` and counted: when the copy fails, what it planned and
    did not move or settle leaves the total (:meth:`until_done`), so a display that goes on (``sync``'s,
    over many tags, or a copy started again) keeps a total that can be reached."""

    def __init__(self, inner: CopyProgress) -> None:
        self.inner = inner
        self._open: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _count(self, destination: str, label: str, n: int) -> None:
        with self._lock:
            key = (destination, label)
            self._open[key] = self._open.get(key, 0) + n

    def planned(self, destination: str, label: str, size: int) -> None:
        self._count(destination, label, size)
        self.inner.planned(destination, label, size)

    def moved(self, destination: str, label: str, n: int) -> None:
        self._count(destination, label, -n)
        self.inner.moved(destination, label, n)

    def settled(self, destination: str, label: str, size: int) -> None:
        self._count(destination, label, -size)
        self.inner.settled(destination, label, size)

    @contextlib.contextmanager
    def until_done(self) -> Iterator[None]:
        """Run the copy; if it raises, settle every byte still open, then re-raise."""
        try:
            yield
        except BaseException:
            with self._lock:
                left, self._open = self._open, {}
            for (destination, label), size in left.items():
                if size > 0:
                    self.inner.settled(destination, label, size)
            raise
