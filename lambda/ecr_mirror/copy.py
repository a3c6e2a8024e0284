"""The copy engine: index -> child manifests -> blobs, every digest verified, the tag written last.

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

No HTTP here: the engine talks to a :class:`~ecr_mirror.registry.client.RegistryClient` and sees only
the package's errors and ``bytes`` (it imports with httpx unavailable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .errors import CopyError, DigestMismatchError, ManifestError, MirrorError, NotFoundError, RegistryError
from .manifest import (
    ANNOTATION_SOURCE_DIGEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    Descriptor,
    Manifest,
    Platform,
    arch_tag_suffixes,
    build_index,
    rewrite_index,
    select_children,
)
from .reference import Reference

if TYPE_CHECKING:  # the engine needs the client's methods, not its module (which imports httpx)
    from .registry.client import RegistryClient

log = logging.getLogger(__name__)

#: bytes per write of a blob upload (socket reads are joined up to this size)
CHUNK_SIZE = 1 << 20
#: largest image config read (to learn its platform), in bytes
MAX_CONFIG_BYTES = 4 << 20
#: ``progress(n)``: ``n`` more bytes of blob were sent
ProgressFn = Callable[[int], None]


class CopyProgress:
    """What a copy reports while it runs, for a progress display; every method is a no-op here.

    ``destination`` is the reference written (``str``); ``label`` says which part of the image a blob
    belongs to: its platform (``linux/arm64/v8``), ``attestations``, or ``image`` (a single image whose
    platform was not read). Sizes are bytes, from the manifests' descriptors, so the total is known
    as soon as the manifests are read. Called from several threads at once.
    """

    def planned(self, destination: str, label: str, size: int) -> None:
        """A blob of ``size`` bytes is part of the copy."""

    def moved(self, destination: str, label: str, n: int) -> None:
        """``n`` more bytes of a blob were sent; negative when a blob restarts and takes back what it had sent."""

    def settled(self, destination: str, label: str, size: int) -> None:
        """A planned blob needed no transfer (already there, mounted): its ``size`` leaves the total."""


def part_label(d: Descriptor) -> str:
    """The :class:`CopyProgress` label of an index child: its platform, or ``attestations``."""
    if d.is_attestation or (d.platform is not None and d.platform.is_unknown):
        return "attestations"
    return str(d.platform) if d.platform is not None else "image"


@dataclass
class CopyReport:
    """What one copy (or assemble) did.

    ``source``/``destination``: the references as given; ``digest``/``media_type``: what the
    destination tag holds now; ``platforms``: the platforms written (``os/arch[/variant]``);
    ``unchanged``: the destination already held it, nothing was written. Counts: manifests
    written or found present; blobs uploaded, found present, or mounted from another repository;
    ``bytes_copied``: blob bytes uploaded. ``arch_tags``: the ``<tag>-<arch>`` tags written;
    ``requests``: ``{host: {method: count}}``, filled in by the CLI. Thread-safe counters (:meth:`add`).
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
    arch_tags: list[str] = field(default_factory=list)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add to counters by name, e.g. ``add(blobs_copied=1, bytes_copied=n)``."""
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the CLI's ``--json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


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
    ) -> CopyReport:
        """Copy ``source`` to ``destination`` (a tag). ``platforms=None`` copies every platform digest-identical.

        ``expected_digest``: the destination digest a previous copy of this source produced (platform
        subsets), so an unchanged subset is recognised without a source GET. ``source_digest``: the source
        digest if the caller already did the HEAD. ``force``: re-check and repair every child and blob even
        if the destination tag already points at the right digest (a ``broken`` image).

        Raises :class:`NotFoundError` (no such source), :class:`CopyError` (no tag, platforms not there),
        :class:`ManifestError`, :class:`DigestMismatchError`, :class:`RegistryError`. On an error the
        destination tag is as it was.
        """
        if not destination.tag:
            raise CopyError(f"destination {destination} needs a tag")
        report = CopyReport(str(source), str(destination))
        platforms = list(platforms) if platforms else None
        if source_digest is None:
            head = self.client.manifest_head(source)
            if head is None:
                raise NotFoundError(f"source {source} not found")
            source_digest = head.digest
        dest_head = self.client.manifest_head(destination)
        if dest_head is not None and not force:
            if platforms is None and dest_head.digest == source_digest:
                return self._unchanged(report, dest_head.digest, dest_head.media_type)
            if platforms is not None and (
                dest_head.digest == expected_digest or self._dest_records_source(destination, dest_head.digest, source_digest, platforms)
            ):
                return self._unchanged(report, dest_head.digest, dest_head.media_type)
        src = self.client.manifest_get(source.in_repository(source.repository).with_digest(source_digest))
        if src.is_index:
            self._copy_index(source, destination, src, platforms, arch_tags, report,
                             dest_head.digest if dest_head and not force else None, force)
        else:
            self._copy_single(source, destination, src, platforms, arch_tags, report)
        return report

    def assemble(self, destination: Reference, sources: Sequence[Reference]) -> CopyReport:
        """Join single-platform images (from any registries) into one index at ``destination`` (a tag).

        Each source's platform comes from its config. The index is a Docker manifest list when every
        source is a Docker manifest, else an OCI index. Unchanged when the destination index already
        lists exactly these images. Raises :class:`CopyError` (no sources, an index of several platforms,
        two sources of one platform) and what :meth:`copy` raises.
        """
        if not destination.tag:
            raise CopyError(f"destination {destination} needs a tag")
        if not sources:
            raise CopyError("assemble needs at least one source image")
        report = CopyReport(" + ".join(map(str, sources)), str(destination))
        heads = []
        for src in sources:
            head = self.client.manifest_head(src)
            if head is None:
                raise NotFoundError(f"source {src} not found")
            heads.append(head)
        dest_head = self.client.manifest_head(destination)
        if dest_head is not None and dest_head.media_type in (OCI_INDEX, DOCKER_LIST):
            current = self.client.manifest_get(destination.with_digest(dest_head.digest))
            if [c.digest for c in current.children] == [h.digest for h in heads]:
                return self._unchanged(report, current.digest, current.media_type)

        def resolve(i: int) -> tuple[Reference, Manifest, Platform]:
            src = sources[i]
            m = self.client.manifest_get(src.with_digest(heads[i].digest))
            if m.is_index:
                images = [c for c in m.children if not c.is_attestation and not (c.platform and c.platform.is_unknown)]
                if len(images) != 1:
                    raise CopyError(f"assemble source {src} is an index of {len(images)} platforms; give single-platform images")
                m = self.client.manifest_get(src.with_digest(images[0].digest))
                if m.is_index:
                    raise ManifestError(f"assemble source {src}: an index inside an index is not supported")
            platform = Platform.from_config(self._config_json(src, m))
            return src, m, platform

        resolved = list(self._manifest_pool.map(resolve, range(len(sources))))
        seen: dict[Platform, Reference] = {}
        for src, _, platform in resolved:
            if platform in seen:
                raise CopyError(f"assemble: {seen[platform]} and {src} are both {platform}")
            seen[platform] = src
        futures = [self._manifest_pool.submit(self._copy_image_manifest, src, destination, m, report, label=str(p))
                   for src, m, p in resolved]
        self._wait_all(futures)
        media = DOCKER_LIST if all(m.media_type == DOCKER_MANIFEST for _, m, _ in resolved) else OCI_INDEX
        index = build_index([(m, p) for _, m, p in resolved], media)
        self.client.manifest_put(destination, index)
        report.add(manifests_copied=1)
        report.digest, report.media_type = index.digest, index.media_type
        report.platforms = [str(p) for _, _, p in resolved]
        return report

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

    def _copy_single(
        self, source: Reference, destination: Reference, manifest: Manifest, platforms: Sequence[Platform] | None,
        arch_tags: bool, report: CopyReport,
    ) -> None:
        platform: Platform | None = None
        if platforms or arch_tags:
            platform = Platform.from_config(self._config_json(source, manifest))
            if platforms and not any(want.matches(platform) for want in platforms):
                wanted = ", ".join(map(str, platforms))
                raise CopyError(f"{source} is a single {platform} image, not {wanted}")
        self._copy_image_manifest(source, destination, manifest, report, put=False, label=str(platform) if platform else "image")
        if arch_tags and platform is not None:
            tag = f"{destination.tag}-{platform.architecture}"
            self.client.manifest_put(destination.with_tag(tag), manifest)
            report.arch_tags.append(tag)
        self.client.manifest_put(destination, manifest)
        report.add(manifests_copied=1)
        report.digest, report.media_type = manifest.digest, manifest.media_type
        report.platforms = [str(platform)] if platform else []

    def _copy_index(
        self, source: Reference, destination: Reference, index: Manifest, platforms: Sequence[Platform] | None,
        arch_tags: bool, report: CopyReport, dest_digest: str | None, force: bool = False,
    ) -> None:
        children = select_children(index, platforms)
        out = rewrite_index(index, children, source=str(source)) if platforms else index
        if dest_digest == out.digest:
            self._unchanged(report, out.digest, out.media_type)
            return
        for d in children:  # announce the parts in index order (a display draws them in this order)
            self.progress.planned(str(destination), part_label(d), 0)
        futures = [self._manifest_pool.submit(self._copy_child, source, destination, d, report, arch_tags, force) for d in children]
        manifests = self._wait_all(futures)
        if arch_tags:
            by_digest = {m.digest: m for m in manifests if m is not None}
            for digest, suffix in arch_tag_suffixes(children).items():
                tag = f"{destination.tag}-{suffix}"
                self.client.manifest_put(destination.with_tag(tag), by_digest[digest])
                report.arch_tags.append(tag)
        self.client.manifest_put(destination, out)
        report.add(manifests_copied=1)
        report.digest, report.media_type = out.digest, out.media_type
        report.platforms = [str(c.platform) for c in children if c.platform and not c.is_attestation]

    def _copy_child(
        self, source: Reference, destination: Reference, d: Descriptor, report: CopyReport, need_manifest: bool = False,
        force: bool = False,
    ) -> Manifest | None:
        target = destination.with_digest(d.digest)
        if not force and self.client.manifest_head(target) is not None:
            report.add(manifests_skipped=1)
            return self.client.manifest_get(target) if need_manifest else None
        m = self.client.manifest_get(source.with_digest(d.digest))
        if m.is_index:
            raise ManifestError(f"index {source} lists another index {d.digest}; nested indexes are not supported")
        if len(m.raw) != d.size:
            raise DigestMismatchError(f"manifest {d.digest} is {len(m.raw)} bytes, its descriptor says {d.size}", expected=d.digest)
        self._copy_image_manifest(source, destination, m, report, label=part_label(d))
        return m

    def _copy_image_manifest(
        self, source: Reference, destination: Reference, m: Manifest, report: CopyReport, *, put: bool = True, label: str = "image",
    ) -> None:
        for b in m.blobs:
            self.progress.planned(str(destination), label, b.size)
        blobs = [self._blob_pool.submit(self._copy_blob, source, destination, b, report, label) for b in m.blobs]
        self._wait_all(blobs)
        if put:
            self.client.manifest_put(destination.with_digest(m.digest), m)
            report.add(manifests_copied=1)

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

    def _copy_blob(self, source: Reference, destination: Reference, d: Descriptor, report: CopyReport, label: str = "image") -> str:
        key = (destination.api_host, destination.repository, d.digest)
        with self._lock:
            running = self._inflight.get(key)
            if running is None:
                mine: Future[str] = Future()
                self._inflight[key] = mine
        if running is not None:
            running.result()  # another copy is moving the same blob into the same repository
            report.add(blobs_skipped=1)
            self.progress.settled(str(destination), label, d.size)
            return d.digest
        try:
            outcome = self._transfer_blob(source, destination, d, report, label)
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

    def _transfer_blob(self, source: Reference, destination: Reference, d: Descriptor, report: CopyReport, label: str) -> str:
        client = self.client
        dest = str(destination)
        if client.blob_head(destination, d.digest) is not None:
            report.add(blobs_skipped=1)
            self.progress.settled(dest, label, d.size)
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
                    self.progress.settled(dest, label, d.size)
                    return "mounted"
                sessions.append(location)

        sent = 0  # bytes of this blob reported as sent, taken back when the transfer restarts

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            self.progress.moved(dest, label, n)

        def transfer() -> None:
            nonlocal sent
            if sent:
                self.progress.moved(dest, label, -sent)
                sent = 0
            with client.blob_open(source, d.digest) as chunks:
                # a session is used once: a broken upload cannot be resumed (ECR), the next try opens another
                location = sessions.pop() if sessions else client.blob_upload_start(destination)
                body = coalesce(verified_chunks(chunks, d, progress=advance), CHUNK_SIZE)
                client.blob_upload_finish(destination, location, d.digest, d.size, body)

        client.retrying(transfer, what=f"copy blob {d.digest}")
        report.add(blobs_copied=1, bytes_copied=d.size)
        return "copied"
