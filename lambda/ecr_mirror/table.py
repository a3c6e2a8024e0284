"""The mirror table: row schema and validation, tag selection, and status records.

One DynamoDB item per mirrored image, partition key ``id`` (S). What users write::

    id                 S        required; 1-256 of letters, digits and ._:@/+- (starting with a letter or digit)
    source             S        upstream repository without tag/digest: docker.io/library/golang, golang
    assemble           L of S   instead of source: image references (each with a tag or digest) joined into one index
    tags               L of S   explicit tags (max 100); for assemble rows exactly one: the tag to write
    tag_pattern        S        regular expression the WHOLE tag must match (max 256 chars, must not backtrack badly)
    keep_latest        N        with tag_pattern: only the newest N matches (version order, 1.10 after 1.9)
    platforms          L of S   os/arch[/variant], e.g. linux/amd64 (max 16); absent: every platform, digest-identical
    target_repository  S        ECR repository name; default below
    arch_tags          BOOL     also write <tag>-<arch> tags
    enabled            BOOL     default true

``null`` (DynamoDB ``NULL``) counts as absent. ``tags`` and ``platforms`` may also be string
sets (SS); they are then taken in sorted order. Any other attribute is rejected, except the
ones the service writes itself (:data:`SERVICE_ATTRIBUTES`).

Default ``target_repository``:

- source rows: ``<prefix>/<registry>/<repository>``, e.g. ``mirror/docker.io/library/golang``;
  a registry port becomes ``-<port>`` (``localhost:5000`` -> ``localhost-5000``), since ECR
  names allow no ``:``.
- assemble rows whose references all come from one repository: that repository, as for a
  source row (``docker.io/me/app:1.0-amd64`` + ``:1.0-arm64`` -> ``mirror/docker.io/me/app``);
  otherwise ``<prefix>/assembled/<id>`` (the id must then be a valid ECR name, or the row must
  give ``target_repository``).

What the service writes into the same item (never with PutItem, so user attributes are
never clobbered):

    status        M   tag -> {state, upstream_digest, expected_digest, synced_upstream_digest,
                              target_digest, last_attempt, last_success, bytes_copied, error,
                              fingerprint, ...}
    row_error     S   why the row is invalid (removed again once it validates)
    row_error_at  S   when that was found

Status writes are conditional on ``last_attempt`` (ISO-8601 UTC with microseconds, so the
strings sort in time order): a write whose attempt is not newer than the stored one is
dropped, so two racing workers never move a tag's status backwards. A write sets the
fields it gives and removes those it leaves None, except ``last_success``: a failed attempt
keeps the stored one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import drift
from .config import DEFAULT_REPOSITORY_PREFIX
from .errors import AwsError, ConfigError, MirrorError, PlatformError, ReferenceError_, RowError
from .manifest import Platform
from .reference import Reference, parse_reference, parse_repository, validate_tag

try:  # Python 3.11+: the regex parser lives here
    from re import _constants as _sre  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

# ---------------------------------------------------------------- schema constants

ATTR_ID = "id"
ATTR_SOURCE = "source"
ATTR_ASSEMBLE = "assemble"
ATTR_TAGS = "tags"
ATTR_TAG_PATTERN = "tag_pattern"
ATTR_KEEP_LATEST = "keep_latest"
ATTR_PLATFORMS = "platforms"
ATTR_TARGET_REPOSITORY = "target_repository"
ATTR_ARCH_TAGS = "arch_tags"
ATTR_ENABLED = "enabled"
ATTR_STATUS = "status"
ATTR_ROW_ERROR = "row_error"
ATTR_ROW_ERROR_AT = "row_error_at"

#: attributes a user may write
USER_ATTRIBUTES = (
    ATTR_ID,
    ATTR_SOURCE,
    ATTR_ASSEMBLE,
    ATTR_TAGS,
    ATTR_TAG_PATTERN,
    ATTR_KEEP_LATEST,
    ATTR_PLATFORMS,
    ATTR_TARGET_REPOSITORY,
    ATTR_ARCH_TAGS,
    ATTR_ENABLED,
)
#: attributes the service writes into the same item; ignored by :func:`parse_row`
SERVICE_ATTRIBUTES = frozenset({ATTR_STATUS, ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT})

MAX_ID_LENGTH = 256
MAX_TAGS = 100
MAX_PLATFORMS = 16
MAX_ASSEMBLE = 16
MAX_TAG_PATTERN_LENGTH = 256
#: tags longer than this never match anything (the OCI limit); the backtracking guard relies on it
MAX_TAG_LENGTH = 128
#: upper bound for keep_latest, and for how many tags one pattern selects (the status of every
#: selected tag lives in the row's item, which DynamoDB caps at 400 KB)
MAX_SELECTED_TAGS = 200
MAX_ERROR_LENGTH = 2000

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")
_ECR_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_ECR_REPOSITORY_RE = re.compile(rf"(?:{_ECR_COMPONENT}/)*{_ECR_COMPONENT}")
ECR_REPOSITORY_MIN, ECR_REPOSITORY_MAX = 2, 256


# ---------------------------------------------------------------- the row


@dataclass(frozen=True)
class Row:
    """A validated mirror-table row. Build it with :func:`parse_row`."""

    id: str
    source: Reference | None
    tags: tuple[str, ...]
    tag_pattern: str | None
    keep_latest: int | None
    platforms: tuple[Platform, ...] | None
    target_repository: str
    arch_tags: bool
    assemble: tuple[Reference, ...] | None
    enabled: bool

    @property
    def is_assemble(self) -> bool:
        return self.assemble is not None

    @property
    def needs_tag_list(self) -> bool:
        """Whether :func:`select_tags` needs the upstream tag list (only for ``tag_pattern``)."""
        return self.tag_pattern is not None

    @property
    def identical(self) -> bool:
        """Whether copies keep upstream's digest (no platform filter, not assembled)."""
        return self.platforms is None and self.assemble is None

    @property
    def fingerprint(self) -> str:
        """Short hash of what determines the expected target digest (source, platforms, assemble).

        Recorded in each status entry: when the row changes (a platform added, another
        source), the recorded ``expected_digest`` no longer applies and the record should be
        ignored.
        """
        parts = [
            str(self.source or ""),
            ",".join(str(p) for p in self.platforms) if self.platforms is not None else "*",
            ",".join(str(r) for r in self.assemble or ()),
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class _Invalid(Exception):
    """Internal: an attribute that does not validate (turned into :class:`RowError`)."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (set, frozenset)):
        return "set"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    return type(value).__name__


def _want_string(attribute: str, value: Any, *, max_length: int = 1024) -> str:
    if not isinstance(value, str):
        raise _Invalid(attribute, f"must be a string, not a {_type_name(value)}")
    if not value:
        raise _Invalid(attribute, "must not be empty")
    if len(value) > max_length:
        raise _Invalid(attribute, f"is {len(value)} characters long, over the limit of {max_length}")
    return value


def _want_string_list(attribute: str, value: Any, *, max_items: int, allow_set: bool) -> list[str]:
    if isinstance(value, (set, frozenset)) and allow_set:
        items = list(value)
        if not all(isinstance(v, str) for v in items):
            raise _Invalid(attribute, "must be a list of strings")
        items.sort()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _Invalid(attribute, f"must be a list of strings, not a {_type_name(value)}")
    if not items:
        raise _Invalid(attribute, "must not be empty (leave the attribute out instead)")
    if len(items) > max_items:
        raise _Invalid(attribute, f"has {len(items)} entries, over the limit of {max_items}")
    for i, v in enumerate(items):
        if not isinstance(v, str):
            raise _Invalid(attribute, f"entry {i + 1} must be a string, not a {_type_name(v)}")
    return items


def _want_bool(attribute: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(attribute, f"must be a boolean (true/false), not a {_type_name(value)} {_show(value)}")
    return value


def _want_int(attribute: str, value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _Invalid(attribute, f"must be a whole number, not a {_type_name(value)} {_show(value)}")
    if isinstance(value, Decimal):
        try:
            if not value.is_finite() or value != value.to_integral_value():
                raise _Invalid(attribute, f"must be a whole number, not {_show(value)}")
        except InvalidOperation:
            raise _Invalid(attribute, f"must be a whole number, not {_show(value)}") from None
    if value < minimum or value > maximum:
        raise _Invalid(attribute, f"must be between {minimum} and {maximum}, not {_show(value)}")
    return int(value)


def _check_tag(tag: str) -> str:
    # validate_tag's regex ends in "$", which also accepts a trailing newline: check it here too
    if not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH or any(c.isspace() for c in tag):
        raise ReferenceError_(f"invalid tag {_show(tag)}: up to 128 of letters, digits, '_', '.', '-'")
    return validate_tag(tag)


def is_valid_tag(tag: Any) -> bool:
    """Whether ``tag`` is a valid OCI tag (up to 128 of ``[A-Za-z0-9_.-]``, not starting with ``.``/``-``)."""
    try:
        _check_tag(tag)
    except ReferenceError_:
        return False
    return True


def is_valid_ecr_repository(name: Any) -> bool:
    """Whether ``name`` is a valid ECR repository name (lowercase path components, 2-256 chars)."""
    return (
        isinstance(name, str)
        and ECR_REPOSITORY_MIN <= len(name) <= ECR_REPOSITORY_MAX
        and _ECR_REPOSITORY_RE.fullmatch(name) is not None
    )


def _ecr_component(text: str) -> str:
    """``localhost:5000`` -> ``localhost-5000``: one valid ECR path component, or ''."""
    text = re.sub(r"[^a-z0-9._-]", "-", text.lower())
    text = re.sub(r"[._-]{2,}", "-", text)
    return text.strip("._-")


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigError(f"repository prefix {_show(prefix)} is not a string")
    prefix = prefix.strip().strip("/")
    if prefix and _ECR_REPOSITORY_RE.fullmatch(prefix) is None:
        raise ConfigError(
            f"repository prefix {prefix!r} is not a valid ECR repository path (lowercase a-z, 0-9, '._-', '/')"
        )
    return prefix


def default_target_repository(ref: Reference, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> str:
    """``<prefix>/<registry>/<repository>``, e.g. ``mirror/docker.io/library/golang``.

    Raises :class:`RowError` (attribute ``target_repository``) if that is not a valid ECR name.
    """
    prefix = _check_prefix(prefix)
    registry = _ecr_component(ref.registry)
    name = "/".join(p for p in (prefix, registry, ref.repository) if p)
    if not registry or not is_valid_ecr_repository(name):
        raise RowError(
            f"the default target repository {name!r} for {ref.name} is not a valid ECR repository name; "
            "set target_repository",
            attribute=ATTR_TARGET_REPOSITORY,
        )
    return name


# ---------------------------------------------------------------- tag patterns

_TAG_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_DIGITS = frozenset("0123456789")
_WORD = _TAG_ALPHABET - {".", "-"}
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: _DIGITS,
    _sre.CATEGORY_NOT_DIGIT: _TAG_ALPHABET - _DIGITS,
    _sre.CATEGORY_WORD: _WORD,
    _sre.CATEGORY_NOT_WORD: _TAG_ALPHABET - _WORD,
    _sre.CATEGORY_SPACE: frozenset(),
    _sre.CATEGORY_NOT_SPACE: _TAG_ALPHABET,
}
_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)}
_ASSERTS = {_sre.ASSERT, _sre.ASSERT_NOT}
_GROUPS = {_sre.SUBPATTERN, getattr(_sre, "ATOMIC_GROUP", _sre.SUBPATTERN)}
#: a bounded repeat this wide counts as unbounded for the polynomial check
_WIDE_REPEAT = 16
#: longest allowed chain of unbounded repeats that can trade characters (.*.* is fine, .*.*.* is not)
_MAX_REPEAT_CHAIN = 2
#: rough bound on backtracking steps per tag: 128**chain times the ways bounded parts can vary
_COST_BUDGET = 128**3
_PATH_CAP = 10**12


class _Unsafe(Exception):
    pass


class _PatternAnalysis:
    r"""Static check of a parsed regex for super-linear backtracking, over the tag alphabet.

    Tags are at most 128 characters of ``[A-Za-z0-9_.-]`` (longer or other tags are never
    matched), and patterns are matched with ``fullmatch`` (one start position). Refused:

    - *exponential* shapes: a loop (a repeat that can run twice or more) that is not
      deterministic: its body can match the empty string (``(a*)*``), or at some choice
      inside it (repeat once more or stop, take an optional part or not, which alternative)
      the next character does not decide: ``(a+)+``, ``(\d+\.?)+``, ``(\w+\w)+``,
      ``(a|a)*``, ``([a-z]+[0-9]*)+``;
    - *high-degree polynomial* shapes: three or more unbounded repeats that can trade
      characters with each other (``.*.*.*``, ``.*-.*-.*``), or two of them with many
      optional parts, alternatives and ``{m,n}`` ranges around (estimated cost over
      :data:`_COST_BUDGET` steps for a 128-character tag);
    - back-references.

    Character sets are computed over the tag alphabet: ``(\d+\.)+`` and ``\d+(\.\d+)*`` are
    fine because ``.`` is not a digit; ``(\w|\d)+`` is fine because Python's parser turns
    it into one character class. The check is conservative: it refuses some patterns that
    would in fact run fast, never the usual version patterns. A fuzzer over 200,000 random
    patterns found none accepted that took more than ~15 ms on an adversarial 128-character tag.
    """

    def __init__(self, ignorecase: bool) -> None:
        self.ignorecase = ignorecase

    # -- character sets
    def _fold(self, chars: frozenset[str]) -> frozenset[str]:
        if not self.ignorecase:
            return chars
        return frozenset(c2 for c in chars for c2 in (c, c.lower(), c.upper()) if c2 in _TAG_ALPHABET)

    def _char(self, code: int) -> frozenset[str]:
        return self._fold(frozenset({chr(code)}) & _TAG_ALPHABET)

    def _in(self, items: Any) -> frozenset[str]:
        negate = False
        chars: set[str] = set()
        for op, av in items:
            if op is _sre.NEGATE:
                negate = True
            elif op is _sre.LITERAL:
                chars |= self._char(av)
            elif op is _sre.RANGE:
                lo, hi = av
                chars |= {c for c in _TAG_ALPHABET if lo <= ord(c) <= hi}
            elif op is _sre.CATEGORY:
                chars |= _CATEGORIES.get(av, _TAG_ALPHABET)
            else:  # anything unexpected: assume it matches everything
                chars |= _TAG_ALPHABET
        result = self._fold(frozenset(chars))
        return self._fold(_TAG_ALPHABET - result) if negate else result

    def single(self, op: Any, av: Any) -> frozenset[str] | None:
        """The characters a one-character node matches, or None for other nodes."""
        if op is _sre.LITERAL:
            return self._char(av)
        if op is _sre.NOT_LITERAL:
            return self._fold(_TAG_ALPHABET - {chr(av)})
        if op is _sre.ANY:
            return _TAG_ALPHABET
        if op is _sre.IN:
            return self._in(av)
        return None

    # -- properties of sequences and nodes
    def nullable(self, seq: Any) -> bool:
        return all(self.node_nullable(op, av) for op, av in seq)

    def node_nullable(self, op: Any, av: Any) -> bool:
        if self.single(op, av) is not None:
            return False
        if op in _REPEATS:
            lo, _hi, body = av
            return lo == 0 or self.nullable(body)
        if op is _sre.BRANCH:
            return any(self.nullable(alt) for alt in av[1])
        if op in _GROUPS:
            return self.nullable(self._group_body(op, av))
        return True  # AT, asserts: zero-width

    def chars(self, seq: Any) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for op, av in seq:
            out |= self.node_chars(op, av)
        return out

    def node_chars(self, op: Any, av: Any) -> frozenset[str]:
        single = self.single(op, av)
        if single is not None:
            return single
        if op in _REPEATS:
            return self.chars(av[2]) if av[1] else frozenset()
        if op is _sre.BRANCH:
            out: frozenset[str] = frozenset()
            for alt in av[1]:
                out |= self.chars(alt)
            return out
        if op in _GROUPS:
            return self.chars(self._group_body(op, av))
        return frozenset()

    def first(self, seq: Any) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for op, av in seq:
            out |= self.node_first(op, av)
            if not self.node_nullable(op, av):
                break
        return out

    def node_first(self, op: Any, av: Any) -> frozenset[str]:
        single = self.single(op, av)
        if single is not None:
            return single
        if op in _REPEATS:
            return self.first(av[2]) if av[1] else frozenset()
        if op is _sre.BRANCH:
            out: frozenset[str] = frozenset()
            for alt in av[1]:
                out |= self.first(alt)
            return out
        if op in _GROUPS:
            return self.first(self._group_body(op, av))
        return frozenset()

    @staticmethod
    def _group_body(op: Any, av: Any) -> Any:
        return av[-1] if op is _sre.SUBPATTERN else av

    def _with_flags(self, op: Any, av: Any) -> _PatternAnalysis:
        if op is _sre.SUBPATTERN and av[1] & _sre.SRE_FLAG_IGNORECASE and not self.ignorecase:
            return _PatternAnalysis(True)
        return self

    # -- the checks
    def check(self, seq: Any) -> None:
        """Raise :class:`_Unsafe` if ``seq`` (and everything in it) could backtrack badly."""
        for op, av in seq:
            if op in (_sre.GROUPREF, getattr(_sre, "GROUPREF_EXISTS", None), getattr(_sre, "GROUPREF_IGNORE", None)):
                raise _Unsafe("back-references are not supported")  # matching them is NP-hard
            if op in _REPEATS:
                lo, hi, body = av
                if hi >= 2:
                    self._check_loop(body)
                self.check(body)
            elif op is _sre.BRANCH:
                for alt in av[1]:
                    self.check(alt)
            elif op in _GROUPS:
                self._with_flags(op, av).check(self._group_body(op, av))
            elif op in _ASSERTS:
                self.check(av[1])
        self._check_chains(seq)

    def _check_loop(self, body: Any) -> None:
        r"""A loop must be deterministic: at every choice inside it, the next character decides.

        Choices are: repeat once more or stop (``a+``, ``\d{1,3}``, ``x?``), and which
        alternative to take. If the characters that continue a choice can also come right
        after it (inside the body, or at the start of the next iteration), the loop can cut
        the same text in many ways and a failing match tries them all: 2**n for ``(a+)+``.
        ``(\d+\.)+`` and ``\d+(\.\d+)*`` are fine, ``.`` ends each digit run.
        """
        if self.nullable(body):
            raise _Unsafe("could backtrack catastrophically: a repeated group can match the empty string, as in (a*)*")
        self._deterministic(body, self.first(body))

    def _deterministic(self, seq: Any, follow: frozenset[str]) -> None:
        items = list(seq)
        for n, (op, av) in enumerate(items):
            rest = items[n + 1 :]
            after = self.first(rest) | (follow if self.nullable(rest) else frozenset())
            if op in _REPEATS:
                lo, hi, body = av
                if hi > lo:
                    if self.nullable(body):
                        raise _Unsafe(
                            "could backtrack catastrophically: an optional or repeated part inside a repeated "
                            "group can match the empty string, as in ((a?)?)+"
                        )
                    if self.first(body) & after:
                        raise _Unsafe(
                            "could backtrack catastrophically: nested quantifiers can match the same text "
                            "in many ways, as in (a+)+ or (\\w+\\w)+"
                        )
                self._deterministic(body, self.first(body) | after if hi > 1 else after)
            elif op is _sre.BRANCH:
                alts = list(av[1])
                starts = [self.first(alt) | (after if self.nullable(alt) else frozenset()) for alt in alts]
                for i in range(len(alts)):
                    for j in range(i + 1, len(alts)):
                        if (self.nullable(alts[i]) and self.nullable(alts[j])) or starts[i] & starts[j]:
                            raise _Unsafe(
                                "could backtrack catastrophically: a repeated alternation has alternatives "
                                "that match the same text, as in (a|a)*"
                            )
                for alt in alts:
                    self._deterministic(alt, after)
            elif op in _GROUPS:
                self._with_flags(op, av)._deterministic(self._group_body(op, av), after)

    def _walk(self, seq: Any) -> Iterator[tuple[Any, Any]]:
        """Every node in ``seq``, depth first (lookaround bodies excluded)."""
        for op, av in seq:
            yield op, av
            if op in _REPEATS:
                yield from self._walk(av[2])
            elif op is _sre.BRANCH:
                for alt in av[1]:
                    yield from self._walk(alt)
            elif op in _GROUPS:
                yield from self._walk(self._group_body(op, av))

    def _weight(self, op: Any, av: Any) -> int:
        """How many unbounded repeats in a row this element can contribute to a chain."""
        if op in _REPEATS:
            lo, hi, body = av
            if hi == _sre.MAXREPEAT or hi - lo >= _WIDE_REPEAT:
                return 1
            return hi * self._inner_weight(body)  # (x.*){3} is x.*x.*x.*
        if op is _sre.BRANCH:
            return max((self._inner_weight(alt) for alt in av[1]), default=0)
        return 0

    def _inner_weight(self, seq: Any) -> int:
        """The weight of ``seq`` as one element: its trading repeats, or 1 if it has any unbounded one."""
        chain = self._max_chain(seq)
        if chain:
            return chain
        return 1 if any(self._weight(op, av) for op, av in self._walk(seq) if op in _REPEATS) else 0

    def _flatten(self, seq: Any, optional: tuple[int, ...], out: list[_Element]) -> None:
        r"""Elements of ``seq`` with groups and optional parts (``?``, ``{0,1}``) inlined.

        ``optional`` names the optional parts an element sits in: an element of ``(\.\d+)?``
        is required between two elements inside that part, skippable between two outside it.
        """
        for op, av in seq:
            if op in _GROUPS:
                self._flatten(self._group_body(op, av), optional, out)
            elif op in _REPEATS and av[1] <= 1:
                self._flatten(av[2], optional + (id(av),) if av[0] == 0 else optional, out)
            elif op in _ASSERTS or op is _sre.AT:
                continue
            else:
                out.append(
                    _Element(self._weight(op, av), not self.node_nullable(op, av), self.node_chars(op, av), optional)
                )

    def _max_chain(self, seq: Any) -> int:
        """How many unbounded repeats in ``seq`` can trade characters with another one.

        Two repeats trade when some character can be taken by either of them and by every
        required element between them: the matcher may then try every way of splitting a
        run of that character between them. Each such repeat is one more factor of the tag
        length in the worst-case matching time (``.*.*`` is O(n^2), ``.*-.*-.*`` O(n^3)).
        """
        elements: list[_Element] = []
        self._flatten(seq, (), elements)
        trading: set[int] = set()
        for j, ej in enumerate(elements):
            if not ej.weight:
                continue
            for i in range(j):
                ei = elements[i]
                if not ei.weight or (i in trading and j in trading):
                    continue
                around = set(ei.optional) | set(ej.optional)
                shared = ei.chars & ej.chars
                for k in range(i + 1, j):
                    if not shared:
                        break
                    ek = elements[k]
                    if ek.required and set(ek.optional) <= around:
                        shared = shared & ek.chars
                if shared:
                    trading.update((i, j))
        return sum(e.weight for n, e in enumerate(elements) if n in trading or e.weight >= 2)

    def _paths(self, seq: Any) -> int:
        """Roughly how many ways bounded repeats and alternations let ``seq`` cut a text (capped)."""
        total = 1
        for op, av in seq:
            if op in _REPEATS:
                lo, hi, body = av
                inner = self._paths(body)
                if hi == _sre.MAXREPEAT or hi - lo >= _WIDE_REPEAT:
                    total *= inner
                else:
                    total *= min(inner**hi, _PATH_CAP) * (hi - lo + 1)
            elif op is _sre.BRANCH:
                total *= sum(self._paths(alt) for alt in av[1])
            elif op in _GROUPS:
                total *= self._paths(self._group_body(op, av))
            total = min(total, _PATH_CAP)
        return total

    def _check_chains(self, seq: Any) -> None:
        best = self._max_chain(seq)
        if best > _MAX_REPEAT_CHAIN:
            raise _Unsafe(
                f"could backtrack badly: {best} unbounded repeats can trade characters (as in .*.*.* or .*-.*-.*); "
                "narrow them, e.g. [^-]* instead of .*"
            )
        cost = MAX_TAG_LENGTH**best * self._paths(seq)
        if cost > _COST_BUDGET:
            raise _Unsafe(
                "could backtrack badly: too many optional parts, alternatives and {m,n} ranges "
                "around its unbounded repeats; simplify it"
            )


@dataclass(frozen=True)
class _Element:
    weight: int
    required: bool
    chars: frozenset[str]
    optional: tuple[Any, ...]


def compile_tag_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``tag_pattern`` (ASCII semantics), refusing patterns that could backtrack badly.

    See :class:`_PatternAnalysis` for what is refused. Results are cached.
    Raises :class:`RowError` with ``attribute='tag_pattern'``.
    """
    if not isinstance(pattern, str):
        raise RowError(f"invalid tag_pattern {_show(pattern)}: not a string", attribute=ATTR_TAG_PATTERN)
    return _compile_tag_pattern(pattern)


@functools.lru_cache(maxsize=256)
def _compile_tag_pattern(pattern: str) -> re.Pattern[str]:
    def bad(message: str) -> RowError:
        return RowError(f"invalid tag_pattern {_show(pattern)}: {message}", attribute=ATTR_TAG_PATTERN)

    if not pattern:
        raise bad("empty")
    if len(pattern) > MAX_TAG_PATTERN_LENGTH:
        raise bad(f"{len(pattern)} characters long, over the limit of {MAX_TAG_PATTERN_LENGTH}")
    try:
        compiled = re.compile(pattern, re.ASCII)
        parsed = _sre_parse.parse(pattern, re.ASCII)
    except (re.error, OverflowError, RecursionError, ValueError, TypeError) as exc:
        raise bad(f"not a valid regular expression: {exc}") from None
    try:
        _PatternAnalysis(bool(parsed.state.flags & re.IGNORECASE)).check(parsed)
    except _Unsafe as exc:
        raise bad(str(exc)) from None
    except RecursionError:
        raise bad("nested too deeply") from None
    return compiled


# ---------------------------------------------------------------- parsing rows


def _parse_source(value: Any) -> Reference:
    text = _want_string(ATTR_SOURCE, value, max_length=512)
    try:
        return parse_repository(text)
    except ReferenceError_ as exc:
        raise _Invalid(ATTR_SOURCE, str(exc)) from None


def _parse_assemble(value: Any) -> tuple[Reference, ...]:
    items = _want_string_list(ATTR_ASSEMBLE, value, max_items=MAX_ASSEMBLE, allow_set=False)
    refs: list[Reference] = []
    for i, text in enumerate(items):
        try:
            ref = parse_reference(text, default_tag=None)
        except ReferenceError_ as exc:
            raise _Invalid(ATTR_ASSEMBLE, f"entry {i + 1}: {exc}") from None
        if not ref.tag and not ref.digest:
            raise _Invalid(
                ATTR_ASSEMBLE, f"entry {i + 1}: reference {text!r} needs a tag or digest (e.g. {text}:1.0-amd64)"
            )
        if ref in refs:
            raise _Invalid(ATTR_ASSEMBLE, f"entry {i + 1}: {ref} is listed twice")
        refs.append(ref)
    return tuple(refs)


def _parse_tags(value: Any) -> tuple[str, ...]:
    items = _want_string_list(ATTR_TAGS, value, max_items=MAX_TAGS, allow_set=True)
    seen: set[str] = set()
    for i, tag in enumerate(items):
        try:
            _check_tag(tag)
        except ReferenceError_ as exc:
            raise _Invalid(ATTR_TAGS, f"entry {i + 1}: {exc}") from None
        if tag in seen:
            raise _Invalid(ATTR_TAGS, f"tag {tag!r} is listed twice")
        seen.add(tag)
    return tuple(items)


def _parse_platforms(value: Any) -> tuple[Platform, ...]:
    items = _want_string_list(ATTR_PLATFORMS, value, max_items=MAX_PLATFORMS, allow_set=True)
    out: list[Platform] = []
    for text in items:
        if any(c.isspace() for c in text):
            raise _Invalid(ATTR_PLATFORMS, f"invalid platform {_show(text)}: contains whitespace")
        try:
            platform = Platform.parse(text)
        except PlatformError as exc:
            raise _Invalid(ATTR_PLATFORMS, str(exc)) from None
        same = [p for p in out if _platform_key(p) == _platform_key(platform)]
        if same:
            raise _Invalid(ATTR_PLATFORMS, f"platform {platform} is listed twice (as {same[0]})")
        out.append(platform)
    return tuple(out)


def _platform_key(p: Platform) -> tuple[str, str, str]:
    return p.os, p.architecture, p.normalized_variant()  # linux/arm64 is linux/arm64/v8


def _parse_id(item: Mapping[str, Any]) -> str:
    if ATTR_ID not in item or item[ATTR_ID] is None:
        raise _Invalid(ATTR_ID, "is missing (every row needs a string id, its partition key)")
    value = item[ATTR_ID]
    if not isinstance(value, str):
        raise _Invalid(ATTR_ID, f"must be a string, not a {_type_name(value)}")
    if not value:
        raise _Invalid(ATTR_ID, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise _Invalid(ATTR_ID, f"is {len(value)} characters long, over the limit of {MAX_ID_LENGTH}")
    if _ID_RE.fullmatch(value) is None:
        raise _Invalid(
            ATTR_ID, "may contain only letters, digits and ._:@/+- and must start with a letter or digit"
        )
    return value


def _row_label(item: Any) -> str:
    value = item.get(ATTR_ID) if isinstance(item, Mapping) else None
    if isinstance(value, str) and value and len(value) <= MAX_ID_LENGTH and _ID_RE.fullmatch(value):
        return repr(value)
    return _show(value, 60)


def parse_row(item: Mapping[str, Any], *, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> Row:
    """Validate a plain-Python item (as boto3's resource layer returns it) into a :class:`Row`.

    Raises :class:`RowError` naming the row and the attribute, e.g.
    ``row 'golang': attribute 'platforms': invalid platform 'linux': ...``.
    Attributes the service writes (:data:`SERVICE_ATTRIBUTES`) are ignored.
    """
    prefix = _check_prefix(prefix)
    if not isinstance(item, Mapping):
        raise RowError(f"row {_show(item, 60)}: is not a map of attributes", attribute="")
    label = _row_label(item)
    try:
        return _parse_row(item, prefix)
    except _Invalid as exc:
        raise RowError(f"row {label}: attribute {exc.attribute!r}: {exc.message}", attribute=exc.attribute) from None
    except RowError as exc:  # from helpers that raise RowError themselves
        raise RowError(f"row {label}: attribute {exc.attribute!r}: {exc}", attribute=exc.attribute) from None


def _parse_row(item: Mapping[str, Any], prefix: str) -> Row:
    row_id = _parse_id(item)
    for key in item:
        if not isinstance(key, str):
            raise _Invalid(_show(key, 40), "attribute names must be strings")
    unknown = sorted(k for k in item if k not in USER_ATTRIBUTES and k not in SERVICE_ATTRIBUTES)
    if unknown:
        raise _Invalid(
            unknown[0][:64], f"unknown attribute (known: {', '.join(USER_ATTRIBUTES)})"
        )

    def get(name: str) -> Any:
        return item.get(name)

    source = _parse_source(get(ATTR_SOURCE)) if get(ATTR_SOURCE) is not None else None
    assemble = _parse_assemble(get(ATTR_ASSEMBLE)) if get(ATTR_ASSEMBLE) is not None else None
    tags = _parse_tags(get(ATTR_TAGS)) if get(ATTR_TAGS) is not None else ()
    tag_pattern: str | None = None
    if get(ATTR_TAG_PATTERN) is not None:
        tag_pattern = _want_string(ATTR_TAG_PATTERN, get(ATTR_TAG_PATTERN), max_length=MAX_TAG_PATTERN_LENGTH)
        try:
            compile_tag_pattern(tag_pattern)
        except RowError as exc:
            raise _Invalid(ATTR_TAG_PATTERN, str(exc)) from None
    keep_latest = None
    if get(ATTR_KEEP_LATEST) is not None:
        keep_latest = _want_int(ATTR_KEEP_LATEST, get(ATTR_KEEP_LATEST), minimum=1, maximum=MAX_SELECTED_TAGS)
    platforms = _parse_platforms(get(ATTR_PLATFORMS)) if get(ATTR_PLATFORMS) is not None else None
    target = None
    if get(ATTR_TARGET_REPOSITORY) is not None:
        target = _want_string(ATTR_TARGET_REPOSITORY, get(ATTR_TARGET_REPOSITORY), max_length=ECR_REPOSITORY_MAX)
        if not is_valid_ecr_repository(target):
            hint = " (ECR repository names are lowercase)" if target.lower() != target else ""
            raise _Invalid(
                ATTR_TARGET_REPOSITORY,
                f"{_show(target)} is not a valid ECR repository name: 2-256 characters of lowercase "
                f"letters, digits and ._- in /-separated components{hint}",
            )
    arch_tags = _want_bool(ATTR_ARCH_TAGS, get(ATTR_ARCH_TAGS)) if get(ATTR_ARCH_TAGS) is not None else False
    enabled = _want_bool(ATTR_ENABLED, get(ATTR_ENABLED)) if get(ATTR_ENABLED) is not None else True

    # rules across attributes
    if source is None and assemble is None:
        raise _Invalid(ATTR_SOURCE, "is missing: a row needs a source repository (or an assemble list)")
    if source is not None and assemble is not None:
        raise _Invalid(ATTR_ASSEMBLE, "cannot be combined with source: give one or the other")
    if keep_latest is not None and tag_pattern is None:
        raise _Invalid(ATTR_KEEP_LATEST, "only applies together with tag_pattern")
    if assemble is not None:
        if tag_pattern is not None:
            raise _Invalid(ATTR_TAG_PATTERN, "does not apply to assemble rows (give the one tag to write in tags)")
        if len(tags) != 1:
            raise _Invalid(
                ATTR_TAGS, f"an assemble row needs exactly one tag (the tag to write), not {len(tags)}"
            )
        if platforms is not None:
            raise _Invalid(
                ATTR_PLATFORMS, "does not apply to assemble rows: each assemble reference names one platform's image"
            )
        if target is None:
            repos = {r.name for r in assemble}
            if len(repos) == 1:
                target = default_target_repository(assemble[0], prefix)
            else:
                target = "/".join(p for p in (prefix, "assembled", row_id) if p)
                if not is_valid_ecr_repository(target):
                    raise _Invalid(
                        ATTR_TARGET_REPOSITORY,
                        f"is needed: the default {_show(target)} (from the id) is not a valid ECR repository name",
                    )
    else:
        assert source is not None
        if not tags and tag_pattern is None:
            raise _Invalid(ATTR_TAGS, "is missing: a source row needs tags, tag_pattern, or both")
        if target is None:
            target = default_target_repository(source, prefix)
    return Row(
        id=row_id,
        source=source,
        tags=tags,
        tag_pattern=tag_pattern,
        keep_latest=keep_latest,
        platforms=platforms,
        target_repository=target,
        arch_tags=arch_tags,
        assemble=assemble,
        enabled=enabled,
    )


def row_to_item(
    row_id: str,
    *,
    source: str | None = None,
    tags: Iterable[str] | None = None,
    tag_pattern: str | None = None,
    keep_latest: int | None = None,
    platforms: Iterable[str] | None = None,
    target_repository: str | None = None,
    arch_tags: bool | None = None,
    assemble: Iterable[str] | None = None,
    enabled: bool | None = None,
    prefix: str = DEFAULT_REPOSITORY_PREFIX,
) -> dict[str, Any]:
    """A plain item for ``put_item`` from CLI arguments, validated like any row.

    Only the attributes given are written (defaults such as the target repository stay
    implicit, so they follow the configured prefix). Empty ``tags``/``platforms`` count as
    not given. Raises :class:`RowError`.
    """
    item: dict[str, Any] = {ATTR_ID: row_id}
    if source is not None:
        item[ATTR_SOURCE] = source
    if tags is not None and not isinstance(tags, str):
        tags = list(tags)
        if tags:
            item[ATTR_TAGS] = tags
    elif tags is not None:
        item[ATTR_TAGS] = tags  # a bare string: let validation name it
    if tag_pattern is not None:
        item[ATTR_TAG_PATTERN] = tag_pattern
    if keep_latest is not None:
        item[ATTR_KEEP_LATEST] = keep_latest
    if platforms is not None and not isinstance(platforms, str):
        platforms = list(platforms)
        if platforms:
            item[ATTR_PLATFORMS] = platforms
    elif platforms is not None:
        item[ATTR_PLATFORMS] = platforms
    if target_repository is not None:
        item[ATTR_TARGET_REPOSITORY] = target_repository
    if arch_tags is not None:
        item[ATTR_ARCH_TAGS] = arch_tags
    if assemble is not None and not isinstance(assemble, str):
        item[ATTR_ASSEMBLE] = list(assemble)
    elif assemble is not None:
        item[ATTR_ASSEMBLE] = assemble
    if enabled is not None:
        item[ATTR_ENABLED] = enabled
    parse_row(item, prefix=prefix)
    return item


def user_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """``item`` without the attributes the service writes (compare these to see if a user changed a row)."""
    return {k: v for k, v in item.items() if k not in SERVICE_ATTRIBUTES}


# ---------------------------------------------------------------- tag selection

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


# ---------------------------------------------------------------- status entries

STATUS_FIELDS = (
    "state",
    "upstream_digest",
    "expected_digest",
    "synced_upstream_digest",
    "target_digest",
    "last_attempt",
    "last_success",
    "bytes_copied",
    "error",
    "fingerprint",
)
#: the keys of every record :meth:`MirrorTable.read_status` returns
STATUS_RECORD_FIELDS = (
    "id",
    "tag",
    "state",
    "upstream_digest",
    "expected_digest",
    "target_digest",
    "last_attempt",
    "last_success",
    "bytes_copied",
    "error",
)
_EXTRA_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-01-02T03:04:05.000006Z`` (sorts as it reads)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))


def _timestamp(value: Any, field: str) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        return value
    raise MirrorError(f"status field {field} must be a datetime or YYYY-MM-DDTHH:MM:SS.ffffffZ, not {_show(value)}")


def status_entry(
    state: str,
    *,
    upstream_digest: str | None = None,
    expected_digest: str | None = None,
    synced_upstream_digest: str | None = None,
    target_digest: str | None = None,
    last_attempt: datetime | str | None = None,
    last_success: datetime | str | None = None,
    bytes_copied: int | None = None,
    error: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Build a status entry for :meth:`MirrorTable.write_status` (``last_attempt`` defaults to now).

    ``upstream_digest``: what upstream pointed at in this attempt; ``expected_digest`` and
    ``synced_upstream_digest``: what the service put at the target and the upstream digest it
    came from, at the last success (carry them over on a failed attempt: fields left None are
    removed); ``target_digest``: what the target held.
    """
    return {
        "state": state,
        "upstream_digest": upstream_digest,
        "expected_digest": expected_digest,
        "synced_upstream_digest": synced_upstream_digest,
        "target_digest": target_digest,
        "last_attempt": last_attempt if last_attempt is not None else now_timestamp(),
        "last_success": last_success,
        "bytes_copied": bytes_copied,
        "error": error,
        "fingerprint": fingerprint,
    }


def _normalise_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Check a status entry; returns it with timestamps as strings and numbers as ints."""
    if not isinstance(entry, Mapping):
        raise MirrorError("a status entry must be a mapping")
    out: dict[str, Any] = {}
    state = entry.get("state")
    if state not in drift.STATES:
        raise MirrorError(f"status state {_show(state)} is not one of {', '.join(drift.STATES)}")
    out["state"] = state
    out["last_attempt"] = _timestamp(entry.get("last_attempt") or now_timestamp(), "last_attempt")
    for key, value in entry.items():
        if key in ("state", "last_attempt"):
            continue
        if not isinstance(key, str) or not _EXTRA_KEY_RE.fullmatch(key):
            raise MirrorError(f"status field name {_show(key)} is not allowed")
        if value is None:
            out[key] = None
        elif key == "last_success":
            out[key] = _timestamp(value, key)
        elif key == "error":
            out[key] = str(value)[:MAX_ERROR_LENGTH]
        elif isinstance(value, bool) or isinstance(value, str):
            out[key] = value if not isinstance(value, str) else value[:MAX_ERROR_LENGTH]
        elif isinstance(value, (int, Decimal)):
            out[key] = int(value)
        elif isinstance(value, datetime):
            out[key] = format_timestamp(value)
        else:
            raise MirrorError(f"status field {key} has unsupported type {_type_name(value)}")
    for key in STATUS_FIELDS:
        out.setdefault(key, None)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def status_records(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flat status records of one item (see :data:`STATUS_RECORD_FIELDS`), sorted by tag.

    An invalid row yields one record with ``tag`` None, ``state`` ``invalid`` and the reason
    in ``error``. A row never synced yields nothing. Malformed status data is skipped.
    """
    row_id = item.get(ATTR_ID)
    out: list[dict[str, Any]] = []
    row_error = item.get(ATTR_ROW_ERROR)
    if isinstance(row_error, str) and row_error:
        record = dict.fromkeys(STATUS_RECORD_FIELDS)
        at = item.get(ATTR_ROW_ERROR_AT)
        record.update(id=row_id, state=drift.INVALID, error=row_error, last_attempt=at if isinstance(at, str) else None)
        out.append(record)
    status = item.get(ATTR_STATUS)
    if isinstance(status, Mapping):
        for tag in sorted(k for k in status if isinstance(k, str)):
            entry = status[tag]
            if not isinstance(entry, Mapping):
                continue
            record = dict.fromkeys(STATUS_RECORD_FIELDS)
            record["id"] = row_id
            record["tag"] = tag
            for key in STATUS_RECORD_FIELDS[2:]:
                record[key] = _plain(entry.get(key))
            out.append(record)
    return out


# ---------------------------------------------------------------- DynamoDB

_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_SECRET_RE = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}|(?i:(?:secret|token|signature|credential)[=:]\s*)\S+")
_TEMPORARY_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def _redact(text: str) -> str:
    return _SECRET_RE.sub("[redacted]", " ".join(str(text).split()))


def _aws_error(exc: Exception, what: str) -> AwsError:
    """Turn a botocore error into :class:`AwsError` (one line, no credentials)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "") or "")
        message = _redact(str(err.get("Message", "") or ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        temporary = code in _TEMPORARY_CODES or (isinstance(status, int) and status >= 500)
        return AwsError(f"DynamoDB {what} failed: {code}: {message}".rstrip(": "), code=code, temporary=temporary)
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        temporary = name in (
            "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"
        )
        return AwsError(f"DynamoDB {what} failed: {_redact(str(exc))}", code=name, temporary=temporary)
    return AwsError(f"DynamoDB {what} failed: {type(exc).__name__}: {_redact(str(exc))}")


_BOTO_ERRORS = (ClientError, BotoCoreError)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class MirrorTable:
    """The mirror table over a boto3 DynamoDB client or resource built by the caller.

    Pass ``boto3.client("dynamodb")``, ``boto3.resource("dynamodb")`` or a resource's
    ``Table`` (not a resource's ``meta.client`` on its own: that converts values itself in
    a way that cannot be told from outside). Items go in and come out as plain Python (str,
    list, dict, Decimal, bool, set), the way boto3's resource layer has them. Every botocore
    error becomes :class:`AwsError`; a dropped status write is a False return, not an error.
    """

    def __init__(self, dynamodb: Any, table_name: str, *, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> None:
        if not isinstance(table_name, str) or not _TABLE_NAME_RE.fullmatch(table_name):
            raise ConfigError(
                f"table name {_show(table_name)} is not valid: 3-255 of letters, digits, '_', '.', '-'"
            )
        meta = getattr(dynamodb, "meta", None)
        resource_client = getattr(meta, "client", None)  # a resource (or Table) has meta.client
        # a resource's client converts plain Python values to and from DynamoDB's typed JSON
        # itself; a plain client does not, and then this class does it
        self._high_level = resource_client is not None
        self._client = resource_client or dynamodb
        self.name = table_name
        self.prefix = _check_prefix(prefix)
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    # -- conversions
    def _to_dynamo(self, value: Any) -> Any:
        value = _for_dynamo(value)
        return value if self._high_level else self._serializer.serialize(value)

    def _key(self, row_id: str) -> dict[str, Any]:
        return {ATTR_ID: self._to_dynamo(row_id)}

    def _item_to_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._to_dynamo(v) for k, v in item.items()}

    def _item_from_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self._high_level:
            return dict(item)
        return {k: self._deserializer.deserialize(v) for k, v in item.items()}

    def _call(self, method: str, **kwargs: Any) -> Any:
        return getattr(self._client, method)(**kwargs)

    # -- the table
    def create(self, *, wait: bool = True) -> bool:
        """Create the table (on demand, stream NEW_AND_OLD_IMAGES); False if it already exists.

        For local and development use; deployed stacks create the table with CDK.
        """
        try:
            self._call(
                "create_table",
                TableName=self.name,
                AttributeDefinitions=[{"AttributeName": ATTR_ID, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": ATTR_ID, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
        except _BOTO_ERRORS as exc:
            if _error_code(exc) == "ResourceInUseException":
                return False
            raise _aws_error(exc, "CreateTable") from exc
        if wait:
            try:
                self._client.get_waiter("table_exists").wait(
                    TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
                )
            except _BOTO_ERRORS as exc:
                raise _aws_error(exc, "waiting for the table") from exc
        return True

    # -- rows
    def put_row(self, item: Mapping[str, Any], *, overwrite: bool = False) -> Row:
        """Validate and write a row. Raises :class:`RowError` if it exists (unless ``overwrite``).

        Service attributes in ``item`` are not written. Overwriting replaces the whole item,
        so the row's recorded status goes too; the next sync records it afresh.
        """
        row = parse_row(item, prefix=self.prefix)
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": self._item_to_dynamo(user_attributes(item))}
        if not overwrite:
            kwargs["ConditionExpression"] = "attribute_not_exists(#id)"
            kwargs["ExpressionAttributeNames"] = {"#id": ATTR_ID}
        try:
            self._call("put_item", **kwargs)
        except _BOTO_ERRORS as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise RowError(
                    f"row {row.id!r}: attribute 'id': a row with this id already exists "
                    "(overwrite it, or remove it first)",
                    attribute=ATTR_ID,
                ) from None
            raise _aws_error(exc, "PutItem") from exc
        return row

    def delete_row(self, row_id: str) -> bool:
        """Delete a row (and its status); False if there was none."""
        try:
            response = self._call(
                "delete_item",
                TableName=self.name,
                Key=self._key(row_id),
                ReturnValues="ALL_OLD",
            )
        except _BOTO_ERRORS as exc:
            raise _aws_error(exc, "DeleteItem") from exc
        return bool(response.get("Attributes"))

    def get_row(self, row_id: str) -> dict[str, Any] | None:
        """The raw item (plain Python, status included) or None."""
        try:
            response = self._call(
                "get_item", TableName=self.name, Key=self._key(row_id), ConsistentRead=True
            )
        except _BOTO_ERRORS as exc:
            raise _aws_error(exc, "GetItem") from exc
        item = response.get("Item")
        return self._item_from_dynamo(item) if item else None

    def scan_rows(self, *, consistent: bool = False, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item in the table (paginated), raw, status included."""
        pagination = {"PageSize": page_size} if page_size else {}
        try:
            paginator = self._client.get_paginator("scan")
            for page in paginator.paginate(TableName=self.name, ConsistentRead=consistent, PaginationConfig=pagination):
                for item in page.get("Items", []):
                    yield self._item_from_dynamo(item)
        except _BOTO_ERRORS as exc:
            raise _aws_error(exc, "Scan") from exc

    def scan_parsed(self, *, consistent: bool = False) -> Iterator[tuple[dict[str, Any], Row | None, RowError | None]]:
        """``(item, row, None)`` for each valid row, ``(item, None, error)`` for each invalid one."""
        for item in self.scan_rows(consistent=consistent):
            try:
                yield item, parse_row(item, prefix=self.prefix), None
            except RowError as exc:
                yield item, None, exc

    # -- status
    def write_status(self, row_id: str, tag: str, entry: Mapping[str, Any]) -> bool:
        """Record the status of one tag. Returns False if the write was dropped.

        A write is dropped (not an error) when the stored entry for ``tag`` has a
        ``last_attempt`` at least as new as ``entry``'s (another worker got there first), or
        when the row no longer exists. Only ``status.<tag>`` fields are touched: fields that
        are None are removed, except ``last_success``, which a failed attempt keeps.
        """
        values = _normalise_entry(entry)
        names = {"#s": ATTR_STATUS, "#t": tag, "#id": ATTR_ID, "#la": "last_attempt"}
        expr_values: dict[str, Any] = {":la": self._to_dynamo(values["last_attempt"])}
        sets: list[str] = []
        removes: list[str] = []
        for i, (key, value) in enumerate(sorted(values.items())):
            if value is None:
                if key != "last_success":
                    names[f"#f{i}"] = key
                    removes.append(f"#s.#t.#f{i}")
                continue
            names[f"#f{i}"] = key
            expr_values[f":v{i}"] = self._to_dynamo(value)
            sets.append(f"#s.#t.#f{i} = :v{i}")
        update = "SET " + ", ".join(sets)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        kwargs = {
            "TableName": self.name,
            "Key": self._key(row_id),
            "UpdateExpression": update,
            "ConditionExpression": "attribute_exists(#id) AND (attribute_not_exists(#s.#t.#la) OR #s.#t.#la < :la)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": expr_values,
        }
        for attempt in (1, 2):
            try:
                self._call("update_item", **kwargs)
                return True
            except _BOTO_ERRORS as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return False
                if code == "ValidationException" and attempt == 1:
                    # the status map or this tag's entry does not exist yet: create them, then retry
                    if not self._ensure_status_entry(row_id, tag):
                        return False
                    continue
                raise _aws_error(exc, "UpdateItem (status)") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_status_entry(self, row_id: str, tag: str) -> bool:
        """``SET status = if_not_exists(status, {})``, then the same for ``status.<tag>``; False if the row is gone."""
        steps = (
            ("SET #s = if_not_exists(#s, :empty)", {"#s": ATTR_STATUS, "#id": ATTR_ID}),
            ("SET #s.#t = if_not_exists(#s.#t, :empty)", {"#s": ATTR_STATUS, "#t": tag, "#id": ATTR_ID}),
        )
        for update, names in steps:
            try:
                self._call(
                    "update_item",
                    TableName=self.name,
                    Key=self._key(row_id),
                    UpdateExpression=update,
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":empty": self._to_dynamo({})},
                )
            except _BOTO_ERRORS as exc:
                if _error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise _aws_error(exc, "UpdateItem (status)") from exc
        return True

    def prune_status(self, row_id: str, keep_tags: Iterable[str]) -> list[str]:
        """Remove status entries of tags not in ``keep_tags`` (no longer selected); returns the removed tags."""
        item = self.get_row(row_id)
        status = item.get(ATTR_STATUS) if item else None
        if not isinstance(status, Mapping):
            return []
        keep = set(keep_tags)
        stale = sorted(t for t in status if t not in keep)
        for start in range(0, len(stale), 50):
            chunk = stale[start : start + 50]
            names = {"#s": ATTR_STATUS, "#id": ATTR_ID}
            names.update({f"#t{i}": t for i, t in enumerate(chunk)})
            try:
                self._call(
                    "update_item",
                    TableName=self.name,
                    Key=self._key(row_id),
                    UpdateExpression="REMOVE " + ", ".join(f"#s.#t{i}" for i in range(len(chunk))),
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames=names,
                )
            except _BOTO_ERRORS as exc:
                if _error_code(exc) == "ConditionalCheckFailedException":
                    return []
                raise _aws_error(exc, "UpdateItem (status)") from exc
        return stale

    def write_invalid(self, row_id: str, message: str) -> bool:
        """Mark a row invalid (``row_error``) with ``message``; False if the row is gone."""
        try:
            self._call(
                "update_item",
                TableName=self.name,
                Key=self._key(row_id),
                UpdateExpression="SET #e = :e, #at = :at",
                ConditionExpression="attribute_exists(#id)",
                ExpressionAttributeNames={"#e": ATTR_ROW_ERROR, "#at": ATTR_ROW_ERROR_AT, "#id": ATTR_ID},
                ExpressionAttributeValues={
                    ":e": self._to_dynamo(" ".join(str(message).split())[:MAX_ERROR_LENGTH] or "invalid"),
                    ":at": self._to_dynamo(now_timestamp()),
                },
            )
        except _BOTO_ERRORS as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _aws_error(exc, "UpdateItem (row_error)") from exc
        return True

    def clear_invalid(self, row_id: str) -> bool:
        """Remove ``row_error`` from a row that validates again; False if there was none (or no row)."""
        try:
            self._call(
                "update_item",
                TableName=self.name,
                Key=self._key(row_id),
                UpdateExpression="REMOVE #e, #at",
                ConditionExpression="attribute_exists(#e)",
                ExpressionAttributeNames={"#e": ATTR_ROW_ERROR, "#at": ATTR_ROW_ERROR_AT},
            )
        except _BOTO_ERRORS as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _aws_error(exc, "UpdateItem (row_error)") from exc
        return True

    def read_status(self, row_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Flat status records of every row (or of ``row_ids``), sorted by id then tag.

        Each record has the keys :data:`STATUS_RECORD_FIELDS`; see :func:`status_records`.
        """
        if row_ids is None:
            items: Iterable[dict[str, Any]] = self.scan_rows(consistent=True)
        else:
            items = [i for i in (self.get_row(r) for r in row_ids) if i is not None]
        records = [r for item in items for r in status_records(item)]
        records.sort(key=lambda r: (str(r["id"]), r["tag"] is not None, r["tag"] or ""))
        return records


def _for_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB numbers); tuples lists; the rest as is."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _for_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_for_dynamo(v) for v in value]
    return value
