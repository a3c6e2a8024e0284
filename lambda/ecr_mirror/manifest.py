"""Manifests and indexes: media types, parsing that keeps the raw bytes, platforms, index rewriting.

Pure: no I/O. A manifest's digest is the sha256 of its exact bytes, so a :class:`Manifest`
always carries the bytes it was parsed from, and copying PUTs those bytes unchanged.

What a copy does with each kind of descriptor is decided here, once (:func:`entry_kind`,
:attr:`Manifest.required_blobs`, :attr:`Manifest.nondistributable_layers`); the copy engine and the
completeness check both follow it. Sources: OCI image-spec 1.1 (``image-index.md``, ``manifest.md``,
``descriptor.md``, ``layer.md`` "Non-Distributable Layers"), Docker image manifest v2 schema 2 and
manifest list, image-spec v1.1.0-rc2 ``artifact.md`` (the withdrawn artifact manifest).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import CopyError, ManifestError, PlatformError
from .reference import ReferenceError_, validate_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
#: image-spec v1.1.0-rc1/rc2 ``artifact.md``: withdrawn before 1.1.0, still stored by some registries
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
#: image-spec 1.1 ``manifest.md`` "Guidelines for Artifact Usage": the config of an artifact without one
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
#: Docker image manifest v2 schema 2, "foreign" layers (Windows base layers), with and without gzip
DOCKER_FOREIGN_LAYER_PREFIX = "application/vnd.docker.image.rootfs.foreign."
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#: image-spec ``layer.md`` "Non-Distributable Layers" (``.v1.tar``, ``+gzip``, ``+zstd``; deprecated in 1.1)
OCI_NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable."

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES
#: every manifest type parsed and walked (the withdrawn artifact manifest lists its ``blobs``)
KNOWN_TYPES = MANIFEST_TYPES | {OCI_ARTIFACT_MANIFEST}
#: configs of runnable images (any other config media type, or ``artifactType``, makes an artifact)
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
#: media types of blobs, never of manifests: an index entry of one of these is refused
_BLOB_TYPE_PREFIXES = (
    "application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.", OCI_CONFIG, DOCKER_CONFIG, OCI_EMPTY,
)
#: sent on every manifest HEAD and GET, so no registry converts what it stores
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

#: ECR's PutImage limit and distribution's; bodies larger than this are refused while reading
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_INDEX_CHILDREN = 1024
MAX_IMAGE_LAYERS = 1024
#: indexes inside indexes followed (image-index.md: implementations SHOULD support a nested index);
#: the top-level index is depth 1. Real trees nest 2 deep (CNAB bundles, some attestation layouts).
MAX_INDEX_DEPTH = 4
#: JSON nesting allowed in a manifest (real ones nest about 5 deep); a fixed limit, so that whether
#: a manifest parses, and whether rewriting it recurses too deep, never depends on the caller's stack
MAX_JSON_DEPTH = 64

ATTESTATION_TYPE_KEY = "vnd.docker.reference.type"
ATTESTATION_DIGEST_KEY = "vnd.docker.reference.digest"
ATTESTATION_TYPE = "attestation-manifest"

#: annotations recorded on an OCI index that ecr-mirror rewrote to a platform subset
ANNOTATION_SOURCE_REF = "io.github.ecr-mirror.source.reference"
ANNOTATION_SOURCE_DIGEST = "io.github.ecr-mirror.source.digest"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data`` (image-spec ``descriptor.md``, "Digests")."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- platforms

_PLATFORM_PART = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")
# default variants, as containerd's platforms.Normalize
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, order=True)
class Platform:
    """An image platform as the image-spec names it (``os``, ``architecture``, ``variant``; image-index
    ``platform`` object); ``str()`` gives ``os/arch[/variant]``."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``, e.g. ``linux/amd64`` or ``linux/arm64/v8``."""
        if not isinstance(text, str):
            raise PlatformError(f"invalid platform {text!r}: expected a string like linux/amd64")
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(_PLATFORM_PART.match(p) for p in parts):
            raise PlatformError(f"invalid platform {text!r}: expected os/architecture[/variant], e.g. linux/arm64")
        return cls(*parts)

    @classmethod
    def from_descriptor(cls, descriptor: dict[str, Any]) -> Platform | None:
        """The ``platform`` of an index entry, or ``None`` if it has none (or a malformed one)."""
        p = descriptor.get("platform")
        if not isinstance(p, dict):
            return None
        os_, arch = p.get("os"), p.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            return None
        variant = p.get("variant") or ""
        return cls(os_, arch, variant if isinstance(variant, str) else "")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Platform:
        """The platform an image config declares; raises :class:`ManifestError` without ``os``/``architecture``."""
        os_, arch = config.get("os"), config.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str) or not os_ or not arch:
            raise ManifestError("image config has no os/architecture")
        variant = config.get("variant") or ""
        return cls(os_, arch, variant if isinstance(variant, str) else "")

    @property
    def is_unknown(self) -> bool:
        """``unknown/unknown``: BuildKit's platform for attestation manifests."""
        return self.os == "unknown" and self.architecture == "unknown"

    def normalized_variant(self) -> str:
        """The variant, or the default one of the architecture (``arm64``: ``v8``, ``arm``: ``v7``; containerd's
        ``platforms.Normalize``)."""
        return self.variant or _DEFAULT_VARIANT.get(self.architecture, "")

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (found in an index) satisfies this (requested) platform.

        ``linux/arm64`` matches ``linux/arm64/v8``; a variant given must match
        (``linux/arm64/v8`` also matches an arm64 entry without a variant, which means v8).
        """
        if self.os != other.os or self.architecture != other.architecture:
            return False
        if not self.variant:
            return True
        return self.normalized_variant() == other.normalized_variant()

    def as_dict(self) -> dict[str, str]:
        """The image-index ``platform`` object."""
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platforms(values: Iterable[str]) -> list[Platform]:
    """:meth:`Platform.parse` of each value; raises :class:`PlatformError` for the first bad one."""
    return [Platform.parse(v) for v in values]


# ---------------------------------------------------------------- descriptors / manifests


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec ``descriptor.md``): ``size`` in bytes, ``raw`` the JSON object it came from."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def from_json(cls, obj: Any, *, where: str) -> Descriptor:
        """Validate a descriptor object; raises :class:`ManifestError` naming ``where`` it was found."""
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: descriptor is not an object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where}: descriptor without mediaType")
        try:
            validate_digest(digest, what=f"descriptor digest in {where}")
        except ReferenceError_ as exc:
            raise ManifestError(str(exc)) from exc
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: descriptor {digest} has invalid size {size!r}")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ManifestError(f"{where}: descriptor {digest} has invalid annotations")
        return cls(media_type, digest, size, Platform.from_descriptor(obj), annotations, obj)

    @property
    def urls(self) -> list[str]:
        """The descriptor's ``urls`` (descriptor.md: where the content MAY also be fetched), strings only."""
        value = self.raw.get("urls")
        return [u for u in value if isinstance(u, str)] if isinstance(value, list) else []

    @property
    def is_nondistributable(self) -> bool:
        """A layer whose bytes a registry need not hold: the Docker foreign types, the OCI
        ``nondistributable`` types (layer.md), or any descriptor carrying ``urls`` (containers/image
        and containerd skip those too). Meaningful for layers; configs are always copied."""
        return (
            self.media_type.startswith((DOCKER_FOREIGN_LAYER_PREFIX, OCI_NONDISTRIBUTABLE_PREFIX))
            or bool(self.urls)
        )

    @property
    def is_attestation(self) -> bool:
        """A BuildKit attestation manifest (``vnd.docker.reference.type: attestation-manifest``)."""
        return self.annotations.get(ATTESTATION_TYPE_KEY) == ATTESTATION_TYPE

    @property
    def attests(self) -> str | None:
        """The digest of the image this attestation manifest refers to."""
        value = self.annotations.get(ATTESTATION_DIGEST_KEY)
        return value if self.is_attestation and isinstance(value, str) else None


@dataclass(frozen=True)
class Manifest:
    """A manifest or index with the exact bytes it came from."""

    raw: bytes
    media_type: str
    digest: str
    data: dict[str, Any] = field(repr=False)

    @property
    def is_index(self) -> bool:
        """An OCI image index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES

    @property
    def is_opaque(self) -> bool:
        """A manifest of a type ecr-mirror does not know (parsed with ``opaque_type``): copied as bytes,
        nothing in it followed."""
        return self.media_type not in KNOWN_TYPES

    @property
    def is_image(self) -> bool:
        """An image manifest whose config is an image config (a runnable image, not an artifact)."""
        if self.media_type not in IMAGE_TYPES or self.data.get("artifactType"):
            return False
        config = self.data.get("config")
        return isinstance(config, dict) and config.get("mediaType") in IMAGE_CONFIG_TYPES

    @property
    def artifact_type(self) -> str | None:
        """What an artifact is (manifest.md: ``artifactType``, else the config media type); ``None`` for
        runnable images, indexes without ``artifactType`` and opaque manifests."""
        declared = self.data.get("artifactType")
        if isinstance(declared, str) and declared:
            return declared
        if self.media_type in IMAGE_TYPES and not self.is_image:
            config = self.data.get("config")
            media_type = config.get("mediaType") if isinstance(config, dict) else None
            return media_type if isinstance(media_type, str) else None
        return None

    @property
    def children(self) -> list[Descriptor]:
        """An index's ``manifests`` entries (``[]`` for an image manifest)."""
        if not self.is_index:
            return []
        where = f"index {self.digest}"
        return [Descriptor.from_json(d, where=where) for d in self.data["manifests"]]

    @property
    def config(self) -> Descriptor:
        """An image manifest's config descriptor; raises :class:`ManifestError` for anything else."""
        if self.media_type not in IMAGE_TYPES:
            kind = "an index" if self.is_index else f"a {self.media_type}"
            raise ManifestError(f"{self.digest} is {kind}, it has no config")
        return Descriptor.from_json(self.data["config"], where=f"manifest {self.digest}")

    @property
    def layers(self) -> list[Descriptor]:
        """An image manifest's layer descriptors; the withdrawn artifact manifest's ``blobs``; ``[]`` for
        an index or an opaque manifest."""
        where = f"manifest {self.digest}"
        if self.media_type in IMAGE_TYPES:
            return [Descriptor.from_json(d, where=where) for d in self.data.get("layers", [])]
        if self.media_type == OCI_ARTIFACT_MANIFEST:
            return [Descriptor.from_json(d, where=where) for d in self.data.get("blobs", [])]
        return []

    @property
    def blobs(self) -> list[Descriptor]:
        """Every blob descriptor: config first, then layers (duplicates removed, order kept); non-distributable
        layers included (see :attr:`required_blobs`)."""
        seen: set[str] = set()
        out = []
        config = [self.config] if self.media_type in IMAGE_TYPES else []
        for d in [*config, *self.layers]:
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(d)
        return out

    @property
    def nondistributable_layers(self) -> list[Descriptor]:
        """Layers that are absent from registries by design (:attr:`Descriptor.is_nondistributable`)."""
        return [d for d in self.layers if d.is_nondistributable]

    @property
    def required_blobs(self) -> list[Descriptor]:
        """The blobs a registry must hold for this manifest: :attr:`blobs` without non-distributable layers.

        What a copy transfers by default and what a completeness check looks for (image-spec layer.md:
        non-distributable layers are fetched from their ``urls``, not from the registry).
        """
        skipped = {d.digest for d in self.nondistributable_layers}
        config = self.config.digest if self.media_type in IMAGE_TYPES else None
        return [d for d in self.blobs if d.digest not in skipped or d.digest == config]

    @property
    def subject(self) -> Descriptor | None:
        """The ``subject`` (OCI 1.1: the manifest this one refers to), or ``None``. Never followed by a
        copy: a subject need not exist where the manifest is pushed (distribution-spec, "Pushing
        Manifests with Subject")."""
        if self.is_opaque:
            return None
        s = self.data.get("subject")
        return Descriptor.from_json(s, where=f"manifest {self.digest}") if s else None

    def descriptor(self, platform: Platform | None = None) -> dict[str, Any]:
        """A descriptor object of this manifest (for an index's ``manifests``), with ``platform`` if given."""
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw)}
        if platform is not None:
            d["platform"] = platform.as_dict()
        return d


def _media_type_of(data: dict[str, Any], content_type: str | None, *, opaque_ok: bool = False) -> str:
    declared = data.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip().lower()
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType is not a string")
    version = data.get("schemaVersion")
    if declared in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or header in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or (type(version) is int and version == 1):
        raise ManifestError("Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current tool")
    if declared in KNOWN_TYPES:
        if header in KNOWN_TYPES and header != declared:
            raise ManifestError(f"Content-Type {header} disagrees with the manifest's mediaType {declared}")
        return declared
    if declared:
        if opaque_ok:
            return header or declared
        raise ManifestError(f"unsupported manifest mediaType {declared}")
    if header in KNOWN_TYPES:
        return header
    # OCI allows mediaType to be absent: tell index from manifest by shape
    if "manifests" in data:
        return OCI_INDEX
    if "config" in data:
        return OCI_MANIFEST
    if opaque_ok and header:
        return header
    raise ManifestError(f"cannot tell what kind of manifest this is (Content-Type {header or 'missing'})")


def _json_depth_exceeds(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


#: a media type as RFC 6838 section 4.2 names them
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z")


def is_media_type(text: object) -> bool:
    """Whether ``text`` is a well-formed media type (``type/subtype``, RFC 6838 section 4.2): fit for an
    ``Accept`` or ``Content-Type`` header."""
    return isinstance(text, str) and _MEDIA_TYPE.match(text) is not None


def _opaque(raw: bytes, digest: str, content_type: str | None, opaque_type: str) -> Manifest:
    header = (content_type or "").split(";", 1)[0].strip().lower()
    media_type = header or opaque_type
    if not is_media_type(media_type):
        raise ManifestError(f"manifest {digest} has no usable media type ({media_type[:80]!r})")
    return Manifest(raw, media_type, digest, {})


def parse_manifest(
    raw: bytes, content_type: str | None = None, *, expected_digest: str | None = None, opaque_type: str | None = None,
) -> Manifest:
    """Parse manifest bytes; verify ``expected_digest`` (if given) against the bytes.

    ``opaque_type``: the media type an index entry gives these bytes, when it is one ecr-mirror does
    not know. Bytes that are not a manifest of a known type then parse as an opaque :class:`Manifest`
    (media type: ``content_type``, else ``opaque_type``; :attr:`Manifest.is_opaque`) instead of failing:
    image-index.md says an unknown entry media type MUST NOT be an error. Raises :class:`ManifestError`,
    :class:`DigestMismatchError`.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    digest = sha256_digest(raw)
    if expected_digest is not None and expected_digest != digest:
        from .errors import DigestMismatchError

        raise DigestMismatchError(
            f"manifest bytes hash to {digest}, expected {expected_digest}", expected=expected_digest, actual=digest
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise ManifestError(f"manifest {digest} is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        if opaque_type:
            return _opaque(raw, digest, content_type, opaque_type)
        raise ManifestError(f"manifest {digest} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        if opaque_type:
            return _opaque(raw, digest, content_type, opaque_type)
        raise ManifestError(f"manifest {digest} is not a JSON object")
    if _json_depth_exceeds(data, MAX_JSON_DEPTH):
        raise ManifestError(f"manifest {digest} is nested too deeply (over {MAX_JSON_DEPTH} levels)")
    media_type = _media_type_of(data, content_type, opaque_ok=opaque_type is not None)
    if media_type not in KNOWN_TYPES:
        return _opaque(raw, digest, content_type, opaque_type or media_type)
    # the withdrawn artifact manifest had no schemaVersion (image-spec v1.1.0-rc2 artifact.md)
    if media_type != OCI_ARTIFACT_MANIFEST and (type(data.get("schemaVersion")) is not int or data["schemaVersion"] != 2):
        raise ManifestError(f"manifest {digest} has schemaVersion {data.get('schemaVersion')!r}, expected 2")
    m = Manifest(raw, media_type, digest, data)
    if m.is_index:
        children = data.get("manifests")
        if not isinstance(children, list):
            raise ManifestError(f"index {digest} has no manifests list")
        if len(children) > MAX_INDEX_CHILDREN:
            raise ManifestError(f"index {digest} lists {len(children)} manifests, over the limit of {MAX_INDEX_CHILDREN}")
        for child in m.children:
            if child.digest == digest:
                raise ManifestError(f"index {digest} lists itself")
            if child.media_type.startswith(_BLOB_TYPE_PREFIXES):
                raise ManifestError(
                    f"index {digest} lists {child.digest} of unsupported type {child.media_type} (a blob, not a manifest)"
                )
    elif media_type == OCI_ARTIFACT_MANIFEST:
        if not isinstance(data.get("blobs", []), list):
            raise ManifestError(f"artifact manifest {digest} has an invalid blobs list")
        if len(data.get("blobs", [])) > MAX_IMAGE_LAYERS:
            raise ManifestError(f"artifact manifest {digest} lists over {MAX_IMAGE_LAYERS} blobs")
        m.blobs  # validates every descriptor
    else:
        if not isinstance(data.get("config"), dict):
            raise ManifestError(f"manifest {digest} has no config descriptor")
        layers = data.get("layers", [])
        if not isinstance(layers, list):
            raise ManifestError(f"manifest {digest} has an invalid layers list")
        if len(layers) > MAX_IMAGE_LAYERS:
            raise ManifestError(f"manifest {digest} has {len(layers)} layers, over the limit of {MAX_IMAGE_LAYERS}")
        m.blobs  # validates every descriptor
    return m


# ---------------------------------------------------------------- what a copy does with each entry

#: :func:`entry_kind` values
ENTRY_INDEX = "index"  # recurse: its entries first, then it, by digest
ENTRY_MANIFEST = "manifest"  # an image or artifact manifest: its required blobs, then it, by digest
ENTRY_UNKNOWN = "unknown"  # fetched by digest accepting its media type, then handled as what it turns out to be


def entry_kind(descriptor: Descriptor) -> str:
    """What a copy does with an index entry (image-index.md ``manifests``), by its descriptor media type:
    :data:`ENTRY_INDEX`, :data:`ENTRY_MANIFEST` or :data:`ENTRY_UNKNOWN` (image-index.md: an unknown
    media type MUST NOT be an error; copied by digest so the index stays valid at the destination)."""
    if descriptor.media_type in INDEX_TYPES:
        return ENTRY_INDEX
    if descriptor.media_type in KNOWN_TYPES:
        return ENTRY_MANIFEST
    return ENTRY_UNKNOWN


# ---------------------------------------------------------------- selecting and rewriting


def select_children(index: Manifest, platforms: Sequence[Platform] | None) -> list[Descriptor]:
    """The children to copy for ``platforms`` (None: all), attestations of kept images included.

    Raises :class:`ManifestError` naming the platform when a requested one is absent.
    """
    children = index.children
    if platforms is None:
        return children
    kept: list[Descriptor] = []
    kept_entries: set[int] = set()
    for want in platforms:
        found = [c for c in children if not c.is_attestation and c.platform and want.matches(c.platform)]
        if not found:
            available = ", ".join(sorted({str(c.platform) for c in children if c.platform and not c.is_attestation}))
            nested = sum(1 for c in children if c.media_type in INDEX_TYPES)
            hint = (f"; platforms inside its {nested} nested index(es) are not selected: copy every platform instead"
                    if nested else "")
            raise ManifestError(f"platform {want} is not in {index.digest} (available: {available or 'none'}){hint}")
        kept_entries.update(id(c.raw) for c in found)
    # keep index order; then attach attestations for kept images
    for c in children:
        if id(c.raw) in kept_entries:
            kept.append(c)
    images = {c.digest for c in kept}
    for c in children:
        if c.is_attestation and c.attests in images:
            kept.append(c)
    # preserve original order overall
    order = {id(c.raw): i for i, c in enumerate(children)}
    kept.sort(key=lambda c: order[id(c.raw)])
    return kept


def _manifests_spans(raw: bytes) -> tuple[str, list[tuple[int, int]], tuple[int, int]]:
    """Raw text spans of each element of the top-level ``manifests`` array, and of the array."""
    text = raw.decode("utf-8")
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0

    def skip(j: int) -> int:
        while j < len(text) and text[j] in ws:
            j += 1
        return j

    i = skip(i)
    if text[i] != "{":
        raise ManifestError("index is not a JSON object")
    i = skip(i + 1)
    found: tuple[list[tuple[int, int]], tuple[int, int]] | None = None
    while i < len(text) and text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] != ":":
            raise ManifestError("index JSON is malformed")
        i = skip(i + 1)
        if key == "manifests":
            # a key given twice: json.loads keeps the last one, and so must we
            start = i
            if text[i] != "[":
                raise ManifestError("index manifests is not a list")
            spans = []
            i = skip(i + 1)
            while text[i] != "]":
                s = i
                _, i = decoder.raw_decode(text, i)
                spans.append((s, i))
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            i += 1
            found = (spans, (start, i))
        else:
            _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    if found is None:
        raise ManifestError("index has no manifests list")
    return text, found[0], found[1]


def rewrite_index(
    index: Manifest,
    keep: Sequence[Descriptor],
    *,
    source: str | None = None,
) -> Manifest:
    """A new index of the same media type listing exactly ``keep``.

    Each kept descriptor is carried over byte for byte from the source index; the rest
    is serialised deterministically (same input, same bytes, same digest). An OCI index
    records the source reference and digest as annotations. Keeping every child returns
    ``index`` itself, original bytes and digest.
    """
    if not index.is_index:
        raise ManifestError(f"{index.digest} is not an index")
    all_children = index.children
    keep_ids = {id(d.raw) for d in keep}
    if len(keep_ids) == len(all_children) and all(id(c.raw) in keep_ids for c in all_children):
        return index
    text, spans, _ = _manifests_spans(index.raw)
    if len(spans) != len(all_children):
        raise ManifestError(f"index {index.digest}: cannot locate its descriptors")
    pieces = [text[s:e] for (s, e), c in zip(spans, all_children) if id(c.raw) in keep_ids]
    if len(pieces) != len(keep):
        raise ManifestError("descriptors to keep must come from the index being rewritten")
    kept_raw = [c.raw for c in all_children if id(c.raw) in keep_ids]
    if any(json.loads(piece) != obj for piece, obj in zip(pieces, kept_raw)):
        raise ManifestError(f"index {index.digest}: cannot locate its descriptors")
    sentinel = "\x00MANIFESTS\x00"
    top: dict[str, Any] = {}
    for key, value in index.data.items():
        top[key] = sentinel if key == "manifests" else value
    if index.media_type == OCI_INDEX and source:
        if not isinstance(top.get("annotations") or {}, dict):
            raise ManifestError(f"index {index.digest} has invalid annotations (not an object)")
        annotations = dict(top.get("annotations") or {})
        annotations[ANNOTATION_SOURCE_REF] = source
        annotations[ANNOTATION_SOURCE_DIGEST] = index.digest
        top["annotations"] = annotations
    body = json.dumps(top, indent=3, ensure_ascii=True, sort_keys=False)
    array = "[\n      " + ",\n      ".join(pieces) + "\n   ]" if pieces else "[]"
    # anchored on the top-level key (indent 3): a string equal to the sentinel elsewhere is not it
    placeholder = '\n   "manifests": ' + json.dumps(sentinel)
    body = body.replace(placeholder, '\n   "manifests": ' + array, 1)
    raw = body.encode("utf-8")
    return parse_manifest(raw, index.media_type)


def build_index(children: Sequence[tuple[Manifest, Platform]], media_type: str, annotations: dict[str, str] | None = None) -> Manifest:
    """A new index (deterministic bytes) over single-platform manifests, for ``assemble``."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    doc["manifests"] = [m.descriptor(p) for m, p in children]
    if annotations and media_type == OCI_INDEX:
        doc["annotations"] = dict(sorted(annotations.items()))
    raw = json.dumps(doc, indent=3).encode()
    return parse_manifest(raw, media_type)


def arch_tag_suffixes(descriptors: Sequence[Descriptor]) -> list[tuple[Descriptor, str]]:
    """``(descriptor, suffix)`` for ``<tag>-<suffix>`` tags, one per image entry, in index order.

    ``amd64``, ``arm64``; then only what is needed to tell entries of one architecture apart: the
    variant (``arm-v7``), the OS (``linux-amd64``, ``windows-amd64``), the ``os.version``
    (``amd64-10.0.17763.5820``; image-index.md ``platform``). Attestation, ``unknown/unknown`` and
    platform-less entries (artifacts, nested indexes) get no tag. Raises :class:`CopyError` when two
    entries would still get the same tag (same platform, or differing only in what no tag shows, such
    as ``os.features``), so a caller can refuse before writing anything.
    """
    images = [d for d in descriptors if d.platform and not d.platform.is_unknown and not d.is_attestation]

    def os_version(d: Descriptor) -> str:
        value = (d.raw.get("platform") or {}).get("os.version")
        return value if isinstance(value, str) else ""

    by_arch: dict[str, list[Descriptor]] = {}
    for d in images:
        by_arch.setdefault(d.platform.architecture, []).append(d)  # type: ignore[union-attr]
    suffix_of: dict[int, str] = {}
    for arch, group in by_arch.items():
        variants = {d.platform.variant for d in group}  # type: ignore[union-attr]
        oses = {d.platform.os for d in group}  # type: ignore[union-attr]
        versions = {os_version(d) for d in group}
        for d in group:
            p = d.platform
            assert p is not None
            parts = [p.os] if len(oses) > 1 else []
            parts.append(arch)
            if len(variants) > 1 and p.variant:
                parts.append(p.variant)
            if len(versions) > 1 and os_version(d):
                parts.append(os_version(d))
            suffix_of[id(d.raw)] = re.sub(r"[^A-Za-z0-9_.-]", "-", "-".join(parts))
    out = [(d, suffix_of[id(d.raw)]) for d in images]
    owners: dict[str, Descriptor] = {}
    for d, suffix in out:
        other = owners.setdefault(suffix, d)
        if other is not d and other.digest != d.digest:
            raise CopyError(
                f"arch tags: {other.digest} and {d.digest} ({d.platform}) would both be tagged <tag>-{suffix}; "
                "their platforms differ in nothing a tag shows"
            )
    return out

