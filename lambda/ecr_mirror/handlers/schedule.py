"""EventBridge schedule -> one SQS message per enabled row, and the pass record.

Each scheduled run is a *pass* with its own id. It reads the rows' user attributes only (a Scan with a
projection: no status bytes), decides whether this pass audits (the last audit pass started
``ECR_MIRROR_AUDIT_INTERVAL_SECONDS`` or more ago, or the event says ``{"audit": true}``), and sends
``{"id", "pass", "audit", "peers"}`` per enabled row with SendMessageBatch (10 per call, several calls at
once). ``peers``: the other rows that write to the same target repository and may select one of its tags
(:func:`ecr_mirror.rows.conflict_peers`, decided here, where every row is already at hand): the worker reads
just those rows and leaves a tag two rows select to neither (``conflict``). Rows without peers (the usual
case) cost the worker nothing more. One write per pass: the ``#pass`` record
(:class:`ecr_mirror.status.PassRecord`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..metrics import ROWS_ENQUEUED
from ..rows import ATTR_ID, is_enabled, item_peers
from ..status import PassRecord, audit_due, new_pass_id, now_timestamp
from ._common import enqueue, logger, metrics, settings, state, table


def messages(items: list[dict[str, Any]], pass_id: str, audit: bool, prefix: str) -> list[dict[str, Any]]:
    """The message of each enabled row, with its peers (every one: a conflict missed would let two rows
    overwrite each other)."""
    enabled = [item for item in items if isinstance(item.get(ATTR_ID), str) and is_enabled(item)]
    peers = item_peers(enabled, prefix)  # an invalid row is sent anyway: the worker marks it invalid
    return [{"id": item[ATTR_ID], "pass": pass_id, "audit": audit, "peers": peers.get(item[ATTR_ID], [])}
            for item in enabled]


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
