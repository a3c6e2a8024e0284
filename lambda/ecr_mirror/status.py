"""Status records: what the service records, as typed values, and how they map to state-table items. Pure: no I/O.

The service never writes into a user's row. What it records lives in the **state table**
(:class:`ecr_mirror.store.StateTable`; partition key ``pk``, sort key ``sk``, TTL attribute
``expires_at``)::

    pk                 sk                 item
    <row id>           tag#<tag>          TagStatus: one tag's status (written only when something changed)
    <row id>           row                RowStatus: invalid / no_tags / failed row (only when it changes)
    #pass              <pass id>          PassRecord: one per scheduled pass or CLI sync (TTL 30 days)
    #pass#<pass id>    <invocation id>    PassProgress: rows one worker invocation finished OK (TTL 30 days)

Row ids start with a letter or digit (:mod:`ecr_mirror.rows`), so the ``#...`` partitions never
collide with a row's. ``state`` is one of :data:`ecr_mirror.drift.STATES` (plus ``no_tags`` for a
row). Timestamps are ISO-8601 UTC with microseconds (:func:`format_timestamp`), so the strings sort
in time order and compare in DynamoDB condition expressions.

A tag's status travels as one :class:`TagStatus` from the store through drift detection to the
writer; the sync builds the next one from the last with :func:`dataclasses.replace`.

Before this layout (up to issue 12) the status lived inside the row item: a map ``status``
(tag -> entry) and ``row_error``/``row_error_at``. :func:`legacy_tag_statuses` and
:func:`legacy_row_status` read that layout for the one-time migration
(:meth:`ecr_mirror.store.StateTable.migrate`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from . import drift
from .rows import ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT, ATTR_STATUS
from .versions import version_key

#: longest error text (and reason, and each warning) kept in a status, in characters
MAX_ERROR_LENGTH = 2000
#: most warning lines kept in a tag status
MAX_WARNINGS = 20
#: a tag lease outlives its holder by this much at most: longer than a Lambda invocation (900 s), so a
#: live holder never loses it mid-copy; a crashed holder's lease lapses after it
LEASE_SECONDS = 20 * 60
#: pass records and invocation progress records expire (DynamoDB TTL) after this many days
PASS_RECORD_DAYS = 30

#: state-table key attributes, the sort-key prefix of tag items, the sort key of the row item
KEY_PK = "pk"
KEY_SK = "sk"
TAG_PREFIX = "tag#"
ROW_SK = "row"
PASS_PK = "#pass"
TTL_ATTRIBUTE = "expires_at"
#: the row-level state of a pattern row whose pattern selected no upstream tag
NO_TAGS = "no_tags"
#: row-level states (:class:`RowStatus`)
ROW_STATES = (drift.INVALID, drift.FAILED, NO_TAGS)

_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


# ---------------------------------------------------------------- time


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-01-02T03:04:05.000006Z`` (sorts as it reads)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_timestamp() -> str:
    """The current time as :func:`format_timestamp` writes it."""
    return format_timestamp(datetime.now(UTC))


def parse_timestamp(text: str) -> datetime:
    """The :class:`datetime` of a :func:`format_timestamp` string (``ValueError`` otherwise)."""
    if not isinstance(text, str) or not _TIMESTAMP_RE.fullmatch(text):
        raise ValueError(f"not a status timestamp: {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def timestamp_after(seconds: float, now: datetime | None = None) -> str:
    """``now`` (default: the current time) plus ``seconds``, as a status timestamp."""
    return format_timestamp((now or datetime.now(UTC)) + timedelta(seconds=seconds))


def expiry_epoch(days: int = PASS_RECORD_DAYS, now: datetime | None = None) -> int:
    """Unix seconds ``days`` from ``now``: the ``expires_at`` DynamoDB TTL deletes an item after."""
    return int(((now or datetime.now(UTC)) + timedelta(days=days)).timestamp())


def _text(value: Any, limit: int = MAX_ERROR_LENGTH) -> str | None:
    if value is None or value == "":
        return None
    return " ".join(str(value).split())[:limit] or None


def _stamp(value: Any) -> str | None:
    """A status timestamp from an item: ours as written, or any ISO-8601 time with a zone (an older
    version's, or one a person wrote: ``2025-01-01T00:00:00Z``) normalised; anything else None."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if not isinstance(value, str):
        return None
    if _TIMESTAMP_RE.fullmatch(value):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return format_timestamp(moment) if moment.tzinfo is not None else None


# OCI image spec, descriptor.md "Digests": algorithm ":" encoded
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


def _digest(value: Any) -> str | None:
    """A digest from an item, or None for anything that is not one (so a damaged item never reaches a
    request or a comparison as a digest)."""
    return value if isinstance(value, str) and _DIGEST_RE.fullmatch(value) else None


def _arch_tags(value: Any) -> tuple[tuple[str, str], ...] | None:
    """``{arch tag: digest}`` from an item, sorted pairs; None when absent or malformed."""
    if not isinstance(value, Mapping):
        return None
    pairs = [(k, _digest(v)) for k, v in value.items() if isinstance(k, str)]
    if len(pairs) != len(value) or any(d is None for _, d in pairs):
        return None
    return tuple(sorted((k, d) for k, d in pairs if d is not None))


def _fingerprint(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return 0
    return int(value)


def _count(value: Any) -> int | None:
    return None if value is None else _int(value)


# ---------------------------------------------------------------- a tag's status


@dataclass(frozen=True)
class TagStatus:
    """What the service recorded about one tag of one row.

    - ``state``: one of :data:`ecr_mirror.drift.STATES` (the state after the last attempt, or the state
      detected before a copy while it runs);
    - ``upstream_digest``: what upstream pointed at in the last attempt;
    - ``synced_upstream_digest``/``expected_digest``: at the last success, the upstream digest and the
      digest the service wrote (or found) at the target; a failed attempt keeps them;
    - ``children``: the digests the written index references (the audit checks they are all still in
      the repository); ``()`` for a single manifest; ``None`` when not recorded (the audit then GETs the
      index once and records them);
    - ``target_digest``: what the target tag held after the last attempt;
    - ``fingerprint``: the row settings the record belongs to (:attr:`ecr_mirror.rows.Row.fingerprint`);
    - ``error``/``reason``: one line each; ``bytes_copied``: blob bytes the last copy uploaded;
    - timestamps: ``last_attempt`` (every write; also the item's version for conditional writes),
      ``last_success``, ``last_change`` (the state or a digest last changed), ``last_drift_state``/
      ``last_drift_at`` (the last drift seen: ``diverged``/``broken``);
    - ``lease_owner``/``lease_expires``: the sync copying this tag now (see :meth:`leased_by_other`);
    - ``pinned_digest``: the digest the row pins the tag to (``tag@sha256:…``; None: it follows upstream's tag);
      ``upstream_tag_digest``: for a pinned tag, where upstream's tag pointed at the last look (None: no
      such tag upstream): when it differs from the pin, status says so (:func:`pin_note`); nothing moves;
    - ``arch_tags``: ``((arch tag, digest), …)``, the ``<tag>-<arch>`` tags the last success left at the
      target and the image each points at (``()``: none; ``None``: not recorded): the audit checks them
      against the repository listing;
    - ``warnings``: what the last copy did short of the ideal without failing (a non-distributable layer
      left out, a referrers tag left alone: :attr:`ecr_mirror.copy.CopyReport.warnings`), one line each;
      kept until the next copy that writes or checks the image;
    - ``referrers_*`` (:data:`REFERRER_FIELDS`): what became of the image's referrers at the last copy that
      looked at them (:func:`referrer_fields`): how many were copied, present, not applicable, why not
      (``note``), the error that ended the walk, the digests the target refused (HTTP 405, space-separated:
      not fetched again);
    - ``refill_at``: a ``deferred`` tag's expected refill time of the upstream's pull window (``reason`` says
      which budget and how short it is; issue 15); ``last_change`` then says since when it waits.
    """

    state: str
    upstream_digest: str | None = None
    synced_upstream_digest: str | None = None
    expected_digest: str | None = None
    children: tuple[str, ...] | None = None
    target_digest: str | None = None
    fingerprint: str | None = None
    error: str | None = None
    reason: str | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_change: str | None = None
    last_drift_state: str | None = None
    last_drift_at: str | None = None
    bytes_copied: int = 0
    lease_owner: str | None = None
    lease_expires: str | None = None
    referrers_copied: int | None = None
    referrers_present: int | None = None
    referrers_not_applicable: int | None = None
    referrers_note: str | None = None
    referrers_error: str | None = None
    referrers_refused: str | None = None
    pinned_digest: str | None = None
    upstream_tag_digest: str | None = None
    warnings: tuple[str, ...] | None = None
    arch_tags: tuple[tuple[str, str], ...] | None = None
    refill_at: str | None = None

    #: the fields a change of which is worth a write (the rest are timestamps, counters and the lease)
    RECORDED = ("state", "upstream_digest", "synced_upstream_digest", "expected_digest", "children", "target_digest",
                "fingerprint", "error", "pinned_digest", "upstream_tag_digest", "warnings", "arch_tags", "refill_at")

    def settled(self, upstream_digest: str | None, fingerprint: str) -> bool:
        """Whether this tag needs no look at the target this pass: it is ``in_sync``, for these row
        settings, and upstream still points where it pointed at the last success. (The audit re-checks
        settled tags at the target on its own cadence.)"""
        return (
            self.state == drift.IN_SYNC
            and self.fingerprint == fingerprint
            and upstream_digest is not None
            and upstream_digest == self.synced_upstream_digest
            and self.expected_digest is not None
        )

    def leased_by_other(self, owner: str, now: str | None = None) -> bool:
        """Whether another sync holds a live lease on this tag (it is copying it now)."""
        if not self.lease_owner or self.lease_owner == owner or not self.lease_expires:
            return False
        return self.lease_expires > (now or now_timestamp())

    def differs_from(self, other: TagStatus | None) -> bool:
        """Whether recording this instead of ``other`` changes anything that matters (:data:`RECORDED`)."""
        if other is None:
            return True
        return any(getattr(self, name) != getattr(other, name) for name in self.RECORDED)

    def to_item(self) -> dict[str, Any]:
        """The state-table attributes (keys not included); None fields are left out."""
        item: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("children", "warnings"):
                value = list(value)
            elif f.name == "arch_tags":
                value = dict(value)
            item[f.name] = value
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TagStatus:
        """Read a state-table item (or a legacy status entry): tolerant, a malformed field reads as absent;
        a state that is not one of :data:`ecr_mirror.drift.STATES` reads as ``failed``."""
        state = item.get("state")
        children = item.get("children")
        if isinstance(children, (list, tuple)) and all(isinstance(c, str) for c in children):
            kids: tuple[str, ...] | None = tuple(children)
        else:
            kids = None
        warnings = item.get("warnings")
        if isinstance(warnings, (list, tuple)) and all(isinstance(w, str) for w in warnings):
            notes: tuple[str, ...] | None = tuple(_text(w) or "" for w in warnings[:MAX_WARNINGS])
        else:
            notes = None
        return cls(
            state=state if state in drift.STATES else drift.FAILED,
            upstream_digest=_digest(item.get("upstream_digest")),
            synced_upstream_digest=_digest(item.get("synced_upstream_digest")),
            expected_digest=_digest(item.get("expected_digest")),
            children=kids,
            target_digest=_digest(item.get("target_digest")),
            fingerprint=_fingerprint(item.get("fingerprint")),
            error=_text(item.get("error")),
            reason=_text(item.get("reason")),
            last_attempt=_stamp(item.get("last_attempt")),
            last_success=_stamp(item.get("last_success")),
            last_change=_stamp(item.get("last_change")),
            last_drift_state=item.get("last_drift_state") if item.get("last_drift_state") in drift.STATES else None,
            last_drift_at=_stamp(item.get("last_drift_at")),
            bytes_copied=_int(item.get("bytes_copied")),
            lease_owner=_text(item.get("lease_owner"), 256),
            lease_expires=_stamp(item.get("lease_expires")),
            referrers_copied=_count(item.get("referrers_copied")),
            referrers_present=_count(item.get("referrers_present")),
            referrers_not_applicable=_count(item.get("referrers_not_applicable")),
            referrers_note=_text(item.get("referrers_note")),
            referrers_error=_text(item.get("referrers_error")),
            referrers_refused=_text(item.get("referrers_refused"), 100_000),
            pinned_digest=_digest(item.get("pinned_digest")),
            upstream_tag_digest=_digest(item.get("upstream_tag_digest")),
            warnings=notes,
            arch_tags=_arch_tags(item.get("arch_tags")),
            refill_at=_stamp(item.get("refill_at")),
        )

    def recorded(self, previous: TagStatus | None, now: str) -> TagStatus:
        """This status as written at ``now``: ``last_attempt`` set, ``last_change`` moved when a recorded
        field changed (kept otherwise), texts cut to one line of :data:`MAX_ERROR_LENGTH`."""
        changed = previous is None or previous.state != self.state or any(
            getattr(previous, name) != getattr(self, name)
            for name in ("upstream_digest", "expected_digest", "target_digest")
        )
        return replace(
            self,
            error=_text(self.error),
            reason=_text(self.reason),
            warnings=tuple(_text(w) or "" for w in self.warnings[:MAX_WARNINGS]) if self.warnings else None,
            last_attempt=now,
            last_change=now if changed else (previous.last_change if previous else None),
        )


#: the referrer fields of a :class:`TagStatus` (issue 14), in the order ``ecr-mirror status --json`` lists them
REFERRER_FIELDS = ("referrers_copied", "referrers_present", "referrers_not_applicable", "referrers_note",
                   "referrers_error", "referrers_refused")


def referrer_fields(report: Any) -> dict[str, Any]:
    """The :data:`REFERRER_FIELDS` values of a :class:`ecr_mirror.referrers.ReferrersReport` (its ``counts()``).
    The image is in sync whatever became of its referrers: a referrer failure is noted, not the state."""
    counts = report.counts()
    return {
        "referrers_copied": counts["copied"],
        "referrers_present": counts["present"],
        "referrers_not_applicable": counts["not_applicable"],
        "referrers_note": "; ".join(counts["reasons"]) or None,
        "referrers_error": counts["error"],
        "referrers_refused": " ".join(counts["refused"]) or None,
    }


def status_warnings(report: Any) -> tuple[str, ...]:
    """The ``warnings`` of a tag status from a :class:`ecr_mirror.copy.CopyReport`: its warning lines, and one
    saying how many non-distributable layers were left out by design (absent at the target: their registry
    serves them from their ``urls``). Normalised as stored (one line each, at most :data:`MAX_WARNINGS`), so
    an unchanged list is no write."""
    lines = list(report.warnings)
    skipped = getattr(report, "nondistributable_skipped", 0)
    if skipped and not any("non-distributable layer" in line for line in lines):
        lines.append(f"{skipped} non-distributable layer(s) left out by design (served from their urls; "
                     "allow_nondistributable_artifacts copies them)")
    return tuple(_text(line) or "" for line in dict.fromkeys(lines))[:MAX_WARNINGS]


def tag_sort_key(tag: str) -> str:
    """The state-table sort key of a tag item: ``tag#<tag>``."""
    return TAG_PREFIX + tag


# ---------------------------------------------------------------- a row's status


@dataclass(frozen=True)
class RowStatus:
    """What the service recorded about a row as a whole.

    ``state``: ``invalid`` (the row does not validate, or selects more tags than it may: ``error`` says
    why), ``failed`` (a failure of the whole row, e.g. its tag list: ``error``) or ``no_tags`` (its
    selection, ``pattern``: its patterns, version range and exclusions as
    :func:`ecr_mirror.tags.selection_text` words them, selected none of the ``tags_tried`` upstream
    tags); ``at``: when it was found. Written only when it changes
    (:meth:`same_as`), removed when the row is fine again.
    """

    state: str
    error: str | None = None
    pattern: str | None = None
    tags_tried: int | None = None
    at: str | None = None

    def same_as(self, other: RowStatus | None) -> bool:
        """Equal but for ``at``."""
        return other is not None and replace(self, at=None) == replace(other, at=None)

    def to_item(self) -> dict[str, Any]:
        """The state-table attributes (keys not included)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RowStatus:
        """Read a state-table ``row`` item (tolerant, like :meth:`TagStatus.from_item`)."""
        state = item.get("state")
        tried = item.get("tags_tried")
        return cls(
            state=state if state in ROW_STATES else drift.INVALID,
            error=_text(item.get("error")),
            pattern=_text(item.get("pattern"), 256),
            tags_tried=_int(tried) if tried is not None else None,
            at=_stamp(item.get("at")),
        )


@dataclass(frozen=True)
class RowState:
    """Everything the state table holds for one row: its tags' statuses and its row status."""

    tags: dict[str, TagStatus] = field(default_factory=dict)
    row: RowStatus | None = None

    @property
    def is_new(self) -> bool:
        """Nothing was ever recorded for the row (a new row: its repository may not exist yet)."""
        return not self.tags and self.row is None


# ---------------------------------------------------------------- passes


@dataclass(frozen=True)
class PassRecord:
    """One scheduled pass (``kind`` ``schedule``) or one ``ecr-mirror sync`` run (``kind`` ``cli``, which
    also lists its ``rows`` done OK and ``finished_at``): when it started, how many rows it enqueued or
    synced, and whether it audited."""

    pass_id: str
    started_at: str
    kind: str = "schedule"
    audit: bool = False
    rows_enqueued: int = 0
    rows: tuple[str, ...] = ()
    finished_at: str | None = None

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"started_at": self.started_at, "kind": self.kind, "audit": self.audit,
                                "rows_enqueued": self.rows_enqueued}
        if self.rows:
            item["rows"] = list(self.rows)
        if self.finished_at:
            item["finished_at"] = self.finished_at
        return item

    @classmethod
    def from_item(cls, pass_id: str, item: Mapping[str, Any]) -> PassRecord:
        rows = item.get("rows")
        return cls(
            pass_id=pass_id,
            started_at=_stamp(item.get("started_at")) or "",
            kind=str(item.get("kind") or "schedule"),
            audit=item.get("audit") is True,
            rows_enqueued=_int(item.get("rows_enqueued")),
            rows=tuple(r for r in rows if isinstance(r, str)) if isinstance(rows, (list, tuple, set)) else (),
            finished_at=_stamp(item.get("finished_at")),
        )


def new_pass_id(started_at: str | None = None) -> str:
    """``<start timestamp>.<6 hex>``: sorts by start time; unique enough for concurrent starts."""
    return f"{started_at or now_timestamp()}.{secrets.token_hex(3)}"


def progress_partition(pass_id: str) -> str:
    """The partition of a pass's invocation progress records: ``#pass#<pass id>``."""
    return f"{PASS_PK}#{pass_id}"


def audit_due(last_audit_started: str | None, interval_seconds: int, now: datetime | None = None) -> bool:
    """Whether a pass starting ``now`` should audit: no audit pass on record, or the last one started
    ``interval_seconds`` or more ago (0: every pass audits)."""
    if last_audit_started is None or interval_seconds <= 0:
        return True
    try:
        last = parse_timestamp(last_audit_started)
    except ValueError:
        return True
    return (now or datetime.now(UTC)) - last >= timedelta(seconds=interval_seconds)


# ---------------------------------------------------------------- reading back (ecr-mirror status)

#: the keys of every record :func:`status_records` returns
STATUS_RECORD_FIELDS = (
    "id",
    "tag",
    "state",
    "upstream_digest",
    "expected_digest",
    "target_digest",
    "last_attempt",
    "last_success",
    "last_change",
    "last_verified",
    "last_drift_state",
    "last_drift_at",
    "bytes_copied",
    "error",
    "note",
    "warnings",
    "pinned_digest",
    "upstream_tag_digest",
    "pattern",
    "tags_tried",
    *REFERRER_FIELDS,
    "reason",
    "refill_at",
)


def pin_note(status: TagStatus) -> str | None:
    """For a pinned tag whose upstream tag no longer points at the pin: one line saying so (informational:
    the pin stands, nothing at the target moves); else None."""
    pin = status.pinned_digest
    if pin is None or status.upstream_tag_digest == pin:
        return None
    if status.upstream_tag_digest is None:
        return f"pinned to {pin}; the upstream tag does not exist (any more)"
    return f"pinned to {pin}; the upstream tag points at {status.upstream_tag_digest}"


def last_verified(status: TagStatus, row_verified_at: str | None) -> str | None:
    """When this tag was last known to be as recorded: the newest of its ``last_change``, its
    ``last_success`` and ``row_verified_at`` (the end of the newest pass that finished its row)."""
    stamps = [s for s in (status.last_change, status.last_success) if s]
    if row_verified_at and status.state == drift.IN_SYNC:
        stamps.append(row_verified_at)
    return max(stamps) if stamps else None


def status_records(row_id: str, state: RowState, row_verified_at: str | None = None) -> list[dict[str, Any]]:
    """Flat records of one row (keys :data:`STATUS_RECORD_FIELDS`): the row status first (``tag``
    None: ``invalid``, ``failed`` or ``no_tags``), then each tag's, in version order (1.9 before 1.10)."""
    out: list[dict[str, Any]] = []
    if state.row is not None:
        record = dict.fromkeys(STATUS_RECORD_FIELDS)
        error = state.row.error
        if state.row.state == NO_TAGS:
            error = f"{state.row.pattern or 'the selection'} selected none of {state.row.tags_tried or 0} upstream tags"
        record.update(id=row_id, state=state.row.state, error=error, last_attempt=state.row.at,
                      pattern=state.row.pattern, tags_tried=state.row.tags_tried)
        out.append(record)
    for tag in sorted(state.tags, key=version_key):
        s = state.tags[tag]
        record = {name: getattr(s, name, None) for name in STATUS_RECORD_FIELDS if hasattr(s, name)}
        record.update(id=row_id, tag=tag, last_verified=last_verified(s, row_verified_at), note=pin_note(s),
                      warnings=list(s.warnings) if s.warnings else None)
        if s.state != drift.DEFERRED:  # a deferred tag says why and until when; other reasons are the sync's
            record.update(reason=None, refill_at=None)
        out.append({name: record.get(name) for name in STATUS_RECORD_FIELDS})
    return out


# ---------------------------------------------------------------- the legacy layout (migration)


def has_legacy_status(item: Mapping[str, Any]) -> bool:
    """Whether a row item still carries status in the pre-issue-12 layout (``status``, ``row_error``)."""
    return any(item.get(name) is not None for name in (ATTR_STATUS, ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT))


def legacy_tag_statuses(item: Mapping[str, Any]) -> dict[str, TagStatus]:
    """``{tag: TagStatus}`` from a row item's legacy ``status`` map, every recorded digest and the drift
    history kept; ``children`` None (never recorded then: the next audit reads them once). Malformed
    entries are skipped."""
    legacy = item.get(ATTR_STATUS)
    out: dict[str, TagStatus] = {}
    if not isinstance(legacy, Mapping):
        return out
    for tag, entry in legacy.items():
        if not isinstance(tag, str) or not isinstance(entry, Mapping) or entry.get("state") not in drift.STATES:
            continue
        status = TagStatus.from_item({k: v for k, v in entry.items() if k not in ("children", "lease_owner", "lease_expires")})
        out[tag] = replace(status, last_change=status.last_change or status.last_attempt)
    return out


def legacy_row_status(item: Mapping[str, Any]) -> RowStatus | None:
    """The row status a legacy ``row_error``/``row_error_at`` pair stood for (``invalid``), or None."""
    error = item.get(ATTR_ROW_ERROR)
    if not isinstance(error, str) or not error:
        return None
    return RowStatus(drift.INVALID, error=_text(error), at=_stamp(item.get(ATTR_ROW_ERROR_AT)))


__all__ = [
    "LEASE_SECONDS",
    "NO_TAGS",
    "PassRecord",
    "REFERRER_FIELDS",
    "RowState",
    "RowStatus",
    "STATUS_RECORD_FIELDS",
    "TagStatus",
    "audit_due",
    "format_timestamp",
    "has_legacy_status",
    "last_verified",
    "legacy_row_status",
    "legacy_tag_statuses",
    "new_pass_id",
    "now_timestamp",
    "pin_note",
    "referrer_fields",
    "status_warnings",
    "status_records",
    "timestamp_after",
]
