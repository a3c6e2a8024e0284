"""EventBridge schedule -> one SQS message per enabled row, and the pass record.

Each scheduled run is a *pass* with its own id. It reads the rows' user attributes only (a Scan with a
projection: no status bytes), decides whether this pass audits (the last audit pass started
``ECR_MIRROR_AUDIT_INTERVAL_SECONDS`` or more ago, or the event says ``{"audit": true}``), and sends
``{"id", "pass", "audit", "peers"}`` per enabled row with SendMessageBatch (10 per call, several calls at
once). ``peers``: the other rows writing to the same target repository (at most
:data:`MAX_PEERS`). One write per pass: the ``#pass`` record (:class:`ecr_mirror.status.PassRecord`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..errors import RowError
from ..metrics import ROWS_ENQUEUED
from ..rows import ATTR_ID, is_enabled, parse_row
from ..status import PassRecord, audit_due, new_pass_id, now_timestamp
from ._common import enqueue, logger, metrics, settings, state, table

#: most peer row ids one message carries
MAX_PEERS = 100


def messages(items: list[dict[str, Any]], pass_id: str, audit: bool, prefix: str) -> list[dict[str, Any]]:
    """The message of each enabled row, with its peers (rows of the same target repository)."""
    enabled = [item for item in items if isinstance(item.get(ATTR_ID), str) and is_enabled(item)]
    by_repository: dict[str, list[str]] = defaultdict(list)
    target: dict[str, str] = {}
    for item in enabled:
        try:
            repository = parse_row(item, prefix=prefix).target_repository
        except RowError:
            continue  # sent anyway: the worker marks it invalid
        target[item[ATTR_ID]] = repository
        by_repository[repository].append(item[ATTR_ID])
    out = []
    for item in enabled:
        row_id = item[ATTR_ID]
        peers = [p for p in by_repository.get(target.get(row_id, ""), []) if p != row_id][:MAX_PEERS]
        out.append({"id": row_id, "pass": pass_id, "audit": audit, "peers": peers})
    return out


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Enqueue every enabled row (:func:`ecr_mirror.rows.is_enabled`) for this pass; returns
    ``{"enqueued": n, "pass": <pass id>, "audit": bool}``."""
    started = now_timestamp()
    store = state()
    last = store.latest_audit()
    audit = (isinstance(event, dict) and event.get("audit") is True) or audit_due(
        last.started_at if last else None, settings().audit_interval_seconds
    )
    pass_id = new_pass_id(started)
    items = list(table().scan_rows(user_only=True))
    sent = enqueue(messages(items, pass_id, audit, settings().repository_prefix))
    store.put_pass(PassRecord(pass_id, started, kind="schedule", audit=audit, rows_enqueued=sent))
    metrics.add_metric(name=ROWS_ENQUEUED, unit=MetricUnit.Count, value=sent)
    logger.info("enqueued rows", extra={"rows": sent, "pass": pass_id, "audit": audit})
    return {"enqueued": sent, "pass": pass_id, "audit": audit}
