"""Tag-pattern safety: compile a row's ``tag_pattern``, refusing regexes that could backtrack badly. Pure.

A pattern is matched with ``fullmatch`` against every tag an upstream lists, so a pattern that
backtracks catastrophically on a hostile tag would stall a sync. :func:`compile_tag_pattern`
parses the pattern with Python's own regex parser (``re._parser``, Python 3.11+) and analyses the
tree over the tag alphabet (OCI distribution spec, "Pulling manifests": tags are at most 128
characters of ``[A-Za-z0-9_.-]``); see :class:`_PatternAnalysis` for what is refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

from .errors import RowError, shown
from .reference import MAX_TAG_LENGTH

#: the row attribute this module validates
ATTR_TAG_PATTERN = "tag_pattern"
MAX_TAG_PATTERN_LENGTH = 256

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
    """Internal: the analysis found a shape that could backtrack badly (turned into :class:`RowError`)."""


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
    """One element of a flattened sequence: its repeat weight, whether it must match, its characters,
    and the optional parts it sits in."""

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
        raise RowError(f"invalid tag_pattern {shown(pattern)}: not a string", attribute=ATTR_TAG_PATTERN)
    return _compile_tag_pattern(pattern)


@functools.lru_cache(maxsize=256)
def _compile_tag_pattern(pattern: str) -> re.Pattern[str]:
    def bad(message: str) -> RowError:
        return RowError(f"invalid tag_pattern {shown(pattern)}: {message}", attribute=ATTR_TAG_PATTERN,
                        detail=f"pattern {shown(pattern)}: {message}")

    if not pattern:
        raise bad("empty")
    if len(pattern) > MAX_TAG_PATTERN_LENGTH:
        raise bad(f"{len(pattern)} characters long, over the limit of {MAX_TAG_PATTERN_LENGTH}")
    try:
        compiled = re.compile(pattern, re.ASCII)
        parsed = _sre_parse.parse(pattern, re.ASCII)
    except (re.error, OverflowError, RecursionError, ValueError, TypeError) as exc:
        raise bad(f"not a valid regular expression: {exc}") from exc
    try:
        _PatternAnalysis(bool(parsed.state.flags & re.IGNORECASE)).check(parsed)
    except _Unsafe as exc:
        raise bad(str(exc)) from exc
    except RecursionError as exc:
        raise bad("nested too deeply") from exc
    return compiled
