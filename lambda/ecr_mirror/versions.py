"""Version order and version ranges over tags. Pure: no I/O.

:func:`version_key` is the project's one version order (``keep_latest`` picks the newest by it);
:func:`parse_version_range` reads a row's ``versions`` attribute into a :class:`VersionRange`
that says which tags fall inside it, in that same order.

Range grammar (a row's ``versions``)::

    range       := clause ( "||" clause )*          any clause may hold (OR)
    clause      := comparison ( sep comparison )*   every comparison must hold (AND)
    sep         := one or more spaces, or a comma
    comparison  := op [spaces] version
    op          := ">=" | ">" | "<=" | "<" | "==" | "!="
    version     := ["v"] digit { tag character }    a valid tag starting with a digit (after an optional v)

``>=1.21 <2``, ``>=1.21, <2``, ``>=3.18 <3.20 || ==3.14.3``, ``>=v1.2.0 !=v1.2.5``.

A tag is inside a range when it is a *version tag* (it starts with a digit, or with ``v``/``V`` and a
digit; the ``v`` is not compared) and some clause holds for it, comparing by :func:`version_key`:
``1.21.3`` and ``1.21.3-alpine`` are both ``>=1.21 <2``; ``2.0`` is not ``<2``; ``1.21`` is not
``>=1.21.0`` (digit runs compare as numbers and a shorter version sorts first). Pre-releases
(a tag with an ``alpha``/``beta``/``rc``/``pre``/``preview``/``dev`` marker, e.g. ``1.22rc1``,
``1.22.0-beta.1``) are left out unless a comparison of the same clause names a pre-release of the
same release (the numbers before the marker): ``>=1.22.0-rc.1 <1.23`` takes ``1.22.0-rc.2`` but not
``1.23.0-rc.1``. This is the rule of npm's node-semver and of Masterminds/semver (used by
``skopeo sync``'s ``images-by-semver``), applied to the looser tags registries carry.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from .errors import ReferenceError_, RowError, shown
from .reference import check_tag

#: the row attribute this module validates
ATTR_VERSIONS = "versions"
MAX_RANGE_LENGTH = 256
MAX_COMPARISONS = 32
OPERATORS = (">=", "<=", "==", "!=", ">", "<")

_VERSION_TOKEN = re.compile(r"[0-9]+|[^0-9]+")
_PRERELEASE = re.compile(r"[-._+~]?(?:alpha|beta|rc|pre|preview|dev)[-._]?", re.IGNORECASE)
_COMPARISON = re.compile(r"(>=|<=|==|!=|>|<)? *([^\s,|<>=!]*)")

VersionTokens = tuple[tuple[Any, ...], ...]


def version_key(tag: str) -> tuple[VersionTokens, str]:
    """Natural version order: digit runs compare as numbers, the rest as text.

    ``1.9 < 1.10``; ``1.21 < 1.21.3 < 1.21.3-alpine < 1.21.4``; a pre-release marker
    (alpha, beta, rc, pre, preview, dev) sorts before the release (``1.22rc1 < 1.22``);
    at the same position a number sorts after text (``v2 < 2``). Ties (``1.01`` vs ``1.1``)
    are broken by the tag itself, so the order is total and deterministic.
    """
    return _tokens(tag), tag


@functools.lru_cache(maxsize=4096)
def _tokens(tag: str) -> VersionTokens:
    tokens: list[tuple[Any, ...]] = []
    for piece in _VERSION_TOKEN.findall(tag):
        if piece[0] in "0123456789":
            tokens.append((3, int(piece)))
        elif _PRERELEASE.fullmatch(piece):
            tokens.append((0, piece.lower()))
        else:
            tokens.append((2, piece))
    tokens.append((1,))  # the end sorts after a pre-release marker, before anything else
    return tuple(tokens)


def _version_part(tag: str) -> str | None:
    """``tag`` without a leading ``v``/``V`` if it is a version tag (starts with a digit after it), else None."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    return text if text[:1].isdigit() and text[:1].isascii() else None


def _release(tokens: VersionTokens) -> tuple[tuple[int, ...], bool]:
    """``(numbers before the first pre-release marker, whether there is a marker)``."""
    numbers: list[int] = []
    for token in tokens:
        if token[0] == 0:
            return tuple(numbers), True
        if token[0] == 3:
            numbers.append(token[1])
    return tuple(numbers), False


@dataclass(frozen=True)
class Comparison:
    """One ``op version`` of a range, e.g. ``>=1.21``."""

    op: str
    version: str
    tokens: VersionTokens
    release: tuple[int, ...]
    prerelease: bool

    def holds(self, tokens: VersionTokens) -> bool:
        """Whether a version with these :func:`version_key` tokens satisfies the comparison."""
        a, b = tokens, self.tokens
        return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[self.op]

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True)
class VersionRange:
    """A parsed ``versions`` attribute: clauses (OR) of comparisons (AND). ``text`` is what was written.

    ``tag in version_range`` says whether a tag falls inside it (see the module docstring).
    """

    text: str
    clauses: tuple[tuple[Comparison, ...], ...]

    def __contains__(self, tag: object) -> bool:
        if not isinstance(tag, str):
            return False
        version = _version_part(tag)
        if version is None:
            return False
        tokens = _tokens(version)
        release, prerelease = _release(tokens)
        for clause in self.clauses:
            if prerelease and not any(c.prerelease and c.release == release for c in clause):
                continue
            if all(c.holds(tokens) for c in clause):
                return True
        return False

    def __str__(self) -> str:
        return " || ".join(" ".join(str(c) for c in clause) for clause in self.clauses)


def parse_version_range(text: Any) -> VersionRange:
    """Parse a ``versions`` range (grammar in the module docstring).

    Raises :class:`RowError` (attribute ``versions``) naming what is wrong, e.g.
    ``invalid versions '>=1.21 <<2': comparison '<<2' ...``. Results are cached.
    """
    if not isinstance(text, str):
        raise RowError(f"invalid versions {shown(text)}: not a string", attribute=ATTR_VERSIONS,
                       detail="must be a string")
    return _parse_version_range(text)


@functools.lru_cache(maxsize=256)
def _parse_version_range(text: str) -> VersionRange:
    def bad(message: str) -> RowError:
        return RowError(f"invalid versions {shown(text)}: {message}", attribute=ATTR_VERSIONS,
                        detail=f"{shown(text)}: {message}")

    if not text.strip():
        raise bad("empty (write comparisons such as '>=1.21 <2')")
    if len(text) > MAX_RANGE_LENGTH:
        raise bad(f"{len(text)} characters long, over the limit of {MAX_RANGE_LENGTH}")
    if any(not c.isprintable() or (c.isspace() and c != " ") for c in text):
        raise bad("only printable characters and plain spaces are allowed")
    clauses: list[tuple[Comparison, ...]] = []
    count = 0
    for number, part in enumerate(text.split("||"), 1):
        words = [w for w in re.split(r"[ ,]+", part.strip()) if w]
        words = _join_spaced_operators(words)
        if not words:
            raise bad(f"clause {number} is empty (write a comparison on each side of '||')")
        comparisons: list[Comparison] = []
        for word in words:
            count += 1
            if count > MAX_COMPARISONS:
                raise bad(f"more than {MAX_COMPARISONS} comparisons")
            comparisons.append(_parse_comparison(word, bad))
        clauses.append(tuple(comparisons))
    return VersionRange(text, tuple(clauses))


def _join_spaced_operators(words: list[str]) -> list[str]:
    """``['>=', '1.21']`` -> ``['>=1.21']``: an operator may stand apart from its version."""
    out: list[str] = []
    for word in words:
        if out and out[-1] in OPERATORS:
            out[-1] += word
        else:
            out.append(word)
    return out


def _parse_comparison(word: str, bad: Any) -> Comparison:
    match = _COMPARISON.fullmatch(word)
    op = match.group(1) if match else None
    version = match.group(2) if match else ""
    if match is None or (op is None and re.match(r"[~^=*<>!]", word)):
        raise bad(f"comparison {shown(word)}: unsupported operator (use {', '.join(OPERATORS)})")
    if op is None:
        raise bad(f"comparison {shown(word)} needs an operator (write =={word} for exactly this version)")
    if not version:
        raise bad(f"comparison {shown(word)} needs a version after {op}")
    plain = _version_part(version)
    if plain is None:
        raise bad(f"comparison {shown(word)}: {shown(version)} is not a version (it must start with a digit, "
                  "or with v and a digit)")
    try:
        check_tag(version)
    except ReferenceError_ as exc:
        raise bad(f"comparison {shown(word)}: {exc}") from exc
    tokens = _tokens(plain)
    release, prerelease = _release(tokens)
    return Comparison(op, version, tokens, release, prerelease)
