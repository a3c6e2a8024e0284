"""Rows as code: the rows file (``ecr-mirror apply -f mirror.yaml``, ``ecr-mirror export``). Pure: no I/O.

A rows file is what platform teams keep in git: the mirror table as a list of sources. This module
loads it (:func:`load_rows_yaml`, or :func:`parse_rows_document` for data already loaded, e.g. from
JSON), validates every entry before anything is written, plans the changes that make a table match it
(:func:`plan_changes`), and writes a table back as a file (:func:`export_document`,
:func:`dump_rows_yaml`). Reading and writing the table is the caller's (the CLI's) part.

The format::

    version: 1                      # optional; 1 is the only version
    defaults:                       # optional: values for entries that do not set the attribute
      platforms: [linux/amd64, linux/arm64]
    sources:
      - id: golang                  # optional: derived from source (+ target_repository) when absent
        source: docker.io/library/golang
        tags: ["1.22", "1.23@sha256:<64 hex>"]
        tag_patterns: ['1\\.2[0-9]\\.[0-9]+']
        exclude_patterns: ['.*-rc.*']
        versions: ">=1.21 <2"
        keep_latest: 5
        arch_tags: true

- Entries take every row attribute of :mod:`ecr_mirror.rows` (``id``, ``source`` or ``assemble``,
  ``tags``, ``digests``, ``tag_pattern``/``tag_patterns``, ``exclude_patterns``, ``versions``,
  ``keep_latest``, ``platforms``, ``target_repository``, ``arch_tags``, ``allow_nondistributable_artifacts``,
  ``referrers``, ``enabled``) and validate exactly as rows do. A bare list of entries is a file without defaults.
- ``defaults`` may set :data:`DEFAULTABLE`; an entry that sets the attribute (to ``null`` too: "not
  set, no default") keeps its own. ``platforms`` defaults apply to source entries only.
- Keys starting with ``x-`` are ignored, at the top and in entries (for YAML anchors, as in regsync).
- A missing ``id`` is derived: source entries ``<source repository>`` (``docker.io/library/golang``),
  plus ``+<target_repository>`` when that is given; assemble entries ``<repository>:<tag>`` from
  references of one repository, or ``<target_repository>:<tag>``. Two entries that derive the same id
  are an error: give them ids.
- YAML scalars are read by what the attribute needs, never by YAML 1.1's guesses: in a string
  attribute ``1.20`` is the text ``1.20`` (not the number 1.2), ``no`` is ``no``, ``2024-01-01`` is text;
  booleans are ``true``/``false`` only (``yes``/``no``/``on``/``off`` are refused: YAML 1.1 and 1.2
  disagree on them); numbers are plain digits. ``null``, ``~`` or nothing means "not set".
- Two entries that write the same target repository and explicit tag are an error
  (:func:`ecr_mirror.rows.find_overlaps`); entries that may overlap through patterns are a warning.

Every problem is one line naming the file, the line, the entry (index and id) and the attribute, e.g.
``mirror.yaml:12: entry 3 (id 'golang'): attribute 'tags': entry 1: invalid tag '1.2 '…``; all are
collected and raised together as :class:`~ecr_mirror.errors.RowsFileError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .config import DEFAULT_REPOSITORY_PREFIX
from .errors import ConfigError, ReferenceError_, RowError, RowsFileError, shown
from .rows import (
    ATTR_ALLOW_NONDISTRIBUTABLE,
    ATTR_ARCH_TAGS,
    ATTR_ASSEMBLE,
    ATTR_DIGESTS,
    ATTR_ENABLED,
    ATTR_EXCLUDE_PATTERNS,
    ATTR_ID,
    ATTR_KEEP_LATEST,
    ATTR_PLATFORMS,
    ATTR_REFERRERS,
    ATTR_SOURCE,
    ATTR_TAG_PATTERN,
    ATTR_TAG_PATTERNS,
    ATTR_TAGS,
    ATTR_TARGET_REPOSITORY,
    ATTR_VERSIONS,
    USER_ATTRIBUTES,
    Row,
    check_prefix,
    find_overlaps,
    is_valid_id,
    parse_row,
    type_name,
    user_attributes,
)
from .reference import parse_reference, parse_repository

FORMAT_VERSION = 1
#: properties of the stack's rows custom resource (infra/rows.py sets them, ecr_mirror.handlers.rows reads them):
#: the rows as a JSON rows document (:func:`rows_json`), and the file's name for messages
PROPERTY_ROWS = "RowsFile"
PROPERTY_FILE_NAME = "FileName"
#: top-level keys of a rows file (besides ``x-*``)
TOP_LEVEL_KEYS = ("version", "defaults", "sources")
#: attributes ``defaults`` may set
DEFAULTABLE = (ATTR_PLATFORMS, ATTR_ARCH_TAGS, ATTR_ALLOW_NONDISTRIBUTABLE, ATTR_REFERRERS, ATTR_ENABLED)
#: largest rows file read, in bytes
MAX_FILE_BYTES = 16 * 1024 * 1024
#: most problems listed before "and N more"
MAX_PROBLEMS = 50

_STRING, _STRINGS, _BOOL, _INT, _DIGESTS, _ANY = "string", "strings", "bool", "int", "digests", "any"
#: what each attribute's YAML value is read as
_KINDS = {
    ATTR_ID: _STRING, ATTR_SOURCE: _STRING, ATTR_TAG_PATTERN: _STRING, ATTR_VERSIONS: _STRING,
    ATTR_TARGET_REPOSITORY: _STRING, ATTR_ASSEMBLE: _STRINGS, ATTR_TAGS: _STRINGS, ATTR_TAG_PATTERNS: _STRINGS,
    ATTR_EXCLUDE_PATTERNS: _STRINGS, ATTR_PLATFORMS: _STRINGS, ATTR_DIGESTS: _DIGESTS, ATTR_KEEP_LATEST: _INT,
    ATTR_ARCH_TAGS: _BOOL, ATTR_ALLOW_NONDISTRIBUTABLE: _BOOL, ATTR_REFERRERS: _BOOL, ATTR_ENABLED: _BOOL,
}
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_YAML_TRUE = frozenset({"true", "True", "TRUE"})
_YAML_FALSE = frozenset({"false", "False", "FALSE"})
_YAML_11_BOOLS = frozenset({"yes", "no", "on", "off", "y", "n"})
_STANDARD_TAG = "tag:yaml.org,2002:"
_MAX_NODES = 1_000_000
_MAX_DEPTH = 32


def _is_extension(key: Any) -> bool:
    return isinstance(key, str) and key.startswith("x-")


# ---------------------------------------------------------------- loading YAML


@dataclass(frozen=True)
class Unreadable:
    """A value the YAML reader could not take as its attribute needs; ``message`` says why."""

    message: str


@dataclass
class LoadedDocument:
    """A rows file as plain data (``data``) and where things are in it (``lines``: 1-based line numbers,
    keyed ``("top", key)``, ``("defaults", attribute)``, ``("entry", index)``, ``("entry", index, attribute)``)."""

    data: Any
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)


class _YamlReader:
    """Composes YAML into nodes and reads them by the kind each attribute needs (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[tuple[Any, ...], int] = {}
        self.budget = _MAX_NODES

    def load(self, text: str) -> LoadedDocument:
        import yaml  # only the CLI reads YAML; the Lambda never imports this function

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            root = yaml.compose(text, Loader=loader)
        except yaml.YAMLError as exc:
            raise RowsFileError([self._yaml_problem(exc, text)]) from exc
        except RecursionError as exc:
            raise RowsFileError([f"{self.name}: nested too deeply"]) from exc
        if root is None:
            raise RowsFileError([f"{self.name}: is empty: expected a list of sources, or a map with 'sources'"])
        try:
            return LoadedDocument(self._top(root), self.lines)
        except _TooBig as exc:
            raise RowsFileError([f"{self.name}: {exc}"]) from exc

    def _yaml_problem(self, exc: Any, text: str) -> str:
        mark = getattr(exc, "problem_mark", None)
        problem = ": ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        problem = problem or str(exc)
        where = f"{self.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else self.name
        hint = ""
        if mark is not None:
            line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
            if re.search(r":\s*[>!|%@`]", line):
                hint = " (a value starting with > ! | % @ or ` must be quoted, e.g. versions: \">=1.21 <2\")"
        return f"{where}: not valid YAML: {' '.join(str(problem).split())}{hint}"

    # -- nodes
    def _spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig(f"too many values (over {_MAX_NODES}, counting aliases each time they are used)")

    @staticmethod
    def _line(node: Any) -> int:
        return node.start_mark.line + 1

    def _pairs(self, node: Any, depth: int = 0) -> dict[str, tuple[Any, Any]] | str:
        """A mapping node's ``{key: (key node, value node)}`` with ``<<`` merges applied, or a problem."""
        import yaml

        if depth > _MAX_DEPTH:
            return "merges (<<) nested too deeply"
        own: dict[str, tuple[Any, Any]] = {}
        merged: dict[str, tuple[Any, Any]] = {}
        for key, value in node.value:
            self._spend()
            if key.tag == _STANDARD_TAG + "merge":
                sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        return "a merge (<<) must name a map, or a list of maps"
                    pairs = self._pairs(source, depth + 1)
                    if isinstance(pairs, str):
                        return pairs
                    for k, v in pairs.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key, yaml.ScalarNode):
                return f"line {self._line(key)}: keys must be plain names, not a {_node_kind(key)}"
            if key.value in own:
                return f"line {self._line(key)}: key {shown(key.value)} is given twice"
            own[key.value] = (key, value)
        return {**merged, **own}

    def _top(self, root: Any) -> Any:
        import yaml

        if isinstance(root, yaml.SequenceNode):
            return self._entries(root)
        if not isinstance(root, yaml.MappingNode):
            return Unreadable(f"must be a list of sources, or a map with 'sources', not a {_node_kind(root)}")
        pairs = self._pairs(root)
        if isinstance(pairs, str):
            return Unreadable(pairs)
        out: dict[str, Any] = {}
        for key, (key_node, value) in pairs.items():
            self.lines[("top", key)] = self._line(key_node)
            if key == "sources" and isinstance(value, yaml.SequenceNode):
                out[key] = self._entries(value)
            elif key == "defaults" and isinstance(value, yaml.MappingNode):
                out[key] = self._attributes(value, ("defaults",))
            elif key == "version":
                out[key] = self._value(value, _INT, ())
            else:
                out[key] = self._value(value, _ANY, ())
        return out

    def _entries(self, node: Any) -> list[Any]:
        import yaml

        entries: list[Any] = []
        for index, child in enumerate(node.value, 1):
            self._spend()
            self.lines[("entry", index)] = self._line(child)
            if isinstance(child, yaml.MappingNode):
                entries.append(self._attributes(child, ("entry", index)))
            else:
                entries.append(self._value(child, _ANY, ()))
        return entries

    def _attributes(self, node: Any, where: tuple[Any, ...]) -> dict[str, Any] | Unreadable:
        pairs = self._pairs(node)
        if isinstance(pairs, str):
            return Unreadable(pairs)
        out: dict[str, Any] = {}
        for key, (key_node, value) in pairs.items():
            self.lines[(*where, key)] = self._line(key_node)
            if not _is_extension(key):
                out[key] = self._value(value, _KINDS.get(key, _ANY), ())
        return out

    def _value(self, node: Any, kind: str, active: tuple[int, ...]) -> Any:
        """The plain value of ``node`` read as ``kind``, or an :class:`Unreadable` saying why not."""
        import yaml

        self._spend()
        if id(node) in active or len(active) > _MAX_DEPTH:
            return Unreadable("refers to itself (a YAML alias inside its own anchor), or is nested too deeply")
        active = (*active, id(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, kind)
        if kind in (_STRING, _BOOL, _INT):
            return Unreadable(f"must be {_KIND_NAMES[kind]}, not a {_node_kind(node)}")
        if isinstance(node, yaml.SequenceNode):
            item_kind = _STRING if kind in (_STRINGS, _DIGESTS) else _ANY
            return [self._value(child, item_kind, active) for child in node.value]
        if kind == _STRINGS:
            return Unreadable(f"must be a list of strings, not a {_node_kind(node)}")
        pairs = self._pairs(node)
        if isinstance(pairs, str):
            return Unreadable(pairs)
        item_kind = _STRING if kind == _DIGESTS else _ANY
        return {key: self._value(value, item_kind, active) for key, (_, value) in pairs.items()}

    def _scalar(self, node: Any, kind: str) -> Any:
        text, plain = node.value, not node.style  # the C loader gives plain scalars the style "", the Python one None
        if not node.tag.startswith(_STANDARD_TAG) and node.tag != "!":
            return Unreadable(f"uses the YAML tag {shown(node.tag)}: quote the value "
                              f"(a value starting with ! must be quoted, e.g. versions: \"!=1.2\")")
        if plain and text in _YAML_NULLS:
            return None
        if kind in (_STRING, _STRINGS, _DIGESTS):
            if kind == _STRING or not plain:
                return text
            return Unreadable(f"must be a list (e.g. [{text}]), not the single value {shown(text)}")
        if kind == _BOOL:
            if plain and text in _YAML_TRUE:
                return True
            if plain and text in _YAML_FALSE:
                return False
            if plain and text.lower() in _YAML_11_BOOLS:
                return Unreadable(f"must be true or false, not {shown(text)} (YAML 1.1 reads {text} as a boolean, "
                                  "YAML 1.2 as a string: write true or false)")
            return Unreadable(f"must be a boolean (true/false), not {'the string ' if not plain else ''}{shown(text)}")
        if kind == _INT:
            if plain and re.fullmatch(r"[0-9]{1,30}", text):
                return int(text)
            return Unreadable(f"must be a whole number, not {'the string ' if not plain else ''}{shown(text)}")
        # _ANY: what YAML 1.2's core schema makes of it (only for keys this format does not know)
        if plain and text in _YAML_TRUE | _YAML_FALSE:
            return text in _YAML_TRUE
        if plain and re.fullmatch(r"-?[0-9]{1,30}", text):
            return int(text)
        return text


class _TooBig(Exception):
    """Internal: the document spends more than the node budget."""


_KIND_NAMES = {_STRING: "a string", _BOOL: "a boolean (true/false)", _INT: "a whole number"}


def _node_kind(node: Any) -> str:
    name = type(node).__name__
    return {"MappingNode": "map", "SequenceNode": "list", "ScalarNode": "single value"}.get(name, name)


def load_rows_yaml(text: str | bytes, *, name: str = "rows file", prefix: str = DEFAULT_REPOSITORY_PREFIX) -> RowsFile:
    """Load and validate a rows file from YAML text (see the module docstring).

    Needs PyYAML (the CLI's dependency, not the Lambda's). Raises :class:`RowsFileError` listing every
    problem; :class:`ConfigError` when PyYAML is missing or ``prefix`` is invalid.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise RowsFileError([f"{name}: is {len(text)} bytes, over the limit of {MAX_FILE_BYTES}"])
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RowsFileError([f"{name}: is not UTF-8 text (byte {exc.start})"]) from exc
    if len(text) > MAX_FILE_BYTES:
        raise RowsFileError([f"{name}: is {len(text)} characters long, over the limit of {MAX_FILE_BYTES}"])
    try:
        import yaml  # noqa: F401
    except ImportError as exc:
        raise ConfigError("reading a rows file needs PyYAML (pip install pyyaml)") from exc
    loaded = _YamlReader(name).load(text)
    return parse_rows_document(loaded.data, name=name, prefix=prefix, lines=loaded.lines)


def rows_json(rows_file: RowsFile) -> str:
    """A validated rows file as a JSON rows document (``{"version": 1, "sources": [...]}``): each entry as
    the row it writes (defaults applied, id filled in; :func:`canonical_item`). What the stack hands its
    rows custom resource (infra/rows.py): the Lambda functions have no YAML reader, and a change of
    comments or layout is no change. :func:`load_rows_json` reads it back to the same rows."""
    document = {"version": FORMAT_VERSION, "sources": [canonical_item(e.item) for e in rows_file.entries]}
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))


def load_rows_json(text: str, *, name: str = "rows file", prefix: str = DEFAULT_REPOSITORY_PREFIX) -> RowsFile:
    """Load and validate a rows document from JSON text (:func:`parse_rows_document`). Raises
    :class:`RowsFileError` (not JSON, or not a valid rows document)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RowsFileError([f"{name}: is not JSON ({exc})"]) from exc
    return parse_rows_document(data, name=name, prefix=prefix)


# ---------------------------------------------------------------- validating a document


@dataclass(frozen=True)
class Entry:
    """One validated entry: ``index`` (1-based), ``item`` (the row item to write: defaults applied, id
    filled in), ``row`` (it, parsed), ``derived_id`` (the id was not written but derived)."""

    index: int
    item: dict[str, Any]
    row: Row
    derived_id: bool = False


@dataclass(frozen=True)
class RowsFile:
    """A validated rows file: its entries in file order, and ``warnings`` (one line each)."""

    name: str
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()


def derive_id(entry: Mapping[str, Any]) -> str | None:
    """The id of an entry that gives none (see the module docstring), or None if it cannot be derived."""
    target = entry.get(ATTR_TARGET_REPOSITORY)
    target = target if isinstance(target, str) and target else None
    source, assemble, tags = entry.get(ATTR_SOURCE), entry.get(ATTR_ASSEMBLE), entry.get(ATTR_TAGS)
    suffix = f"+{target}" if target else ""
    try:
        if isinstance(source, str) and assemble is None:
            return parse_repository(source).name + suffix
        if not (isinstance(assemble, list) and assemble and isinstance(tags, list) and len(tags) == 1
                and isinstance(tags[0], str) and all(isinstance(r, str) for r in assemble)):
            return None
        repositories = sorted({parse_reference(r, default_tag=None).name for r in assemble})
    except ReferenceError_:
        return None
    if len(repositories) == 1:
        return f"{repositories[0]}:{tags[0]}{suffix}"
    return f"{target}:{tags[0]}" if target else None


class _Problems:
    """Collects one-line problems: ``<file>:<line>: <where>: <message>``."""

    def __init__(self, name: str, lines: Mapping[tuple[Any, ...], int]) -> None:
        self.name = name
        self.lines = lines
        self.found: list[str] = []

    def add(self, key: tuple[Any, ...], message: str, *, fallback: tuple[Any, ...] | None = None) -> None:
        line = self.lines.get(key) or (self.lines.get(fallback) if fallback else None)
        self.found.append(f"{self.name}{f':{line}' if line else ''}: {message}")


def unreadable(value: Any) -> str | None:
    """Why ``value`` (or something inside it) could not be read from YAML, or None: ``entry 2: must be …``."""
    if isinstance(value, Unreadable):
        return value.message
    if isinstance(value, list):
        for i, v in enumerate(value, 1):
            if (message := unreadable(v)) is not None:
                return f"entry {i}: {message}"
    if isinstance(value, Mapping):
        for k, v in value.items():
            if (message := unreadable(v)) is not None:
                return f"{shown(k, 60)}: {message}"
    return None


def _entry_label(index: int, entry: Any, derived: str | None) -> str:
    given = entry.get(ATTR_ID) if isinstance(entry, Mapping) else None
    if isinstance(given, str) and given:
        return f"entry {index} (id {shown(given, 80)})"
    if derived:
        return f"entry {index} (derived id {shown(derived, 80)})"
    return f"entry {index}"


def parse_rows_document(
    data: Any, *, name: str = "rows file", prefix: str = DEFAULT_REPOSITORY_PREFIX,
    lines: Mapping[tuple[Any, ...], int] | None = None,
) -> RowsFile:
    """Validate a rows document already loaded as plain data (YAML through :func:`load_rows_yaml`, or JSON).

    Every entry is validated before anything is returned; raises :class:`RowsFileError` listing every
    problem (bad shape, bad defaults, invalid entries, duplicate ids, two entries writing the same
    target repository and explicit tag). ``lines`` (from :class:`LoadedDocument`) adds line numbers.
    """
    prefix = check_prefix(prefix)
    problems = _Problems(name, lines or {})
    entries_data, defaults = _document_parts(data, problems)
    entries: list[Entry] = []
    for index, raw in enumerate(entries_data, 1):
        entry = _parse_entry(index, raw, defaults, prefix, problems)
        if entry is not None:
            entries.append(entry)
    first_of: dict[str, Entry] = {}
    for entry in entries:
        row_id = entry.row.id
        if row_id in first_of:
            other = first_of[row_id]
            how = " (derived from source and target_repository: give them ids)" if entry.derived_id else ""
            problems.add(("entry", entry.index, ATTR_ID), f"entry {entry.index}: attribute 'id': {row_id!r} is "
                         f"already the id of entry {other.index}{how}", fallback=("entry", entry.index))
        else:
            first_of[row_id] = entry
    by_id = {e.row.id: e for e in entries}
    for overlap in find_overlaps(e.row for e in entries):
        if overlap.tag is not None:
            a, b = by_id[overlap.row_id], by_id[overlap.other_id]
            problems.add(("entry", b.index), f"entries {a.index} and {b.index}: {overlap.describe()}; "
                         "each target repository and tag may be written by one entry only")
    if problems.found:
        raise RowsFileError(_capped(problems.found))
    return RowsFile(name, tuple(entries))


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]


def _document_parts(data: Any, problems: _Problems) -> tuple[list[Any], dict[str, Any]]:
    """``(entries, defaults)`` of a document, problems of its shape recorded."""
    if isinstance(data, Unreadable):
        problems.add((), data.message)
        return [], {}
    if isinstance(data, list):
        return data, {}
    if not isinstance(data, Mapping):
        problems.add((), f"must be a list of sources, or a map with 'sources', not a {type_name(data)}")
        return [], {}
    for key in data:
        if not _is_extension(key) and key not in TOP_LEVEL_KEYS:
            problems.add(("top", key), f"unknown key {shown(key, 60)} (known: {', '.join(TOP_LEVEL_KEYS)}; "
                         "keys starting with x- are ignored)")
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or version != FORMAT_VERSION):
        shown_version = version.message if isinstance(version, Unreadable) else shown(version)
        problems.add(("top", "version"), f"version: only version {FORMAT_VERSION} is known, not {shown_version}")
    entries = data.get("sources")
    if not isinstance(entries, list):
        what = "is missing" if entries is None else f"must be a list of entries, not a {type_name(entries)}"
        problems.add(("top", "sources"), f"sources: {what}")
        entries = []
    defaults = data.get("defaults")
    if defaults is None:
        return entries, {}
    if not isinstance(defaults, Mapping):
        problems.add(("top", "defaults"), f"defaults: must be a map of attributes, not a {type_name(defaults)}")
        return entries, {}
    checked: dict[str, Any] = {}
    for key, value in defaults.items():
        where = ("defaults", key)
        if key not in DEFAULTABLE:
            problems.add(where, f"defaults: attribute {shown(key, 60)}: cannot have a default "
                         f"(can: {', '.join(DEFAULTABLE)})")
        elif unreadable(value) is not None:
            problems.add(where, f"defaults: attribute {key!r}: {unreadable(value)}")
        elif value is not None:
            try:  # validated as a row would validate it
                parse_row({ATTR_ID: "defaults", ATTR_SOURCE: "defaults", ATTR_TAGS: ["defaults"], key: value})
            except RowError as exc:
                problems.add(where, f"defaults: attribute {key!r}: {exc.detail}")
            else:
                checked[key] = value
    return entries, checked


def _parse_entry(index: int, raw: Any, defaults: Mapping[str, Any], prefix: str, problems: _Problems) -> Entry | None:
    where = ("entry", index)
    if isinstance(raw, Unreadable) or not isinstance(raw, Mapping):
        problems.add(where, f"entry {index}: must be a map of attributes, not "
                     f"{raw.message if isinstance(raw, Unreadable) else 'a ' + type_name(raw)}")
        return None
    raw = {k: v for k, v in raw.items() if not _is_extension(k)}
    derived = derive_id(raw) if raw.get(ATTR_ID) is None else None
    label = _entry_label(index, raw, derived)
    bad = [(k, message) for k, v in raw.items() if (message := unreadable(v)) is not None]
    for key, message in bad:
        problems.add((*where, key), f"{label}: attribute {shown(key, 60)}: {message}", fallback=where)
    if bad:
        return None
    item = dict(raw)
    for key, value in defaults.items():
        if key not in item and not (key == ATTR_PLATFORMS and item.get(ATTR_ASSEMBLE) is not None):
            item[key] = value
    item = {k: v for k, v in item.items() if v is not None}
    if ATTR_ID not in item:  # validated under a stand-in id when none can be derived (reported below)
        item = {ATTR_ID: derived if is_valid_id(derived) else f"entry-{index}", **item}
    try:
        row = parse_row(item, prefix=prefix)
    except RowError as exc:
        problems.add((*where, exc.attribute), f"{label}: attribute {exc.attribute!r}: {exc.detail}", fallback=where)
        return None
    if raw.get(ATTR_ID) is None:
        if derived is None:
            problems.add(where, f"{label}: attribute 'id': is needed (it cannot be derived: an assemble entry's "
                         "references come from several repositories, and it gives no target_repository)")
            return None
        if not is_valid_id(derived):
            problems.add(where, f"{label}: attribute 'id': is needed (the id derived from source and "
                         f"target_repository, {shown(derived)}, is not a valid id)")
            return None
    return Entry(index, item, row, derived_id=raw.get(ATTR_ID) is None)


# ---------------------------------------------------------------- the plan: what makes the table match


_ABSENT = "(absent)"


def canonical(value: Any) -> Any:
    """``value`` as the file shows it: integral Decimals as ints, sets as sorted lists, tuples as lists,
    maps with sorted keys; the rest unchanged."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else value
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: (type(v).__name__, str(v)))
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    return value


def canonical_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """What an owner wrote into a row (:func:`~ecr_mirror.rows.user_attributes`), canonical, without nulls,
    in :data:`~ecr_mirror.rows.USER_ATTRIBUTES` order (unknown attributes last, sorted)."""
    attrs = {k: canonical(v) for k, v in user_attributes(item).items() if v is not None}
    order = [k for k in USER_ATTRIBUTES if k in attrs] + sorted(k for k in attrs if k not in USER_ATTRIBUTES)
    return {k: attrs[k] for k in order}


def show_value(value: Any) -> str:
    """A value as one line of plain text: JSON, so control characters and markup arrive escaped."""
    if value is _ABSENT:
        return _ABSENT
    return json.dumps(canonical(value), ensure_ascii=True, default=str)


def _same(a: Any, b: Any) -> bool:
    """Equal as stored: ``true`` is not ``1``, list order counts, map order does not."""
    return show_value(a) == show_value(b)


def _show_id(row_id: Any) -> str:
    return row_id if is_valid_id(row_id) else show_value(row_id)


def _show_name(name: str) -> str:
    """An attribute name as text: as it is when it is a plain name, else quoted and escaped."""
    return name if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) else show_value(name)


@dataclass(frozen=True)
class AttributeChange:
    """One attribute of a changed row: ``before``/``after`` are the values, or ``"(absent)"``."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RowChange:
    """``action``: ``add``, ``change``, ``delete`` (``--prune``) or ``keep`` (in the table, not in the file,
    left as it is). ``item``: what to write (add, change); ``changes``: attribute by attribute."""

    action: str
    row_id: str
    item: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    changes: tuple[AttributeChange, ...] = ()


@dataclass
class Plan:
    """What :func:`plan_changes` found: the changes in order (adds and changes in file order, then deletes
    or keeps by id), the ids left unchanged, ``problems`` (refuse to apply) and ``warnings``."""

    changes: list[RowChange]
    unchanged: list[str]
    problems: list[str]
    warnings: list[str]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def writes(self) -> list[RowChange]:
        """The changes that write the table (add, change, delete), in the order to make them."""
        return [c for c in self.changes if c.action != "keep"]

    def lines(self) -> Iterator[str]:
        """The diff as text: ``+ id`` added (every attribute), ``~ id`` changed (attribute by attribute),
        ``- id`` deleted, ``? id`` kept (not in the file)."""
        for change in self.changes:
            label = _show_id(change.row_id)
            if change.action == "add":
                yield f"+ {label}"
                for key, value in (change.item or {}).items():
                    if key != ATTR_ID:
                        yield f"    {_show_name(key)}: {show_value(value)}"
            elif change.action == "change":
                yield f"~ {label}"
                for a in change.changes:
                    yield f"    {_show_name(a.name)}: {show_value(a.before)} -> {show_value(a.after)}"
            elif change.action == "delete":
                yield f"- {label}"
            else:
                yield f"? {label}: in the table, not in the file (left as it is; --prune deletes it)"

    def summary(self, *, applied: bool) -> str:
        done = ("added", "changed", "deleted") if applied else ("to add", "to change", "to delete")
        parts = [f"{self.count('add')} {done[0]}", f"{self.count('change')} {done[1]}",
                 f"{self.count('delete')} {done[2]}", f"{len(self.unchanged)} unchanged"]
        if self.count("keep"):
            parts.append(f"{self.count('keep')} not in the file (left)")
        return ", ".join(parts)


def plan_changes(
    rows_file: RowsFile, current_items: Iterable[Mapping[str, Any]], *, prune: bool = False,
    prefix: str = DEFAULT_REPOSITORY_PREFIX,
) -> Plan:
    """The changes that make a table holding ``current_items`` match ``rows_file``.

    Rows are compared by what their owners wrote (:func:`canonical_item`): applying the plan and planning
    again finds nothing to do. Rows not in the file are deleted with ``prune``, else kept and listed;
    a kept row that writes the same target repository and explicit tag as an entry is a problem (the
    plan must not be applied); overlaps through patterns are warnings.
    """
    current: dict[str, dict[str, Any]] = {}
    for item in current_items:
        row_id = item.get(ATTR_ID)
        if isinstance(row_id, str):
            current[row_id] = canonical_item(item)
    changes: list[RowChange] = []
    unchanged: list[str] = []
    wanted: set[str] = set()
    for entry in rows_file.entries:
        row_id = entry.row.id
        wanted.add(row_id)
        after = canonical_item(entry.item)
        before = current.get(row_id)
        if before is None:
            changes.append(RowChange("add", row_id, after))
        elif not _same(before, after):
            names = [k for k in after if k not in before or not _same(before[k], after[k])]
            names += [k for k in before if k not in after]
            diffs = tuple(AttributeChange(k, before.get(k, _ABSENT), after.get(k, _ABSENT))
                          for k in _ordered(names))
            changes.append(RowChange("change", row_id, after, before, diffs))
        else:
            unchanged.append(row_id)
    kept_rows: list[Row] = []
    for row_id in sorted(set(current) - wanted):
        changes.append(RowChange("delete" if prune else "keep", row_id, before=current[row_id]))
        if not prune:
            try:
                kept_rows.append(parse_row(current[row_id], prefix=prefix))
            except (RowError, ConfigError):
                pass  # an invalid row writes nothing
    problems: list[str] = []
    warnings: list[str] = []
    kept_ids = {r.id for r in kept_rows}
    for overlap in find_overlaps([*(e.row for e in rows_file.entries), *kept_rows]):
        kept = [i for i in (overlap.row_id, overlap.other_id) if i in kept_ids]
        if overlap.tag is None:
            warnings.append(overlap.describe())
        elif kept:
            problems.append(f"{rows_file.name}: {overlap.describe()}; row {kept[-1]!r} is in the table but not in "
                            "the file: remove it, or apply with --prune")
    return Plan(changes, unchanged, problems, [*rows_file.warnings, *warnings])


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [k for k in USER_ATTRIBUTES if k in names] + sorted(k for k in names if k not in USER_ATTRIBUTES)


# ---------------------------------------------------------------- export


def export_document(
    items: Iterable[Mapping[str, Any]], *, prefix: str = DEFAULT_REPOSITORY_PREFIX,
) -> tuple[dict[str, Any], list[str]]:
    """A rows document (``{"version": 1, "sources": [...]}``) holding the table's valid rows, sorted by id,
    each with what its owner wrote (ids always written; nothing derived, no defaults), and a warning line
    for each invalid row left out. Applying the document to the same table changes nothing."""
    entries: list[dict[str, Any]] = []
    warnings: list[str] = []
    for item in sorted(items, key=lambda i: str(i.get(ATTR_ID))):
        attrs = canonical_item(item)
        try:
            parse_row(attrs, prefix=prefix)
        except RowError as exc:
            warnings.append(f"row {_show_id(item.get(ATTR_ID))} not exported: it does not validate "
                            f"(attribute {exc.attribute!r}: {exc.detail})")
            continue
        entries.append(attrs)
    return {"version": FORMAT_VERSION, "sources": entries}, warnings


def dump_rows_yaml(document: Mapping[str, Any], *, header: str = "") -> str:
    """``document`` as YAML: block style, lists of scalars inline, strings that YAML 1.1 would read as
    something else (``1.20``, ``no``) quoted, so any YAML reader gets them back. Needs PyYAML."""
    import yaml

    text = yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=None, width=120, allow_unicode=False)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + text
