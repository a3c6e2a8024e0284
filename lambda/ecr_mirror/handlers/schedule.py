"""EventBridge schedule -> one SQS message per enabled row."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..metrics import ROWS_ENQUEUED
from ..rows import ATTR_ID, is_enabled
from ._common import enqueue, logger, metrics, table


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Scan the table and enqueue every enabled row (:func:`ecr_mirror.rows.is_enabled`); returns ``{"enqueued": n}``."""
    ids = [str(item[ATTR_ID]) for item in table().scan_rows() if isinstance(item.get(ATTR_ID), str) and is_enabled(item)]
    sent = enqueue(ids)
    metrics.add_metric(name=ROWS_ENQUEUED, unit=MetricUnit.Count, value=sent)
    logger.info("enqueued rows", extra={"rows": sent})
    return {"enqueued": sent}
