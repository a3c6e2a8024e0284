"""The status model (ecr_mirror.status): one typed TagStatus from the store through drift detection to the
writer; the rules that decide what a pass may skip (settled), what a write must record, who holds a tag,
when a pass audits, and how the legacy layout (status map inside the row item) converts."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from ecr_mirror import drift
from ecr_mirror.status import (
    NO_TAGS,
    STATUS_RECORD_FIELDS,
    PassRecord,
    RowState,
    RowStatus,
    TagStatus,
    audit_due,
    format_timestamp,
    has_legacy_status,
    last_verified,
    legacy_row_status,
    legacy_tag_statuses,
    new_pass_id,
    parse_timestamp,
    status_records,
    timestamp_after,
)

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
FP = "0123456789abcdef"


def ts(second: int, micro: int = 0) -> str:
    return f"2026-01-01T00:00:{second:02d}.{micro:06d}Z"


def synced(**changes) -> TagStatus:
    base = TagStatus(drift.IN_SYNC, upstream_digest=D1, synced_upstream_digest=D1, expected_digest=D1, children=(D2,),
                     target_digest=D1, fingerprint=FP, last_attempt=ts(1), last_success=ts(1), last_change=ts(1))
    return replace(base, **changes)


def test_a_status_round_trips_through_its_item_with_every_field():
    full = TagStatus(
        drift.DIVERGED, upstream_digest=D1, synced_upstream_digest=D2, expected_digest=D2, children=(D3, D1),
        target_digest=D3, fingerprint=FP, error="x", reason="y", last_attempt=ts(1), last_success=ts(2),
        last_change=ts(3), last_drift_state=drift.DIVERGED, last_drift_at=ts(4), bytes_copied=7,
        lease_owner="worker-1", lease_expires=ts(5), referrers_copied=2, referrers_present=1,
        referrers_not_applicable=1, referrers_note="a note", referrers_error="an error", referrers_refused=D2,
        pinned_digest=D1, upstream_tag_digest=D2, warnings=("one", "two"),
        arch_tags=(("v1-amd64", D1), ("v1-arm64", D3)),
        refill_at=ts(6),
    )
    item = full.to_item()
    assert item["arch_tags"] == {"v1-amd64": D1, "v1-arm64": D3}  # a DynamoDB map
    assert set(item) == {f.name for f in fields(TagStatus)}
    assert item["children"] == [D3, D1]  # a DynamoDB list, in order
    assert TagStatus.from_item(item) == full


def test_children_none_and_empty_are_different_things():
    """None: never recorded (the audit reads the index once); (): a single manifest, nothing to check."""
    assert "children" not in TagStatus(drift.IN_SYNC).to_item()
    assert TagStatus.from_item({"state": "in_sync"}).children is None
    assert TagStatus.from_item({"state": "in_sync", "children": []}).children == ()


def test_reading_is_tolerant_of_malformed_fields():
    odd = TagStatus.from_item({"state": "great", "children": "nope", "last_attempt": "yesterday", "bytes_copied": "9",
                               "error": "two\nlines", "last_drift_state": "weird"})
    assert odd.state == drift.FAILED and odd.children is None and odd.last_attempt is None and odd.bytes_copied == 0
    assert odd.error == "two lines" and odd.last_drift_state is None


@pytest.mark.parametrize(
    "status, upstream, fingerprint, settled",
    [
        (synced(), D1, FP, True),
        (synced(), D2, FP, False),  # upstream moved
        (synced(), None, FP, False),  # upstream unknown
        (synced(), D1, "another", False),  # the row's settings changed
        (synced(state=drift.FAILED), D1, FP, False),
        (synced(state=drift.DIVERGED), D1, FP, False),
        (synced(synced_upstream_digest=None), D1, FP, False),  # a record that cannot vouch for the target
        (synced(expected_digest=None), D1, FP, False),
    ],
)
def test_settled_means_nothing_to_ask_the_target(status, upstream, fingerprint, settled):
    assert status.settled(upstream, fingerprint) is settled


def test_a_lease_is_another_syncs_only_while_it_lasts():
    now = ts(10)
    held = synced(lease_owner="other", lease_expires=ts(20))
    assert held.leased_by_other("me", now) is True
    assert held.leased_by_other("other", now) is False  # my own
    assert replace(held, lease_expires=ts(5)).leased_by_other("me", now) is False  # lapsed: a crashed holder's
    assert synced().leased_by_other("me", now) is False
    after = timestamp_after(60, parse_timestamp(now))
    assert after == ts(10).replace("00:00:10", "00:01:10")


def test_a_write_is_worth_it_only_when_something_recorded_changed():
    base = synced()
    assert not replace(base, last_attempt=ts(9), last_success=ts(9), bytes_copied=5, lease_owner="x").differs_from(base)
    for change in ({"state": drift.BEHIND}, {"upstream_digest": D2}, {"expected_digest": D2}, {"target_digest": D2},
                   {"children": ()}, {"error": "boom"}, {"fingerprint": "x"}, {"synced_upstream_digest": D3}):
        assert replace(base, **change).differs_from(base), change
    assert base.differs_from(None)


def test_recorded_stamps_the_attempt_and_moves_last_change_only_on_a_change():
    before = synced()
    same = replace(before, bytes_copied=3).recorded(before, ts(30))
    assert same.last_attempt == ts(30) and same.last_change == before.last_change
    moved = replace(before, state=drift.BEHIND, upstream_digest=D2).recorded(before, ts(31))
    assert moved.last_change == ts(31)
    first = TagStatus(drift.MISSING, error="a\nb").recorded(None, ts(32))
    assert first.last_change == ts(32) and first.error == "a b"


def test_row_status_compares_without_its_time_and_round_trips():
    a = RowStatus(NO_TAGS, pattern="v.*", tags_tried=3, at=ts(1))
    assert a.same_as(replace(a, at=ts(2))) and not a.same_as(replace(a, tags_tried=4)) and not a.same_as(None)
    assert RowStatus.from_item(a.to_item()) == a
    assert RowState().is_new and not RowState(row=a).is_new and not RowState({"v1": synced()}).is_new


def test_pass_records_round_trip_and_pass_ids_sort_by_start():
    record = PassRecord("p1", ts(1), kind="cli", audit=True, rows_enqueued=3, rows=("a", "b"), finished_at=ts(2))
    assert PassRecord.from_item("p1", record.to_item()) == record
    first, second = new_pass_id(ts(1)), new_pass_id(ts(2))
    assert first < second and first.startswith(ts(1))


def test_audit_is_due_after_the_interval():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    day = 86400
    assert audit_due(None, day, now)  # never audited
    assert not audit_due(format_timestamp(now - timedelta(hours=23)), day, now)
    assert audit_due(format_timestamp(now - timedelta(hours=24)), day, now)
    assert audit_due(format_timestamp(now), 0, now)  # 0: every pass
    assert audit_due("garbage", day, now)


def test_last_verified_is_the_newest_of_change_success_and_the_rows_last_pass():
    status = synced(last_change=ts(1), last_success=ts(3))
    assert last_verified(status, None) == ts(3)
    assert last_verified(status, ts(9)) == ts(9)
    assert last_verified(status, ts(2)) == ts(3)
    assert last_verified(synced(state=drift.FAILED, last_change=ts(4)), ts(9)) == ts(4)  # a pass vouches for in_sync only


def test_status_records_list_the_row_status_first_then_each_tag():
    state = RowState({"b": synced(), "a": synced(state=drift.BEHIND)}, RowStatus(NO_TAGS, pattern="v.*", tags_tried=7))
    records = status_records("row", state, ts(50))
    assert all(tuple(r) == STATUS_RECORD_FIELDS for r in records)
    assert [(r["tag"], r["state"]) for r in records] == [(None, NO_TAGS), ("a", "behind"), ("b", "in_sync")]
    assert "7 upstream tags" in records[0]["error"]
    assert records[2]["last_verified"] == ts(50) and records[2]["expected_digest"] == D1


def test_the_legacy_layout_converts_without_losing_digests_or_drift_history():
    item = {
        "id": "golang", "source": "golang", "tags": ["1.22", "1.23"],
        "status": {
            "1.22": {"state": "in_sync", "upstream_digest": D1, "expected_digest": D2, "synced_upstream_digest": D1,
                     "target_digest": D2, "last_attempt": ts(5), "last_success": ts(5), "bytes_copied": 10,
                     "fingerprint": FP, "last_drift_state": "diverged", "last_drift_at": ts(3)},
            "1.23": {"state": "failed", "error": "HTTP 500", "last_attempt": ts(6)},
            "bad": "not a map",
        },
        "row_error": "row 'golang': attribute 'x'", "row_error_at": ts(7),
    }
    assert has_legacy_status(item) and not has_legacy_status({"id": "x", "source": "y"})
    statuses = legacy_tag_statuses(item)
    assert set(statuses) == {"1.22", "1.23"}
    one = statuses["1.22"]
    assert (one.upstream_digest, one.expected_digest, one.synced_upstream_digest, one.target_digest) == (D1, D2, D1, D2)
    assert (one.last_drift_state, one.last_drift_at, one.last_success, one.bytes_copied) == ("diverged", ts(3), ts(5), 10)
    assert one.children is None and one.last_change == ts(5) and one.fingerprint == FP
    assert statuses["1.23"].error == "HTTP 500"
    assert legacy_row_status(item) == RowStatus(drift.INVALID, error="row 'golang': attribute 'x'", at=ts(7))
    assert legacy_row_status({"id": "x"}) is None


def test_referrer_fields_come_from_the_copy_report_and_round_trip():
    from ecr_mirror.referrers import ReferrersReport
    from ecr_mirror.status import REFERRER_FIELDS, referrer_fields

    report = ReferrersReport(copied=2, present=1, refused=[D1, D2], error="the walk ended: HTTP 500")
    values = referrer_fields(report)
    assert set(values) == set(REFERRER_FIELDS)
    assert (values["referrers_copied"], values["referrers_present"], values["referrers_not_applicable"]) == (2, 1, 0)
    assert values["referrers_refused"] == f"{D1} {D2}" and values["referrers_error"] == "the walk ended: HTTP 500"
    status = TagStatus(drift.IN_SYNC, last_attempt=ts(1), **values)
    assert TagStatus.from_item(status.to_item()) == status


def test_items_written_by_hand_or_an_older_version_are_read_safely():
    """ISO-8601 times without microseconds are normalised, not dropped; a value that is not a digest is not one."""
    status = TagStatus.from_item({"state": "in_sync", "last_attempt": "2025-01-01T00:00:00Z",
                                  "last_success": "2025-01-01T01:00:00+01:00", "last_change": "yesterday",
                                  "upstream_digest": "not-a-digest", "target_digest": D1})
    assert status.last_attempt == "2025-01-01T00:00:00.000000Z" and status.last_success == "2025-01-01T00:00:00.000000Z"
    assert status.last_change is None
    assert status.upstream_digest is None and status.target_digest == D1


def test_status_lists_tags_in_version_order():
    from ecr_mirror.status import RowState, status_records

    state = RowState({t: TagStatus(drift.IN_SYNC) for t in ("1.10.0", "1.9.0", "1.100.0", "1.2.0")}, None)
    assert [r["tag"] for r in status_records("app", state)] == ["1.2.0", "1.9.0", "1.10.0", "1.100.0"]
