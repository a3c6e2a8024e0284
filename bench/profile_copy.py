"""Profile one ecr-mirror copy in this process: where does the CPU go?

    python bench/profile_copy.py SRC_REF DEST_REF [--concurrency N] [--top N] [--clock cpu|wall]
    python bench/profile_copy.py --pairs PAIRS.json [--image-workers M] ...   (many images, one Copier)

Every thread (the caller and the Copier's pool workers) gets its own ``cProfile.Profile``; they are
merged at the end. With ``--clock cpu`` (default) the profiler's timer is ``time.thread_time``, so a
function's time is CPU time spent in that thread, not time spent waiting on sockets or the GIL.
Prints one JSON document on stdout: wall, process CPU, a category summary (hashing, socket send,
socket receive, buffer copies, HTTP parsing, other) and the top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import threading
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "lambda")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# Each category: substrings of pstats' (file, line, function) rendered as "file:line(function)".
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("hashing (sha256 update/digest)", ("_hashlib.HASH", "of '_hashlib", "hexdigest")),
    ("socket send", ("'sendall' of '_socket", "'send' of '_socket")),
    ("socket receive", ("'recv_into' of '_socket", "'recv' of '_socket")),
    (
        "byte buffers (joins, slices, BytesIO)",
        ("of '_io.BytesIO'", "'join' of 'bytes'", "bytearray", "_receivebuffer.py", "_decoders.py"),
    ),
    ("HTTP framing (h11/httpcore/httpx)", ("h11", "httpcore", "httpx")),
    ("ecr_mirror code", ("ecr_mirror",)),
    ("thread pools, locks, waits", ("threading.py", "concurrent/futures", "'acquire' of", "queue.py")),
]


def categorize(stats: pstats.Stats) -> dict[str, float]:
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["other"] = 0.0
    for (filename, line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = f"{filename}:{line}({func})"
        for name, needles in CATEGORIES:
            if any(n in label for n in needles):
                totals[name] += tt
                break
        else:
            totals["other"] += tt
    return totals


def top_entries(stats: pstats.Stats, n: int) -> list[dict[str, object]]:
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("site-packages/", "lambda/", "lib/python3"):
            if marker in filename:
                short = filename.split(marker, 1)[1]
                break
        rows.append(
            {"function": f"{short}:{line}({func})" if line else func, "calls": nc, "own_s": tt, "cumulative_s": ct}
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)  # type: ignore[arg-type, return-value]
    return rows[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?")
    ap.add_argument("destination", nargs="?")
    ap.add_argument("--pairs", help="JSON list of [source, destination]: copy them all with one Copier")
    ap.add_argument("--image-workers", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args(argv)
    if args.pairs:
        pairs = json.loads(Path(args.pairs).read_text())
    elif args.source and args.destination:
        pairs = [[args.source, args.destination]]
    else:
        ap.error("give SRC_REF DEST_REF or --pairs FILE")

    from concurrent.futures import ThreadPoolExecutor

    from ecr_mirror.copy import Copier
    from ecr_mirror.reference import parse_reference
    from ecr_mirror.registry import RegistryClient
    from ecr_mirror.registry.client import default_http_client

    timer = time.thread_time if args.clock == "cpu" else time.perf_counter
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile(timer)
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()
            with lock:
                profiles.append(prof)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    client = RegistryClient(default_http_client(args.concurrency))
    refs = [(parse_reference(s), parse_reference(d)) for s, d in pairs]
    main_prof = cProfile.Profile(timer)
    cpu0, wall0 = os.times(), time.perf_counter()
    main_prof.enable()
    try:
        with Copier(client, concurrency=args.concurrency) as copier:
            if len(refs) == 1:
                reports = [copier.copy(*refs[0])]
            else:
                with ThreadPoolExecutor(args.image_workers) as pool:
                    reports = list(pool.map(lambda p: copier.copy(*p), refs))
    finally:
        main_prof.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        client.http.close()
    wall = time.perf_counter() - wall0
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)

    stats = pstats.Stats(main_prof, stream=io.StringIO())
    for p in profiles:
        stats.add(p)
    profiled_total = sum(tt for (_cc, _nc, tt, _ct, _c) in stats.stats.values())  # type: ignore[attr-defined]
    doc = {
        "clock": args.clock,
        "wall_s": wall,
        "process_cpu_s": cpu,
        "profiled_s": profiled_total,
        "images": len(reports),
        "bytes_copied": sum(r.bytes_copied for r in reports),
        "blobs_copied": sum(r.blobs_copied for r in reports),
        "requests": sum(client.requests.values()),
        "threads_profiled": len(profiles) + 1,
        "categories": categorize(stats),
        "top": top_entries(stats, args.top),
    }
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
