"""Images as real registries serve them, beyond "index -> runnable images -> fetchable blobs".

    registry = registry_factory(manifest_urls_allow=["^https?://"])   # distribution accepts foreign layers
    index = windows_manifest_list()                  # Docker list: linux/amd64 + windows/amd64 with a foreign layer
    push_index(registry, "win/app", index, tag="ltsc")   # the foreign layer's bytes are NOT pushed
    tree = nested_index()                            # an index as an entry of an index
    push_tree(registry, "nested/app", tree, tag="v1")

- Non-distributable ("foreign") layers: Windows base layers are
  ``application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`` (OCI:
  ``application/vnd.oci.image.layer.nondistributable.v1.tar+gzip``, deprecated in image-spec 1.1 but still
  served) with ``urls``; the bytes are not in the registry (Image.foreign lists their digests; push_image
  skips them). Distribution refuses such manifests unless ``RegistryProcess(manifest_urls_allow=[...])``.
  The default ``urls`` point at an ``.invalid`` host: nothing can reach the internet through them. Pass
  ``foreign_urls`` to point them at something a test serves (e.g. another registry's blob URL).
- Windows images whose platforms differ only in ``os.version``.
- A nested index (image-spec image-index.md: an index MAY reference another index), an index with an
  artifact entry, an ``unknown/unknown`` entry that is not a BuildKit attestation, and (optionally) an
  entry whose descriptor media type no client knows.

Sources: image-spec ``layer.md`` ("Non-Distributable Layers"), ``image-index.md``, ``descriptor.md`` (``urls``);
Docker image manifest v2 schema 2 (foreign layers); distribution ``docs/configuration.md`` (``validation``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import httpx

from .images import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_LIST,
    OCI_INDEX,
    OCI_NONDISTRIBUTABLE_LAYER,
    Image,
    Index,
    _base,
    _ClientScope,
    _dumps,
    build_image,
    build_index,
    push_image,
    push_manifest,
    sha256_digest,
)
from .referrers import build_artifact

__all__ = [
    "DOCKER_FOREIGN_LAYER",
    "OCI_NONDISTRIBUTABLE_LAYER",
    "URLS_ALLOW_ANY",
    "WINDOWS_OS_VERSIONS",
    "NestedIndex",
    "build_nested_index",
    "UNKNOWN_ENTRY_TYPE",
    "build_windows_image",
    "index_with_artifact_entry",
    "manifests_in",
    "nested_index",
    "push_tree",
    "windows_manifest_list",
    "windows_versions_index",
]

#: ``RegistryProcess(manifest_urls_allow=URLS_ALLOW_ANY)``: accept foreign layers with http(s) urls
URLS_ALLOW_ANY = ("^https?://",)
#: Windows Server 2019 and 2022 (LTSC) build numbers, as ``platform."os.version"`` carries them
WINDOWS_OS_VERSIONS = ("10.0.17763.5820", "10.0.20348.2461")

Node = Union[Image, Index, "NestedIndex"]


def build_windows_image(
    os_version: str = WINDOWS_OS_VERSIONS[0],
    *,
    oci: bool = False,
    foreign: bool = True,
    foreign_urls: Callable[[str], Sequence[str]] | Sequence[str] | None = None,
    layers: int = 2,
    layer_size: int = 1024,
    seed: int = 0,
) -> Image:
    """A ``windows/amd64`` image for ``os_version`` (in its config and in its ``platform``), Docker media
    types unless ``oci``.

    With ``foreign`` (default) its first layer is a non-distributable base layer (Docker foreign type, or
    the OCI nondistributable type with ``oci=True``) listed with ``urls`` (default: an ``.invalid`` host;
    ``foreign_urls`` is a list, or ``f(digest) -> list``). Its bytes are real (``image.layers[0]``, so a
    test can serve them) but ``push_image`` never pushes them (``image.foreign``). Same arguments, same digests.
    """
    return build_image(
        "windows/amd64",
        layers=layers,
        layer_size=layer_size,
        seed=seed,
        oci=oci,
        os_version=os_version,
        foreign_layers=1 if foreign else 0,
        foreign_urls=foreign_urls,
    )


def windows_manifest_list(
    *,
    oci: bool = False,
    seed: int = 0,
    foreign_urls: Callable[[str], Sequence[str]] | Sequence[str] | None = None,
) -> Index:
    """A Docker manifest list (OCI index with ``oci=True``) of ``linux/amd64`` and ``windows/amd64``, the
    Windows image with a foreign base layer (the OCI nondistributable type with ``oci=True``)."""
    linux = build_image("linux/amd64", oci=oci, seed=seed)
    windows = build_windows_image(oci=oci, seed=seed, foreign_urls=foreign_urls)
    return build_index([linux, windows], oci=oci)


def windows_versions_index(
    os_versions: Sequence[str] = WINDOWS_OS_VERSIONS, *, oci: bool = False, foreign: bool = True, seed: int = 0
) -> Index:
    """An index of ``windows/amd64`` images whose platforms differ only in ``os.version`` (one per version)."""
    if len(set(os_versions)) != len(os_versions):
        raise ValueError("os_versions must differ")
    return build_index([build_windows_image(v, oci=oci, foreign=foreign, seed=seed) for v in os_versions], oci=oci)


# ---------------------------------------------------------------------- indexes of anything


@dataclass(frozen=True)
class NestedIndex(Index):
    """An index whose entries may be images, artifacts, indexes or nested indexes.

    ``entries`` are every entry in index order and ``descriptors`` their descriptors as written;
    ``images`` (inherited) are only the image entries that have a platform, so ``image_for`` works.
    """

    entries: tuple[Node, ...] = ()
    descriptors: tuple[dict[str, Any], ...] = ()

    @property
    def children(self) -> tuple[Node, ...]:  # type: ignore[override]
        return self.entries


def _descriptor(node: Node) -> dict[str, Any]:
    if isinstance(node, Image):
        return node.descriptor()
    return {"mediaType": node.media_type, "digest": node.digest, "size": node.size}


def build_nested_index(
    entries: Sequence[Node | tuple[Node, Mapping[str, Any]]],
    *,
    oci: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> NestedIndex:
    """An OCI index (Docker list with ``oci=False``) over ``entries``.

    An entry is an :class:`Image` (or artifact), an :class:`Index` or a :class:`NestedIndex`, or
    ``(node, fields)`` where ``fields`` are set on (or, with value None, removed from) its descriptor,
    e.g. ``{"platform": {"os": "linux", "architecture": "amd64"}}`` or ``{"mediaType": "application/x-unknown"}``.
    """
    nodes: list[Node] = []
    descriptors: list[dict[str, Any]] = []
    for entry in entries:
        node, fields = entry if isinstance(entry, tuple) else (entry, {})
        desc = _descriptor(node)
        for key, value in fields.items():
            if value is None:
                desc.pop(key, None)
            else:
                desc[key] = value
        nodes.append(node)
        descriptors.append(desc)
    if not nodes:
        raise ValueError("an index needs at least one entry")
    media_type = OCI_INDEX if oci else DOCKER_LIST
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": descriptors}
    if annotations:
        index["annotations"] = dict(annotations)
    manifest = _dumps(index, media_type)
    images = tuple(n for n, d in zip(nodes, descriptors, strict=True) if isinstance(n, Image) and "platform" in d)
    return NestedIndex(
        manifest, media_type, sha256_digest(manifest), images, (), entries=tuple(nodes), descriptors=tuple(descriptors)
    )


def nested_index(*, seed: int = 0) -> NestedIndex:
    """An index whose first entry is an index (linux/amd64 + linux/arm64/v8), then a linux/s390x image."""
    inner = build_index([build_image("linux/amd64", seed=seed), build_image("linux/arm64/v8", seed=seed)])
    return build_nested_index([inner, build_image("linux/s390x", seed=seed)])


#: media type of the entry no client knows in :func:`index_with_artifact_entry`
UNKNOWN_ENTRY_TYPE = "application/vnd.example.unknown.v1+json"


def index_with_artifact_entry(*, seed: int = 0, unknown_media_type: bool = False) -> NestedIndex:
    """An OCI index of linux/amd64 and linux/arm64/v8, then an artifact entry (with ``artifactType``, no
    platform, e.g. a Helm chart or docs bundle kept beside the images) and an ``unknown/unknown`` entry that
    is an artifact but not a BuildKit attestation (no ``vnd.docker.reference.*`` annotations).

    ``unknown_media_type=True`` adds an entry whose descriptor ``mediaType`` is :data:`UNKNOWN_ENTRY_TYPE`
    (pointing at a stored manifest; distribution only checks that the digest exists).
    """
    images = [build_image("linux/amd64", seed=seed), build_image("linux/arm64/v8", seed=seed)]
    docs = build_artifact("application/vnd.example.docs.v1+json", b'{"docs": "ecr-mirror test bundle %d"}' % seed)
    extra = build_artifact("application/vnd.example.extra.v1+json", b'{"extra": %d}' % seed)
    entries: list[Node | tuple[Node, Mapping[str, Any]]] = [
        *images,
        docs,
        (extra, {"platform": {"architecture": "unknown", "os": "unknown"}}),
    ]
    if unknown_media_type:
        odd = build_artifact("application/vnd.example.odd.v1+json", b'{"odd": %d}' % seed)
        entries.append((odd, {"mediaType": UNKNOWN_ENTRY_TYPE, "artifactType": None}))
    return build_nested_index(entries)


# ---------------------------------------------------------------------- walking and pushing


def manifests_in(node: Node) -> Iterator[Node]:
    """Every manifest under ``node`` and ``node`` itself, children before parents, each digest once."""
    seen: set[str] = set()

    def walk(current: Node) -> Iterator[Node]:
        children: Sequence[Node] = () if isinstance(current, Image) else current.children
        for child in children:
            yield from walk(child)
        if current.digest not in seen:
            seen.add(current.digest)
            yield current

    yield from walk(node)


def push_tree(
    registry: object,
    repo: str,
    node: Node,
    tag: str | None = None,
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> str:
    """Push ``node`` and everything under it, children first, then ``node`` by ``tag`` (or digest).

    Foreign layers are skipped (as :func:`push_image` does). Returns ``node``'s digest.
    """
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        for current in manifests_in(node):
            reference = tag if current is node and tag else current.digest
            if isinstance(current, Image):
                push_image(base, repo, current, tag=reference, client=http)
            else:  # an index: its entries went first
                push_manifest(base, repo, reference, current.manifest, current.media_type, client=http)
    return node.digest
