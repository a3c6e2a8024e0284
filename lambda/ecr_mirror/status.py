"""Status records: what the service writes back into a row's item, and how it is read. Pure: no I/O.

What the service writes into a row's item (never with PutItem, so user attributes are never
clobbered; see :mod:`ecr_mirror.store`)::

    status        M   tag -> {state, upstream_digest, expected_digest, synced_upstream_digest,
                              target_digest, last_attempt, last_success, bytes_copied, error,
                              fingerprint, last_drift_state, last_drift_at,
                              referrers_copied, referrers_present, referrers_not_applicable,
                              referrers_note, referrers_error, referrers_refused
                              (at the last copy that looked at referrers)}
    row_error     S   why the row is invalid (removed again once it validates)
    row_error_at  S   when that was found

``state`` is one of :data:`ecr_mirror.drift.STATES`. Timestamps are ISO-8601 UTC with
microseconds (:func:`format_timestamp`), so the strings sort in time order: status writes are
conditional on ``last_attempt``, and a write whose attempt is not newer than the stored one is
dropped, so two racing workers never move a tag's status backwards. A write sets the fields it
gives and removes those it leaves None, except ``last_success``: a failed attempt keeps the
stored one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from . import drift
from .errors import MirrorError, shown
from .rows import ATTR_ID, ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT, ATTR_STATUS, type_name

#: longest error text (and string field) kept in a status entry, in characters
MAX_ERROR_LENGTH = 2000

#: the fields of a status entry (:func:`status_entry`); others (``last_drift_*``) may be added
STATUS_FIELDS = (
    "state",
    "upstream_digest",
    "expected_digest",
    "synced_upstream_digest",
    "target_digest",
    "last_attempt",
    "last_success",
    "bytes_copied",
    "error",
    "fingerprint",
)
#: the keys of every record :meth:`ecr_mirror.store.MirrorTable.read_status` returns
STATUS_RECORD_FIELDS = (
    "id",
    "tag",
    "state",
    "upstream_digest",
    "expected_digest",
    "target_digest",
    "last_attempt",
    "last_success",
    "bytes_copied",
    "error",
    "referrers_copied",
    "referrers_present",
    "referrers_not_applicable",
    "referrers_note",
    "referrers_error",
    "referrers_refused",
)
_EXTRA_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-01-02T03:04:05.000006Z`` (sorts as it reads)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_timestamp() -> str:
    """The current time as :func:`format_timestamp` writes it."""
    return format_timestamp(datetime.now(UTC))


def _timestamp(value: Any, field: str) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        return value
    raise MirrorError(f"status field {field} must be a datetime or YYYY-MM-DDTHH:MM:SS.ffffffZ, not {shown(value)}")


def status_entry(
    state: str,
    *,
    upstream_digest: str | None = None,
    expected_digest: str | None = None,
    synced_upstream_digest: str | None = None,
    target_digest: str | None = None,
    last_attempt: datetime | str | None = None,
    last_success: datetime | str | None = None,
    bytes_copied: int | None = None,
    error: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Build a status entry for :meth:`ecr_mirror.store.MirrorTable.write_status` (``last_attempt`` defaults to now).

    ``upstream_digest``: what upstream pointed at in this attempt; ``expected_digest`` and
    ``synced_upstream_digest``: what the service put at the target and the upstream digest it
    came from, at the last success (carry them over on a failed attempt: fields left None are
    removed); ``target_digest``: what the target held.
    """
    return {
        "state": state,
        "upstream_digest": upstream_digest,
        "expected_digest": expected_digest,
        "synced_upstream_digest": synced_upstream_digest,
        "target_digest": target_digest,
        "last_attempt": last_attempt if last_attempt is not None else now_timestamp(),
        "last_success": last_success,
        "bytes_copied": bytes_copied,
        "error": error,
        "fingerprint": fingerprint,
    }


def normalise_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Check a status entry; returns it with timestamps as strings, numbers as ints, every
    :data:`STATUS_FIELDS` key present (None where not given). Raises :class:`MirrorError`."""
    if not isinstance(entry, Mapping):
        raise MirrorError("a status entry must be a mapping")
    out: dict[str, Any] = {}
    state = entry.get("state")
    if state not in drift.STATES:
        raise MirrorError(f"status state {shown(state)} is not one of {', '.join(drift.STATES)}")
    out["state"] = state
    out["last_attempt"] = _timestamp(entry.get("last_attempt") or now_timestamp(), "last_attempt")
    for key, value in entry.items():
        if key in ("state", "last_attempt"):
            continue
        if not isinstance(key, str) or not _EXTRA_KEY_RE.fullmatch(key):
            raise MirrorError(f"status field name {shown(key)} is not allowed")
        if value is None:
            out[key] = None
        elif key == "last_success":
            out[key] = _timestamp(value, key)
        elif key == "error":
            out[key] = str(value)[:MAX_ERROR_LENGTH]
        elif isinstance(value, bool) or isinstance(value, str):
            out[key] = value if not isinstance(value, str) else value[:MAX_ERROR_LENGTH]
        elif isinstance(value, (int, Decimal)):
            out[key] = int(value)
        elif isinstance(value, datetime):
            out[key] = format_timestamp(value)
        else:
            raise MirrorError(f"status field {key} has unsupported type {type_name(value)}")
    for key in STATUS_FIELDS:
        out.setdefault(key, None)
    return out


def _plain(value: Any) -> Any:
    """A DynamoDB number as int or float; anything else as is."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def status_records(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flat status records of one item (see :data:`STATUS_RECORD_FIELDS`), sorted by tag.

    An invalid row yields one record with ``tag`` None, ``state`` ``invalid`` and the reason
    in ``error``. A row never synced yields nothing. Malformed status data is skipped.
    """
    row_id = item.get(ATTR_ID)
    out: list[dict[str, Any]] = []
    row_error = item.get(ATTR_ROW_ERROR)
    if isinstance(row_error, str) and row_error:
        record = dict.fromkeys(STATUS_RECORD_FIELDS)
        at = item.get(ATTR_ROW_ERROR_AT)
        record.update(id=row_id, state=drift.INVALID, error=row_error, last_attempt=at if isinstance(at, str) else None)
        out.append(record)
    status = item.get(ATTR_STATUS)
    if isinstance(status, Mapping):
        for tag in sorted(k for k in status if isinstance(k, str)):
            entry = status[tag]
            if not isinstance(entry, Mapping):
                continue
            record = dict.fromkeys(STATUS_RECORD_FIELDS)
            record["id"] = row_id
            record["tag"] = tag
            for key in STATUS_RECORD_FIELDS[2:]:
                record[key] = _plain(entry.get(key))
            out.append(record)
    return out
