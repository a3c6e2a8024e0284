"""Metric names (defined once; the CDK stack imports them for alarms and the dashboard)."""

from __future__ import annotations

from typing import Any

# Per sync run; namespace from ECR_MIRROR_METRICS_NAMESPACE, one dimension: service=ecr-mirror (Powertools)
TAGS_IN_SYNC = "TagsInSync"
TAGS_DRIFTED = "TagsDrifted"  # diverged + broken, found this run
TAGS_BEHIND = "TagsBehind"
TAGS_MISSING = "TagsMissing"
TAGS_FAILED = "TagsFailed"
TAGS_COPIED = "TagsCopied"
TAGS_IN_CONFLICT = "TagsInConflict"  # a tag two rows select (conflict state): written by neither
ROWS_INVALID = "RowsInvalid"
ROWS_MATCHED_NOTHING = "RowsMatchedNothing"  # a tag_pattern row whose pattern selected no upstream tag
SYNC_SUCCEEDED = "SyncSucceeded"  # 1 per row synced with no failed tag
BYTES_COPIED = "BytesCopied"
BLOBS_COPIED = "BlobsCopied"
BLOBS_SKIPPED = "BlobsSkipped"
BLOBS_MOUNTED = "BlobsMounted"
UPSTREAM_RATELIMIT_REMAINING = "UpstreamRateLimitRemaining"
ROWS_ENQUEUED = "RowsEnqueued"
# The pull budget (issue 15). Per upstream registry host (dimensions: Registry, service):
PULLS_SPENT = "PullsSpent"  # manifest GETs drawn from the budget by this invocation
PULLS_REMAINING = "PullsRemaining"  # the budget's remaining pulls as last seen (Minimum is the one to read)
TAGS_DEFERRED = "TagsDeferred"  # tags left deferred by this invocation
# service dimension only: how long the oldest deferred row seen by this invocation has waited (the alarm's)
OLDEST_DEFERRAL_SECONDS = "OldestDeferralSeconds"
#: the dimension of the per-registry metrics
REGISTRY_DIMENSION = "Registry"

ALL_METRICS = (
    TAGS_IN_SYNC,
    TAGS_DRIFTED,
    TAGS_BEHIND,
    TAGS_MISSING,
    TAGS_FAILED,
    TAGS_COPIED,
    TAGS_IN_CONFLICT,
    ROWS_INVALID,
    ROWS_MATCHED_NOTHING,
    SYNC_SUCCEEDED,
    BYTES_COPIED,
    BLOBS_COPIED,
    BLOBS_SKIPPED,
    BLOBS_MOUNTED,
    UPSTREAM_RATELIMIT_REMAINING,
    ROWS_ENQUEUED,
    PULLS_SPENT,
    PULLS_REMAINING,
    TAGS_DEFERRED,
    OLDEST_DEFERRAL_SECONDS,
)
#: the metrics emitted per upstream registry (dimension :data:`REGISTRY_DIMENSION`)
REGISTRY_METRICS = (PULLS_SPENT, PULLS_REMAINING, TAGS_DEFERRED)


# ---------------------------------------------------------------- emission

SERVICE = "ecr-mirror"  # Powertools' default `service` dimension on every metric


def sync_counts(results: Any) -> dict[str, float]:
    """Metric values for a list of :class:`ecr_mirror.sync.RowResult` (pure; easy to test).

    Tag counts by state after the sync (:func:`drift.count_states`), tags that drifted before or after
    the copy (:func:`drift.count_drift`), bytes and blob counts summed, the lowest upstream
    ``ratelimit-remaining`` seen (only when one was). A tag this sync left to another (``skipped``: the
    other holds its lease) is counted by the other, not here.
    """
    from . import drift

    counts = dict.fromkeys(
        (TAGS_IN_SYNC, TAGS_DRIFTED, TAGS_BEHIND, TAGS_MISSING, TAGS_FAILED, TAGS_COPIED, TAGS_IN_CONFLICT, ROWS_INVALID,
         ROWS_MATCHED_NOTHING, SYNC_SUCCEEDED, BYTES_COPIED, BLOBS_COPIED, BLOBS_SKIPPED, BLOBS_MOUNTED), 0.0)
    remaining: list[int] = []
    tags = []
    for row in results:
        if row.invalid:
            counts[ROWS_INVALID] += 1
            continue
        if row.skipped:
            continue
        if row.ok:
            counts[SYNC_SUCCEEDED] += 1
        if getattr(row, "matched_nothing", False):
            counts[ROWS_MATCHED_NOTHING] += 1
        if row.ratelimit_remaining is not None:
            remaining.append(row.ratelimit_remaining)
        tags.extend(t for t in row.tags if not getattr(t, "skipped", None))
    states = drift.count_states(t.state for t in tags)
    for name, state in ((TAGS_IN_SYNC, drift.IN_SYNC), (TAGS_FAILED, drift.FAILED), (TAGS_BEHIND, drift.BEHIND),
                        (TAGS_MISSING, drift.MISSING), (TAGS_IN_CONFLICT, drift.CONFLICT)):
        counts[name] = float(states[state])
    counts[TAGS_DRIFTED] = float(drift.count_drift(t.drift_state for t in tags))
    for t in tags:
        if t.copied:
            counts[TAGS_COPIED] += 1
        counts[BYTES_COPIED] += t.bytes_copied
        counts[BLOBS_COPIED] += t.blobs_copied
        counts[BLOBS_SKIPPED] += t.blobs_skipped
        counts[BLOBS_MOUNTED] += t.blobs_mounted
    if remaining:
        counts[UPSTREAM_RATELIMIT_REMAINING] = float(min(remaining))
    return counts


def emit(metrics: Any, counts: dict[str, float]) -> None:
    """Add ``counts`` to a Powertools ``Metrics`` object (flushed as EMF by ``log_metrics``)."""
    from aws_lambda_powertools.metrics import MetricUnit

    for name, value in counts.items():
        unit = MetricUnit.Bytes if name == BYTES_COPIED else MetricUnit.Count
        metrics.add_metric(name=name, unit=unit, value=value)


def budget_counts(results: Any, spent: dict[str, int], remaining: dict[str, int]) -> dict[str, dict[str, float]]:
    """``{registry host: {metric: value}}`` of the pull budget (pure): pulls ``spent`` and ``remaining`` per host,
    and the tags of ``results`` (:class:`ecr_mirror.sync.RowResult`) left ``deferred``, by their row's upstream."""
    from . import drift

    out: dict[str, dict[str, float]] = {}
    for host, n in spent.items():
        out.setdefault(host, {})[PULLS_SPENT] = float(n)
    for host, n in remaining.items():
        out.setdefault(host, {})[PULLS_REMAINING] = float(n)
    for row in results:
        host = getattr(row, "upstream", None)
        deferred = sum(1 for t in row.tags if t.state == drift.DEFERRED)
        if host and deferred:
            counts = out.setdefault(host, {})
            counts[TAGS_DEFERRED] = counts.get(TAGS_DEFERRED, 0.0) + deferred
    return out


def emit_budget(metrics: Any, results: Any, spent: dict[str, int], remaining: dict[str, int],
                oldest_deferral: float | None) -> None:
    """Print the budget metrics as EMF: one document per registry (dimensions ``Registry`` and ``service``),
    and ``OldestDeferralSeconds`` on ``metrics`` (service dimension) when a row waited."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    for host, counts in budget_counts(results, spent, remaining).items():
        for name, value in counts.items():
            with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as one:
                one.add_dimension(name=REGISTRY_DIMENSION, value=host)
                one.add_dimension(name="service", value=SERVICE)
    if oldest_deferral is not None:
        metrics.add_metric(name=OLDEST_DEFERRAL_SECONDS, unit=MetricUnit.Seconds, value=max(0.0, oldest_deferral))
