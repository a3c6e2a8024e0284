"""Copy many images with ONE ecr-mirror process: a shared Copier, images in flight concurrently.

    python bench/many.py PAIRS.json [--concurrency N] [--image-workers M]

PAIRS.json is a list of ``[source, destination]`` references. The client is built the way the CLI
builds it (``runtime.build_registry_client`` from the environment's settings), the Copier is shared,
and M images are copied at a time (a thread pool calling ``copier.copy``). Prints one JSON document:
wall seconds, images copied / unchanged, bytes, and the client's request counts per host and method.
Exits 1 if any copy failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "lambda")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs")
    ap.add_argument("--concurrency", type=int, default=8, help="the Copier's blob concurrency (CLI default 8)")
    ap.add_argument("--image-workers", type=int, default=8, help="images copied at a time")
    args = ap.parse_args(argv)

    from ecr_mirror.config import Settings
    from ecr_mirror.copy import Copier
    from ecr_mirror.reference import parse_reference
    from ecr_mirror.runtime import build_registry_client

    pairs = [(parse_reference(s), parse_reference(d)) for s, d in json.loads(Path(args.pairs).read_text())]
    settings = replace(Settings.from_env(), concurrency=args.concurrency)
    client = build_registry_client(settings)
    started = time.perf_counter()
    errors: list[str] = []
    reports = []
    try:
        with Copier(client, concurrency=args.concurrency) as copier, ThreadPoolExecutor(args.image_workers) as pool:
            futures = [pool.submit(copier.copy, s, d) for s, d in pairs]
            for (s, _), f in zip(pairs, futures, strict=True):
                try:
                    reports.append(f.result())
                except Exception as exc:  # noqa: BLE001 - reported, exit status 1
                    errors.append(f"{s}: {type(exc).__name__}: {exc}")
    finally:
        client.http.close()
    wall = time.perf_counter() - started
    requests: dict[str, dict[str, int]] = {}
    for (host, method), n in sorted(client.requests.items()):
        requests.setdefault(host, {})[method] = n
    doc = {
        "wall_s": wall,
        "images": len(pairs),
        "copied": sum(1 for r in reports if not r.unchanged),
        "unchanged": sum(1 for r in reports if r.unchanged),
        "bytes_copied": sum(r.bytes_copied for r in reports),
        "blobs_copied": sum(r.blobs_copied for r in reports),
        "digests": {r.destination: r.digest for r in reports},
        "requests": requests,
        "errors": errors[:10],
    }
    json.dump(doc, sys.stdout)
    print()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
