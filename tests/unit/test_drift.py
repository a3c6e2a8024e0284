"""drift.classify: the truth table of the module docstring, line by line, plus its helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecr_mirror import drift
from ecr_mirror.drift import (
    BEHIND,
    DEFERRED,
    BROKEN,
    DIVERGED,
    FAILED,
    IN_SYNC,
    INVALID,
    MISSING,
    STATES,
    classify,
    count_drift,
    count_states,
    expected_target_digest,
    is_drift,
    needs_copy,
)

U1 = "sha256:" + "1" * 64  # upstream before
U2 = "sha256:" + "2" * 64  # upstream after it moved
E1 = "sha256:" + "e" * 64  # rewritten (platform subset) index copied from U1
X = "sha256:" + "f" * 64  # something someone pushed by hand


def test_states_are_the_documented_ones():
    assert STATES == ("in_sync", "behind", "diverged", "missing", "broken", "deferred", "failed", "invalid", "conflict")
    assert len(set(STATES)) == len(STATES)


# Digest-identical copies (no platform filter): the expected target digest is upstream's.
IDENTICAL = [
    # line 1: target absent
    ("never synced, absent", U1, None, None, None, MISSING),
    ("synced, then deleted", U1, U1, None, None, MISSING),
    ("deleted while upstream moved", U2, U1, None, True, MISSING),
    # line 2: target incomplete
    ("lost a child", U1, U1, U1, False, BROKEN),
    ("incomplete and diverged", U1, U1, X, False, BROKEN),
    # line 3: target == expected
    ("in sync", U1, U1, U1, True, IN_SYNC),
    ("in sync, not checked", U1, U1, U1, None, IN_SYNC),
    ("first sync finds it already there", U1, None, U1, None, IN_SYNC),
    ("record lags (status write lost)", U2, U1, U2, None, IN_SYNC),
    ("upstream unknown, target as recorded", None, U1, U1, None, IN_SYNC),
    # line 4: target differs from the record
    ("overwritten by hand", U1, U1, X, None, DIVERGED),
    ("overwritten and upstream moved", U2, U1, X, True, DIVERGED),
    ("upstream unknown, target overwritten", None, U1, X, None, DIVERGED),
    # line 5: target as recorded, upstream moved
    ("upstream moved", U2, U1, U1, True, BEHIND),
    # line 6: no record
    ("first sync, something else there", U1, None, X, None, BEHIND),
    ("first sync, upstream unknown", None, None, X, None, BEHIND),
]


@pytest.mark.parametrize(
    ("case", "upstream", "recorded", "target", "complete", "state"), IDENTICAL, ids=[c[0] for c in IDENTICAL]
)
def test_identical_copies(case, upstream, recorded, target, complete, state):
    assert classify(upstream, recorded, target, complete) == state


# Rewritten copies (platform subset): expected digests come only from the record.
REWRITTEN = [
    ("in sync", U1, E1, U1, E1, None, IN_SYNC),
    ("upstream unknown", None, E1, U1, E1, None, IN_SYNC),
    ("upstream moved", U2, E1, U1, E1, True, BEHIND),
    ("overwritten by hand", U1, E1, U1, X, None, DIVERGED),
    ("overwritten with upstream's full index", U1, E1, U1, U1, None, DIVERGED),
    ("deleted", U1, E1, U1, None, None, MISSING),
    ("lost a blob", U1, E1, U1, E1, False, BROKEN),
]


@pytest.mark.parametrize(
    ("case", "upstream", "recorded", "recorded_upstream", "target", "complete", "state"),
    REWRITTEN,
    ids=[c[0] for c in REWRITTEN],
)
def test_rewritten_copies_with_a_record(case, upstream, recorded, recorded_upstream, target, complete, state):
    assert classify(upstream, recorded, target, complete, recorded_upstream=recorded_upstream, identical=False) == state
    # with the pair recorded, ``identical`` no longer matters
    assert classify(upstream, recorded, target, complete, recorded_upstream=recorded_upstream) == state


def test_rewritten_copy_without_a_record_is_behind_until_copied():
    # a target holding upstream's full index is not what a platform subset asks for
    assert classify(U1, None, U1, True, identical=False) == BEHIND
    assert classify(U1, None, E1, True, identical=False) == BEHIND
    assert classify(U1, None, None, None, identical=False) == MISSING
    # a legacy record without its upstream digest cannot vouch for the target
    assert classify(U1, E1, E1, True, identical=False) == BEHIND
    assert classify(U1, E1, X, True, identical=False) == DIVERGED


@pytest.mark.parametrize(
    ("case", "upstream", "recorded", "recorded_upstream", "identical", "expected"),
    [
        ("identical, never synced", U1, None, None, True, U1),
        ("identical, upstream unknown", None, U1, None, True, U1),
        ("identical, pair recorded, not moved", U1, U1, U1, True, U1),
        ("identical, pair recorded, moved", U2, U1, U1, True, None),
        ("subset, pair recorded, not moved", U1, E1, U1, False, E1),
        ("subset, pair recorded, upstream unknown", None, E1, U1, False, E1),
        ("subset, pair recorded, moved", U2, E1, U1, False, None),
        ("subset, record without its upstream digest", U1, E1, None, False, None),
        ("subset, never synced", U1, None, None, False, None),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("sha256") else None,
)
def test_the_digest_the_target_should_hold(case, upstream, recorded, recorded_upstream, identical, expected):
    assert expected_target_digest(upstream, recorded, recorded_upstream=recorded_upstream, identical=identical) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.sampled_from(["sha256:" + c * 64 for c in "12ef"])),
       st.one_of(st.none(), st.sampled_from(["sha256:" + c * 64 for c in "12ef"])),
       st.one_of(st.none(), st.sampled_from(["sha256:" + c * 64 for c in "12ef"])),
       st.one_of(st.none(), st.sampled_from(["sha256:" + c * 64 for c in "12ef"])), st.booleans())
def test_classify_is_in_sync_exactly_when_the_target_holds_the_expected_digest(upstream, recorded, target, recorded_upstream, identical):
    """classify and the sync share one answer to "what should the target hold"."""
    expected = expected_target_digest(upstream, recorded, recorded_upstream=recorded_upstream, identical=identical)
    state = classify(upstream, recorded, target, None, recorded_upstream=recorded_upstream, identical=identical)
    assert (state == IN_SYNC) == (target is not None and target == expected)


def test_identical_record_with_upstream_pair():
    assert classify(U1, U1, U1, True, recorded_upstream=U1) == IN_SYNC
    assert classify(U2, U1, U1, True, recorded_upstream=U1) == BEHIND


def test_empty_strings_count_as_absent():
    assert classify("", "", "", None) == MISSING
    assert classify(U1, "", X, None) == BEHIND
    assert classify(U1, U1, U1, None, recorded_upstream="") == IN_SYNC


def test_drift_helpers():
    assert {s for s in STATES if is_drift(s)} == {DIVERGED, BROKEN}
    assert {s for s in STATES if needs_copy(s)} == {BEHIND, MISSING, DIVERGED, BROKEN}
    assert not is_drift(None) and not needs_copy(None) and not is_drift("nonsense")
    states = [IN_SYNC, DIVERGED, BROKEN, BROKEN, FAILED, INVALID, None, "nonsense"]
    assert count_drift(states) == 3
    counts = count_states(states)
    assert list(counts) == list(STATES)
    assert counts == {IN_SYNC: 1, BEHIND: 0, DIVERGED: 1, MISSING: 0, BROKEN: 2, DEFERRED: 0, FAILED: 1, INVALID: 1,
                      "conflict": 0}
    assert count_drift(iter([])) == 0


def test_drift_module_is_pure():
    tree = ast.parse(Path(drift.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections"}, imported


digests = st.one_of(st.none(), st.sampled_from([U1, U2, E1, X]))


@settings(max_examples=500, deadline=None)
@given(digests, digests, digests, st.one_of(st.none(), st.booleans()), digests, st.booleans())
def test_classify_properties(upstream, recorded, target, complete, recorded_upstream, identical):
    state = classify(upstream, recorded, target, complete, recorded_upstream=recorded_upstream, identical=identical)
    assert state in (IN_SYNC, BEHIND, DIVERGED, MISSING, BROKEN)
    if target is None:
        assert state == MISSING
    elif complete is False:
        assert state == BROKEN
    if state == IN_SYNC:
        assert target is not None and complete is not False
        # in sync means: the target holds what the service put there, or exactly upstream's bytes
        assert target == recorded or (identical and not recorded_upstream and target == upstream)
    if state == DIVERGED:
        assert recorded and target != recorded
    if state == BEHIND:
        assert target is not None
