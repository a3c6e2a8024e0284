"""SQS batch -> sync each row, with partial batch failure responses.

A row whose sync fails is reported as a failed item (retried, then the DLQ); an invalid row
is marked invalid and not retried. When the remaining Lambda time runs low, rows not yet
started are handed back to the queue untouched.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from ..errors import MirrorError
from ..metrics import emit, sync_counts
from ._common import logger, metrics, settings, table

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RowFailed(Exception):
    """Raised for a row whose sync failed, so Powertools reports it as a batch item failure."""


@cache
def syncer_factory() -> Any:
    from ..runtime import build_syncer

    return build_syncer(settings(), table())


_state: dict[str, Any] = {"context": None, "results": []}


def _should_stop() -> bool:
    from ..sync import remaining_time_guard

    return remaining_time_guard(_state["context"], settings().time_reserve_seconds)()


def _hand_back(record: Any) -> None:
    """Make a message we will not finish visible again now, not after the visibility timeout."""
    from ._common import sqs

    try:
        sqs().change_message_visibility(
            QueueUrl=settings().queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=0
        )
    except Exception as exc:  # noqa: BLE001 - the message comes back after the timeout anyway
        logger.warning("could not hand the message back early: %s", type(exc).__name__)


def record_handler(record: Any) -> dict[str, Any]:
    from ..sync import Deadline

    try:
        body = json.loads(record.body)
        row_id = body["id"]
        if not isinstance(row_id, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        logger.error("message is not {\"id\": \"<row id>\"}; dropped", extra={"message_id": record.message_id})
        return {"dropped": record.message_id}
    if _should_stop():
        _hand_back(record)
        raise Deadline(f"row {row_id}: handed back, too little time left")
    syncer = syncer_factory()
    syncer.should_stop = _should_stop
    item = table().get_row(row_id)
    if item is None:
        logger.info("row was removed before it was synced", extra={"row": row_id})
        return {"id": row_id, "removed": True}
    try:
        result = syncer.sync_item(item)
    except Deadline:
        _hand_back(record)
        raise
    _state["results"].append(result)
    log = {"row": row_id, "tags": {t.tag: t.state for t in result.tags}, "invalid": result.invalid, "error": result.error}
    failed = [t for t in result.tags if t.error and t.state == "failed"]
    if result.invalid:
        logger.warning("row is invalid", extra=log)
    elif result.error or failed:
        logger.error("row sync failed", extra={**log, "errors": [t.error for t in failed][:5]})
        raise RowFailed(f"row {row_id}: {result.error or failed[0].error}")
    else:
        logger.info("row synced", extra=log)
    return {"id": row_id}


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _state["context"] = context
    _state["results"] = []
    try:
        return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    finally:
        try:
            emit(metrics, sync_counts(_state["results"]))
        except MirrorError as exc:  # pragma: no cover - metrics must never fail the batch
            logger.error("metrics not emitted: %s", exc)
