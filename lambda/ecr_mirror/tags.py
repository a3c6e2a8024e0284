"""Tag selection: which tags of a row to mirror, and the version order that picks the newest. Pure.

Explicit ``tags`` first, then the upstream tags a ``tag_pattern`` fully matches, newest first by
:func:`version_key`, at most ``keep_latest`` of them (see :mod:`ecr_mirror.rows` for the schema).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .reference import is_valid_tag
from .rows import MAX_SELECTED_TAGS, Row
from .tagpattern import compile_tag_pattern

_VERSION_TOKEN = re.compile(r"[0-9]+|[^0-9]+")
_PRERELEASE = re.compile(r"[-._+~]?(?:alpha|beta|rc|pre|preview|dev)[-._]?", re.IGNORECASE)


def version_key(tag: str) -> tuple[tuple[tuple[Any, ...], ...], str]:
    """Natural version order: digit runs compare as numbers, the rest as text.

    ``1.9 < 1.10``; ``1.21 < 1.21.3 < 1.21.3-alpine < 1.21.4``; a pre-release marker
    (alpha, beta, rc, pre, preview, dev) sorts before the release (``1.22rc1 < 1.22``);
    at the same position a number sorts after text (``v2 < 2``). Ties (``1.01`` vs ``1.1``)
    are broken by the tag itself, so the order is total and deterministic.
    """
    tokens: list[tuple[Any, ...]] = []
    for piece in _VERSION_TOKEN.findall(tag):
        if piece[0] in "0123456789":
            tokens.append((3, int(piece)))
        elif _PRERELEASE.fullmatch(piece):
            tokens.append((0, piece.lower()))
        else:
            tokens.append((2, piece))
    tokens.append((1,))  # the end sorts after a pre-release marker, before anything else
    return tuple(tokens), tag


def select_tags(row: Row, available_tags: Iterable[str] = ()) -> list[str]:
    """The tags to mirror for ``row``.

    The row's explicit ``tags`` come first, in the row's order, whether or not they appear
    in ``available_tags`` (a missing one is reported by the sync). Then the tags from
    ``available_tags`` that ``tag_pattern`` fully matches, newest first by :func:`version_key`,
    at most ``keep_latest`` of them (and never more than :data:`MAX_SELECTED_TAGS`).
    Invalid tags in ``available_tags`` (which a hostile registry might list) are ignored.
    """
    selected = list(row.tags)
    if row.tag_pattern is None:
        return selected
    pattern = compile_tag_pattern(row.tag_pattern)
    explicit = set(selected)
    matches = {t for t in available_tags if t not in explicit and is_valid_tag(t) and pattern.fullmatch(t)}
    newest_first = sorted(matches, key=version_key, reverse=True)
    limit = min(row.keep_latest or MAX_SELECTED_TAGS, MAX_SELECTED_TAGS)
    return selected + newest_first[:limit]
