"""The loopback ceiling: the same blobs moved with plain httpx, no verification, no registry logic.

- ``get_only``: a plain streaming GET of every blob from the source, bytes discarded.
- ``put_only``: a plain monolithic PUT (POST + PUT ?digest=) of every blob to the destination,
  bodies already in memory (so nothing but the upload is timed).
- ``piped``: the ceiling proper: each blob's streaming GET fed straight into its monolithic PUT,
  with the same concurrency as the copy under test: what a copy costs with nothing but moving bytes.

Stock httpx settings throughout (default read size, ``iter_raw()`` pieces as they come).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

Blob = tuple[str, str, int]  # (repository, digest, size)


def _client(concurrency: int) -> httpx.Client:
    n = concurrency * 2 + 4
    return httpx.Client(
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n), timeout=httpx.Timeout(600.0, connect=10.0)
    )


def _upload_url(http: httpx.Client, base: str, repo: str, digest: str) -> httpx.URL:
    resp = http.post(f"{base}/v2/{repo}/blobs/uploads/")
    if resp.status_code != 202:
        raise RuntimeError(f"ceiling: POST upload -> HTTP {resp.status_code}")
    return httpx.URL(str(resp.url.join(resp.headers["location"]))).copy_add_param("digest", digest)


def _put(http: httpx.Client, url: httpx.URL, body: object, size: int) -> None:
    resp = http.put(
        url, content=body, headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"}
    )
    if resp.status_code != 201:
        raise RuntimeError(f"ceiling: PUT blob -> HTTP {resp.status_code}: {resp.text[:200]}")


def get_only(src_url: str, blobs: Sequence[Blob], concurrency: int) -> float:
    def one(blob: Blob) -> None:
        repo, digest, size = blob
        with http.stream("GET", f"{src_url}/v2/{repo}/blobs/{digest}") as resp:
            n = sum(len(piece) for piece in resp.iter_raw())
        if n != size:
            raise RuntimeError(f"ceiling: GET {digest} gave {n} of {size} bytes")

    with _client(concurrency) as http, ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(one, blobs))
        return time.perf_counter() - started


def put_only(src_url: str, dst_url: str, blobs: Sequence[Blob], concurrency: int) -> float:
    with _client(concurrency) as http:
        bodies = {digest: http.get(f"{src_url}/v2/{repo}/blobs/{digest}").content for repo, digest, _ in blobs}

        def one(blob: Blob) -> None:
            repo, digest, size = blob
            _put(http, _upload_url(http, dst_url, repo, digest), bodies[digest], size)

        with ThreadPoolExecutor(concurrency) as pool:
            started = time.perf_counter()
            list(pool.map(one, blobs))
            return time.perf_counter() - started


def piped(src_url: str, dst_url: str, blobs: Sequence[Blob], concurrency: int) -> float:
    def one(blob: Blob) -> None:
        repo, digest, size = blob
        url = _upload_url(http, dst_url, repo, digest)
        with http.stream("GET", f"{src_url}/v2/{repo}/blobs/{digest}") as resp:
            _put(http, url, resp.iter_raw(), size)

    with _client(concurrency) as http, ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(one, blobs))
        return time.perf_counter() - started
