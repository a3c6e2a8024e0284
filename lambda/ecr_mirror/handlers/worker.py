"""SQS batch -> sync each row, with partial batch failure responses.

A message is ``{"id": <row id>, "pass": <pass id>, "audit": bool, "peers": [...]}`` (the schedule's) or
``{"id": <row id>, "peers": [...]}`` (the stream's). ``peers``: rows that may select the same target tags; each
is read (GetItem) so that a tag two rows select is written by neither (``conflict``). A row whose sync fails is reported as a failed item (retried,
then the DLQ); an invalid row is marked invalid and not retried. When the remaining Lambda time runs
low, no more rows or tags are started: a row not started, or stopped after copying something, is sent
again as a fresh message (its receive count starts over); a row stopped without progress is handed
back (visibility 0; that receive counts). The next delivery continues where this one stopped (tags
already in sync cost their one HEAD). A row listed twice in one batch is
synced once. Each invocation has its own time guard, results, lease owner (its request id) and
ListImages cache (:class:`Invocation`); only clients are shared across invocations. At its end, one
write per pass it served: the rows it finished OK (``#pass#<pass id>``), which ``ecr-mirror status``
reads as their tags' "last verified".

A row with ``deferred`` tags (the upstream's pull budget cannot cover them now: issue 15) is no failure:
its message is acknowledged and the row sent again with ``DelaySeconds = min(900, seconds until the
window refills)``, carrying ``not_before`` (Unix seconds) and ``deferred_since``; a message received
before its ``not_before`` is sent again the same way without any work. So a deferral never counts
towards the dead-letter queue's receive count. Metrics per upstream registry (dimension ``Registry``):
``PullsSpent``, ``PullsRemaining``; ``TagsDeferred``, and ``OldestDeferralSeconds`` (how long the oldest
row this invocation saw deferred has been waiting: the alarm's metric).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from .. import drift
from ..errors import Deadline, MirrorError
from ..metrics import emit, emit_budget, sync_counts
from ..status import now_timestamp
from ..sync import RowResult, Run, StopFn, remaining_time_guard
from ._common import MAX_DELAY_SECONDS, enqueue, logger, metrics, settings, sqs, state, syncer, table

#: Unix seconds (tests move it)
clock = time.time

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

    def __init__(self, should_stop: StopFn, owner: str | None = None) -> None:
        self.should_stop = should_stop
        self.owner = owner
        self.results: list[RowResult] = []
        self.seen: set[str] = set()
        #: pass id -> rows this invocation finished OK
        self.done: dict[str, list[str]] = {}
        #: (record, body) of rows to send again as fresh messages: not started, or stopped after progress
        self.deferred: list[tuple[Any, dict[str, Any]]] = []
        #: (record, body) of rows waiting for an upstream's pull window to refill (body carries ``not_before``)
        self.waiting: list[tuple[Any, dict[str, Any]]] = []
        #: Unix seconds since when the oldest waiting row waits
        self.oldest_deferral: float | None = None
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = syncer().begin(self.owner)
        return self._run

    def record_progress(self) -> None:
        """One write per pass served: the rows finished OK (a failed write is logged, never raised)."""
        finished = now_timestamp()
        for pass_id, rows in self.done.items():
            try:
                state().put_progress(pass_id, self.run.owner, rows, finished)
            except MirrorError as exc:
                logger.error("pass progress not recorded: %s", exc)

    def send_deferred(self, response: dict[str, Any]) -> dict[str, Any]:
        """Send the deferred rows again as fresh messages (their receive count starts over: not starting a row,
        or stopping one that made progress, is no failure of it). If that fails, they are failed items of
        ``response`` instead, handed back at once."""
        if not self.deferred:
            return response
        try:
            enqueue([body for _, body in self.deferred])
            logger.info("rows sent again for the next invocation", extra={"rows": [b["id"] for _, b in self.deferred]})
        except MirrorError as exc:
            logger.error("rows could not be sent again; handed back: %s", exc)
            failures = response.setdefault("batchItemFailures", [])
            for record, _ in self.deferred:
                _hand_back(record)
                failures.append({"itemIdentifier": record.message_id})
        return response

    def wait(self, record: Any, body: dict[str, Any], not_before: float, since: float) -> dict[str, Any]:
        """Send the row again once ``not_before`` is near (``deferred_since``: ``since``)."""
        body = {**body, "not_before": not_before, "deferred_since": since}
        self.waiting.append((record, body))
        self.oldest_deferral = since if self.oldest_deferral is None else min(self.oldest_deferral, since)
        return {"id": body["id"], "waiting_until": not_before}

    def send_waiting(self, response: dict[str, Any]) -> dict[str, Any]:
        """Send the waiting rows again, each delayed until its ``not_before`` (at most 900 s, SQS's longest).
        If that fails, they are failed items of ``response`` instead (handed back at once)."""
        now = clock()
        by_delay: dict[int, list[tuple[Any, dict[str, Any]]]] = {}
        for record, body in self.waiting:
            delay = max(1, min(MAX_DELAY_SECONDS, math.ceil(float(body["not_before"]) - now)))
            by_delay.setdefault(delay, []).append((record, body))
        for delay, entries in by_delay.items():
            try:
                enqueue([body for _, body in entries], delay_seconds=delay)
                logger.info("rows wait for a pull window to refill", extra={"rows": [b["id"] for _, b in entries], "delay": delay})
            except MirrorError as exc:
                logger.error("waiting rows could not be sent again; handed back: %s", exc)
                failures = response.setdefault("batchItemFailures", [])
                for record, _ in entries:
                    _hand_back(record)
                    failures.append({"itemIdentifier": record.message_id})
        return response

    def record_handler(self, record: Any) -> dict[str, Any]:
        """Sync the row a message names (``{"id": "<row id>", ...}``); raises :class:`RowFailed` for a failed
        row, :class:`Deadline` (message handed back) when time ran short in a row that made no progress. A
        row not started for want of time is deferred (sent again). A malformed message is dropped."""
        try:
            body = json.loads(record.body)
            row_id = body["id"]
            if not isinstance(row_id, str):
                raise TypeError
            pass_id = body.get("pass") if isinstance(body.get("pass"), str) else None
            audit = body.get("audit") is True
            peer_ids = [p for p in body.get("peers") or [] if isinstance(p, str)]
        except (ValueError, KeyError, TypeError):
            logger.error("message is not {\"id\": \"<row id>\"}; dropped", extra={"message_id": record.message_id})
            return {"dropped": record.message_id}
        if row_id in self.seen:
            logger.info("row delivered twice in one batch: synced once", extra={"row": row_id})
            return {"id": row_id, "duplicate": True}
        self.seen.add(row_id)
        not_before, since = body.get("not_before"), body.get("deferred_since")
        if isinstance(not_before, (int, float)) and not isinstance(not_before, bool) and clock() < not_before:
            # too early: the window has not refilled yet; no work, no receive counted
            return self.wait(record, body, float(not_before), float(since) if isinstance(since, (int, float)) else clock())
        if self.should_stop():
            self.deferred.append((record, body))
            return {"id": row_id, "deferred": True}
        item = table().get_row(row_id)
        if item is None:
            logger.info("row was removed before it was synced", extra={"row": row_id})
            return {"id": row_id, "removed": True}
        # the rows that may select the same target tags (the schedule found them): read just those
        peers = [p for p in (table().get_row(pid) for pid in dict.fromkeys(peer_ids)) if p is not None]
        try:
            result = syncer().sync_item(item, run=self.run, audit=audit, should_stop=self.should_stop, peers=peers)
        except Deadline as exc:
            if exc.progress:
                logger.info("row stopped for want of time after progress; sent again", extra={"row": row_id, "copied": exc.progress})
                self.deferred.append((record, body))
                return {"id": row_id, "deferred": True}
            _hand_back(record)
            raise
        self.results.append(result)
        log = {"row": row_id, "tags": {t.tag: t.state for t in result.tags if not t.settled}, "settled": sum(t.settled for t in result.tags),
               "invalid": result.invalid, "error": result.error, "audit": audit}
        skipped = {t.tag: t.skipped for t in result.tags if t.skipped}
        if skipped:
            log["skipped"] = skipped
        failed = [t for t in result.tags if t.error and t.state == drift.FAILED]
        if result.invalid:
            logger.warning("row is invalid", extra=log)
        elif result.error or failed:
            logger.error("row sync failed", extra={**log, "errors": [t.error for t in failed][:5]})
            raise RowFailed(f"row {row_id}: {result.error or failed[0].error}")
        elif result.refill_at is not None:
            deferred = [t.tag for t in result.tags if t.state == drift.DEFERRED]
            logger.info("row deferred: upstream pulls are short", extra={**log, "deferred": deferred,
                                                                       "reason": next(t.reason for t in result.tags if t.state == drift.DEFERRED)})
            earlier = since if isinstance(since, (int, float)) and not isinstance(since, bool) else clock()
            return self.wait(record, {k: v for k, v in body.items() if k not in ("not_before", "deferred_since")},
                             max(result.refill_at, clock() + 1), float(earlier))
        else:
            logger.info("row synced", extra=log)
            if pass_id is not None:
                self.done.setdefault(pass_id, []).append(row_id)
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
    invocation = Invocation(time_guard(context), getattr(context, "aws_request_id", None))
    spent_before = _budget_spent()
    try:
        response = process_partial_response(event=event, record_handler=invocation.record_handler, processor=processor, context=context)
        return invocation.send_waiting(invocation.send_deferred(response))
    finally:
        invocation.record_progress()
        try:
            emit(metrics, sync_counts(invocation.results))
            budget = _budget()
            spent = {h: n - spent_before.get(h, 0) for h, n in (budget.spent if budget else {}).items()}
            oldest = clock() - invocation.oldest_deferral if invocation.oldest_deferral is not None else None
            emit_budget(metrics, invocation.results, spent, budget.remaining() if budget else {}, oldest)
        except MirrorError as exc:  # pragma: no cover - metrics must never fail the batch
            logger.error("metrics not emitted: %s", exc)


def _budget() -> Any:
    """The worker's pull budget, if its syncer was built (None before the first row, or without one)."""
    if syncer.cache_info().currsize == 0:
        return None
    return getattr(syncer().client, "budget", None)


def _budget_spent() -> dict[str, int]:
    budget = _budget()
    return dict(budget.spent) if budget is not None else {}
