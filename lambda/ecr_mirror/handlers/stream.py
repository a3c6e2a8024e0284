"""DynamoDB stream (row added or changed by a user) -> enqueue that row, so it syncs within a minute.

The service's own status writes also produce MODIFY records; those are ignored by comparing
the user's attributes only, so a status write never triggers another sync.
"""

from __future__ import annotations

from typing import Any

from ._common import enqueue, logger

from ..table import SERVICE_ATTRIBUTES


def user_view(image: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (image or {}).items() if k not in SERVICE_ATTRIBUTES}


def rows_to_enqueue(records: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for rec in records:
        if rec.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        ddb = rec.get("dynamodb") or {}
        new, old = ddb.get("NewImage"), ddb.get("OldImage")
        if rec["eventName"] == "MODIFY" and user_view(new) == user_view(old):
            continue  # only status changed
        if (new or {}).get("enabled", {}).get("BOOL") is False:
            continue
        key = (ddb.get("Keys") or {}).get("id", {}).get("S")
        if key and key not in ids:
            ids.append(key)
    return ids


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    ids = rows_to_enqueue(event.get("Records") or [])
    sent = enqueue(ids) if ids else 0
    logger.info("rows changed by users enqueued", extra={"rows": ids})
    return {"enqueued": sent}
