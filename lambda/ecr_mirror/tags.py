"""Tag selection: which tags of a row to mirror, and which digest a pinned tag stands for. Pure.

Explicit ``tags`` (and pinned ones) first; then the upstream tags that ``tag_pattern``/``tag_patterns``
fully match and ``versions`` contains, minus those an ``exclude_patterns`` entry matches, newest first
by :func:`version_key`, at most ``keep_latest`` of them (see :mod:`ecr_mirror.rows` for the schema,
:mod:`ecr_mirror.versions` for the version order and ranges).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import RowError
from .reference import is_valid_tag
from .rows import ATTR_KEEP_LATEST, MAX_SELECTED_TAGS, Row
from .tagpattern import compile_tag_pattern
from .versions import version_key

__all__ = ["SelectedTag", "SelectionError", "select", "select_tags", "selection_text", "version_key"]


@dataclass(frozen=True)
class SelectedTag:
    """One tag a row mirrors.

    ``pinned_digest`` None: follow upstream's tag (copy what it points at now). Set: the row pins the tag
    to that digest: copy ``source@pinned_digest`` and write it under ``tag``; never move the tag to what
    upstream's tag points at later (when upstream's tag differs from the pin, that is worth saying, not
    copying). ``explicit``: named by the row (``tags``/``digests``), not found through patterns or versions.
    """

    tag: str
    pinned_digest: str | None = None
    explicit: bool = True


def select(row: Row, available_tags: Iterable[str] = ()) -> list[SelectedTag]:
    """The tags to mirror for ``row``, each with the digest it is pinned to (or None).

    The row's explicit tags come first, in the row's order, whether or not they appear in
    ``available_tags`` (a missing one is reported by the sync). Then, if the row selects from the
    upstream list (:attr:`Row.needs_tag_list`), the tags of ``available_tags`` that match any allow
    pattern (all tags, without patterns), are inside ``versions`` (if given), and match no
    ``exclude_patterns`` entry: newest first by :func:`version_key`, at most ``keep_latest`` of them.
    More than :data:`MAX_SELECTED_TAGS` without ``keep_latest`` raises :class:`SelectionError` (never a
    silent cut). Invalid tags in ``available_tags`` (which a hostile
    registry might list) are ignored; duplicates count once; the result does not depend on their order.
    """
    selected = [SelectedTag(tag, row.pinned_digest(tag)) for tag in row.tags]
    if not row.needs_tag_list:
        return selected
    allow = [compile_tag_pattern(p) for p in row.tag_patterns]
    deny = [compile_tag_pattern(p) for p in row.exclude_patterns]
    explicit = set(row.tags)
    matches = {
        t for t in available_tags
        if t not in explicit and is_valid_tag(t)
        and (not allow or any(p.fullmatch(t) for p in allow))
        and (row.versions is None or t in row.versions)
        and not any(p.fullmatch(t) for p in deny)
    }
    if row.keep_latest is None and len(matches) > MAX_SELECTED_TAGS:
        # never cut silently: which tags would be left out is not the user's choice (issue 13)
        raise SelectionError(
            f"row {row.id!r}: its selection ({selection_text(row)}) matches {len(matches)} upstream tags, over the limit of "
            f"{MAX_SELECTED_TAGS}; narrow them, or set keep_latest to mirror only the newest",
            attribute=ATTR_KEEP_LATEST,
        )
    newest_first = sorted(matches, key=version_key, reverse=True)
    limit = min(row.keep_latest or MAX_SELECTED_TAGS, MAX_SELECTED_TAGS)
    return selected + [SelectedTag(t, None, explicit=False) for t in newest_first[:limit]]


def selection_text(row: Row) -> str:
    """How ``row`` selects from the upstream tag list, for a status or a message, e.g.
    ``tag_pattern '1\\..*', versions '>=1.21', exclude_patterns '.*-rc'`` (empty for a row that names its tags)."""
    parts = [f"tag_pattern {p!r}" for p in row.tag_patterns]
    if row.versions is not None:
        parts.append(f"versions {row.versions.text!r}")
    parts += [f"exclude_patterns {p!r}" for p in row.exclude_patterns]
    return ", ".join(parts)


class SelectionError(RowError):
    """A row whose selection cannot be mirrored as written (more tags than :data:`MAX_SELECTED_TAGS`
    without ``keep_latest``): the sync records it as the row's state, ``invalid``, with this message."""


def select_tags(row: Row, available_tags: Iterable[str] = ()) -> list[str]:
    """The names of :func:`select`'s tags, in its order."""
    return [s.tag for s in select(row, available_tags)]
