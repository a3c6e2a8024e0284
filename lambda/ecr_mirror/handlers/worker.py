"""SQS batch -> sync each row, with partial batch failure responses.

A row whose sync fails is reported as a failed item (retried, then the DLQ); an invalid row
is marked invalid and not retried. When the remaining Lambda time runs low, rows not yet
started are handed back to the queue untouched. Each invocation has its own time guard and
results (:class:`Invocation`); only clients are shared across invocations.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from .. import drift
from ..errors import Deadline, MirrorError
from ..metrics import emit, sync_counts
from ..sync import RowResult, StopFn, remaining_time_guard
from ._common import logger, metrics, settings, sqs, syncer, table

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RowFailed(Exception):
    """Raised for a row whose sync failed, so Powertools reports it as a batch item failure."""


def _hand_back(record: Any) -> None:
    """Make a message we will not finish visible again now, not after the visibility timeout."""
    try:
        sqs().change_message_visibility(
            QueueUrl=settings().queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=0
        )
    except Exception as exc:  # noqa: BLE001 - the message comes back after the timeout anyway
        logger.warning("could not hand the message back early: %s", type(exc).__name__)


class Invocation:
    """One invocation's work: its time guard, and the results its metrics are made of."""

    def __init__(self, should_stop: StopFn) -> None:
        self.should_stop = should_stop
        self.results: list[RowResult] = []

    def record_handler(self, record: Any) -> dict[str, Any]:
        """Sync the row a message names (``{"id": "<row id>"}``); raises :class:`RowFailed` for a failed
        row, :class:`Deadline` (message handed back) when time runs short. A malformed message is dropped."""
        try:
            body = json.loads(record.body)
            row_id = body["id"]
            if not isinstance(row_id, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            logger.error("message is not {\"id\": \"<row id>\"}; dropped", extra={"message_id": record.message_id})
            return {"dropped": record.message_id}
        if self.should_stop():
            _hand_back(record)
            raise Deadline(f"row {row_id}: handed back, too little time left")
        item = table().get_row(row_id)
        if item is None:
            logger.info("row was removed before it was synced", extra={"row": row_id})
            return {"id": row_id, "removed": True}
        try:
            result = syncer().sync_item(item, should_stop=self.should_stop)
        except Deadline:
            _hand_back(record)
            raise
        self.results.append(result)
        log = {"row": row_id, "tags": {t.tag: t.state for t in result.tags}, "invalid": result.invalid, "error": result.error}
        failed = [t for t in result.tags if t.error and t.state == drift.FAILED]
        if result.invalid:
            logger.warning("row is invalid", extra=log)
        elif result.error or failed:
            logger.error("row sync failed", extra={**log, "errors": [t.error for t in failed][:5]})
            raise RowFailed(f"row {row_id}: {result.error or failed[0].error}")
        else:
            logger.info("row synced", extra=log)
        return {"id": row_id}


def time_guard(context: Any) -> StopFn:
    """``should_stop`` for this invocation: :func:`~ecr_mirror.sync.remaining_time_guard` with the configured
    reserve (read when first asked, so a configuration error fails the records, not the whole invocation)."""

    def should_stop() -> bool:
        return remaining_time_guard(context, settings().time_reserve_seconds)()

    return should_stop


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The SQS event source's entry point: ``{"batchItemFailures": [...]}`` (Powertools partial batch response)."""
    invocation = Invocation(time_guard(context))
    try:
        return process_partial_response(event=event, record_handler=invocation.record_handler, processor=processor, context=context)
    finally:
        try:
            emit(metrics, sync_counts(invocation.results))
        except MirrorError as exc:  # pragma: no cover - metrics must never fail the batch
            logger.error("metrics not emitted: %s", exc)
