"""Drift: what the target tag holds versus what it should hold. Pure: no I/O, no boto3, no httpx.

The states a tag can be in (written to the mirror table's ``status`` map, shown by
``ecr-mirror status``):

==============  =====================================================================
``in_sync``     the target tag holds exactly what the service last put there, and upstream has not moved
``behind``      upstream moved (or the tag was never synced); a copy will bring it up to date
``diverged``    the target tag points somewhere the service did not put it (someone pushed by hand)
``missing``     the target tag does not exist (new row, or the tag was deleted)
``broken``      the target tag exists but an index child or a blob is gone (e.g. a lifecycle policy)
``failed``      the last attempt failed (registry error, throttling, ...); written by the sync, not by :func:`classify`
``invalid``     the row does not validate; written by the sync, not by :func:`classify`
``conflict``    another row selects the same target repository and tag: neither writes it until one stops
                selecting it (the error names the other row); written by the sync, not by :func:`classify`
``deferred``    not copied yet: the upstream's pull budget cannot cover it now (issue 15); the status
                says why and when the window is expected to refill. Neither drift nor a failure
==============  =====================================================================

``diverged`` and ``broken`` count as *drift* (:func:`is_drift`): the mirror no longer
holds what it promised, through no action of the service. Both are repaired on the next
sync where tag mutability allows, and counted either way.

How :func:`classify` decides
----------------------------

Inputs:

- ``upstream_digest``: what the upstream tag points at now (one HEAD); ``None`` if unknown
  (the HEAD was not made or failed). Unknown upstream is treated as "not moved".
- ``recorded_expected``: the target digest the service recorded when it last copied this
  tag successfully (``expected_digest`` in the status); ``None`` if it never did.
- ``target_digest``: what the target tag points at now; ``None`` if the tag does not exist.
- ``target_complete``: ``False`` if a check found an index child or blob missing at the
  target; ``True`` or ``None`` (not checked) otherwise.
- ``recorded_upstream`` (keyword): the upstream digest recorded with ``recorded_expected``.
- ``identical`` (keyword, default ``True``): the copy keeps upstream's digest (no platform
  filter, not assembled), so the expected target digest *is* the upstream digest.

First the digest the target should hold now, ``expected_now``, is derived
(:func:`expected_target_digest`, the one place this is decided; the sync uses it too):

- with ``recorded_upstream`` known: ``recorded_expected`` if upstream has not moved
  (``upstream_digest`` is ``None`` or equals ``recorded_upstream``), otherwise unknown;
- without it, for an ``identical`` copy: ``upstream_digest`` (or ``recorded_expected`` when
  upstream is unknown);
- otherwise (a rewritten index with no record of its source, e.g. a status written before
  ``synced_upstream_digest`` existed): unknown. Such a record cannot vouch for the target: only a
  copy (which reads the target index's recorded source) can tell.

Then the first matching line wins:

====  ===================  ============================================  ==============================  ============
 #    target               record (``recorded_expected``)                upstream                        state
====  ===================  ============================================  ==============================  ============
 1    absent               any                                           any                             ``missing``
 2    incomplete           any                                           any                             ``broken``
 3    == ``expected_now``  any                                           not moved / identical to target ``in_sync``
 4    present              exists and != target                          any                             ``diverged``
 5    == record            exists                                        moved                           ``behind``
 6    present              none (first sync)                             target differs or unknown       ``behind``
====  ===================  ============================================  ==============================  ============

Notes on the corners:

- Line 3 before line 4: if the target already holds exactly what upstream now implies
  (another worker copied it but its status write was lost), that is not drift.
- Line 6: a tag never synced but already present (pushed by hand, an older mirror) is
  ``behind``, not ``diverged``: the service has made no promise about it yet. The copy that
  follows is cheap when the content is already there.
- A tag that was ``in_sync`` and was then deleted is ``missing`` (line 1), not drift;
  the next sync copies it again.
"""

from __future__ import annotations

from collections.abc import Iterable

IN_SYNC = "in_sync"
BEHIND = "behind"
DIVERGED = "diverged"
MISSING = "missing"
BROKEN = "broken"
FAILED = "failed"
INVALID = "invalid"
CONFLICT = "conflict"
DEFERRED = "deferred"

#: every state, in the order the status table lists them
STATES: tuple[str, ...] = (IN_SYNC, BEHIND, DIVERGED, MISSING, BROKEN, DEFERRED, FAILED, INVALID, CONFLICT)
#: states that count as drift (the mirror lost what it promised)
DRIFT_STATES = frozenset({DIVERGED, BROKEN})
#: states after which a copy brings the tag up to date
COPY_STATES = frozenset({BEHIND, MISSING, DIVERGED, BROKEN})


def classify(
    upstream_digest: str | None,
    recorded_expected: str | None,
    target_digest: str | None,
    target_complete: bool | None = None,
    *,
    recorded_upstream: str | None = None,
    identical: bool = True,
) -> str:
    """The state of one tag (one of ``in_sync``, ``behind``, ``diverged``, ``missing``, ``broken``);
    see the module docstring for the truth table."""
    if not target_digest:
        return MISSING
    if target_complete is False:
        return BROKEN
    expected_now = expected_target_digest(
        upstream_digest, recorded_expected, recorded_upstream=recorded_upstream, identical=identical
    )
    if expected_now and target_digest == expected_now:
        return IN_SYNC
    if recorded_expected and target_digest != recorded_expected:
        return DIVERGED
    return BEHIND


def expected_target_digest(
    upstream_digest: str | None,
    recorded_expected: str | None,
    *,
    recorded_upstream: str | None = None,
    identical: bool = True,
) -> str | None:
    """The digest the target tag should hold now, or ``None`` when only a copy can tell.

    Inputs as for :func:`classify` (empty strings count as absent); the rule is in the module
    docstring ("First the digest the target should hold now ...").
    """
    if recorded_upstream:
        moved = bool(upstream_digest) and upstream_digest != recorded_upstream
        return None if moved else (recorded_expected or None)
    if identical:
        return upstream_digest or recorded_expected or None
    return None


#: the order tags are copied in when upstream pulls are short (issue 15): what is missing at the target first,
#: then what is behind upstream, then repairs
COPY_PRIORITY: dict[str, int] = {MISSING: 0, BEHIND: 1, DIVERGED: 2, BROKEN: 2}


def is_drift(state: str | None) -> bool:
    """Whether ``state`` counts as drift (``diverged`` or ``broken``)."""
    return state in DRIFT_STATES


def needs_copy(state: str | None) -> bool:
    """Whether a tag in ``state`` is brought up to date by copying it."""
    return state in COPY_STATES


def count_states(states: Iterable[str | None]) -> dict[str, int]:
    """``{state: count}`` over :data:`STATES` (every state present, zeros included)."""
    counts = dict.fromkeys(STATES, 0)
    for s in states:
        if s in counts:
            counts[s] += 1
    return counts


def count_drift(states: Iterable[str | None]) -> int:
    """How many of ``states`` are drift."""
    return sum(1 for s in states if is_drift(s))
