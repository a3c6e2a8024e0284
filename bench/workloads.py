"""The benchmark's own test images (tests/support/images.py), pushed to the source registry.

Large layers are generated from a seed and streamed, never held in memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from tests.support import images as im

PLATFORMS = ("linux/amd64", "linux/arm64/v8")


@dataclass(frozen=True)
class Workload:
    """Images at the source: ``refs[i]`` is ``repo:tag`` (no host), ``digests[i]`` its digest."""

    name: str
    refs: tuple[str, ...]
    digests: tuple[str, ...]
    bytes: int  # blob bytes of all images (config + layers), what a cold copy moves
    blobs: tuple[tuple[str, str, int], ...]  # (repo, digest, size) of every blob: for the ceiling

    def pairs(self, src_host: str, dst_host: str, n: int | None = None) -> list[tuple[str, str]]:
        refs = self.refs if n is None else self.refs[:n]
        return [(f"{src_host}/{r}", f"{dst_host}/{r}") for r in refs]

    def subset(self, n: int) -> Workload:
        per = len(self.blobs) // len(self.refs)
        blobs = self.blobs[: per * n]
        return Workload(f"{self.name}[:{n}]", self.refs[:n], self.digests[:n], sum(b[2] for b in blobs), blobs)


def _http() -> httpx.Client:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    return httpx.Client(limits=limits, timeout=httpx.Timeout(600.0, connect=10.0))


def _index_blobs(repo: str, index: im.Index) -> list[tuple[str, str, int]]:
    out = []
    for image in index.images:
        for digest, size in image.blob_sizes.items():
            out.append((repo, digest, size))
    return out


def push_large(registry: object, *, layer_bytes: int, layers: int = 4, seed: int = 101) -> Workload:
    """One two-platform index, ``layers`` layers of ``layer_bytes`` each per platform."""
    index = im.build_index([im.build_image(p, layers=layers, layer_size=layer_bytes, seed=seed) for p in PLATFORMS])
    repo = "bench/large"
    with _http() as http:
        # push the two platforms' blobs in parallel (each image's blobs one after another)
        with ThreadPoolExecutor(len(index.images)) as pool:
            list(pool.map(lambda img: im.push_image(registry, repo, img, client=http), index.images))
        im.push_manifest(registry, repo, "v1", index.manifest, index.media_type, client=http)
    blobs = _index_blobs(repo, index)
    return Workload("large", (f"{repo}:v1",), (index.digest,), sum(b[2] for b in blobs), tuple(blobs))


def push_single_layer(registry: object, *, layer_bytes: int, seed: int = 202) -> Workload:
    """One single-platform image with a single layer of ``layer_bytes`` (streamed)."""
    image = im.build_image("linux/amd64", layers=1, layer_size=layer_bytes, seed=seed, stream=True)
    repo = "bench/huge"
    with _http() as http:
        im.push_image(registry, repo, image, tag="v1", client=http)
    blobs = [(repo, d, s) for d, s in image.blob_sizes.items()]
    return Workload("huge", (f"{repo}:v1",), (image.digest,), sum(b[2] for b in blobs), tuple(blobs))


def push_small(
    registry: object, *, count: int, layers: int = 3, layer_bytes: int = 32 * 1024, seed: int = 303
) -> Workload:
    """``count`` two-platform images, each in its own repository ``bench/small-NNN:v1``."""

    def one(i: int) -> tuple[str, str, list[tuple[str, str, int]]]:
        index = im.build_index(
            [im.build_image(p, layers=layers, layer_size=layer_bytes, seed=seed * 100_000 + i) for p in PLATFORMS]
        )
        repo = f"bench/small-{i:03d}"
        im.push_index(registry, repo, index, "v1", client=http)
        return f"{repo}:v1", index.digest, _index_blobs(repo, index)

    with _http() as http, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(count)))
    blobs = tuple(b for _, _, bs in results for b in bs)
    return Workload(
        "small", tuple(r for r, _, _ in results), tuple(d for _, d, _ in results), sum(b[2] for b in blobs), blobs
    )


def dest_digests(registry: object, workload: Workload, n: int | None = None) -> list[str | None]:
    refs = workload.refs if n is None else workload.refs[:n]
    with _http() as http:
        out = []
        for ref in refs:
            repo, tag = ref.rsplit(":", 1)
            out.append(im.head_manifest(registry, repo, tag, client=http))
        return out


def verify(registry: object, workload: Workload, n: int | None = None, what: str = "") -> None:
    """Every image of ``workload`` (first ``n``) is at ``registry`` with the source digest."""
    got = dest_digests(registry, workload, n)
    want = list(workload.digests if n is None else workload.digests[:n])
    bad = [(r, g, w) for r, g, w in zip(workload.refs[: len(want)], got, want, strict=True) if g != w]
    if bad:
        ref, g, w = bad[0]
        raise RuntimeError(f"{what}: {len(bad)} image(s) wrong at the destination, e.g. {ref}: {g} != {w}")
