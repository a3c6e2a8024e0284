"""Orchestration: rows -> tags -> detect -> copy -> status. No httpx or boto3 of its own.

For each tag of a row:

1. one HEAD upstream (the only upstream request for an unchanged tag) and one HEAD at the target;
2. if the target holds what the service put there, a completeness check at the target only
   (every child manifest and blob still there, else ``broken``);
3. :func:`drift.classify` gives the state; ``behind``/``missing``/``diverged``/``broken`` are copied
   (where tag mutability allows), the state before the copy written first so an interrupted sync
   still shows it;
4. the final status is written (conditionally: never backwards when two workers race).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import drift
from .copy import Copier, CopyReport
from .errors import MirrorError, NotFoundError, RowError
from .manifest import Manifest
from .reference import Reference
from .table import now_timestamp

log = logging.getLogger(__name__)


class Deadline(MirrorError):
    """The time left is too short to start more work; the row goes back to the queue."""


@dataclass
class TagResult:
    row_id: str
    tag: str
    state: str
    state_before: str = ""
    upstream_digest: str | None = None
    expected_digest: str | None = None
    target_digest: str | None = None
    bytes_copied: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    copied: bool = False
    error: str | None = None
    reason: str = ""
    fingerprint: str = ""

    @property
    def drifted(self) -> bool:
        return drift.is_drift(self.state_before) or drift.is_drift(self.state)


@dataclass
class RowResult:
    row_id: str
    invalid: str | None = None
    skipped: str | None = None
    tags: list[TagResult] = field(default_factory=list)
    error: str | None = None
    ratelimit_remaining: int | None = None

    @property
    def ok(self) -> bool:
        return self.invalid is None and self.error is None and all(t.state != drift.FAILED for t in self.tags)


class Syncer:
    """Brings rows of the mirror table in step with upstream. Build once per process; reuse."""

    def __init__(
        self,
        *,
        table: Any,
        copier: Copier,
        target: Any,
        repository_prefix: str,
        row_parser: Callable[..., Any],
        tag_selector: Callable[[Any, list[str]], list[str]],
        should_stop: Callable[[], bool] = lambda: False,
        tag_concurrency: int = 4,
        verify_blobs: bool = True,
    ) -> None:
        self.table = table
        self.copier = copier
        self.client = copier.client
        self.target = target
        self.prefix = repository_prefix
        self.parse_row = row_parser
        self.select_tags = tag_selector
        self.should_stop = should_stop
        self.tag_concurrency = max(1, tag_concurrency)
        self.verify_blobs = verify_blobs

    # ------------------------------------------------------------ rows

    def sync_item(self, item: Mapping[str, Any], *, dry_run: bool = False, check_only: bool = False) -> RowResult:
        """Sync one raw table item. Never raises for a bad row or a failed tag: it is in the result."""
        row_id = str(item.get("id", "?"))
        result = RowResult(row_id)
        try:
            row = self.parse_row(dict(item), prefix=self.prefix)
        except RowError as exc:
            result.invalid = str(exc)
            if not dry_run and isinstance(item.get("id"), str) and item.get("id"):
                self.table.write_invalid(row_id, str(exc))
            return result
        if not dry_run and item.get("row_error"):
            self.table.clear_invalid(row_id)  # fixed by its owner: no longer invalid
        if not row.enabled:
            result.skipped = "disabled"
            return result
        if self.should_stop():
            raise Deadline(f"row {row_id}: not started, too little time left")
        statuses: Mapping[str, Any] = item.get("status") or {}
        try:
            if not dry_run and not check_only:
                self.target.ensure_repository(row.target_repository)
            if row.assemble:
                tags = [row.tags[0]]
            else:
                available = self.client.tags_list(row.source) if row.tag_pattern else []
                tags = self.select_tags(row, available)
        except MirrorError as exc:
            result.error = f"row {row_id}: {exc}"
            # every tag the row names or was last seen with gets the failure, so `status` shows it
            known = list(dict.fromkeys([*(row.tags or []), *(t for t in statuses if isinstance(t, str))])) or ["*"]
            for tag in known:
                res = TagResult(row_id, tag, drift.FAILED, error=result.error)
                result.tags.append(res)
                if not dry_run:
                    self._write(row_id, tag, res, statuses.get(tag))
            return result

        verified: set[str] = set()  # blobs seen present at the target during this row's sync

        def one(tag: str) -> TagResult:
            if self.should_stop():
                raise Deadline(f"row {row_id}: stopped before tag {tag}, too little time left")
            return self.sync_tag(row, tag, statuses.get(tag) or {}, dry_run=dry_run, check_only=check_only, verified=verified)

        if len(tags) <= 1 or self.tag_concurrency == 1:
            result.tags = [one(t) for t in tags]
        else:
            with ThreadPoolExecutor(min(self.tag_concurrency, len(tags)), thread_name_prefix="tag") as pool:
                futures = [pool.submit(one, t) for t in tags]
                deadline: Deadline | None = None
                for f in futures:
                    try:
                        result.tags.append(f.result())
                    except Deadline as exc:
                        deadline = exc
                if deadline:
                    raise deadline
        stale = [t for t in statuses if t not in tags]
        if stale and not dry_run and not check_only and result.error is None:
            # tags no longer selected (keep_latest moved on, a tag removed from the row): forget them
            self.table.prune_status(row_id, tags)
        if row.source is not None:
            result.ratelimit_remaining = self.client.ratelimit_remaining.get(row.source.api_host)
        return result

    # ------------------------------------------------------------ tags

    def _dest(self, row: Any, tag: str) -> Reference:
        return Reference(self.target.host, row.target_repository, tag)

    def sync_tag(
        self, row: Any, tag: str, previous: Mapping[str, Any], *, dry_run: bool = False, check_only: bool = False,
        verified: set[str] | None = None,
    ) -> TagResult:
        res = TagResult(row.id, tag, drift.FAILED, fingerprint=getattr(row, "fingerprint", ""))
        if previous and previous.get("fingerprint") and previous.get("fingerprint") != res.fingerprint:
            # the row changed (other platforms, another source): what was recorded no longer applies
            previous = {k: v for k, v in previous.items() if k in ("last_success",)}
        try:
            self._detect_and_copy(row, tag, previous, res, dry_run=dry_run, check_only=check_only,
                                  verified=set() if verified is None else verified)
        except Deadline:
            raise
        except MirrorError as exc:
            res.state = drift.FAILED
            res.error = str(exc)
            log.warning("row %s tag %s failed: %s", row.id, tag, exc)
        except Exception as exc:  # noqa: BLE001 - one tag's bug must not lose every other row's result
            res.state = drift.FAILED
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            res.error = f"unexpected {type(exc).__name__}: {first}"
            log.exception("row %s tag %s failed unexpectedly", row.id, tag)
        if not dry_run:
            self._write(row.id, tag, res, previous)
        return res

    def _detect_and_copy(
        self, row: Any, tag: str, previous: Mapping[str, Any], res: TagResult, *, dry_run: bool, check_only: bool,
        verified: set[str],
    ) -> None:
        dest = self._dest(row, tag)
        recorded_expected = previous.get("expected_digest") or None
        # the upstream digest that recorded_expected was copied from (written on success only)
        recorded_upstream = previous.get("synced_upstream_digest") or None
        identical = row.platforms is None and not row.assemble
        if row.assemble:
            heads = []
            for ref in row.assemble:
                head = self.client.manifest_head(ref)
                if head is None:
                    raise NotFoundError(f"assemble source {ref} not found upstream")
                heads.append(head.digest)
            upstream = "sha256:" + hashlib.sha256("\n".join(heads).encode()).hexdigest()
            source_digest = None
        else:
            head = self.client.manifest_head(row.source.with_tag(tag))
            if head is None:
                raise NotFoundError(f"{row.source.with_tag(tag)} not found upstream")
            upstream = source_digest = head.digest
        res.upstream_digest = upstream
        target_head = self.client.manifest_head(dest)
        res.target_digest = target_head.digest if target_head else None
        complete: bool | None = None
        if target_head is not None:
            expected_now = recorded_expected if (recorded_upstream == upstream or not recorded_upstream) else None
            if identical and not recorded_upstream:
                expected_now = upstream
            if target_head.digest in (expected_now, upstream if identical else None):
                complete = self._complete(dest.with_digest(target_head.digest), verified)
        state = drift.classify(
            upstream, recorded_expected, res.target_digest, complete,
            recorded_upstream=recorded_upstream, identical=identical,
        )
        res.state_before = state
        res.expected_digest = upstream if identical else (recorded_expected if recorded_upstream == upstream else None)
        if state == drift.IN_SYNC:
            res.state = drift.IN_SYNC
            res.expected_digest = res.target_digest
            res.reason = "target holds the upstream image"
            return
        res.reason = {
            drift.MISSING: "target tag does not exist",
            drift.BEHIND: "upstream moved" if recorded_upstream and recorded_upstream != upstream else "not yet mirrored",
            drift.DIVERGED: f"target tag points at {res.target_digest}, not {recorded_expected} put there by ecr-mirror",
            drift.BROKEN: "target image lost a child manifest or blob",
        }.get(state, state)
        if dry_run or check_only:
            res.state = state
            if drift.is_drift(state):
                res.error = res.reason
            return
        if target_head is not None and state in (drift.DIVERGED, drift.BROKEN, drift.BEHIND) and self.target.is_immutable(row.target_repository):
            res.state = drift.DIVERGED if state != drift.BROKEN else drift.BROKEN
            res.error = (f"{dest} is in an immutable repository and holds {res.target_digest}; "
                         f"expected {res.expected_digest or upstream}; delete the tag or make the repository mutable to repair")
            return
        # show the detected state while copying (an interrupted sync keeps it)
        self._write(row.id, tag, res, previous, interim=True)
        force = state in (drift.BROKEN,)

        def copy() -> CopyReport:
            if row.assemble:
                return self.copier.assemble(dest, list(row.assemble))
            return self.copier.copy(
                row.source.with_tag(tag), dest, platforms=row.platforms, arch_tags=row.arch_tags,
                expected_digest=None if force else res.expected_digest, source_digest=source_digest, force=force,
            )

        try:
            report = copy()
        except NotFoundError as exc:
            # the repository was deleted since this process checked it: ECR does not create on push (NAME_UNKNOWN)
            if "NAME_UNKNOWN" not in exc.codes or f"://{dest.api_host}/v2/{dest.repository}/" not in exc.url:
                raise
            self.target.forget(row.target_repository)
            self.target.ensure_repository(row.target_repository)
            report = copy()
        self._apply_report(res, report)
        res.state = drift.IN_SYNC
        res.error = None

    def _apply_report(self, res: TagResult, report: CopyReport) -> None:
        res.copied = not report.unchanged
        res.target_digest = report.digest
        res.expected_digest = report.digest
        res.bytes_copied = report.bytes_copied
        res.blobs_copied = report.blobs_copied
        res.blobs_skipped = report.blobs_skipped
        res.blobs_mounted = report.blobs_mounted

    def _complete(self, ref: Reference, verified: set[str]) -> bool:
        """Every child manifest (and, with ``verify_blobs``, every blob) of ``ref`` is still at the target."""
        try:
            top = self.client.manifest_get(ref)
            manifests: list[Manifest] = [top]
            if top.is_index:
                for child in top.children:
                    manifests.append(self.client.manifest_get(ref.with_digest(child.digest)))
            if self.verify_blobs:
                for m in manifests:
                    for blob in m.blobs if not m.is_index else []:
                        if blob.digest in verified:
                            continue
                        if self.client.blob_head(ref, blob.digest) is None:
                            log.warning("%s: blob %s is gone", ref, blob.digest)
                            return False
                        verified.add(blob.digest)
        except NotFoundError as exc:
            log.warning("%s is incomplete: %s", ref, exc)
            return False
        return True

    # ------------------------------------------------------------ status

    def _write(self, row_id: str, tag: str, res: TagResult, previous: Mapping[str, Any] | None, *, interim: bool = False) -> None:
        now = now_timestamp()
        previous = previous or {}
        success = res.state == drift.IN_SYNC and not interim
        entry: dict[str, Any] = {
            "state": res.state_before if interim else res.state,
            "upstream_digest": res.upstream_digest,
            # what the service put at the target, and from which upstream digest: changed on success only
            "expected_digest": res.expected_digest if success else previous.get("expected_digest"),
            "synced_upstream_digest": res.upstream_digest if success else previous.get("synced_upstream_digest"),
            "target_digest": res.target_digest,
            "last_attempt": now,
            "bytes_copied": res.bytes_copied,
            "error": res.error if not interim else None,
        }
        if success:
            entry["last_success"] = now
        if res.drifted:
            entry["last_drift_state"] = res.state_before if drift.is_drift(res.state_before) else res.state
            entry["last_drift_at"] = now
        if res.fingerprint:
            entry["fingerprint"] = res.fingerprint
        try:
            self.table.write_status(row_id, tag, entry)
        except MirrorError as exc:  # a status write that fails must not hide the copy's outcome
            log.error("row %s tag %s: status not written: %s", row_id, tag, exc)
            if not interim:
                res.error = (res.error + "; " if res.error else "") + f"status not written: {exc}"

    # ------------------------------------------------------------ all rows

    def sync_items(
        self, items: Iterable[Mapping[str, Any]], *, dry_run: bool = False, check_only: bool = False, row_concurrency: int = 4
    ) -> list[RowResult]:
        """Sync many rows, a few at a time (results in input order)."""
        items = list(items)
        if row_concurrency <= 1 or len(items) <= 1:
            return [self.sync_item(item, dry_run=dry_run, check_only=check_only) for item in items]
        with ThreadPoolExecutor(min(row_concurrency, len(items)), thread_name_prefix="row") as pool:
            return list(pool.map(lambda item: self.sync_item(item, dry_run=dry_run, check_only=check_only), items))


def remaining_time_guard(context: Any, reserve_seconds: float) -> Callable[[], bool]:
    """``should_stop`` for a Lambda context: true once less than ``reserve_seconds`` remain."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return lambda: False
    return lambda: context.get_remaining_time_in_millis() < reserve_seconds * 1000


__all__ = ["Deadline", "RowResult", "Syncer", "TagResult", "remaining_time_guard"]
