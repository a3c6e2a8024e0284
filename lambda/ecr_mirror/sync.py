"""Orchestration: rows -> tags -> detect -> copy -> status. No httpx or boto3 of its own.

For each tag of a row:

1. one HEAD upstream (the only upstream request for an unchanged tag) and one HEAD at the target;
2. if the target holds what it should (:func:`drift.expected_target_digest`), or, for a
   digest-identical copy, upstream's own digest, a completeness check at the target only (every
   child manifest and blob still there, else ``broken``): those are the cases where no copy would
   look at the target's children;
3. :func:`drift.classify` gives the state; ``behind``/``missing``/``diverged``/``broken`` are copied
   (where tag mutability allows), the state before the copy written first so an interrupted sync
   still shows it;
4. the final status is written (conditionally: never backwards when two workers race).

The Syncer works against small protocols: a :class:`StatusStore` (``ecr_mirror.store.MirrorTable``),
a :class:`Target` (``ecr_mirror.ecr.EcrTarget``) and a :class:`~ecr_mirror.copy.Copier`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import drift
from .copy import Copier, CopyReport
from .errors import Deadline, Interrupted, MirrorError, NotFoundError, RowError
from .reference import Reference
from .referrers import ReferrerPolicy, ReferrersReport
from .rows import Row, parse_row
from .status import now_timestamp, status_entry
from .tags import select_tags

log = logging.getLogger(__name__)

#: ``should_stop()``: true once there is too little time left to start more work
StopFn = Callable[[], bool]


def never_stop() -> bool:
    """A ``should_stop`` that never asks to stop (the CLI, tests)."""
    return False


class StatusStore(Protocol):
    """What a sync writes back: per-tag status entries (:mod:`ecr_mirror.status`) and row validity."""

    def write_status(self, row_id: str, tag: str, entry: Mapping[str, Any]) -> bool:
        """Record ``tag``'s status; False if dropped (an as-new record exists, or the row is gone)."""
        ...

    def prune_status(self, row_id: str, keep_tags: Iterable[str]) -> list[str]:
        """Forget the status of tags not in ``keep_tags``; returns those removed."""
        ...

    def write_invalid(self, row_id: str, message: str) -> bool:
        """Mark the row invalid with ``message``."""
        ...

    def clear_invalid(self, row_id: str) -> bool:
        """Unmark a row that validates again."""
        ...


class Target(Protocol):
    """Where mirrors are written: a registry host whose repositories can be created and inspected."""

    @property
    def host(self) -> str:
        """The registry host (``host[:port]``)."""
        ...

    def ensure_repository(self, name: str) -> str:
        """Create repository ``name`` if missing; returns its tag mutability."""
        ...

    def is_immutable(self, name: str) -> bool:
        """Whether repository ``name`` refuses to overwrite tags."""
        ...

    def forget(self, name: str) -> None:
        """Forget what :meth:`ensure_repository` remembered about ``name`` (deleted since)."""
        ...


@dataclass(frozen=True)
class TagEvent:
    """Where a sync is, for a progress display: ``phase`` is ``checking`` (detecting), ``copying``, or
    ``done`` (``state`` then holds the tag's state). ``destination``: the target reference (``str``),
    the same one the copier's :class:`~ecr_mirror.copy.CopyProgress` calls name."""

    row_id: str
    tag: str
    phase: str
    destination: str
    state: str = ""


@dataclass
class TagResult:
    """The outcome for one tag of one row.

    ``state``: the state now (:data:`drift.STATES`); ``state_before``: what detection found before
    any copy. Digests: ``upstream_digest`` what upstream points at (for an assemble row, a hash of
    its sources' digests), ``expected_digest`` what the target should hold (``None``: only a copy
    could tell), ``target_digest`` what it holds. Counts as in :class:`~ecr_mirror.copy.CopyReport`;
    ``copied``: something was written. ``error`` and ``reason`` are one line each; ``fingerprint``
    identifies the row settings the record belongs to (:attr:`ecr_mirror.rows.Row.fingerprint`);
    ``referrers``: what became of the image's referrers when it was copied (``None``: not this time).
    """

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
    referrers: ReferrersReport | None = None

    @property
    def drift_state(self) -> str:
        """The drift this tag showed in this sync (``state_before`` if it was drift, else ``state``)."""
        return self.state_before if drift.is_drift(self.state_before) else self.state

    @property
    def drifted(self) -> bool:
        """Whether the tag was found drifted (``diverged``/``broken``), before or after the copy."""
        return drift.is_drift(self.drift_state)


@dataclass
class RowResult:
    """The outcome for one row: ``invalid`` (why it does not validate) or ``skipped`` (``"disabled"``),
    else a :class:`TagResult` per tag; ``error`` for a failure of the whole row (tag list, repository);
    ``ratelimit_remaining``: upstream pulls left as its registry last said (``None`` if it did not)."""

    row_id: str
    invalid: str | None = None
    skipped: str | None = None
    tags: list[TagResult] = field(default_factory=list)
    error: str | None = None
    ratelimit_remaining: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the row validated and no tag failed."""
        return self.invalid is None and self.error is None and all(t.state != drift.FAILED for t in self.tags)


class Syncer:
    """Brings rows of the mirror table in step with upstream. Build once per process; reuse.

    ``table``: the :class:`StatusStore`; ``copier``: the copy engine (its client is used for HEADs);
    ``target``: the :class:`Target`; ``repository_prefix``: for default target repositories;
    ``tag_concurrency``: tags of one row synced at once; ``verify_blobs``: the completeness check
    HEADs every blob too (not just the child manifests); ``progress``: called with a :class:`TagEvent`
    as each tag is checked, copied and done (from several threads).
    """

    def __init__(
        self,
        *,
        table: StatusStore,
        copier: Copier,
        target: Target,
        repository_prefix: str,
        tag_concurrency: int = 4,
        verify_blobs: bool = True,
        progress: Callable[[TagEvent], None] | None = None,
    ) -> None:
        self.table = table
        self.copier = copier
        self.client = copier.client
        self.target = target
        self.prefix = repository_prefix
        self.tag_concurrency = max(1, tag_concurrency)
        self.verify_blobs = verify_blobs
        self.progress = progress

    # ------------------------------------------------------------ rows

    def sync_item(
        self, item: Mapping[str, Any], *, dry_run: bool = False, check_only: bool = False, should_stop: StopFn = never_stop,
    ) -> RowResult:
        """Sync one raw table item. Never raises for a bad row or a failed tag: it is in the result.

        ``dry_run``: detect only, write nothing; ``check_only``: detect and record, copy nothing.
        Raises :class:`~ecr_mirror.errors.Deadline` when ``should_stop()`` says so before the row or a tag starts.
        """
        row_id = str(item.get("id", "?"))
        result = RowResult(row_id)
        try:
            row = parse_row(dict(item), prefix=self.prefix)
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
        if should_stop():
            raise Deadline(f"row {row_id}: not started, too little time left")
        statuses: Mapping[str, Any] = item.get("status") or {}
        available: list[str] = []
        try:
            if not dry_run and not check_only:
                self.target.ensure_repository(row.target_repository)
            if row.is_assemble:
                tags = [row.tags[0]]
            else:
                available = self.client.tags_list(row.source) if row.needs_tag_list else []
                tags = select_tags(row, available)
        except Interrupted:
            raise  # Ctrl-C: nothing is recorded as a failure
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
            if should_stop():
                raise Deadline(f"row {row_id}: stopped before tag {tag}, too little time left")
            return self.sync_tag(row, tag, statuses.get(tag) or {}, dry_run=dry_run, check_only=check_only,
                                 verified=verified, source_tags=available if row.needs_tag_list else None)

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
            seen = self.client.ratelimit(row.source.api_host)
            result.ratelimit_remaining = seen.remaining if seen else None
        return result

    # ------------------------------------------------------------ tags

    def _dest(self, row: Row, tag: str) -> Reference:
        return Reference(self.target.host, row.target_repository, tag)

    def sync_tag(
        self, row: Row, tag: str, previous: Mapping[str, Any], *, dry_run: bool = False, check_only: bool = False,
        verified: set[str] | None = None, source_tags: list[str] | None = None,
    ) -> TagResult:
        """Detect, copy if needed, and record one tag of a parsed row; ``previous``: its last status entry;
        ``source_tags``: the upstream tags if the row listed them (its referrers are found among them).
        Failures end up in the result (``failed``); only :class:`~ecr_mirror.errors.Deadline` is raised."""
        res = TagResult(row.id, tag, drift.FAILED, fingerprint=row.fingerprint)
        self._tell(row, tag, "checking")
        if previous and previous.get("fingerprint") and previous.get("fingerprint") != res.fingerprint:
            # the row changed (other platforms, another source): what was recorded no longer applies
            previous = {k: v for k, v in previous.items() if k in ("last_success",)}
        try:
            self._detect_and_copy(row, tag, previous, res, dry_run=dry_run, check_only=check_only,
                                  verified=set() if verified is None else verified, source_tags=source_tags)
        except (Deadline, Interrupted):
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
        self._tell(row, tag, "done", res.state)
        return res

    def _tell(self, row: Row, tag: str, phase: str, state: str = "") -> None:
        if self.progress is not None:
            self.progress(TagEvent(row.id, tag, phase, str(self._dest(row, tag)), state))

    def _upstream_digest(self, row: Row, tag: str) -> tuple[str, str | None]:
        """``(upstream digest, source digest for the copier)``: one HEAD per source."""
        if row.assemble:
            heads = []
            for ref in row.assemble:
                head = self.client.manifest_head(ref, confirm_missing=True)
                if head is None:
                    raise NotFoundError(f"assemble source {ref} not found upstream")
                heads.append(head.digest)
            return "sha256:" + hashlib.sha256("\n".join(heads).encode()).hexdigest(), None
        assert row.source is not None
        head = self.client.manifest_head(row.source.with_tag(tag), confirm_missing=True)
        if head is None:
            raise NotFoundError(f"{row.source.with_tag(tag)} not found upstream")
        return head.digest, head.digest

    def _detect_and_copy(
        self, row: Row, tag: str, previous: Mapping[str, Any], res: TagResult, *, dry_run: bool, check_only: bool,
        verified: set[str], source_tags: list[str] | None = None,
    ) -> None:
        dest = self._dest(row, tag)
        recorded_expected = previous.get("expected_digest") or None
        # the upstream digest that recorded_expected was copied from (written on success only)
        recorded_upstream = previous.get("synced_upstream_digest") or None
        upstream, source_digest = self._upstream_digest(row, tag)
        res.upstream_digest = upstream
        res.expected_digest = drift.expected_target_digest(
            upstream, recorded_expected, recorded_upstream=recorded_upstream, identical=row.identical
        )
        target_head = self.client.manifest_head(dest)
        res.target_digest = target_head.digest if target_head else None
        complete: bool | None = None
        if target_head is not None and (
            target_head.digest == res.expected_digest or (row.identical and target_head.digest == upstream)
        ):
            complete = self._complete(dest.with_digest(target_head.digest), verified)
        state = drift.classify(
            upstream, recorded_expected, res.target_digest, complete,
            recorded_upstream=recorded_upstream, identical=row.identical,
        )
        res.state_before = state
        if not drift.needs_copy(state):
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
        force = state == drift.BROKEN
        self._tell(row, tag, "copying")
        # referrers travel when the image is written; an unchanged tag's are the audit's (issue 14); those the
        # target refused (HTTP 405) before are not fetched again
        refused = frozenset(str(previous.get("referrers_refused") or "").split())
        referrers = ReferrerPolicy(when_unchanged=False, refused=refused) if row.referrers else None

        def copy() -> CopyReport:
            if row.assemble:
                return self.copier.assemble(
                    dest, list(row.assemble), allow_nondistributable=row.allow_nondistributable_artifacts,
                    referrers=referrers,
                )
            assert row.source is not None
            return self.copier.copy(
                row.source.with_tag(tag), dest, platforms=row.platforms, arch_tags=row.arch_tags,
                expected_digest=None if force else res.expected_digest, source_digest=source_digest, force=force,
                allow_nondistributable=row.allow_nondistributable_artifacts, referrers=referrers,
                source_tags=source_tags,
            )

        try:
            report = copy()
        except NotFoundError as exc:
            # the repository was deleted since this process checked it; ECR does not create on push (NAME_UNKNOWN)
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
        res.referrers = report.referrers

    def _complete(self, ref: Reference, verified: set[str]) -> bool:
        """Every child manifest (and, with ``verify_blobs``, every blob a registry must hold) of ``ref`` is
        still at the target (:meth:`~ecr_mirror.copy.Copier.find_missing`: non-distributable layers are
        absent by design)."""
        missing = self.copier.find_missing(ref, blobs=self.verify_blobs, verified=verified)
        if missing:
            log.warning("%s is incomplete: %s is gone", ref, missing)
            return False
        return True

    # ------------------------------------------------------------ status

    def _write(self, row_id: str, tag: str, res: TagResult, previous: Mapping[str, Any] | None, *, interim: bool = False) -> None:
        now = now_timestamp()
        previous = previous or {}
        success = res.state == drift.IN_SYNC and not interim
        entry = status_entry(
            res.state_before if interim else res.state,
            upstream_digest=res.upstream_digest,
            # what the service put at the target, and from which upstream digest: changed on success only
            expected_digest=res.expected_digest if success else previous.get("expected_digest"),
            synced_upstream_digest=res.upstream_digest if success else previous.get("synced_upstream_digest"),
            target_digest=res.target_digest,
            last_attempt=now,
            last_success=now if success else None,
            bytes_copied=res.bytes_copied,
            error=res.error if not interim else None,
            fingerprint=res.fingerprint or None,
        )
        if res.drifted:
            entry["last_drift_state"] = res.drift_state
            entry["last_drift_at"] = now
        if res.referrers is not None and not interim:  # kept until the next copy that looks at referrers
            counts = res.referrers.counts()
            # the image is in sync whatever became of its referrers: a referrer failure is noted, not the state
            entry.update(referrers_copied=counts["copied"], referrers_present=counts["present"],
                         referrers_not_applicable=counts["not_applicable"],
                         referrers_note="; ".join(counts["reasons"]) or None,
                         referrers_refused=" ".join(counts["refused"]) or None,
                         referrers_error=counts["error"])
        try:
            self.table.write_status(row_id, tag, entry)
        except MirrorError as exc:  # a status write that fails must not hide the copy's outcome
            log.error("row %s tag %s: status not written: %s", row_id, tag, exc)
            if not interim:
                res.error = (res.error + "; " if res.error else "") + f"status not written: {exc}"

    # ------------------------------------------------------------ all rows

    def sync_items(
        self, items: Iterable[Mapping[str, Any]], *, dry_run: bool = False, check_only: bool = False, row_concurrency: int = 4,
        should_stop: StopFn = never_stop,
    ) -> list[RowResult]:
        """Sync many rows, ``row_concurrency`` at a time (results in input order); see :meth:`sync_item`."""
        items = list(items)

        def one(item: Mapping[str, Any]) -> RowResult:
            return self.sync_item(item, dry_run=dry_run, check_only=check_only, should_stop=should_stop)

        if row_concurrency <= 1 or len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(min(row_concurrency, len(items)), thread_name_prefix="row") as pool:
            return list(pool.map(one, items))


def remaining_time_guard(context: Any, reserve_seconds: float) -> StopFn:
    """``should_stop`` for a Lambda context: true once less than ``reserve_seconds`` remain
    (``context.get_remaining_time_in_millis()``); never true without a context."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return never_stop
    return lambda: context.get_remaining_time_in_millis() < reserve_seconds * 1000


__all__ = ["RowResult", "StatusStore", "Syncer", "TagEvent", "TagResult", "Target", "never_stop", "remaining_time_guard"]
