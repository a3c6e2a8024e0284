"""EventBridge schedule -> one SQS message per enabled row."""

from __future__ import annotations

from typing import Any

from ..metrics import ROWS_ENQUEUED
from ._common import enqueue, logger, metrics, table


def enabled(item: dict[str, Any]) -> bool:
    """Rows are enabled unless ``enabled`` is exactly false (a malformed value goes on, to be marked invalid)."""
    return item.get("enabled") is not False


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    ids = [str(item["id"]) for item in table().scan_rows() if isinstance(item.get("id"), str) and enabled(item)]
    sent = enqueue(ids)
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name=ROWS_ENQUEUED, unit=MetricUnit.Count, value=sent)
    logger.info("enqueued rows", extra={"rows": sent})
    return {"enqueued": sent}
