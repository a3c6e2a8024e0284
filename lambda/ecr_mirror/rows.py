"""Mirror-table rows: the schema users write, its validation and defaults. Pure: no I/O.

One DynamoDB item per mirrored image, partition key ``id`` (S). What users write::

    id                 S        required; 1-256 of letters, digits and ._:@/+- (starting with a letter or digit)
    source             S        upstream repository without tag/digest: docker.io/library/golang, golang
    assemble           L of S   instead of source: image references (each with a tag or digest) joined into one index
    tags               L of S   explicit tags (max 100); for assemble rows exactly one: the tag to write.
                                An entry ``tag@sha256:<64 hex>`` pins the tag to that digest (see below)
    digests            M or L   pins: a map tag -> digest, or a list of ``tag@digest``; pinned tags are
                                mirrored like explicit tags (they need not be in ``tags`` too)
    tag_pattern        S        regular expression the WHOLE tag must match (max 256 chars, must not backtrack badly)
    tag_patterns       L of S   several such patterns (max 16): a tag matching any of them is selected;
                                give tag_pattern or tag_patterns, not both
    exclude_patterns   L of S   patterns (max 16) a tag must match none of: they filter what patterns and
                                versions select (an explicit tag they match is an error)
    versions           S        a version range, e.g. ``>=1.21 <2`` (grammar: :mod:`ecr_mirror.versions`):
                                with patterns, a tag must also be inside it; alone, every version tag inside it
    keep_latest        N        with tag_pattern(s) or versions: only the newest N selected (version order, 1.10 after 1.9)
    platforms          L of S   os/arch[/variant], e.g. linux/amd64 (max 16); absent: every platform, digest-identical
    target_repository  S        ECR repository name; default below
    arch_tags          BOOL     also write <tag>-<arch> tags
    allow_nondistributable_artifacts
                       BOOL     also copy non-distributable (foreign) layers where reachable; default false
    referrers          BOOL     also copy the referrers (signatures, SBOMs) of each image; default true
    enabled            BOOL     default true

A pinned tag (``tags: ["1.22@sha256:…"]`` or ``digests: {"1.22": "sha256:…"}``) is mirrored by digest
and tagged with the tag given: :func:`ecr_mirror.tags.select` hands the sync the digest to copy
(``SelectedTag.pinned_digest``); the tag at the target never moves while the pin stands. Digests are
``algorithm:hex`` as in the OCI image spec (``descriptor.md``, "Digests"): sha256 (64 lowercase hex
digits), sha384 or sha512 (:func:`ecr_mirror.reference.validate_digest`). Pins do not apply to assemble rows (give their references by digest instead).

``null`` (DynamoDB ``NULL``) counts as absent. ``tags`` and ``platforms`` may also be string
sets (SS); they are then taken in sorted order. Any other attribute is rejected, except the
ones older versions of the service wrote into the row (:data:`SERVICE_ATTRIBUTES`: ignored, and moved
to the state table by the migration; see :mod:`ecr_mirror.status`). The service itself never writes
a row item: a user's ``put-item`` of a row never erases what the service recorded.

Default ``target_repository``:

- source rows: ``<prefix>/<registry>/<repository>``, e.g. ``mirror/docker.io/library/golang``;
  a registry port becomes ``-<port>`` (``localhost:5000`` -> ``localhost-5000``), since ECR
  names allow no ``:``.
- assemble rows whose references all come from one repository: that repository, as for a
  source row (``docker.io/me/app:1.0-amd64`` + ``:1.0-arm64`` -> ``mirror/docker.io/me/app``);
  otherwise ``<prefix>/assembled/<id>`` (the id must then be a valid ECR name, or the row must
  give ``target_repository``).

The rules that read raw items (:func:`is_enabled`, :func:`user_attributes`) work on plain
items and on the top level of DynamoDB's typed JSON alike, so the schedule handler, the stream
handler and the CLI share them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .config import DEFAULT_REPOSITORY_PREFIX
from .errors import ConfigError, PlatformError, ReferenceError_, RowError, shown
from .manifest import Platform
from .reference import (
    ECR_REPOSITORY_MAX,
    Reference,
    check_tag,
    is_ecr_repository_path,
    is_valid_ecr_repository,
    parse_reference,
    parse_repository,
    validate_digest,
)
from .tagpattern import ATTR_TAG_PATTERN, MAX_TAG_PATTERN_LENGTH, compile_tag_pattern
from .versions import ATTR_VERSIONS, MAX_RANGE_LENGTH, VersionRange, parse_version_range

# ---------------------------------------------------------------- schema constants

ATTR_ID = "id"
ATTR_SOURCE = "source"
ATTR_ASSEMBLE = "assemble"
ATTR_TAGS = "tags"
ATTR_DIGESTS = "digests"
ATTR_TAG_PATTERNS = "tag_patterns"
ATTR_EXCLUDE_PATTERNS = "exclude_patterns"
ATTR_KEEP_LATEST = "keep_latest"
ATTR_PLATFORMS = "platforms"
ATTR_TARGET_REPOSITORY = "target_repository"
ATTR_ARCH_TAGS = "arch_tags"
#: crane's ``--allow-nondistributable-artifacts``, Docker's daemon option of the same name
ATTR_ALLOW_NONDISTRIBUTABLE = "allow_nondistributable_artifacts"
#: regclient's ``referrers`` option: copy the images' referrers too (default on)
ATTR_REFERRERS = "referrers"
ATTR_ENABLED = "enabled"
ATTR_STATUS = "status"
ATTR_ROW_ERROR = "row_error"
ATTR_ROW_ERROR_AT = "row_error_at"

#: the partition key of the mirror table (infra/table.py imports it)
PARTITION_KEY = ATTR_ID
#: attributes a user may write (in the order a rows file lists them: :mod:`ecr_mirror.rowsfile`)
USER_ATTRIBUTES = (ATTR_ID, ATTR_SOURCE, ATTR_ASSEMBLE, ATTR_TAGS, ATTR_DIGESTS, ATTR_TAG_PATTERN, ATTR_TAG_PATTERNS,
                   ATTR_EXCLUDE_PATTERNS, ATTR_VERSIONS, ATTR_KEEP_LATEST, ATTR_PLATFORMS, ATTR_TARGET_REPOSITORY,
                   ATTR_ARCH_TAGS, ATTR_ALLOW_NONDISTRIBUTABLE, ATTR_REFERRERS, ATTR_ENABLED)
#: attributes older versions of the service wrote into the row item (the legacy status layout); ignored by
#: :func:`parse_row`, removed by the migration (:meth:`ecr_mirror.store.StateTable.migrate`)
SERVICE_ATTRIBUTES = frozenset({ATTR_STATUS, ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT})

MAX_ID_LENGTH = 256
MAX_TAGS = 100
MAX_PLATFORMS = 16
MAX_ASSEMBLE = 16
#: most entries of tag_patterns, and of exclude_patterns
MAX_PATTERNS = 16
#: upper bound for keep_latest, and for how many tags one pattern selects: the upstream tag list is read
#: up to this many tags (:meth:`ecr_mirror.registry.client.RegistryClient.tags_list`); each tag's status is
#: its own item in the state table (:mod:`ecr_mirror.status`), so no item size limits it
MAX_SELECTED_TAGS = 100_000

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")


# ---------------------------------------------------------------- the row


@dataclass(frozen=True)
class Row:
    """A validated mirror-table row. Build it with :func:`parse_row`.

    ``source`` is ``None`` for an assemble row, ``assemble`` ``None`` for a source row; ``platforms``
    ``None`` means every platform, digest-identical; ``target_repository`` is always filled in
    (explicit, or the default from the prefix); ``allow_nondistributable_artifacts``: copies also carry
    non-distributable layers where their bytes can be fetched (:meth:`ecr_mirror.copy.Copier.copy`);
    ``referrers``: signatures, SBOMs and attestations are copied with each tag (issue 14).

    ``tags``: every explicit tag, pinned ones included (``tags`` entries first, then tags only in
    ``digests``); ``pins``: ``(tag, digest)`` for the pinned ones; ``tag_pattern``: the attribute of that
    name; ``tag_patterns``: every allow pattern (``tag_pattern`` or the ``tag_patterns`` list);
    ``versions``: the parsed range. Which tags these select: :func:`ecr_mirror.tags.select`.
    """

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
    allow_nondistributable_artifacts: bool = False
    tag_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    versions: VersionRange | None = None
    pins: tuple[tuple[str, str], ...] = ()
    referrers: bool = True

    @property
    def is_assemble(self) -> bool:
        """Whether the row joins single-platform images (``assemble``) instead of mirroring a source."""
        return self.assemble is not None

    @property
    def needs_tag_list(self) -> bool:
        """Whether :func:`ecr_mirror.tags.select` needs the upstream tag list (patterns or a version range)."""
        return bool(self.tag_patterns) or self.versions is not None

    def pinned_digest(self, tag: str) -> str | None:
        """The digest ``tag`` is pinned to, or None when it follows upstream's tag."""
        return next((digest for pinned, digest in self.pins if pinned == tag), None)

    @property
    def identical(self) -> bool:
        """Whether copies keep upstream's digest (no platform filter, not assembled)."""
        return self.platforms is None and self.assemble is None

    @property
    def fingerprint(self) -> str:
        """``<what>.<where>.<how>``: everything in the row that changes what the target should hold.
        ``what`` (16 hex): a hash of what determines the expected target digest (source, platforms,
        assemble); ``where`` (8 hex): a hash of the target repository; ``how``: the options that add to the
        image, as flags (``a1n0r1``: :data:`OPTION_FLAGS`, arch tags, non-distributable layers, referrers).

        Recorded in each tag status: a tag is settled (nothing asked of the target) only under the same
        fingerprint (:meth:`ecr_mirror.status.TagStatus.settled`), so any change makes the next pass look
        at every tag again; the recorded digests still apply while ``what`` and ``where`` are the same
        (:func:`record_applies`), and :func:`options_turned_on` says what a tag in sync still needs. Pins
        are per tag: a pin is the tag's source digest, compared on its own.
        """
        what = [
            str(self.source or ""),
            ",".join(str(p) for p in self.platforms) if self.platforms is not None else "*",
            ",".join(str(r) for r in self.assemble or ()),
        ]
        how = "".join(f"{flag}{int(getattr(self, name))}" for flag, name in OPTION_FLAGS)
        return ".".join((_short_hash(what, 16), _short_hash([self.target_repository], 8), how))


#: the ``how`` part of :attr:`Row.fingerprint`: one letter per option that adds to what the target holds
OPTION_FLAGS = (("a", ATTR_ARCH_TAGS), ("n", ATTR_ALLOW_NONDISTRIBUTABLE), ("r", ATTR_REFERRERS))


def _short_hash(parts: list[str], length: int) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


def record_applies(recorded: str | None, current: str) -> bool:
    """Whether a tag status recorded under fingerprint ``recorded`` (:attr:`Row.fingerprint`) still tells
    what the target should hold under ``current``: the same ``what`` and ``where`` parts (a change of
    ``how`` only adds work: arch tags to write, referrers or layers to copy). A record of one part (written
    before the target repository and the options were part of it) compares ``what`` only; no fingerprint
    recorded counts as applying."""
    if not recorded:
        return True
    old, new = recorded.split("."), current.split(".")
    return old[0] == new[0] and (len(old) < 2 or old[1] == new[1])


def options_turned_on(recorded: str | None, current: str) -> frozenset[str]:
    """The options (attribute names of :data:`OPTION_FLAGS`) on in ``current`` but not in ``recorded``: what a
    tag in sync still needs done (its arch tags written, its referrers or non-distributable layers copied).
    A record without the ``how`` part (older) counts as ``arch_tags`` off and the others as they are now:
    only arch tags were ever left unwritten (issue 13)."""
    def flags(fingerprint: str | None) -> dict[str, str]:
        parts = (fingerprint or "").split(".")
        how = parts[2] if len(parts) > 2 else ""
        return {how[i]: how[i + 1] for i in range(0, len(how) - 1, 2)}

    old, new = flags(recorded), flags(current)
    if not old:
        old = {**new, "a": "0"}
    return frozenset(name for flag, name in OPTION_FLAGS if new.get(flag) == "1" and old.get(flag) != "1")


class _Invalid(Exception):
    """Internal: an attribute that does not validate (turned into :class:`RowError`)."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


def type_name(value: Any) -> str:
    """The DynamoDB-ish name of a value's type (string, number, boolean, list, set, map, binary, null), for messages."""
    if value is None:
        return "null"
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
        raise _Invalid(attribute, f"must be a string, not a {type_name(value)}")
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
        raise _Invalid(attribute, f"must be a list of strings, not a {type_name(value)}")
    if not items:
        raise _Invalid(attribute, "must not be empty (leave the attribute out instead)")
    if len(items) > max_items:
        raise _Invalid(attribute, f"has {len(items)} entries, over the limit of {max_items}")
    for i, v in enumerate(items):
        if not isinstance(v, str):
            raise _Invalid(attribute, f"entry {i + 1} must be a string, not a {type_name(v)}")
    return items


def _want_bool(attribute: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(attribute, f"must be a boolean (true/false), not a {type_name(value)} {shown(value)}")
    return value


def _want_int(attribute: str, value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _Invalid(attribute, f"must be a whole number, not a {type_name(value)} {shown(value)}")
    if isinstance(value, Decimal):
        try:
            if not value.is_finite() or value != value.to_integral_value():
                raise _Invalid(attribute, f"must be a whole number, not {shown(value)}")
        except InvalidOperation as exc:
            raise _Invalid(attribute, f"must be a whole number, not {shown(value)}") from exc
    if value < minimum or value > maximum:
        raise _Invalid(attribute, f"must be between {minimum} and {maximum}, not {shown(value)}")
    return int(value)


def _ecr_component(text: str) -> str:
    """``localhost:5000`` -> ``localhost-5000``: one valid ECR path component, or ''."""
    text = re.sub(r"[^a-z0-9._-]", "-", text.lower())
    text = re.sub(r"[._-]{2,}", "-", text)
    return text.strip("._-")


def check_prefix(prefix: str) -> str:
    """The repository prefix without surrounding ``/`` and blanks; raises :class:`ConfigError` if it is
    not made of valid ECR path components (``""`` is allowed: no prefix)."""
    if not isinstance(prefix, str):
        raise ConfigError(f"repository prefix {shown(prefix)} is not a string")
    prefix = prefix.strip().strip("/")
    if prefix and not is_ecr_repository_path(prefix):
        raise ConfigError(
            f"repository prefix {prefix!r} is not a valid ECR repository path (lowercase a-z, 0-9, '._-', '/')"
        )
    return prefix


def default_target_repository(ref: Reference, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> str:
    """``<prefix>/<registry>/<repository>``, e.g. ``mirror/docker.io/library/golang``.

    Raises :class:`RowError` (attribute ``target_repository``) if that is not a valid ECR name.
    """
    prefix = check_prefix(prefix)
    registry = _ecr_component(ref.registry)
    name = "/".join(p for p in (prefix, registry, ref.repository) if p)
    if not registry or not is_valid_ecr_repository(name):
        raise RowError(
            f"the default target repository {name!r} for {ref.name} is not a valid ECR repository name; "
            "set target_repository",
            attribute=ATTR_TARGET_REPOSITORY,
        )
    return name


# ---------------------------------------------------------------- parsing rows


def _parse_source(value: Any) -> Reference:
    text = _want_string(ATTR_SOURCE, value, max_length=512)
    try:
        return parse_repository(text)
    except ReferenceError_ as exc:
        raise _Invalid(ATTR_SOURCE, str(exc)) from exc


def _parse_assemble(value: Any) -> tuple[Reference, ...]:
    items = _want_string_list(ATTR_ASSEMBLE, value, max_items=MAX_ASSEMBLE, allow_set=False)
    refs: list[Reference] = []
    for i, text in enumerate(items):
        try:
            ref = parse_reference(text, default_tag=None)
        except ReferenceError_ as exc:
            raise _Invalid(ATTR_ASSEMBLE, f"entry {i + 1}: {exc}") from exc
        if not ref.tag and not ref.digest:
            raise _Invalid(
                ATTR_ASSEMBLE, f"entry {i + 1}: reference {text!r} needs a tag or digest (e.g. {text}:1.0-amd64)"
            )
        if ref in refs:
            raise _Invalid(ATTR_ASSEMBLE, f"entry {i + 1}: {ref} is listed twice")
        refs.append(ref)
    return tuple(refs)


def _parse_pin(attribute: str, where: str, tag: Any, digest: Any) -> tuple[str, str]:
    """``(tag, digest)`` of one pin, both checked; ``where`` names it in messages (``entry 2``)."""
    try:
        check_tag(tag)
    except ReferenceError_ as exc:
        raise _Invalid(attribute, f"{where}: {exc}") from exc
    if not isinstance(digest, str) or len(digest) > 200:
        raise _Invalid(attribute, f"{where}: the digest of {tag!r} must be a string such as sha256:<64 hex digits>, "
                                  f"not {shown(digest, 60)}")
    try:
        validate_digest(digest, what=f"digest of {tag!r}")
    except ReferenceError_ as exc:
        raise _Invalid(attribute, f"{where}: {exc}") from exc
    return tag, digest


def _split_pin(attribute: str, where: str, entry: str) -> tuple[str, str | None]:
    """``1.22@sha256:…`` -> ``('1.22', 'sha256:…')``; ``1.22`` -> ``('1.22', None)``; checked."""
    tag, at, digest = entry.partition("@")
    if not at:
        try:
            return check_tag(tag), None
        except ReferenceError_ as exc:
            raise _Invalid(attribute, f"{where}: {exc}") from exc
    return _parse_pin(attribute, where, tag, digest)


def _parse_tags(value: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    """``tags`` -> (tags in order, {tag: pinned digest})."""
    items = _want_string_list(ATTR_TAGS, value, max_items=MAX_TAGS, allow_set=True)
    tags: list[str] = []
    pins: dict[str, str] = {}
    for i, entry in enumerate(items):
        tag, digest = _split_pin(ATTR_TAGS, f"entry {i + 1}", entry)
        if tag in tags:
            raise _Invalid(ATTR_TAGS, f"tag {tag!r} is listed twice")
        tags.append(tag)
        if digest is not None:
            pins[tag] = digest
    return tuple(tags), pins


def _parse_digests(value: Any) -> dict[str, str]:
    """``digests``: a map tag -> digest (taken in tag order), or a list of ``tag@digest``."""
    pins: dict[str, str] = {}
    if isinstance(value, Mapping):
        if not value:
            raise _Invalid(ATTR_DIGESTS, "must not be empty (leave the attribute out instead)")
        if len(value) > MAX_TAGS:
            raise _Invalid(ATTR_DIGESTS, f"has {len(value)} entries, over the limit of {MAX_TAGS}")
        if not all(isinstance(k, str) for k in value):
            raise _Invalid(ATTR_DIGESTS, "keys must be tags (strings)")
        for tag in sorted(value):
            pins[tag] = _parse_pin(ATTR_DIGESTS, f"tag {shown(tag, 140)}", tag, value[tag])[1]
        return pins
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _Invalid(ATTR_DIGESTS, f"must be a map of tag to digest, or a list of tag@digest, not a {type_name(value)}")
    items = _want_string_list(ATTR_DIGESTS, value, max_items=MAX_TAGS, allow_set=True)
    for i, entry in enumerate(items):
        if "@" not in entry:
            raise _Invalid(ATTR_DIGESTS, f"entry {i + 1}: {shown(entry)} is not tag@digest (e.g. 1.22@sha256:<64 hex>)")
        tag, digest = _split_pin(ATTR_DIGESTS, f"entry {i + 1}", entry)
        if tag in pins:
            raise _Invalid(ATTR_DIGESTS, f"tag {tag!r} is listed twice")
        pins[tag] = str(digest)
    return pins


def _merge_pins(tags: tuple[str, ...], tag_pins: dict[str, str], digests: dict[str, str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Every explicit tag (``tags``, then tags only in ``digests``) and every pin; a tag pinned twice differently is an error."""
    for tag, digest in digests.items():
        if tag in tag_pins and tag_pins[tag] != digest:
            raise _Invalid(ATTR_DIGESTS, f"tag {tag!r} is pinned to {digest} here and to {tag_pins[tag]} in tags")
    merged = tags + tuple(t for t in digests if t not in tags)
    if len(merged) > MAX_TAGS:
        raise _Invalid(ATTR_DIGESTS, f"tags and digests name {len(merged)} tags, over the limit of {MAX_TAGS}")
    pins = {**tag_pins, **digests}
    return merged, tuple((t, pins[t]) for t in merged if t in pins)


def _parse_patterns(attribute: str, value: Any) -> tuple[str, ...]:
    """A list of tag patterns, each compiled (and checked for bad backtracking) by :func:`compile_tag_pattern`."""
    items = _want_string_list(attribute, value, max_items=MAX_PATTERNS, allow_set=True)
    for i, pattern in enumerate(items):
        try:
            compile_tag_pattern(pattern)
        except RowError as exc:
            raise _Invalid(attribute, f"entry {i + 1}: {exc.detail}") from exc
        if pattern in items[:i]:
            raise _Invalid(attribute, f"pattern {shown(pattern)} is listed twice")
    return tuple(items)


def _parse_platforms(value: Any) -> tuple[Platform, ...]:
    items = _want_string_list(ATTR_PLATFORMS, value, max_items=MAX_PLATFORMS, allow_set=True)
    out: list[Platform] = []
    for text in items:
        if any(c.isspace() for c in text):
            raise _Invalid(ATTR_PLATFORMS, f"invalid platform {shown(text)}: contains whitespace")
        try:
            platform = Platform.parse(text)
        except PlatformError as exc:
            raise _Invalid(ATTR_PLATFORMS, str(exc)) from exc
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
        raise _Invalid(ATTR_ID, f"must be a string, not a {type_name(value)}")
    if not value:
        raise _Invalid(ATTR_ID, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise _Invalid(ATTR_ID, f"is {len(value)} characters long, over the limit of {MAX_ID_LENGTH}")
    if _ID_RE.fullmatch(value) is None:
        raise _Invalid(
            ATTR_ID, "may contain only letters, digits and ._:@/+- and must start with a letter or digit"
        )
    return value


def is_valid_id(value: Any) -> bool:
    """Whether ``value`` is a valid row id (1-256 of letters, digits and ``._:@/+-``, starting with a letter or digit)."""
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and _ID_RE.fullmatch(value) is not None


def _row_label(item: Any) -> str:
    value = item.get(ATTR_ID) if isinstance(item, Mapping) else None
    if is_valid_id(value):
        return repr(value)
    return shown(value, 60)


def parse_row(item: Mapping[str, Any], *, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> Row:
    """Validate a plain-Python item (as boto3's resource layer returns it) into a :class:`Row`.

    Raises :class:`RowError` naming the row and the attribute, e.g.
    ``row 'golang': attribute 'platforms': invalid platform 'linux': ...``.
    Attributes the service writes (:data:`SERVICE_ATTRIBUTES`) are ignored.
    """
    prefix = check_prefix(prefix)
    if not isinstance(item, Mapping):
        raise RowError(f"row {shown(item, 60)}: is not a map of attributes", attribute="")
    label = _row_label(item)
    try:
        return _parse_row(item, prefix)
    except _Invalid as exc:
        raise RowError(f"row {label}: attribute {exc.attribute!r}: {exc.message}", attribute=exc.attribute,
                       detail=exc.message) from exc
    except RowError as exc:  # from helpers that raise RowError themselves
        raise RowError(f"row {label}: attribute {exc.attribute!r}: {exc}", attribute=exc.attribute,
                       detail=str(exc)) from exc


def _parse_row(item: Mapping[str, Any], prefix: str) -> Row:
    row_id = _parse_id(item)
    for key in item:
        if not isinstance(key, str):
            raise _Invalid(shown(key, 40), "attribute names must be strings")
    unknown = sorted(k for k in item if k not in USER_ATTRIBUTES and k not in SERVICE_ATTRIBUTES)
    if unknown:
        raise _Invalid(unknown[0][:64], f"unknown attribute (known: {', '.join(USER_ATTRIBUTES)})")

    def get(name: str) -> Any:
        return item.get(name)

    source = _parse_source(get(ATTR_SOURCE)) if get(ATTR_SOURCE) is not None else None
    assemble = _parse_assemble(get(ATTR_ASSEMBLE)) if get(ATTR_ASSEMBLE) is not None else None
    tags, tag_pins = _parse_tags(get(ATTR_TAGS)) if get(ATTR_TAGS) is not None else ((), {})
    digests = _parse_digests(get(ATTR_DIGESTS)) if get(ATTR_DIGESTS) is not None else {}
    tags, pins = _merge_pins(tags, tag_pins, digests)
    tag_pattern: str | None = None
    if get(ATTR_TAG_PATTERN) is not None:
        tag_pattern = _want_string(ATTR_TAG_PATTERN, get(ATTR_TAG_PATTERN), max_length=MAX_TAG_PATTERN_LENGTH)
        try:
            compile_tag_pattern(tag_pattern)
        except RowError as exc:
            raise _Invalid(ATTR_TAG_PATTERN, str(exc)) from exc
    tag_patterns = _parse_patterns(ATTR_TAG_PATTERNS, get(ATTR_TAG_PATTERNS)) if get(ATTR_TAG_PATTERNS) is not None else ()
    if tag_pattern is not None and tag_patterns:
        raise _Invalid(ATTR_TAG_PATTERNS, "cannot be combined with tag_pattern: list every pattern in tag_patterns")
    if tag_pattern is not None:
        tag_patterns = (tag_pattern,)
    excludes = get(ATTR_EXCLUDE_PATTERNS)
    exclude_patterns = _parse_patterns(ATTR_EXCLUDE_PATTERNS, excludes) if excludes is not None else ()
    versions: VersionRange | None = None
    if get(ATTR_VERSIONS) is not None:
        text = _want_string(ATTR_VERSIONS, get(ATTR_VERSIONS), max_length=MAX_RANGE_LENGTH)
        try:
            versions = parse_version_range(text)
        except RowError as exc:
            raise _Invalid(ATTR_VERSIONS, exc.detail) from exc
    lists = bool(tag_patterns) or versions is not None  # selects from the upstream tag list
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
                f"{shown(target)} is not a valid ECR repository name: 2-256 characters of lowercase "
                f"letters, digits and ._- in /-separated components{hint}",
            )
    arch_tags = _want_bool(ATTR_ARCH_TAGS, get(ATTR_ARCH_TAGS)) if get(ATTR_ARCH_TAGS) is not None else False
    nondistributable = get(ATTR_ALLOW_NONDISTRIBUTABLE)
    nondistributable = _want_bool(ATTR_ALLOW_NONDISTRIBUTABLE, nondistributable) if nondistributable is not None else False
    enabled = _want_bool(ATTR_ENABLED, get(ATTR_ENABLED)) if get(ATTR_ENABLED) is not None else True
    referrers = _want_bool(ATTR_REFERRERS, get(ATTR_REFERRERS)) if get(ATTR_REFERRERS) is not None else True

    # rules across attributes
    if source is None and assemble is None:
        raise _Invalid(ATTR_SOURCE, "is missing: a row needs a source repository (or an assemble list)")
    if source is not None and assemble is not None:
        raise _Invalid(ATTR_ASSEMBLE, "cannot be combined with source: give one or the other")
    if assemble is not None:
        for attribute, given in ((ATTR_TAG_PATTERN, tag_pattern is not None), (ATTR_TAG_PATTERNS, bool(get(ATTR_TAG_PATTERNS))),
                                 (ATTR_EXCLUDE_PATTERNS, bool(exclude_patterns)), (ATTR_VERSIONS, versions is not None)):
            if given:
                raise _Invalid(attribute, "does not apply to assemble rows (give the one tag to write in tags)")
        if pins:
            raise _Invalid(ATTR_DIGESTS if digests else ATTR_TAGS, "pins do not apply to assemble rows "
                                                                    "(give the assemble references by digest instead)")
    if keep_latest is not None and not lists:
        raise _Invalid(ATTR_KEEP_LATEST, "only applies together with tag_pattern, tag_patterns or versions")
    if exclude_patterns and not lists:
        raise _Invalid(ATTR_EXCLUDE_PATTERNS, "only applies together with tag_pattern, tag_patterns or versions "
                                              "(it filters the tags they select)")
    for pattern in exclude_patterns:
        named = [t for t in tags if compile_tag_pattern(pattern).fullmatch(t)]
        if named:
            raise _Invalid(ATTR_EXCLUDE_PATTERNS, f"pattern {shown(pattern)} excludes {named[0]!r}, which the row "
                                                  "names explicitly; drop one or the other")
    if assemble is not None:
        if len(tags) != 1:
            raise _Invalid(ATTR_TAGS, f"an assemble row needs exactly one tag (the tag to write), not {len(tags)}")
        if platforms is not None:
            raise _Invalid(ATTR_PLATFORMS, "does not apply to assemble rows: each assemble reference names one platform's image")
        if target is None:
            repos = {r.name for r in assemble}
            if len(repos) == 1:
                target = default_target_repository(assemble[0], prefix)
            else:
                target = "/".join(p for p in (prefix, "assembled", row_id) if p)
                if not is_valid_ecr_repository(target):
                    raise _Invalid(
                        ATTR_TARGET_REPOSITORY,
                        f"is needed: the default {shown(target)} (from the id) is not a valid ECR repository name",
                    )
    else:
        assert source is not None
        if not tags and not lists:
            raise _Invalid(ATTR_TAGS, "is missing: a source row needs tags (or digests), tag_pattern(s) or versions")
        if target is None:
            target = default_target_repository(source, prefix)
    return Row(id=row_id, source=source, tags=tags, tag_pattern=tag_pattern, keep_latest=keep_latest, platforms=platforms,
               target_repository=target, arch_tags=arch_tags, assemble=assemble, enabled=enabled,
               allow_nondistributable_artifacts=nondistributable, tag_patterns=tag_patterns,
               exclude_patterns=exclude_patterns, versions=versions, pins=pins, referrers=referrers)


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
    allow_nondistributable_artifacts: bool | None = None,
    tag_patterns: Iterable[str] | None = None,
    exclude_patterns: Iterable[str] | None = None,
    versions: str | None = None,
    digests: Mapping[str, str] | Iterable[str] | None = None,
    referrers: bool | None = None,
    prefix: str = DEFAULT_REPOSITORY_PREFIX,
) -> dict[str, Any]:
    """A plain item for ``put_item`` from CLI arguments, validated like any row.

    Only the attributes given are written (defaults such as the target repository stay
    implicit, so they follow the configured prefix). Empty ``tags``/``platforms`` count as
    not given. Raises :class:`RowError`.
    """
    def listed(value: Iterable[str] | None, *, keep_empty: bool) -> Any:
        if value is None or isinstance(value, str):
            return value  # a bare string: let validation name it
        items = list(value)
        return items if items or keep_empty else None

    given = {
        ATTR_SOURCE: source,
        ATTR_TAGS: listed(tags, keep_empty=False),
        ATTR_TAG_PATTERN: tag_pattern,
        ATTR_KEEP_LATEST: keep_latest,
        ATTR_PLATFORMS: listed(platforms, keep_empty=False),
        ATTR_TARGET_REPOSITORY: target_repository,
        ATTR_ARCH_TAGS: arch_tags,
        ATTR_ASSEMBLE: listed(assemble, keep_empty=True),
        ATTR_ENABLED: enabled,
        ATTR_ALLOW_NONDISTRIBUTABLE: allow_nondistributable_artifacts,
        ATTR_TAG_PATTERNS: listed(tag_patterns, keep_empty=False),
        ATTR_EXCLUDE_PATTERNS: listed(exclude_patterns, keep_empty=False),
        ATTR_VERSIONS: versions,
        ATTR_DIGESTS: dict(digests) if isinstance(digests, Mapping) else listed(digests, keep_empty=False),
        ATTR_REFERRERS: referrers,
    }
    item: dict[str, Any] = {ATTR_ID: row_id, **{k: v for k, v in given.items() if v is not None}}
    parse_row(item, prefix=prefix)
    return item


def user_attributes(item: Mapping[str, Any] | None) -> dict[str, Any]:
    """``item`` without the attributes the service writes: what its owner wrote.

    Compare two of these to tell a user's change of a row from the service's status write. Works on
    plain items and on DynamoDB's typed JSON (stream images) alike; ``None`` gives ``{}``.
    """
    return {k: v for k, v in (item or {}).items() if k not in SERVICE_ATTRIBUTES}



#: the mirror table's stream records worth the stream handler's attention, as Lambda event-filter patterns
#: (one per filter; a record matching any passes; the stack sets them on the event source mapping,
#: https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html): a row added or changed
#: whose new image is not ``enabled: false`` (``enabled`` absent, true, or not a boolean: the worker then
#: marks the row invalid), as :func:`is_enabled` decides; and a row removed (its recorded state is deleted)
STREAM_FILTERS: tuple[dict[str, Any], ...] = (
    {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {ATTR_ENABLED: [{"exists": False}]}}},
    {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {ATTR_ENABLED: {"BOOL": [True]}}}},
    {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {ATTR_ENABLED: {"BOOL": [{"exists": False}]}}}},
    {"eventName": ["REMOVE"]},
)


def is_enabled(item: Mapping[str, Any]) -> bool:
    """Whether a raw row is to be synced: unless ``enabled`` is exactly false.

    A malformed ``enabled`` (a string, a number) still counts as enabled, so the row goes on to be
    marked invalid rather than silently skipped. Accepts plain items and DynamoDB's typed JSON
    (``{"enabled": {"BOOL": false}}``).
    """
    value = item.get(ATTR_ENABLED)
    if isinstance(value, Mapping) and set(value) == {"BOOL"}:
        value = value["BOOL"]
    return value is not False


# ---------------------------------------------------------------- rows that write the same place


@dataclass(frozen=True)
class Overlap:
    """Two rows that write into the same target repository.

    ``tag`` set: both name that tag explicitly (``tags``, ``digests`` or the tag of an assemble row), so
    they would overwrite each other on every pass: :func:`ecr_mirror.rows.find_overlaps` callers refuse
    it. ``tag`` None: at least one of them selects tags from the upstream list (patterns, versions), so
    they *may* select the same tag: a warning (the service's conflict state handles it at run time).
    """

    row_id: str
    other_id: str
    repository: str
    tag: str | None

    def describe(self) -> str:
        """One line, e.g. ``rows 'a' and 'b' both write mirror/x:1.22``."""
        if self.tag is not None:
            return f"rows {self.row_id!r} and {self.other_id!r} both write {self.repository}:{self.tag}"
        return (f"rows {self.row_id!r} and {self.other_id!r} both write to {self.repository}, and one selects tags "
                "by pattern or version range: where both select a tag, they conflict")


def find_overlaps(rows: Iterable[Row]) -> list[Overlap]:
    """Pairs of enabled rows writing the same target repository (see :class:`Overlap`), in input order.

    Arch tags (``<tag>-<arch>``) are not compared. Disabled rows write nothing and are left out.
    """
    by_repository: dict[str, list[Row]] = {}
    for row in rows:
        if row.enabled:
            by_repository.setdefault(row.target_repository, []).append(row)
    found: list[Overlap] = []
    for repository, group in by_repository.items():
        writer: dict[str, str] = {}
        for row in group:
            for tag in row.tags:
                first = writer.setdefault(tag, row.id)
                if first != row.id:
                    found.append(Overlap(first, row.id, repository, tag))
        for i, row in enumerate(group):
            for other in group[i + 1 :]:
                if (row.needs_tag_list or other.needs_tag_list) and other.id != row.id:
                    found.append(Overlap(row.id, other.id, repository, None))
    return found


def conflict_peers(rows: Iterable[Row]) -> dict[str, list[str]]:
    """``{row id: ids of the other enabled rows that may select one of its tags in the same target repository}``
    (input order; rows without any are left out): both name a tag explicitly, or one of them selects from the
    upstream tag list. The sync decides from these rows which tags are really shared (``conflict``:
    :meth:`ecr_mirror.sync.Syncer.sync_item`); a row with no peers costs nothing more."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.enabled:
            groups.setdefault(row.target_repository, []).append(row)
    peers: dict[str, list[str]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        by_tag: dict[str, list[str]] = {}
        listers = [r.id for r in group if r.needs_tag_list]
        for row in group:
            for tag in row.tags:
                by_tag.setdefault(tag, []).append(row.id)
        for row in group:
            found = [r.id for r in group] if row.needs_tag_list else list(listers)
            for tag in row.tags:
                found += by_tag[tag]
            mine = [i for i in dict.fromkeys(found) if i != row.id]
            if mine:
                peers[row.id] = mine
    return peers


def item_peers(items: Iterable[Mapping[str, Any]], prefix: str = DEFAULT_REPOSITORY_PREFIX) -> dict[str, list[str]]:
    """:func:`conflict_peers` of raw items (plain or as boto3's resource layer gives them): the enabled ones
    that validate; the others write nothing (an invalid row is marked so by the sync)."""
    rows = []
    for item in items:
        if not is_valid_id(item.get(ATTR_ID)) or not is_enabled(item):
            continue
        try:
            rows.append(parse_row(item, prefix=prefix))
        except RowError:
            continue
    return conflict_peers(rows)
