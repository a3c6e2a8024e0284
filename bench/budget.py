"""bench `budget` section: a table that needs 3x an upstream's pull window, synced through the pull budget (issue 15).

    .venv/bin/python bench/budget.py            # the section alone; prints its table, writes JSON
    .venv/bin/python bench/run.py --only budget # the same through `make bench`'s driver

The deployment runs in this process as Lambda runs it (tests/integration/passes.py): schedule handler, SQS
(moto), worker handler in batches of 10, DynamoDB (moto, behind tests/integration/passes.AtomicWrites:
DynamoDB's conditional writes are atomic, moto's are not when requests race), ECR = the stand-in. The upstream is a
``docker-registry`` behind the counting proxy with a :class:`~tests.support.ratelimit.PullLimiter`: Docker
Hub's ``ratelimit-*`` headers, every manifest GET a pull, 429 once the window is spent; its window ends when
the bench says so (a clock only the bench moves), so a 6-hour window costs no waiting.

Each round: the scheduled pass (first round) or the delivery of the rows that waited (later rounds, once the
window refilled and their SQS delay was over). Counted per window: pulls spent, 429s drawn, tags copied and
deferred, and state-table writes of the budget item. Pulls and 429s are exact counts.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (str(ROOT), str(ROOT / "lambda")):
    if path not in sys.path:
        sys.path.insert(0, path)

#: (name, rows, tags per row, pull limit per window): each tag is a two-platform image (3 pulls)
WORKLOADS = (("9 tags, limit 10", 3, 3, 10), ("90 tags, limit 100 (Docker Hub anonymous)", 30, 3, 100))
QUICK_WORKLOADS = WORKLOADS[:1]
WINDOW = 21600
#: the issue's measurement of the code before the budget (5 two-platform rows, a window of 8 pulls)
BEFORE = {"workload": "5 rows x 1 two-platform tag, limit 8", "requests_that_hit_429": 25, "rows_failed": 3}


def measure(name: str, rows: int, tags: int, limit: int, *, moto: Any, log: Callable[[str], None], work: Path) -> dict[str, Any]:
    from ecr_mirror import drift
    from ecr_mirror.budget import BUDGET_PK
    from ecr_mirror.status import PassRecord, new_pass_id, now_timestamp
    from scale import deployment
    from tests.support import images as im
    from tests.support.ratelimit import PullLimiter

    patched: list[tuple[Any, str, Any]] = []

    def setattr_(obj: Any, attr: str, value: Any) -> None:
        patched.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    limiter = PullLimiter(limit=limit, window=WINDOW)
    with deployment(moto, work, extensions=(limiter,), atomic=True) as (d, upstream, proxy):
        for r in range(rows):
            for t in range(tags):
                seed = 200_000 + 1000 * r + t
                index = im.build_index([im.build_image("linux/amd64", seed=seed, layers=1, layer_size=256),
                                        im.build_image("linux/arm64/v8", seed=seed, layers=1, layer_size=256)])
                im.push_index(upstream, f"library/app{r}", index, f"v{t}")
            d.put_row({"id": f"app{r}", "source": f"{proxy.host}/library/app{r}", "tags": [f"v{t}" for t in range(tags)],
                       "target_repository": f"mirror/app{r}", "referrers": False})
        d.state.put_pass(PassRecord(new_pass_id(), now_timestamp(), audit=True))
        d.fresh_containers()
        windows = []
        started = time.perf_counter()
        try:
            d.calls.reset()
            result = d.run_pass()
            failures = len(result.failures)
            while True:
                states = [s.state for r in range(rows) for s in d.state.read_state(f"app{r}").tags.values()]
                budget_writes = sum(1 for op, p in d.calls.params
                                    if op == "UpdateItem" and p.get("Key", {}).get("pk", {}).get("S") == BUDGET_PK)
                w = limiter.current
                windows.append({"pulls": w.pulls, "rejected_429": w.rejected, "in_sync": states.count(drift.IN_SYNC),
                                "deferred": states.count(drift.DEFERRED), "failed": states.count(drift.FAILED),
                                "budget_writes": budget_writes, "failed_messages": failures})
                log(f"budget {name}: window {len(windows)}: {w.pulls} pulls, {w.rejected} 429s, "
                    f"{states.count(drift.IN_SYNC)} in sync, {states.count(drift.DEFERRED)} deferred")
                waiting = d.waiting()
                if drift.DEFERRED not in states or not waiting or len(windows) > 10:
                    break
                limiter.refill()
                d.calls.reset()
                d.deliver_after_delay([b for b, _ in waiting], setattr_)
                responses, _ = d.drain()
                failures = sum(len(r.get("batchItemFailures", [])) for r in responses)
        finally:
            for obj, attr, value in reversed(patched):
                setattr(obj, attr, value)
        reserve = math.ceil(limit * 0.10)
        return {"rows": rows, "tags": rows * tags, "limit": limit, "reserve": reserve, "window_seconds": WINDOW,
                "pulls_needed": rows * tags * 3, "windows": windows, "total_pulls": limiter.spent,
                "total_429": limiter.rejected, "wall": time.perf_counter() - started}


def run(log: Callable[[str], None] = print, *, quick: bool = False) -> dict[str, Any]:
    import tempfile

    from tests.support.moto import MotoServer

    results: dict[str, Any] = {"workloads": {}, "before": BEFORE}
    with MotoServer() as moto, tempfile.TemporaryDirectory(prefix="ecr-mirror-bench-budget-") as tmp:
        for name, rows, tags, limit in QUICK_WORKLOADS if quick else WORKLOADS:
            results["workloads"][name] = measure(name, rows, tags, limit, moto=moto, log=log, work=Path(tmp))
    return results


def tables(results: dict[str, Any]) -> str:
    from report import table

    headers = ["workload", "window", "pulls spent (limit - reserve)", "429s", "in sync after", "deferred after",
               "failed", "budget item writes"]
    rows = []
    for name, w in results["workloads"].items():
        for n, win in enumerate(w["windows"], 1):
            rows.append([name, str(n), f"{win['pulls']} ({w['limit'] - w['reserve']})", str(win["rejected_429"]),
                         str(win["in_sync"]), str(win["deferred"]), str(win["failed"]), str(win["budget_writes"])])
    lines = [table(headers, rows), ""]
    for name, w in results["workloads"].items():
        lines.append(f"{name}: {w['tags']} tags need {w['pulls_needed']} pulls; spent {w['total_pulls']} over "
                     f"{len(w['windows'])} windows, {w['total_429']} 429s drawn.")
    before = results["before"]
    lines.append(f"Before the budget (the issue's measurement, {before['workload']}): {before['requests_that_hit_429']} "
                 f"requests hit the 429, {before['rows_failed']} rows failed.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from scale import section_main

    return section_main("budget", "bench budget section: a table needing 3x the pull window", run, tables, argv)


if __name__ == "__main__":
    sys.exit(main())
