"""Measure proposed product changes WITHOUT editing the product: patch in this process, then run.

    python bench/whatif.py --patch no-rechunk,pool-per-host cli copy --json SRC DST
    python bench/whatif.py --patch no-rechunk,pool-per-host many PAIRS.json [many.py options]

Patches (each mirrors a concrete change recommended in RESULTS.md / the report):

- ``no-rechunk``: ``copy.py`` ``_transfer_blob`` sends the socket's pieces as they arrive, with no
  re-buffering into 1 MiB writes: neither httpx's ``iter_raw(CHUNK_SIZE)`` (a BytesIO, two copies;
  the code before commit ff68a7a) nor ``copy.coalesce`` (one ``b"".join`` copy; the code since).
- ``read-1m``: httpcore reads up to 1 MiB per ``recv`` instead of 64 KiB (fewer h11 events per MiB).
- ``pool-per-host``: ``default_http_client`` gives each registry host its own connection pool
  (a small routing transport), so httpcore's per-request pool scan (quadratic in the number of
  pooled connections) walks the connections of one host, not of both.
- ``hash-overlap``: ``copy.py`` ``verified_chunks`` hashes each piece in a helper thread while the
  previous piece is being sent (hashlib releases the GIL), instead of hashing and sending one
  after the other in the blob's thread; the last piece is still held back until the digest is known.
- ``small-blob-no-head``: ``copy.py`` ``_transfer_blob`` uploads blobs of at most 64 KiB without the
  destination HEAD first (re-sending a small blob costs less than the round trip that checks it).
- ``no-verify``: skip the client-side sha256 (to price verification; NOT recommended as is: the
  destination registry's own digest check would be the only one).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "lambda"), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def _no_rechunk() -> None:
    import ecr_mirror.copy as copy_mod

    if hasattr(copy_mod, "coalesce"):  # since the copy engine joins socket reads into CHUNK_SIZE writes itself
        copy_mod.coalesce = lambda pieces, size: iter(pieces)
    else:  # before: _transfer_blob called resp.iter_raw(CHUNK_SIZE); iter_raw(None) does not re-chunk
        copy_mod.CHUNK_SIZE = None


def _read_1m() -> None:
    import httpcore

    httpcore.HTTP11Connection.READ_NUM_BYTES = 1 << 20


def _pool_per_host() -> None:
    import ecr_mirror.registry.client as client_mod
    import ecr_mirror.runtime as runtime_mod
    import httpx

    original = client_mod.default_http_client

    class PerHostTransport(httpx.BaseTransport):
        """One httpx.HTTPTransport (one httpcore pool) per scheme://host:port."""

        def __init__(self, **kwargs: object) -> None:
            self._kwargs = kwargs
            self._lock = threading.Lock()
            self._pools: dict[tuple[bytes, bytes, int | None], httpx.HTTPTransport] = {}

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
            transport = self._pools.get(key)
            if transport is None:
                with self._lock:
                    transport = self._pools.setdefault(key, httpx.HTTPTransport(**self._kwargs))
            return transport.handle_request(request)

        def close(self) -> None:
            for transport in self._pools.values():
                transport.close()

    def default_http_client(concurrency: int = 8, *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
        if transport is None:
            n = concurrency * 2 + 4
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=15.0)
            transport = PerHostTransport(limits=limits)
        return original(concurrency, transport=transport)

    client_mod.default_http_client = default_http_client
    runtime_mod.default_http_client = default_http_client


def _hash_overlap() -> None:
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import ecr_mirror.copy as copy_mod
    from ecr_mirror.errors import DigestMismatchError

    hashers = ThreadPoolExecutor(16, thread_name_prefix="hash")

    def verified_chunks(chunks, descriptor, *, progress=None):  # type: ignore[no-untyped-def]
        digest, size = descriptor.digest, descriptor.size
        algorithm = digest.split(":", 1)[0]
        h = hashlib.new(algorithm)
        n, pending, hashing = 0, None, None
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                n += len(chunk)
                if n > size:
                    raise DigestMismatchError(
                        f"blob {digest} is larger than its descriptor's {size} bytes; refused", expected=digest
                    )
                if hashing is not None:
                    hashing.result()  # updates stay in order: one in flight per blob
                hashing = hashers.submit(h.update, chunk)
                if pending is not None:
                    yield pending  # sent while `chunk` is being hashed
                    if progress:
                        progress(len(pending))
                pending = chunk
        finally:
            if hashing is not None:
                hashing.result()
        if n != size:
            raise DigestMismatchError(f"blob {digest} ended after {n} of {size} bytes", expected=digest)
        actual = f"{algorithm}:{h.hexdigest()}"
        if actual != digest:
            raise DigestMismatchError(
                f"blob {digest} has bytes that hash to {actual}; refused", expected=digest, actual=actual
            )
        if pending is not None:
            yield pending
            if progress:
                progress(len(pending))

    copy_mod.verified_chunks = verified_chunks


def _small_blob_no_head() -> None:
    import ecr_mirror.copy as copy_mod
    import ecr_mirror.registry.client as client_mod

    original_transfer = copy_mod.Copier._transfer_blob
    original_head = client_mod.RegistryClient.blob_head
    skip = threading.local()

    def blob_head(self, ref, digest):  # type: ignore[no-untyped-def]
        return None if getattr(skip, "on", False) else original_head(self, ref, digest)

    def _transfer_blob(self, job, d, *args, **kwargs):  # type: ignore[no-untyped-def]
        skip.on = d.size <= SMALL_BLOB  # this thread, this blob only: "not there", upload it
        try:
            return original_transfer(self, job, d, *args, **kwargs)
        finally:
            skip.on = False

    client_mod.RegistryClient.blob_head = blob_head
    copy_mod.Copier._transfer_blob = _transfer_blob


def _no_verify() -> None:
    import ecr_mirror.copy as copy_mod

    def verified_chunks(chunks, descriptor, *, progress=None):  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk
            if progress:
                progress(len(chunk))

    copy_mod.verified_chunks = verified_chunks


SMALL_BLOB = 64 * 1024
PATCHES = {
    "no-rechunk": _no_rechunk,
    "read-1m": _read_1m,
    "pool-per-host": _pool_per_host,
    "hash-overlap": _hash_overlap,
    "small-blob-no-head": _small_blob_no_head,
    "no-verify": _no_verify,
}


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"whatif: unknown patch {name!r}; choose from {', '.join(PATCHES)}")
        PATCHES[name]()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--patch":
        raise SystemExit(__doc__)
    apply([p.strip() for p in argv[1].split(",") if p.strip() and p.strip() != "none"])
    mode, rest = argv[2], argv[3:]
    if mode == "cli":
        from ecr_mirror.cli import main as cli_main

        return cli_main.main(args=rest, prog_name="ecr-mirror", standalone_mode=True) or 0
    if mode == "many":
        import many

        return many.main(rest)
    raise SystemExit(f"whatif: mode must be cli or many, not {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
