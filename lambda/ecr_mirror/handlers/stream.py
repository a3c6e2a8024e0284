"""DynamoDB stream of the mirror table -> enqueue rows users added or changed (so they sync within a
minute), each with its conflict peers (one Scan of the rows' user attributes per batch of changes);
forget the recorded state of rows users removed.

Only users write the mirror table: the service records everything in the state table, which has no
stream, so no status write can start a sync. The event source mapping's filter criteria (infra/service.py)
pass only INSERT and MODIFY records of rows not disabled, and REMOVE records. A MODIFY that leaves the
user's attributes as they were (the one-time migration removing a legacy status map) is ignored here.
"""

from __future__ import annotations

from typing import Any

from ..rows import ATTR_ID, is_enabled, item_peers, user_attributes
from ._common import enqueue, logger, settings, state, table


def _row_id(record: dict[str, Any]) -> str | None:
    key = ((record.get("dynamodb") or {}).get("Keys") or {}).get(ATTR_ID, {}).get("S")
    return key if isinstance(key, str) and key else None


def rows_to_enqueue(records: list[dict[str, Any]]) -> list[str]:
    """Row ids of stream records a user's INSERT or MODIFY produced, enabled rows only, first seen first."""
    ids: list[str] = []
    for rec in records:
        if rec.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        ddb = rec.get("dynamodb") or {}
        new, old = ddb.get("NewImage"), ddb.get("OldImage")
        if rec["eventName"] == "MODIFY" and user_attributes(new) == user_attributes(old):
            continue  # only legacy status changed (the migration)
        if not is_enabled(new or {}):
            continue
        key = _row_id(rec)
        if key and key not in ids:
            ids.append(key)
    return ids


def rows_removed(records: list[dict[str, Any]]) -> list[str]:
    """Row ids of REMOVE records, first seen first."""
    ids: list[str] = []
    for rec in records:
        key = _row_id(rec) if rec.get("eventName") == "REMOVE" else None
        if key and key not in ids:
            ids.append(key)
    return ids


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Enqueue the rows users added or changed, delete the state of removed rows; returns
    ``{"enqueued": n, "forgotten": m}`` (state items deleted)."""
    records = event.get("Records") or []
    ids = rows_to_enqueue(records)
    sent = 0
    if ids:
        # rows users just changed may now select a tag another row writes: their peers come with them (one
        # Scan of the user attributes per batch of user changes, never per pass)
        peers = item_peers(table().scan_rows(consistent=True, user_only=True), settings().repository_prefix)
        sent = enqueue([{"id": row_id, "peers": peers.get(row_id, [])} for row_id in ids])
    removed = rows_removed(records)
    forgotten = sum(state().delete_row_state(row_id) for row_id in removed)
    logger.info("rows changed by users enqueued", extra={"rows": ids, "removed": removed, "state_items_deleted": forgotten})
    return {"enqueued": sent, "forgotten": forgotten}
