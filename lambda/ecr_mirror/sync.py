"""Orchestration: rows -> tags -> detect -> copy -> status. No httpx or boto3 of its own.

A pass over one row (:meth:`Syncer.sync_item`):

1. read the row's recorded state (one Query of the state table); a row item still carrying status in
   the legacy layout is migrated first (:meth:`StateStore.migrate`);
2. select the tags: the row's ``tags``, and the upstream tags its ``tag_pattern`` matches (the tag list
   read with ``Link`` pagination, no cap below :data:`ecr_mirror.rows.MAX_SELECTED_TAGS`);
3. one HEAD upstream per tag (concurrently): the only upstream request for an unchanged tag;
4. a tag is **settled** when it is ``in_sync``, for these row settings, and upstream has not moved since
   its last success (:meth:`ecr_mirror.status.TagStatus.settled`): it costs nothing more, no request at
   the target and no write;
5. the other tags are looked up at the target in one batched call per 100 tags (ECR's DescribeImages);
   in an **audit** pass every tag is, from the repository's image list (ListImages, cached per run), and
   the children recorded for its index are checked to be still there (else ``broken``), and a complete
   tag's referrers are discovered again (:func:`~ecr_mirror.referrer_copy.audit_referrers`, the row's tags
   listed once; a signature added upstream since the copy arrives; a failure is ``referrers_error`` in the
   status, never the tag's state; referrer fields are written only when they changed);
6. :func:`drift.classify` gives each state; ``behind``/``missing``/``diverged``/``broken`` are copied
   (where tag mutability allows). Before a copy the tag's **lease** is taken with the write of the state
   detected (conditional on the status being as read, so a duplicate delivery finds it taken and skips
   the tag); the result write releases it: a cold tag costs two writes;
7. statuses are written only when something recorded changed; the row status (invalid, failed,
   no_tags) only when it changes.

Pull budget (issue 15; :mod:`ecr_mirror.budget`, when the registry client has one): tags to copy are taken
in :data:`drift.COPY_PRIORITY` order (missing, then behind, then repairs); before a tag's copy its pulls are
reserved (1 + its recorded children, else the row's platforms); a tag the budget cannot cover, or whose
copy met a 429 or an exhausted budget, is ``deferred`` (its status says why and when the window refills;
children already copied stay and are skipped next time).

The Syncer works against small protocols: a :class:`StateStore` (``ecr_mirror.store.StateTable``),
a :class:`Target` (``ecr_mirror.ecr.EcrTarget``) and a :class:`~ecr_mirror.copy.Copier`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from . import drift
from .budget import Reservation, expected_pulls
from .copy import Copier, CopyReport
from .errors import AwsError, Deadline, Interrupted, MirrorError, NotFoundError, PullLimitReached, RowError
from .reference import Reference
from .referrer_copy import audit_referrers
from .referrers import ReferrerPolicy, ReferrersReport
from .rows import ATTR_ALLOW_NONDISTRIBUTABLE, ATTR_ARCH_TAGS, ATTR_REFERRERS, Row, options_turned_on, parse_row, record_applies
from .status import (
    LEASE_SECONDS,
    NO_TAGS,
    REFERRER_FIELDS,
    RowState,
    RowStatus,
    TagStatus,
    format_timestamp,
    has_legacy_status,
    legacy_row_status,
    legacy_tag_statuses,
    now_timestamp,
    referrer_fields,
    status_warnings,
    timestamp_after,
)
from .tags import SelectionError, select, select_tags, selection_text

log = logging.getLogger(__name__)

#: ``should_stop()``: true once there is too little time left to start more work
StopFn = Callable[[], bool]
#: the answers that say a repository does not exist: ECR's API, and the registry API on a push
#: (ecr-facts.md section 1: "a 404 NAME_UNKNOWN on the POST")
REPOSITORY_NOT_FOUND = "RepositoryNotFoundException"
NAME_UNKNOWN = "NAME_UNKNOWN"
#: upstream HEADs of one row in flight at once
HEAD_CONCURRENCY = 16

T = TypeVar("T")


def never_stop() -> bool:
    """A ``should_stop`` that never asks to stop (the CLI, tests)."""
    return False


class StateStore(Protocol):
    """Where a sync reads and records state (:class:`ecr_mirror.store.StateTable`)."""

    def read_state(self, row_id: str) -> RowState:
        """Every tag status and the row status of a row."""
        ...

    def put_tag(self, row_id: str, tag: str, status: TagStatus, *, previous: TagStatus | None) -> bool:
        """Record ``tag``'s status if its item is still ``previous``; False if another sync wrote it meanwhile."""
        ...

    def delete_tags(self, row_id: str, tags: Iterable[str]) -> None:
        """Forget the statuses of tags no longer selected."""
        ...

    def put_row_status(self, row_id: str, status: RowStatus | None) -> None:
        """Record (or, with None, remove) the row status."""
        ...

    def migrate(self, item: Mapping[str, Any]) -> bool:
        """Move a legacy row item's status into the store; True if there was any."""
        ...


class Target(Protocol):
    """Where mirrors are written: a registry host whose repositories can be created and inspected."""

    @property
    def host(self) -> str:
        """The registry host (``host[:port]``)."""
        ...

    def ensure_repository(self, name: str) -> bool:
        """Create repository ``name`` if missing; True when it created it (it is empty)."""
        ...

    def forget(self, name: str) -> None:
        """Forget what :meth:`ensure_repository` remembered about ``name`` (deleted since)."""
        ...

    def is_immutable(self, name: str) -> bool:
        """Whether repository ``name`` refuses to overwrite tags."""
        ...

    def tag_digests(self, repository: str, tags: Sequence[str]) -> dict[str, str | None] | None:
        """``{tag: digest or None}``, batched; None when the batch cannot tell which tags are missing."""
        ...

    def list_images(self, repository: str) -> tuple[dict[str, str], frozenset[str]]:
        """``({tag: digest}, every image digest)`` of the repository."""
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
    identifies the row settings the record belongs to (:attr:`ecr_mirror.rows.Row.fingerprint`).
    ``settled``: nothing was asked of the target (in sync as recorded); ``refill_at``: for a ``deferred`` tag,
    when the upstream's pull window is expected to refill (Unix seconds); ``skipped``: why this sync left
    the tag alone (another sync holds its lease); such a tag is not counted in the metrics;
    ``referrers``: what became of the image's referrers when it was copied (``None``: not this time);
    ``arch_tags``: the ``<tag>-<arch>`` tags written; ``arch_tag_digests``: every arch tag the target holds
    for the image after the copy, ``{tag: digest}`` (``None``: not known this time); ``warnings``: what the copy did short of the ideal
    (``None``: no copy looked this time); ``pinned_digest``: the digest the row pins the tag to (then
    ``upstream_digest`` is the pin, and ``upstream_tag_digest`` where upstream's tag points: None when it
    does not exist).
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
    settled: bool = False
    skipped: str | None = None
    referrers: ReferrersReport | None = None
    arch_tags: list[str] = field(default_factory=list)
    arch_tag_digests: dict[str, str] | None = None
    warnings: tuple[str, ...] | None = None
    pinned_digest: str | None = None
    upstream_tag_digest: str | None = None
    refill_at: float | None = None  # deferred: when the upstream's pull window is expected to refill (Unix seconds)

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
    ``matched_nothing``: its selection matched no upstream tag (``note`` says which selection, and how many
    upstream tags it was tried against); ``ratelimit_remaining``: upstream pulls
    left as its registry last said (``None`` if it did not); ``upstream``: its upstream registry host."""

    row_id: str
    invalid: str | None = None
    skipped: str | None = None
    tags: list[TagResult] = field(default_factory=list)
    error: str | None = None
    matched_nothing: bool = False
    note: str | None = None
    ratelimit_remaining: int | None = None
    upstream: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the row validated and no tag failed."""
        return self.invalid is None and self.error is None and all(t.state != drift.FAILED for t in self.tags)

    @property
    def refill_at(self) -> float | None:
        """When the first of the row's deferred tags may go on (Unix seconds); None: no tag is deferred."""
        times = [t.refill_at or 0.0 for t in self.tags if t.state == drift.DEFERRED]
        return min(times) if times else None


class Run:
    """One worker invocation or one CLI sync: the lease owner id (``label`` plus a random suffix, unique
    per run; default label: host and process id), and each repository's image list (ListImages), read at
    most once per run and kept up to date with what the run writes."""

    def __init__(self, label: str | None = None) -> None:
        self.owner = f"{label or f'{os.uname().nodename}:{os.getpid()}'}:{secrets.token_hex(4)}"
        self._listings: dict[str, tuple[dict[str, str], set[str]]] = {}
        self._lock = threading.Lock()
        self._listing_locks: dict[str, threading.Lock] = {}

    def listing(self, target: Target, repository: str) -> tuple[dict[str, str], set[str]]:
        """``({tag: digest}, digests present)`` of ``repository`` (one ListImages walk per run)."""
        with self._lock:
            lock = self._listing_locks.setdefault(repository, threading.Lock())
        with lock:
            with self._lock:
                cached = self._listings.get(repository)
            if cached is None:
                tags, digests = target.list_images(repository)
                cached = (dict(tags), set(digests))
                with self._lock:
                    self._listings[repository] = cached
            return cached

    def wrote(self, repository: str, tag: str, digest: str, children: Iterable[str]) -> None:
        """Keep a cached listing true after this run wrote ``tag`` -> ``digest`` (and its children)."""
        with self._lock:
            cached = self._listings.get(repository)
            if cached is not None:
                cached[0][tag] = digest
                cached[1].add(digest)
                cached[1].update(children)

    def forget(self, repository: str) -> None:
        """Drop a cached listing (the repository was just created)."""
        with self._lock:
            self._listings.pop(repository, None)


class PinNotFound(NotFoundError):
    """A row pins a tag to a digest its upstream repository does not have (the tag's state: ``invalid``)."""


@dataclass
class _Tag:
    """One tag's working state through a pass."""

    tag: str
    previous: TagStatus | None  # as read (the version a write is conditional on)
    recorded: TagStatus | None  # what detection may rely on (None when the row settings changed)
    result: TagResult
    source_digest: str | None = None
    target_known: bool = False
    complete: bool | None = None
    children: tuple[str, ...] | None = None
    #: in an audit: why the image at the target is not complete (None: a child is gone, the usual reason)
    broken_reason: str | None = None
    #: options turned on since the tag's record (:func:`ecr_mirror.rows.options_turned_on`): a tag in sync
    #: still needs them brought in line (arch tags written, referrers or non-distributable layers copied)
    converge: frozenset[str] = frozenset()
    turns: _Turns | None = None  # the row's order of reserving upstream pulls (issue 15)
    rank: int = 0


class _Turns:
    """The order in which a row's tags reserve upstream pulls: rank ``r`` reserves only once every lower rank has
    reserved (or needed nothing), so when pulls are short the first in :data:`drift.COPY_PRIORITY` get them
    whatever the threads' timing. Copies still run at once."""

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._next = 0
        self._cond = threading.Condition()

    def wait(self, rank: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._next >= rank)

    def done(self, rank: int) -> None:
        with self._cond:
            self._done.add(rank)
            while self._next in self._done:
                self._next += 1
            self._cond.notify_all()


class Syncer:
    """Brings rows of the mirror table in step with upstream. Build once per process; reuse.

    ``store``: the :class:`StateStore`; ``copier``: the copy engine (its client is used for HEADs);
    ``target``: the :class:`Target`; ``repository_prefix``: for default target repositories;
    ``tag_concurrency``: tags of one row copied at once; ``progress``: called with a :class:`TagEvent` as
    each tag is checked, copied and done (from several threads).
    """

    def __init__(
        self,
        *,
        store: StateStore,
        copier: Copier,
        target: Target,
        repository_prefix: str,
        tag_concurrency: int = 4,
        progress: Callable[[TagEvent], None] | None = None,
    ) -> None:
        self.store = store
        self.progress = progress
        self.copier = copier
        self.client = copier.client
        self.target = target
        self.prefix = repository_prefix
        self.tag_concurrency = max(1, tag_concurrency)

    def begin(self, label: str | None = None) -> Run:
        """A :class:`Run`: one per worker invocation or CLI sync (``label``: names its lease owner id)."""
        return Run(label)

    # ------------------------------------------------------------ rows

    def sync_item(
        self, item: Mapping[str, Any], *, run: Run | None = None, audit: bool = False, dry_run: bool = False,
        check_only: bool = False, should_stop: StopFn = never_stop, peers: Sequence[Mapping[str, Any]] = (),
    ) -> RowResult:
        """Sync one raw row item. Never raises for a bad row or a failed tag: it is in the result.

        ``audit``: check every tag at the target, children included; ``dry_run``: detect only, write
        nothing; ``check_only``: detect and record, copy nothing; ``peers``: the raw items of the other rows
        that write to the same target repository and may select the same tags
        (:func:`ecr_mirror.rows.conflict_peers`): a tag one of them selects too is in ``conflict``, written by
        neither (:meth:`_claims`). Raises
        :class:`~ecr_mirror.errors.Deadline` when ``should_stop()`` says so before the row or a tag starts.
        """
        run = run or self.begin()
        row_id = str(item.get("id", "?"))
        result = RowResult(row_id)
        writes = not dry_run
        state = self._state(item, row_id, writes=writes)
        try:
            row = parse_row(dict(item), prefix=self.prefix)
        except RowError as exc:
            result.invalid = str(exc)
            if writes and isinstance(item.get("id"), str) and item.get("id"):
                self._row_status(row_id, state, RowStatus(drift.INVALID, error=str(exc), at=now_timestamp()))
            return result
        if not row.enabled:
            result.skipped = "disabled"
            return result
        if should_stop():
            raise Deadline(f"row {row_id}: not started, too little time left")
        repository = row.target_repository
        created = False
        tried = 0
        try:
            if state.is_new and writes and not check_only:
                created = self.target.ensure_repository(repository)
                if created:
                    run.forget(repository)
            if row.is_assemble:
                tags, pins = [row.tags[0]], {}
            else:
                available = self.client.tags_list(row.source) if row.needs_tag_list else []
                tried = len(available)
                selected = select(row, available)
                tags, pins = [s.tag for s in selected], {s.tag: s.pinned_digest for s in selected if s.pinned_digest}
            claims = self._claims(row, peers, tags, available if row.needs_tag_list else None)
        except Interrupted:
            raise  # Ctrl-C: nothing is recorded as a failure
        except SelectionError as exc:  # more tags than may be mirrored: never cut silently
            result.invalid = str(exc)
            if writes:
                self._row_status(row_id, state, RowStatus(drift.INVALID, error=str(exc), at=now_timestamp()))
            return result
        except MirrorError as exc:
            result.error = f"row {row_id}: {exc}"
            # every tag the row names or was last seen with counts as failed (metrics, output); the
            # failure is recorded once, as the row status
            known = list(dict.fromkeys([*(row.tags or []), *state.tags])) or ["*"]
            result.tags = [TagResult(row_id, t, drift.FAILED, error=result.error) for t in known]
            if writes:
                self._row_status(row_id, state, RowStatus(drift.FAILED, error=result.error, at=now_timestamp()))
            return result

        source_tags = available if row.needs_tag_list and not row.is_assemble else None
        work = [self._start(row, t, state.tags.get(t), pin=pins.get(t), conflict=claims.get(t)) for t in tags]
        try:
            self._each([w for w in work if w.result.state != drift.CONFLICT], lambda w: self._head(row, w, should_stop),
                       HEAD_CONCURRENCY)
            pending = [w for w in work if w.result.state not in (drift.FAILED, drift.CONFLICT) and not self._settle(w, audit)]
            if pending:
                self._look_at_target(row, pending, run, audit=audit, created=created, writes=writes and not check_only)
            referrer_audit = audit and writes and not check_only and row.referrers
            if referrer_audit and row.source is not None and source_tags is None and any(w.complete for w in work):
                source_tags = self._source_tags(row)
            ordered, turns = sorted(work, key=self._priority), _Turns()
            for rank, w in enumerate(ordered):
                w.turns, w.rank = turns, rank
            self._each(ordered, lambda w: self._finish(row, w, run, dry_run=dry_run, check_only=check_only,
                                                       should_stop=should_stop, source_tags=source_tags,
                                                       audit_referrers=referrer_audit),
                       self.tag_concurrency)
        except Deadline as exc:
            raise Deadline(str(exc), progress=sum(1 for w in work if w.result.copied)) from exc
        result.tags = [w.result for w in work]

        row_status: RowStatus | None = None
        if row.needs_tag_list and not tags:
            result.matched_nothing = True
            result.note = f"{selection_text(row)} selected none of {tried} upstream tags"
            row_status = RowStatus(NO_TAGS, pattern=selection_text(row), tags_tried=tried, at=now_timestamp())
        if writes:
            self._row_status(row_id, state, row_status)
            stale = [t for t in state.tags if t not in set(tags)]
            if stale and not check_only:
                # tags no longer selected (keep_latest moved on, a tag removed from the row): forget them
                self.store.delete_tags(row_id, stale)
        if row.source is not None:
            result.upstream = row.source.api_host
            seen = self.client.ratelimit(row.source.api_host)
            result.ratelimit_remaining = seen.remaining if seen else None
        return result

    def sync_items(
        self, items: Iterable[Mapping[str, Any]], *, run: Run | None = None, audit: bool = False, dry_run: bool = False,
        check_only: bool = False, row_concurrency: int = 4, should_stop: StopFn = never_stop,
        peers: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> list[RowResult]:
        """Sync many rows, ``row_concurrency`` at a time (results in input order); see :meth:`sync_item`
        (``peers``: row id -> the peer items of that row)."""
        items = list(items)
        run = run or self.begin()

        def one(item: Mapping[str, Any]) -> RowResult:
            return self.sync_item(item, run=run, audit=audit, dry_run=dry_run, check_only=check_only,
                                  should_stop=should_stop, peers=(peers or {}).get(str(item.get("id")), ()))

        if row_concurrency <= 1 or len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(min(row_concurrency, len(items)), thread_name_prefix="row") as pool:
            futures = [pool.submit(one, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:  # Ctrl-C, Interrupted: start no other row
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    # ------------------------------------------------------------ steps of a row

    def _state(self, item: Mapping[str, Any], row_id: str, *, writes: bool) -> RowState:
        """The row's recorded state; a legacy row item is migrated first (or, without writes, read as is)."""
        if has_legacy_status(item):
            if not writes:
                return RowState(legacy_tag_statuses(item), legacy_row_status(item))
            if self.store.migrate(item):
                log.info("row %s: status moved from the row item to the state table", row_id)
        return self.store.read_state(row_id)

    def _row_status(self, row_id: str, state: RowState, status: RowStatus | None) -> None:
        if status is None and state.row is None or status is not None and status.same_as(state.row):
            return
        try:
            self.store.put_row_status(row_id, status)
        except MirrorError as exc:
            log.error("row %s: row status not written: %s", row_id, exc)

    def _each(self, work: list[_Tag], fn: Callable[[_Tag], None], concurrency: int) -> None:
        """``fn`` over ``work``, ``concurrency`` at a time; a :class:`Deadline` is raised once all are done."""
        if len(work) <= 1 or concurrency <= 1:
            for w in work:
                fn(w)
            return
        deadline: Deadline | None = None
        with ThreadPoolExecutor(min(concurrency, len(work)), thread_name_prefix="tag") as pool:
            try:
                for future in [pool.submit(fn, w) for w in work]:
                    try:
                        future.result()
                    except Deadline as exc:
                        deadline = exc
            except BaseException:  # Ctrl-C, Interrupted: start no other tag; those running give their leases back
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if deadline:
            raise deadline

    def _claims(self, row: Row, peers: Sequence[Mapping[str, Any]], tags: Sequence[str],
                available: list[str] | None) -> dict[str, str]:
        """``{tag: id of another row that selects it too}`` for ``row``'s ``tags``, from its ``peers`` (raw
        items; invalid, disabled and other repositories' rows do not count). A peer that selects from the
        upstream list is evaluated with ``available`` when it lists the same source, else with its own
        source's tag list (one request). Neither row writes such a tag: which one should win is the owners'
        call (issue 13)."""
        mine = set(tags)
        claims: dict[str, str] = {}
        for item in peers:
            try:
                other = parse_row(dict(item), prefix=self.prefix)
            except RowError:
                continue
            if other.id == row.id or not other.enabled or other.target_repository != row.target_repository:
                continue
            theirs = set(other.tags)
            if other.needs_tag_list and other.source is not None:
                same = available is not None and row.source is not None and other.source.name == row.source.name
                listed = available if same and available is not None else self.client.tags_list(other.source)
                try:
                    theirs = set(select_tags(other, listed))
                except SelectionError:
                    pass  # that row is invalid: it writes nothing
            for tag in sorted(mine & theirs):
                claims.setdefault(tag, other.id)
        return claims

    def _start(self, row: Row, tag: str, previous: TagStatus | None, *, pin: str | None = None,
               conflict: str | None = None) -> _Tag:
        recorded = previous
        if previous is not None and not record_applies(previous.fingerprint, row.fingerprint):
            # the row changed (other platforms, another source or repository): what was recorded no longer applies
            recorded = None
        res = TagResult(row.id, tag, "", fingerprint=row.fingerprint, pinned_digest=pin)  # state: not yet known
        if conflict is not None:
            res.state = drift.CONFLICT
            res.error = (f"row {conflict!r} also writes {row.target_repository}:{tag}; neither row writes it "
                         "until one of them stops selecting it")
        w = _Tag(tag, previous, recorded, res)
        if previous is not None and previous.fingerprint != row.fingerprint:
            w.converge = options_turned_on(previous.fingerprint, row.fingerprint)
        return w

    def _head(self, row: Row, w: _Tag, should_stop: StopFn) -> None:
        if should_stop():
            raise Deadline(f"row {row.id}: stopped before tag {w.tag}, too little time left")
        self._tell(row, w.tag, "checking")
        try:
            w.result.upstream_digest, w.source_digest = self._upstream_digest(row, w)
        except Interrupted:
            raise
        except PullLimitReached as exc:  # a HEAD that took a GET, and the budget could not cover it
            self._deferred(row, w, exc)
        except PinNotFound as exc:  # the row's error: not retried, not copied
            w.result.state, w.result.error = drift.INVALID, str(exc)
            log.warning("row %s tag %s: %s", row.id, w.tag, exc)
        except MirrorError as exc:
            self._failed(row, w, exc)
        except Exception as exc:  # noqa: BLE001 - one tag's bug must not lose every other row's result
            self._failed(row, w, exc, unexpected=True)

    @staticmethod
    def _priority(w: _Tag) -> int:
        """Copy order when pulls are short (:data:`drift.COPY_PRIORITY`): missing, behind, repairs."""
        rec, target = w.recorded, w.result.target_digest
        if not w.target_known:
            return 1
        if target is None:
            return drift.COPY_PRIORITY[drift.MISSING]
        if w.complete is False or rec is not None and rec.expected_digest and target != rec.expected_digest:
            return drift.COPY_PRIORITY[drift.BROKEN]
        return drift.COPY_PRIORITY[drift.BEHIND]

    def _reserve(self, row: Row, w: _Tag) -> Reservation | None:
        """Reserve the pulls of ``w``'s copy on its upstream's budget (None: no budget applies). Raises
        :class:`PullLimitReached`."""
        budget = getattr(self.client, "budget", None)
        if budget is None or row.source is None:
            return None
        rec = w.recorded
        children = len(rec.children) if rec is not None and rec.children else (len(row.platforms) if row.platforms else None)
        return budget.reserve(row.source.api_host, expected_pulls(children))

    def _deferred(self, row: Row, w: _Tag, exc: PullLimitReached) -> None:
        """``w`` waits for its upstream's pull window to refill: ``deferred``, with why and until when."""
        res = w.result
        res.state, res.error = drift.DEFERRED, None
        res.refill_at = exc.retry_at
        res.reason = str(exc)
        log.info("row %s tag %s deferred: %s", row.id, w.tag, exc)

    def _tell(self, row: Row, tag: str, phase: str, state: str = "") -> None:
        if self.progress is not None:
            self.progress(TagEvent(row.id, tag, phase, str(self._dest(row, tag)), state))

    def _failed(self, row: Row, w: _Tag, exc: BaseException, *, unexpected: bool = False) -> None:
        w.result.state = drift.FAILED
        if unexpected:
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            w.result.error = f"unexpected {type(exc).__name__}: {first}"
            log.exception("row %s tag %s failed unexpectedly", row.id, w.tag, exc_info=exc)
        else:
            w.result.error = str(exc)
            log.warning("row %s tag %s failed: %s", row.id, w.tag, exc)

    def _upstream_digest(self, row: Row, w: _Tag) -> tuple[str, str | None]:
        """``(upstream digest, source digest for the copier)``: one HEAD per source. A pinned tag's are the
        pin; its HEAD only says where upstream's tag points now (``upstream_tag_digest``, informational: a
        tag gone upstream is no failure)."""
        tag = w.tag
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
        pin = w.result.pinned_digest
        if pin is not None:
            w.result.upstream_tag_digest = head.digest if head is not None else None
            rec = w.recorded
            mirrored = rec is not None and rec.synced_upstream_digest == pin
            # a pin the tag does not point at, never mirrored: does upstream have it at all? (one more HEAD,
            # only until the pin is mirrored: a typo in a pin is the row's error, not a copy to retry forever)
            if (head is None or head.digest != pin) and not mirrored and \
                    self.client.manifest_head(row.source.with_digest(pin), confirm_missing=True) is None:
                raise PinNotFound(f"tag {tag} is pinned to {pin}, which {row.source} does not have: fix the pin "
                                  f"in row {row.id!r}")
            return pin, pin
        if head is None:
            raise NotFoundError(f"{row.source.with_tag(tag)} not found upstream")
        return head.digest, head.digest

    def _settle(self, w: _Tag, audit: bool) -> bool:
        """A settled tag (not audited) is in sync as recorded: nothing more to ask or write."""
        rec = w.recorded
        if audit or rec is None or not rec.settled(w.result.upstream_digest, w.result.fingerprint):
            return False
        res = w.result
        res.state = res.state_before = drift.IN_SYNC
        res.expected_digest, res.target_digest = rec.expected_digest, rec.target_digest
        res.settled = True
        res.reason = "upstream unchanged since the last success"
        return True

    def _look_at_target(self, row: Row, pending: list[_Tag], run: Run, *, audit: bool, created: bool,
                        writes: bool) -> None:
        """What the target holds for ``pending`` tags (and, in an audit, whether their indexes are complete)."""
        repository = row.target_repository
        tags = [w.tag for w in pending]
        found: dict[str, str | None] | None = dict.fromkeys(tags) if created else None
        present: set[str] | None = None
        listed: dict[str, str] = {}
        try:
            if found is None and not audit:
                found = self.target.tag_digests(repository, tags)
            if found is None:
                listed, present = run.listing(self.target, repository)
                found = {t: listed.get(t) for t in tags}
        except Interrupted:
            raise
        except AwsError as exc:
            if exc.code != REPOSITORY_NOT_FOUND:
                for w in pending:
                    self._failed(row, w, exc)
                return
            # the repository is gone (or was never made): every tag is missing
            self.target.forget(repository)
            if writes:
                try:
                    self.target.ensure_repository(repository)
                except MirrorError as exc2:
                    for w in pending:
                        self._failed(row, w, exc2)
                    return
            run.forget(repository)
            found, present = dict.fromkeys(tags), set()
        for w in pending:
            w.target_known = True
            w.result.target_digest = found.get(w.tag)
            if audit and present is not None:
                self._audit_children(row, w, present)
                self._audit_arch_tags(w, listed)

    @staticmethod
    def _audit_arch_tags(w: _Tag, listed: Mapping[str, str]) -> None:
        """In an audit: does every arch tag recorded with the copy still point at its image? (An arch tag is
        what an amd64 or arm64 host pulls by name; one overwritten by hand is drift, repaired like a lost
        child: ``broken``, then a copy that writes the image's arch tags again.) From the repository listing
        the audit reads anyway: no request."""
        rec, digest = w.recorded, w.result.target_digest
        if w.complete is False or rec is None or not rec.arch_tags or digest is None or digest != rec.expected_digest:
            return
        wrong = [(name, want) for name, want in rec.arch_tags if listed.get(name) != want]
        if wrong:
            name, want = wrong[0]
            held = listed.get(name)
            w.complete = False
            w.broken_reason = (f"arch tag {name} points at {held}, not {want}" if held else f"arch tag {name} is gone") + (
                f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")

    def _audit_children(self, row: Row, w: _Tag, present: set[str]) -> None:
        """In an audit: is every child the index at the target references still in the repository? The
        children recorded with the copy say which (one GET of the index when none were recorded)."""
        rec, digest = w.recorded, w.result.target_digest
        if rec is None or digest is None or digest != rec.expected_digest:
            return
        children = rec.children
        if children is None:
            try:
                index = self.client.manifest_get(Reference(self.target.host, row.target_repository, digest=digest))
            except NotFoundError:
                w.complete = False
                return
            except Interrupted:
                raise
            except MirrorError as exc:
                log.warning("row %s tag %s: index at the target not read: %s", row.id, w.tag, exc)
                return
            children = tuple(c.digest for c in index.children) if index.is_index else ()
        w.children = children
        w.complete = all(c in present for c in children)

    def _finish(self, row: Row, w: _Tag, run: Run, *, dry_run: bool, check_only: bool, should_stop: StopFn,
                source_tags: list[str] | None = None, audit_referrers: bool = False) -> None:
        """Classify, copy if needed, record (and tell the progress display the tag is done)."""
        try:
            self._classify_and_copy(row, w, run, dry_run=dry_run, check_only=check_only, should_stop=should_stop,
                                    source_tags=source_tags, audit_referrers=audit_referrers)
        finally:
            if w.turns is not None:
                w.turns.done(w.rank)  # (already, if it reserved)
            self._tell(row, w.tag, "done", w.result.state)

    def _classify_and_copy(self, row: Row, w: _Tag, run: Run, *, dry_run: bool, check_only: bool, should_stop: StopFn,
                           source_tags: list[str] | None, audit_referrers: bool = False) -> None:
        res = w.result
        if res.settled:
            if not dry_run and w.previous is not None and res.pinned_digest is not None:
                # a pinned tag costs nothing more; where upstream's tag points is worth a write when it moved
                self._record(row, w, replace(w.previous, upstream_tag_digest=res.upstream_tag_digest,
                                             pinned_digest=res.pinned_digest), run)
            return
        if res.state == drift.CONFLICT:  # another row selects it too: neither writes it
            if not dry_run:
                self._record(row, w, self._status(w, drift.CONFLICT), run)
            return
        if res.state in (drift.FAILED, drift.DEFERRED, drift.INVALID):  # upstream HEAD (or target look-up) failed,
            # or waits, or the tag's pin names nothing upstream
            if not dry_run:
                self._record(row, w, self._status(w, res.state), run)
            return
        if w.previous is not None and w.previous.leased_by_other(run.owner):
            self._skip(row, w, f"another sync ({w.previous.lease_owner}) is copying it")
            return
        rec = w.recorded
        recorded_expected = rec.expected_digest if rec else None
        recorded_upstream = rec.synced_upstream_digest if rec else None
        upstream = res.upstream_digest
        res.expected_digest = drift.expected_target_digest(
            upstream, recorded_expected, recorded_upstream=recorded_upstream, identical=row.identical
        )
        state = drift.classify(upstream, recorded_expected, res.target_digest, w.complete,
                               recorded_upstream=recorded_upstream, identical=row.identical)
        res.state_before = state
        converge = bool(w.converge) and state == drift.IN_SYNC
        if not drift.needs_copy(state) and not converge:
            res.state = drift.IN_SYNC
            res.expected_digest = res.target_digest
            res.reason = "target holds the upstream image"
            if audit_referrers and w.complete and not should_stop():  # short of time: the next audit looks
                res.referrers = self._audit_referrers(row, w, source_tags)
            if not dry_run:
                self._record(row, w, self._status(w, drift.IN_SYNC, success=True), run)
            return
        if converge:
            res.state = drift.IN_SYNC
            res.reason = f"target holds the upstream image; now also asked for: {', '.join(sorted(w.converge))}"
            if dry_run or check_only:  # recorded as it was: the next sync brings the settings in line
                return
            self._converge(row, w, run, should_stop=should_stop, source_tags=source_tags)
            return
        res.reason = {
            drift.MISSING: "target tag does not exist",
            drift.BEHIND: "upstream moved" if recorded_upstream and recorded_upstream != upstream else "not yet mirrored",
            drift.DIVERGED: f"target tag points at {res.target_digest}, not {recorded_expected} put there by ecr-mirror",
            drift.BROKEN: w.broken_reason or "target image lost a child manifest",
        }.get(state, state)
        res.state = state
        if dry_run or check_only:
            if drift.is_drift(state):
                res.error = res.reason
            if check_only:
                self._record(row, w, self._status(w, state), run)
            return
        if res.target_digest is not None and state != drift.MISSING and self.target.is_immutable(row.target_repository):
            res.state = drift.BROKEN if state == drift.BROKEN else drift.DIVERGED
            res.error = (f"{self._dest(row, w.tag)} is in an immutable repository and holds {res.target_digest}; "
                         f"expected {res.expected_digest or upstream}; delete the tag or make the repository mutable to repair")
            self._record(row, w, self._status(w, res.state), run)
            return
        if should_stop():
            raise Deadline(f"row {row.id}: stopped before copying tag {w.tag}, too little time left")
        try:
            if w.turns is not None:
                w.turns.wait(w.rank)
            try:
                reservation = self._reserve(row, w)
            finally:
                if w.turns is not None:
                    w.turns.done(w.rank)
        except PullLimitReached as exc:
            self._deferred(row, w, exc)
            self._record(row, w, self._status(w, drift.DEFERRED), run)
            return
        except MirrorError as exc:  # the budget could not be read or written: no copy, the next delivery tries again
            self._failed(row, w, exc)
            self._record(row, w, self._status(w, drift.FAILED), run)
            return
        try:
            self._lease_and_copy(row, w, run, state, reservation, source_tags=source_tags)
        finally:
            if reservation is not None:
                reservation.settle()

    def _lease_and_copy(self, row: Row, w: _Tag, run: Run, state: str, reservation: Reservation | None, *,
                        source_tags: list[str] | None) -> None:
        res, rec = w.result, w.recorded
        # take the lease with the state detected (an interrupted sync keeps showing it)
        now = now_timestamp()
        interim = replace(self._status(w, state), error=None, lease_owner=run.owner,
                          lease_expires=timestamp_after(LEASE_SECONDS)).recorded(w.previous, now)
        try:
            leased = self.store.put_tag(row.id, w.tag, interim, previous=w.previous)
        except MirrorError as exc:  # no lease, no copy: the next delivery tries again
            self._failed(row, w, exc)
            return
        if not leased:
            self._skip(row, w, "another sync changed its status since this one read it")
            return
        self._tell(row, w.tag, "copying")
        try:
            with reservation if reservation is not None else contextlib.nullcontext():
                report = self._copy(row, w, force=state == drift.BROKEN, source_tags=source_tags)
        except (KeyboardInterrupt, SystemExit, Interrupted):  # interrupted (Ctrl-C): give the lease back, best effort
            released = replace(interim, lease_owner=None, lease_expires=None).recorded(interim, now_timestamp())
            try:
                self.store.put_tag(row.id, w.tag, released, previous=interim)
            except Exception:  # noqa: BLE001 - the lease then lapses on its own
                pass
            raise
        except PullLimitReached as exc:  # nothing written at the tag; children already copied stay
            self._deferred(row, w, exc)
            self._put(row, w.tag, self._status(w, drift.DEFERRED).recorded(interim, now_timestamp()), interim)
            return
        except MirrorError as exc:
            self._failed(row, w, exc)
            self._put(row, w.tag, self._status(w, drift.FAILED).recorded(interim, now_timestamp()), interim)
            return
        except Exception as exc:  # noqa: BLE001 - one tag's bug must not lose every other row's result
            self._failed(row, w, exc, unexpected=True)
            self._put(row, w.tag, self._status(w, drift.FAILED).recorded(interim, now_timestamp()), interim)
            return
        self._took(row, w, report)
        res.target_digest = res.expected_digest = report.digest
        res.state, res.error = drift.IN_SYNC, None
        if report.children is not None:
            w.children = tuple(report.children)
        elif rec is not None and rec.expected_digest == report.digest:
            w.children = rec.children
        run.wrote(row.target_repository, w.tag, report.digest, w.children or ())
        for name, digest in (res.arch_tag_digests or {}).items():
            run.wrote(row.target_repository, name, digest, ())
        done = self._status(w, drift.IN_SYNC, success=True).recorded(interim, now_timestamp())
        if not self._put(row, w.tag, done, interim):
            res.error = "status not written: another sync took this tag over (its lease had expired)"

    def _converge(self, row: Row, w: _Tag, run: Run, *, should_stop: StopFn, source_tags: list[str] | None) -> None:
        """A tag in sync whose row turned options on since its record (``w.converge``): a copy onto the image
        already there does what they ask for: arch tags written from the target's own index (no upstream
        request, no blob); the referrers of the unchanged image looked for; non-distributable layers copied
        (``force``: children re-read upstream, blobs re-checked at the target)."""
        if should_stop():
            raise Deadline(f"row {row.id}: stopped before tag {w.tag}, too little time left")
        res = w.result
        self._tell(row, w.tag, "copying")
        try:
            force = ATTR_ALLOW_NONDISTRIBUTABLE in w.converge
            report = self._copy(row, w, force=force, source_tags=source_tags,
                                when_unchanged=ATTR_REFERRERS in w.converge,
                                arch_tags=row.arch_tags and (force or ATTR_ARCH_TAGS in w.converge))
        except Interrupted:
            raise
        except MirrorError as exc:
            self._failed(row, w, exc)
            self._record(row, w, self._status(w, drift.FAILED), run)
            return
        self._took(row, w, report)
        res.expected_digest = res.target_digest = report.digest
        self._record(row, w, self._status(w, drift.IN_SYNC, success=True), run)

    @staticmethod
    def _took(row: Row, w: _Tag, report: CopyReport) -> None:
        """What a copy did, into ``w``'s result: counts, arch tags, referrers, warnings."""
        res = w.result
        # the arch tags the target holds for the image: none when the row has none; when it has, what the
        # copy wrote or found (a copy not asked for them, e.g. to fetch referrers, leaves the record as it was)
        if not row.arch_tags:
            res.arch_tag_digests = {}
        elif report.arch_tag_digests:
            res.arch_tag_digests = dict(report.arch_tag_digests)
        res.copied = not report.unchanged
        res.bytes_copied, res.blobs_copied = report.bytes_copied, report.blobs_copied
        res.blobs_skipped, res.blobs_mounted = report.blobs_skipped, report.blobs_mounted
        res.referrers = report.referrers
        res.arch_tags = list(report.arch_tags)
        res.warnings = status_warnings(report)

    def _copy(self, row: Row, w: _Tag, *, force: bool, source_tags: list[str] | None = None,
              when_unchanged: bool = False, arch_tags: bool | None = None) -> CopyReport:
        """The copy; a push that finds the repository gone (deleted since this process checked it: ECR does
        not create on push, NAME_UNKNOWN) creates it and tries once more. Referrers travel when the image is
        written (an unchanged tag's are left to the audit: issue 14); those the target refused (HTTP 405)
        before are not fetched again."""
        dest = self._dest(row, w.tag)
        referrers = ReferrerPolicy(when_unchanged=when_unchanged, refused=_refused(w)) if row.referrers else None

        def copy() -> CopyReport:
            if row.assemble:
                return self.copier.assemble(
                    dest, list(row.assemble), allow_nondistributable=row.allow_nondistributable_artifacts,
                    referrers=referrers, arch_tags=row.arch_tags if arch_tags is None else arch_tags,
                )
            assert row.source is not None
            pin = w.result.pinned_digest
            source = row.source.with_digest(pin) if pin else row.source.with_tag(w.tag)
            return self.copier.copy(
                source, dest, platforms=row.platforms, arch_tags=row.arch_tags if arch_tags is None else arch_tags,
                expected_digest=None if force else w.result.expected_digest, source_digest=w.source_digest,
                force=force, allow_nondistributable=row.allow_nondistributable_artifacts, referrers=referrers,
                source_tags=source_tags, destination_digest=w.result.target_digest,
                destination_checked=w.target_known,
            )

        try:
            return copy()
        except NotFoundError as exc:
            if NAME_UNKNOWN not in exc.codes or f"://{dest.api_host}/v2/{dest.repository}/" not in exc.url:
                raise
            log.warning("%s: the repository does not exist; creating it and trying again", dest)
            self.target.forget(row.target_repository)
            self.target.ensure_repository(row.target_repository)
            w.target_known = False  # a new, empty repository: the copy finds that out itself
            return copy()

    def _source_tags(self, row: Row) -> list[str] | None:
        """The upstream repository's tags, listed once for an audit's referrer discovery of a row that names its
        tags (``None`` if the list fails: each tag's discovery then lists them itself, and records the error)."""
        assert row.source is not None
        try:
            return self.client.tags_list(row.source)
        except Interrupted:
            raise
        except MirrorError as exc:
            log.warning("row %s: upstream tags not listed for the referrer audit: %s", row.id, exc)
            return None

    def _audit_referrers(self, row: Row, w: _Tag, source_tags: list[str] | None) -> ReferrersReport | None:
        """The audit's referrer discovery for a complete tag (issue 14): what its status records (digests,
        children; targets' 405 refusals not fetched again) is handed to
        :func:`~ecr_mirror.referrer_copy.audit_referrers`. A failure is the report's ``error``, recorded in the
        status as ``referrers_error``: the tag stays in sync. ``None`` when the row turns referrers off."""
        rec = w.recorded
        assert rec is not None and rec.expected_digest is not None
        try:
            return audit_referrers(
                self.copier, row, w.tag, self.target.host,
                upstream_digest=rec.synced_upstream_digest or rec.expected_digest,
                target_digest=rec.expected_digest, children=w.children or (), source_tags=source_tags,
                refused=_refused(w),
            )
        except (Deadline, Interrupted):
            raise
        except MirrorError as exc:
            log.warning("row %s tag %s: referrers not audited: %s", row.id, w.tag, exc)
            return ReferrersReport(error=str(exc))

    def _dest(self, row: Row, tag: str) -> Reference:
        return Reference(self.target.host, row.target_repository, tag)

    def _skip(self, row: Row, w: _Tag, why: str) -> None:
        res = w.result
        res.skipped = why
        res.state = w.previous.state if w.previous is not None else res.state_before or drift.BEHIND
        res.error = None
        log.info("row %s tag %s skipped: %s", row.id, w.tag, why)

    # ------------------------------------------------------------ status

    def _status(self, w: _Tag, state: str, *, success: bool = False) -> TagStatus:
        """The status to record for ``w`` in ``state``: on success the new recorded digests and children;
        otherwise those of the last success, kept. Timestamps other than ``last_success`` and the drift
        ones are set by :meth:`TagStatus.recorded`."""
        res, rec, prev = w.result, w.recorded, w.previous
        now = now_timestamp()
        drifted = res.drifted
        base = rec or TagStatus(state)
        children = base.children
        if success:  # what the index at the target references: learned now, or recorded for the same digest
            same = base.expected_digest == res.expected_digest
            children = w.children if w.children is not None else (base.children if same else None)
        return TagStatus(
            state=state,
            upstream_digest=res.upstream_digest,
            synced_upstream_digest=res.upstream_digest if success else base.synced_upstream_digest,
            expected_digest=res.expected_digest if success else base.expected_digest,
            children=children,
            target_digest=res.target_digest,
            # a failed attempt keeps the settings of the last success: what they still need is done next time
            fingerprint=(res.fingerprint or None) if success or not base.fingerprint else base.fingerprint,
            error=res.error if not success else None,
            reason=res.reason or None,
            last_success=now if success else (prev.last_success if prev else None),
            last_drift_state=res.drift_state if drifted else (prev.last_drift_state if prev else None),
            last_drift_at=now if drifted else (prev.last_drift_at if prev else None),
            bytes_copied=res.bytes_copied if res.copied else (prev.bytes_copied if prev else 0),
            # what became of the referrers at the last copy that looked at them: kept until the next one
            **(referrer_fields(res.referrers) if res.referrers is not None and success
               else {f: getattr(prev, f) for f in REFERRER_FIELDS} if prev else {}),
            pinned_digest=res.pinned_digest,
            upstream_tag_digest=res.upstream_tag_digest if res.pinned_digest else None,
            # what the last copy did short of the ideal: kept until a copy looks again
            warnings=res.warnings if res.warnings is not None else (prev.warnings if prev else None),
            arch_tags=(tuple(sorted(res.arch_tag_digests.items())) if res.arch_tag_digests is not None and success
                       else base.arch_tags),
            refill_at=format_timestamp(datetime.fromtimestamp(res.refill_at, UTC))
            if state == drift.DEFERRED and res.refill_at is not None else None,
        )

    def _record(self, row: Row, w: _Tag, status: TagStatus, run: Run) -> None:
        """Write ``status`` (no lease) if it records something new (:attr:`TagStatus.RECORDED`, or what became
        of the referrers: an audit's discovery)."""
        if not status.differs_from(w.previous) and not _referrers_differ(status, w.previous):
            return
        if w.previous is not None and w.previous.leased_by_other(run.owner):
            self._skip(row, w, f"another sync ({w.previous.lease_owner}) is copying it")
            return
        self._put(row, w.tag, status.recorded(w.previous, now_timestamp()), w.previous)

    def _put(self, row: Row, tag: str, status: TagStatus, previous: TagStatus | None) -> bool:
        try:
            return self.store.put_tag(row.id, tag, status, previous=previous)
        except MirrorError as exc:  # a status write that fails must not hide the copy's outcome
            log.error("row %s tag %s: status not written: %s", row.id, tag, exc)
            return False


def _refused(w: _Tag) -> frozenset[str]:
    """Referrer digests the target refused (HTTP 405) for this tag before: not fetched again."""
    return frozenset((w.previous.referrers_refused or "").split()) if w.previous else frozenset()


def _referrers_differ(status: TagStatus, previous: TagStatus | None) -> bool:
    return previous is not None and any(getattr(status, f) != getattr(previous, f) for f in REFERRER_FIELDS)


def remaining_time_guard(context: Any, reserve_seconds: float) -> StopFn:
    """``should_stop`` for a Lambda context: true once less than ``reserve_seconds`` remain
    (``context.get_remaining_time_in_millis()``); never true without a context."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return never_stop
    return lambda: context.get_remaining_time_in_millis() < reserve_seconds * 1000


__all__ = ["Run", "RowResult", "StateStore", "Syncer", "TagEvent", "TagResult", "Target", "never_stop",
           "remaining_time_guard"]
