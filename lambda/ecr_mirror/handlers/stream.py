"""DynamoDB stream (row added or changed by a user) -> enqueue that row, so it syncs within a minute.

The service's own status writes also produce MODIFY records; those are ignored by comparing
the user's attributes only (:func:`ecr_mirror.rows.user_attributes`), so a status write never
triggers another sync.
"""

from __future__ import annotations

from typing import Any

from ..rows import ATTR_ID, is_enabled, user_attributes
from ._common import enqueue, logger


def rows_to_enqueue(records: list[dict[str, Any]]) -> list[str]:
    """Row ids of stream records a user's INSERT or MODIFY produced, enabled rows only, first seen first."""
    ids: list[str] = []
    for rec in records:
        if rec.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        ddb = rec.get("dynamodb") or {}
        new, old = ddb.get("NewImage"), ddb.get("OldImage")
        if rec["eventName"] == "MODIFY" and user_attributes(new) == user_attributes(old):
            continue  # only status changed
        if not is_enabled(new or {}):
            continue
        key = (ddb.get("Keys") or {}).get(ATTR_ID, {}).get("S")
        if key and key not in ids:
            ids.append(key)
    return ids


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Enqueue the rows users added or changed; returns ``{"enqueued": n}``."""
    ids = rows_to_enqueue(event.get("Records") or [])
    sent = enqueue(ids) if ids else 0
    logger.info("rows changed by users enqueued", extra={"rows": ids})
    return {"enqueued": sent}
