"""Metric names (defined once; the CDK stack imports them for alarms and the dashboard)."""

from __future__ import annotations

# Per sync run (dimension-less, namespace from ECR_MIRROR_METRICS_NAMESPACE)
TAGS_IN_SYNC = "TagsInSync"
TAGS_DRIFTED = "TagsDrifted"  # diverged + broken, found this run
TAGS_BEHIND = "TagsBehind"
TAGS_MISSING = "TagsMissing"
TAGS_FAILED = "TagsFailed"
TAGS_COPIED = "TagsCopied"
ROWS_INVALID = "RowsInvalid"
SYNC_SUCCEEDED = "SyncSucceeded"  # 1 per row synced with no failed tag
BYTES_COPIED = "BytesCopied"
BLOBS_COPIED = "BlobsCopied"
BLOBS_SKIPPED = "BlobsSkipped"
BLOBS_MOUNTED = "BlobsMounted"
UPSTREAM_RATELIMIT_REMAINING = "UpstreamRateLimitRemaining"
ROWS_ENQUEUED = "RowsEnqueued"

ALL_METRICS = (
    TAGS_IN_SYNC,
    TAGS_DRIFTED,
    TAGS_BEHIND,
    TAGS_MISSING,
    TAGS_FAILED,
    TAGS_COPIED,
    ROWS_INVALID,
    SYNC_SUCCEEDED,
    BYTES_COPIED,
    BLOBS_COPIED,
    BLOBS_SKIPPED,
    BLOBS_MOUNTED,
    UPSTREAM_RATELIMIT_REMAINING,
    ROWS_ENQUEUED,
)
