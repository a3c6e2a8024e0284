"""Real test images, built in memory, pushed and read back with plain httpx.

Independent of the product code on purpose: tests must not check ``ecr_mirror`` with itself.

    amd64 = build_image("linux/amd64", seed=1)
    arm64 = build_image("linux/arm64/v8", seed=1)
    index = build_index([amd64, arm64], attestations=True)
    push_index(registry.url, "team/app", index, tag="v1")
    body, content_type, digest = get_manifest(registry.url, "team/app", "v1")
    assert digest == index.digest

Layers are real gzip'd tars whose content is deterministic from a seed (random bytes, so the
sizes are real and incompressible). Configs carry ``rootfs.diff_ids`` (sha256 of the tar).
Manifests are indented JSON (3 spaces for Docker media types, 2 for OCI), like the tools that
make them, so any re-serialisation changes the digest and shows up in tests.

Large layers (``layer_size`` above :data:`STREAM_THRESHOLD`, or ``stream=True``) are never held in
memory: their digests come from one generating pass (cached per process), and uploads
re-generate the bytes from the seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import ssl
import tarfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "BearerAuth",
    "Image",
    "Index",
    "Layer",
    "MANIFEST_ACCEPT",
    "RegistryError",
    "build_attestation",
    "build_image",
    "build_index",
    "delete_manifest",
    "get_blob",
    "get_manifest",
    "head_manifest",
    "list_tags",
    "make_layer",
    "blob_exists",
    "parse_platform",
    "push_blob",
    "push_image",
    "push_index",
    "push_manifest",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: non-distributable ("foreign") layers: bytes at the descriptor's ``urls``, not in the registry
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
#: default ``urls`` of foreign layers: an ``.invalid`` host, so nothing can reach the internet through them
FOREIGN_URL_BASE = "https://foreign-layers.example.invalid/v2/windows/servercore/blobs"
IN_TOTO = "application/vnd.in-toto+json"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v0.2"

#: every manifest type, sent on each GET/HEAD so the registry never converts
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

CHUNK = 64 * 1024
#: layers with more content bytes than this are streamed (not held in memory) by default
STREAM_THRESHOLD = 32 * 1024 * 1024
_POOL = 16 * 1024 * 1024  # random pool for big layers: windows of it at seeded offsets
_FAST_LEVEL_ABOVE = 1024 * 1024  # gzip level 0 (stored) above this, so big layers build fast
_CREATED = "2024-01-01T00:00:00Z"
_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _dumps(obj: Any, media_type: str) -> bytes:
    return json.dumps(obj, indent=3 if "docker" in media_type else 2).encode()


def parse_platform(platform: str) -> dict[str, str]:
    """``"linux/arm64/v8"`` -> ``{"architecture": "arm64", "os": "linux", "variant": "v8"}``."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    result = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


# ---------------------------------------------------------------------- layers


def _content_pieces(seed: int, size: int) -> Iterator[bytes]:
    """``size`` deterministic pseudo-random bytes, in pieces of at most 64 KiB."""
    if size <= _POOL:
        rng = random.Random(seed)
        while size > 0:
            n = min(CHUNK, size)
            yield rng.randbytes(n)
            size -= n
        return
    # big: windows of a 16 MiB random pool at seeded offsets (fast, and incompressible for gzip)
    pool = random.Random(seed).randbytes(_POOL + CHUNK)
    offsets = random.Random(seed ^ 0x5EED)
    view = memoryview(pool)
    while size > 0:
        n = min(CHUNK, size)
        start = offsets.randrange(_POOL)
        yield bytes(view[start : start + n])
        size -= n


def _tar_member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


def _tar_pieces(seed: int, size: int, label: str) -> Iterator[bytes]:
    """A tar with ``<label>/info.txt`` and ``<label>/data.bin`` (``size`` random bytes)."""
    info = f"ecr-mirror test layer\nlabel={label}\nseed={seed}\nsize={size}\n".encode()
    written = 0
    for name, length, pieces in (
        (f"{label}/info.txt", len(info), iter([info])),
        (f"{label}/data.bin", size, _content_pieces(seed, size)),
    ):
        header = _tar_member(name, length)
        yield header
        written += len(header)
        for piece in pieces:
            yield piece
        written += length
        pad = -length % tarfile.BLOCKSIZE
        if pad:
            yield bytes(pad)
            written += pad
    end = 2 * tarfile.BLOCKSIZE
    end += -(written + end) % tarfile.RECORDSIZE
    yield bytes(end)


def _gzip_pieces(seed: int, size: int, label: str, tar_hash: Any = None) -> Iterator[bytes]:
    """The gzip'd tar, in pieces; feeds the uncompressed tar to ``tar_hash`` if given."""
    level = 0 if size > _FAST_LEVEL_ABOVE else 6
    # wbits=31: gzip wrapper with mtime 0, so the bytes are deterministic
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for piece in _tar_pieces(seed, size, label):
        if tar_hash is not None:
            tar_hash.update(piece)
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


@functools.lru_cache(maxsize=256)
def _measure(seed: int, size: int, label: str) -> tuple[str, int, str]:
    """(digest, size, diff_id) of a streamed layer, computed by generating it once."""
    tar_hash, gz_hash, total = hashlib.sha256(), hashlib.sha256(), 0
    for piece in _gzip_pieces(seed, size, label, tar_hash):
        gz_hash.update(piece)
        total += len(piece)
    return "sha256:" + gz_hash.hexdigest(), total, "sha256:" + tar_hash.hexdigest()


@dataclass(frozen=True)
class Layer:
    """A gzip'd tar layer. ``data`` is None for a streamed layer (re-generated on demand)."""

    seed: int
    content_size: int  # random bytes inside the tar
    label: str
    digest: str
    size: int  # compressed size: the descriptor size
    diff_id: str  # sha256 of the uncompressed tar
    data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def streamed(self) -> bool:
        return self.data is None

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        if self.data is not None:
            for start in range(0, len(self.data), chunk_size):
                yield self.data[start : start + chunk_size]
            return
        yield from _rechunk(_gzip_pieces(self.seed, self.content_size, self.label), chunk_size)


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Pieces of exactly ``size`` bytes (the last one shorter)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def make_layer(seed: int, size: int = 1024, *, label: str = "layer", stream: bool | None = None) -> Layer:
    """A deterministic layer with ``size`` random bytes of content (the blob is a bit larger).

    ``stream=None`` streams layers above :data:`STREAM_THRESHOLD`. Streamed and in-memory layers
    with the same arguments have the same digest.
    """
    if size < 0:
        raise ValueError("layer size must be >= 0")
    if stream is None:
        stream = size > STREAM_THRESHOLD
    if stream:
        digest, blob_size, diff_id = _measure(seed, size, label)
        return Layer(seed, size, label, digest, blob_size, diff_id, None)
    tar_hash = hashlib.sha256()
    data = b"".join(_gzip_pieces(seed, size, label, tar_hash))
    return Layer(seed, size, label, sha256_digest(data), len(data), "sha256:" + tar_hash.hexdigest(), data)


# ---------------------------------------------------------------------- images and indexes


@dataclass(frozen=True)
class Image:
    """An image manifest and everything it references."""

    manifest: bytes
    media_type: str
    digest: str
    config: dict[str, Any]
    config_bytes: bytes
    config_digest: str
    layers: tuple[Layer, ...]  # tar layers (empty for an attestation manifest)
    blobs: dict[str, bytes]  # every in-memory blob: config, small layers, attestation payloads
    platform: dict[str, str] | None = None
    annotations: dict[str, str] | None = None  # for the index descriptor (attestations)
    #: digests of non-distributable (foreign) layers: listed in the manifest with ``urls``, bytes kept in
    #: ``layers`` (so a test can serve them elsewhere) but never pushed (see tests.support.field)
    foreign: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.manifest)

    @property
    def platform_string(self) -> str | None:
        if self.platform is None:
            return None
        parts = [self.platform["os"], self.platform["architecture"]]
        if "variant" in self.platform:
            parts.append(self.platform["variant"])
        return "/".join(parts)

    @property
    def blob_digests(self) -> list[str]:
        """Config first, then layers, as the manifest lists them."""
        manifest = self.json
        return [manifest["config"]["digest"]] + [d["digest"] for d in manifest["layers"]]

    @property
    def blob_sizes(self) -> dict[str, int]:
        manifest = self.json
        return {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}

    @property
    def total_size(self) -> int:
        """Bytes of all referenced blobs (config + layers)."""
        return sum(self.blob_sizes.values())

    def blob_chunks(self, digest: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        if digest in self.blobs:
            data = self.blobs[digest]
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            return
        for layer in self.layers:
            if layer.digest == digest:
                yield from layer.chunks(chunk_size)
                return
        raise KeyError(digest)

    def descriptor(self) -> dict[str, Any]:
        """The descriptor of this manifest inside an index."""
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        if self.platform is not None:
            desc["platform"] = dict(self.platform)
        return desc


def build_image(
    platform: str = "linux/amd64",
    *,
    layers: int = 2,
    layer_size: int = 1024,
    seed: int = 0,
    oci: bool = True,
    base: Image | None = None,
    stream: bool | None = None,
    os_version: str | None = None,
    foreign_layers: int = 0,
    foreign_urls: Callable[[str], Sequence[str]] | Sequence[str] | None = None,
) -> Image:
    """A runnable-looking image for ``platform`` with ``layers`` new layers of ``layer_size`` bytes.

    Same arguments, same digests. Different platforms or seeds give different layers.
    ``base`` puts that image's layers first (shared blobs, as images built FROM one base).
    ``os_version`` sets ``os.version`` in the config and the platform (Windows images).
    ``foreign_layers=N`` makes the first N new layers non-distributable (Docker foreign type, or the OCI
    nondistributable type) with ``urls`` (``foreign_urls``: a list or ``f(digest) -> list``; default an
    ``.invalid`` host); their digests are in ``Image.foreign`` and :func:`push_image` skips them.
    """
    plat = parse_platform(platform)
    if os_version is not None:
        plat["os.version"] = os_version
    new_layers = [
        make_layer(_seed_for(seed, platform, i), layer_size, label=f"layer{i}", stream=stream) for i in range(layers)
    ]
    all_layers = tuple(base.layers if base else ()) + tuple(new_layers)
    config: dict[str, Any] = {
        "created": _CREATED,
        "architecture": plat["architecture"],
        "os": plat["os"],
        **({"variant": plat["variant"]} if "variant" in plat else {}),
        **({"os.version": os_version} if os_version is not None else {}),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.opencontainers.image.title": f"ecr-mirror-test-{seed}"},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in all_layers]},
        "history": [{"created": _CREATED, "created_by": f"ADD {layer.label} /"} for layer in all_layers],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    layer_type = OCI_LAYER if oci else DOCKER_LAYER
    config_desc = {
        "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
        "digest": sha256_digest(config_bytes),
        "size": len(config_bytes),
    }
    layer_descs = [{"mediaType": layer_type, "digest": layer.digest, "size": layer.size} for layer in all_layers]
    foreign = frozenset(layer.digest for layer in new_layers[:foreign_layers]) | (base.foreign if base else frozenset())
    for desc in layer_descs:
        if desc["digest"] in foreign:
            desc["mediaType"] = OCI_NONDISTRIBUTABLE_LAYER if oci else DOCKER_FOREIGN_LAYER
            urls = foreign_urls(desc["digest"]) if callable(foreign_urls) else foreign_urls
            desc["urls"] = list(urls if urls is not None else [f"{FOREIGN_URL_BASE}/{desc['digest']}"])
    manifest = {"schemaVersion": 2, "mediaType": media_type, "config": config_desc, "layers": layer_descs}
    manifest_bytes = _dumps(manifest, media_type)
    blobs = {config_desc["digest"]: config_bytes}
    blobs.update({layer.digest: layer.data for layer in all_layers if layer.data is not None})
    return Image(
        manifest=manifest_bytes,
        media_type=media_type,
        digest=sha256_digest(manifest_bytes),
        config=config,
        config_bytes=config_bytes,
        config_digest=config_desc["digest"],
        layers=all_layers,
        blobs=blobs,
        platform=plat,
        foreign=foreign,
    )


def build_attestation(image: Image, *, seed: int = 0) -> Image:
    """A BuildKit-style attestation manifest for ``image`` (an in-toto provenance layer)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": SLSA_PROVENANCE,
        "subject": [
            {"name": f"pkg:docker/ecr-mirror-test@{seed}", "digest": {"sha256": image.digest.split(":", 1)[1]}}
        ],
        "predicate": {"builder": {"id": "https://example.invalid/ecr-mirror-tests"}, "buildType": "test"},
    }
    payload = json.dumps(statement, separators=(",", ":")).encode()
    layer_desc = {
        "mediaType": IN_TOTO,
        "digest": sha256_digest(payload),
        "size": len(payload),
        "annotations": {"in-toto.io/predicate-type": SLSA_PROVENANCE},
    }
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_desc = {"mediaType": OCI_CONFIG, "digest": sha256_digest(config_bytes), "size": len(config_bytes)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_bytes = _dumps(manifest, OCI_MANIFEST)
    return Image(
        manifest=manifest_bytes,
        media_type=OCI_MANIFEST,
        digest=sha256_digest(manifest_bytes),
        config=config,
        config_bytes=config_bytes,
        config_digest=config_desc["digest"],
        layers=(),
        blobs={config_desc["digest"]: config_bytes, layer_desc["digest"]: payload},
        platform={"architecture": "unknown", "os": "unknown"},
        annotations={
            "vnd.docker.reference.digest": image.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )


@dataclass(frozen=True)
class Index:
    """An image index (or Docker manifest list) and its children."""

    manifest: bytes
    media_type: str
    digest: str
    images: tuple[Image, ...]  # runnable platform images, in index order
    attestations: tuple[Image, ...]  # attestation manifests, after the images

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.manifest)

    @property
    def children(self) -> tuple[Image, ...]:
        return self.images + self.attestations

    @property
    def platforms(self) -> list[str]:
        return [image.platform_string for image in self.images]

    def image_for(self, platform: str) -> Image:
        for image in self.images:
            if image.platform_string == platform:
                return image
        raise KeyError(platform)


def build_index(
    images: Sequence[Image],
    *,
    oci: bool = True,
    attestations: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> Index:
    """An OCI index (or Docker manifest list with ``oci=False``) over ``images``.

    ``attestations=True`` appends one BuildKit-style attestation manifest per image, as BuildKit
    does (they are OCI manifests even inside a Docker list).
    """
    images = tuple(images)
    if not images:
        raise ValueError("an index needs at least one image")
    atts = tuple(build_attestation(image, seed=i) for i, image in enumerate(images)) if attestations else ()
    media_type = OCI_INDEX if oci else DOCKER_LIST
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [child.descriptor() for child in images + atts],
    }
    if annotations:
        if not oci:
            raise ValueError("Docker manifest lists have no annotations")
        index["annotations"] = dict(annotations)
    manifest_bytes = _dumps(index, media_type)
    return Index(manifest_bytes, media_type, sha256_digest(manifest_bytes), images, atts)


# ---------------------------------------------------------------------- registry I/O (plain httpx)


class RegistryError(RuntimeError):
    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        self.status = response.status_code if response is not None else None
        detail = ""
        if response is not None:
            try:
                detail = response.text[:500]
            except httpx.ResponseNotRead:
                detail = ""
        super().__init__(f"{message}: HTTP {self.status} {detail}".strip() if response is not None else message)


class BearerAuth(httpx.Auth):
    """Minimal token flow for registries behind a Bearer challenge (e.g. :class:`RegistryProxy`).

    Answers a 401 ``Bearer realm=...`` by fetching a token (Basic ``credentials`` if given) and
    retrying once. Request bodies must be bytes (a generator body cannot be replayed).
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self._tokens: dict[str, str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = request.url.path
        token = next((t for k, t in self._tokens.items() if key.startswith(k)), None)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(_challenge_params(challenge[7:]))
        query = {k: params[k] for k in ("service", "scope") if k in params}
        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        token_response = httpx.get(params["realm"], params=query, auth=auth, timeout=_TIMEOUT)
        if token_response.status_code != 200:
            raise RegistryError("token request failed", token_response)
        body = token_response.json()
        token = body.get("token") or body.get("access_token")
        self._tokens[_repo_prefix(key)] = token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _challenge_params(text: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r'([a-zA-Z_]+)="([^"]*)"', text):
        yield match.group(1), match.group(2)


def _repo_prefix(path: str) -> str:
    for marker in ("/manifests/", "/blobs/", "/tags/", "/referrers/"):
        if marker in path:
            return path.split(marker, 1)[0] + "/"
    return path


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # building httpx's default context (loading CA certificates) costs tens of milliseconds;
    # test registries are plain http, so build it once and share it
    return ssl.create_default_context()


def _base(registry: object) -> str:
    url = registry if isinstance(registry, str) else registry.url  # type: ignore[attr-defined]
    return url.rstrip("/")


class _ClientScope:
    """Use the caller's client, or a short-lived one."""

    def __init__(self, client: httpx.Client | None, auth: httpx.Auth | None) -> None:
        self._given = client
        self._auth = auth
        self._own: httpx.Client | None = None

    def __enter__(self) -> httpx.Client:
        if self._given is not None:
            return self._given
        self._own = httpx.Client(auth=self._auth, timeout=_TIMEOUT, follow_redirects=True, verify=_ssl_context())
        return self._own

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.close()


def _check(response: httpx.Response, what: str, *ok: int) -> httpx.Response:
    if response.status_code not in ok:
        response.read()
        raise RegistryError(what, response)
    return response


def blob_exists(
    registry: object, repo: str, digest: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> bool:
    with _ClientScope(client, auth) as http:
        response = http.head(f"{_base(registry)}/v2/{repo}/blobs/{digest}")
        return _check(response, f"HEAD blob {digest}", 200, 404).status_code == 200


def push_blob(
    registry: object,
    repo: str,
    digest: str,
    content: bytes | Iterable[bytes],
    size: int | None = None,
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> bool:
    """Upload one blob (POST, then one monolithic PUT ``?digest=``). False if it was already there.

    ``content`` may be an iterable of chunks; then ``size`` is required (sent as Content-Length).
    """
    if isinstance(content, bytes | bytearray):
        size = len(content)
    elif size is None:
        raise ValueError("size is required for a streamed blob")
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        if blob_exists(base, repo, digest, client=http):
            return False
        started = _check(http.post(f"{base}/v2/{repo}/blobs/uploads/"), f"POST upload {repo}", 202)
        location = started.url.join(started.headers["Location"])
        # add, don't replace: the Location carries the upload state in its query
        target = httpx.URL(str(location)).copy_add_param("digest", digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        _check(http.put(target, content=content, headers=headers), f"PUT blob {digest}", 201)
        return True


def push_manifest(
    registry: object,
    repo: str,
    reference: str,
    manifest: bytes,
    media_type: str,
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> str:
    """PUT manifest bytes under a tag or digest; returns the bytes' digest."""
    with _ClientScope(client, auth) as http:
        url = f"{_base(registry)}/v2/{repo}/manifests/{reference}"
        _check(http.put(url, content=manifest, headers={"Content-Type": media_type}), f"PUT manifest {reference}", 201)
    return sha256_digest(manifest)


def push_image(
    registry: object,
    repo: str,
    image: Image,
    tag: str | None = None,
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> str:
    """Push blobs (skipping ones present), then the manifest by ``tag``, or by digest. Returns the digest."""
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        sizes = image.blob_sizes
        for digest in image.blob_digests:
            if digest in image.foreign:
                continue  # a non-distributable layer: its bytes live at its `urls`, not in a registry
            data = image.blobs.get(digest)
            content = data if data is not None else image.blob_chunks(digest)
            push_blob(base, repo, digest, content, sizes[digest], client=http)
        push_manifest(base, repo, tag or image.digest, image.manifest, image.media_type, client=http)
    return image.digest


def push_index(
    registry: object,
    repo: str,
    index: Index,
    tag: str | None = None,
    auth: httpx.Auth | None = None,
    *,
    client: httpx.Client | None = None,
) -> str:
    """Push every child by digest, then the index by ``tag`` (or by digest). Returns the index digest."""
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        for child in index.children:
            push_image(base, repo, child, client=http)
        push_manifest(base, repo, tag or index.digest, index.manifest, index.media_type, client=http)
    return index.digest


def get_manifest(
    registry: object, repo: str, reference: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> tuple[bytes, str, str]:
    """GET a manifest with the full Accept list: ``(bytes, content_type, sha256 digest of the bytes)``.

    Raises :class:`RegistryError` on a non-200 answer, or when ``Docker-Content-Digest`` disagrees.
    """
    with _ClientScope(client, auth) as http:
        url = f"{_base(registry)}/v2/{repo}/manifests/{reference}"
        response = _check(http.get(url, headers={"Accept": MANIFEST_ACCEPT}), f"GET manifest {repo}:{reference}", 200)
    body = response.content
    digest = sha256_digest(body)
    header = response.headers.get("Docker-Content-Digest")
    if header and header != digest:
        raise RegistryError(f"Docker-Content-Digest {header} does not match body digest {digest}")
    return body, response.headers.get("Content-Type", ""), digest


def head_manifest(
    registry: object, repo: str, reference: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> str | None:
    """The digest the registry reports for a tag or digest, or None if it does not exist."""
    with _ClientScope(client, auth) as http:
        url = f"{_base(registry)}/v2/{repo}/manifests/{reference}"
        response = _check(http.head(url, headers={"Accept": MANIFEST_ACCEPT}), f"HEAD manifest {reference}", 200, 404)
    if response.status_code == 404:
        return None
    return response.headers.get("Docker-Content-Digest")


def get_blob(
    registry: object, repo: str, digest: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> bytes:
    with _ClientScope(client, auth) as http:
        response = _check(http.get(f"{_base(registry)}/v2/{repo}/blobs/{digest}"), f"GET blob {digest}", 200)
    return response.content


def list_tags(
    registry: object, repo: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> list[str]:
    """Tags of ``repo`` (sorted); an unknown repository has none."""
    with _ClientScope(client, auth) as http:
        response = _check(http.get(f"{_base(registry)}/v2/{repo}/tags/list"), f"GET tags {repo}", 200, 404)
    if response.status_code == 404:
        return []
    return sorted(response.json().get("tags") or [])


def delete_manifest(
    registry: object, repo: str, digest: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> None:
    """DELETE a manifest by digest (distribution also drops every tag pointing at it)."""
    with _ClientScope(client, auth) as http:
        _check(http.delete(f"{_base(registry)}/v2/{repo}/manifests/{digest}"), f"DELETE manifest {digest}", 202)
