"""bench `scale` section: what a scheduled pass costs, per tag, counted on every side (issue 12).

    .venv/bin/python bench/scale.py            # the section alone; prints its tables, writes JSON
    .venv/bin/python bench/run.py --only scale # the same through `make bench`'s driver

The deployment runs in this process as Lambda runs it (tests/integration/passes.py): the schedule handler,
SQS (moto), the worker handler in batches of 10; DynamoDB from moto; ECR = the stand-in (tests/support/ecr,
both faces; its PutImage rate limit off, so counts do not depend on 429 retries); the upstream a
``docker-registry`` behind a counting proxy. Counted: upstream requests (proxy), ECR registry-API requests
and ECR API calls (the stand-in), DynamoDB calls and items written (botocore event hooks on the handlers'
clients), SQS calls, and the mirror table's stream records (moto DynamoDB Streams), with how many pass
the stack's event filter (each would invoke the stream function at most once).

Workloads (each row its own repository, two-platform images): 10 rows x 5 tags (the issue's), 50 rows x 1
tag, 5 rows x 10 tags. Passes: cold (the first: nothing mirrored; also an audit, as no audit is on record),
unchanged, audit. Then the projection to 100,000 tags of the same shape. Request COUNTS are exact; wall
times are shown for orientation only (shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (str(ROOT), str(ROOT / "lambda")):
    if path not in sys.path:
        sys.path.insert(0, path)

#: (name, rows, tags per row)
WORKLOADS = (("10 rows x 5 tags", 10, 5), ("50 rows x 1 tag", 50, 1), ("5 rows x 10 tags", 5, 10))
QUICK_WORKLOADS = (("4 rows x 2 tags", 4, 2),)
PROJECTED_TAGS = 100_000
#: the issue's measurement of the code before it (10 rows x 5 two-platform tags, unchanged pass, per tag)
BEFORE = {"upstream": "1 HEAD", "ecr": 10.5, "writes_unchanged": 1.0, "writes_cold": 5.0}
#: targets (issue 12)
TARGETS = {"ecr_unchanged": 0.5, "writes_unchanged": 0.1, "writes_cold": 2.0}


@contextlib.contextmanager
def environment() -> Iterator[None]:
    """``os.environ`` as it was, after the block (the handlers read it)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _pass_counts(d: Any, proxy: Any, run: Callable[[], Any], stream_filters: list[dict[str, Any]]) -> dict[str, Any]:
    from tests.integration.passes import stream_filter_passes

    proxy.reset()
    d.ecr.reset_counts()
    d.fresh_containers()
    d.calls.reset()
    started = time.perf_counter()
    with d.stream_records() as records:
        result = run()
    wall = time.perf_counter() - started
    if result.failures:
        raise RuntimeError(f"pass failed for messages {result.failures}")
    api = {}
    for call in d.ecr.api_calls:
        api[call.op] = api.get(call.op, 0) + 1
    dynamodb_calls: dict[str, int] = {}
    for (where, op), n in d.calls.counts.items():
        if where not in ("sqs",):
            dynamodb_calls[op] = dynamodb_calls.get(op, 0) + n
    upstream: dict[str, int] = {}
    for method, _ in proxy.requests:
        upstream[method] = upstream.get(method, 0) + 1
    filtered = sum(stream_filter_passes(r, stream_filters) for r in records)
    return {
        "wall": wall,
        "audit": bool(result.schedule.get("audit")),
        "upstream": upstream,
        "ecr_registry": d.ecr.count(),
        "ecr_registry_by_method": _methods(d.ecr.requests),
        "ecr_api": api,
        "dynamodb_writes": {"state": d.calls.writes[d.state_name], "rows": d.calls.writes[d.table_name]},
        "dynamodb_calls": dynamodb_calls,
        "sqs": {op: n for (where, op), n in d.calls.counts.items() if where == "sqs"},
        "stream_records": len(records),
        "stream_records_passing_filter": filtered,
        "metrics": {k: v for k, v in result.metrics.items() if k in ("TagsCopied", "TagsInSync", "TagsDrifted", "TagsFailed")},
    }


def _methods(requests: list[tuple[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for method, _ in requests:
        out[method] = out.get(method, 0) + 1
    return out


@contextlib.contextmanager
def deployment(moto: Any, work: Path, *, extensions: tuple[Any, ...] = (), atomic: bool = False) -> Iterator[tuple[Any, Any, Any]]:
    """``(deployment, upstream registry, proxy)``: a mirror deployment in this process (tests/integration/passes.py)
    with its tables, ECR = the stand-in (PutImage rate limit off), the upstream a ``docker-registry`` behind the
    counting proxy (with ``extensions``), moto for the rest (DynamoDB behind ``AtomicWrites`` when ``atomic``:
    DynamoDB's conditional writes are atomic, moto's are not when requests race). Everything stopped, and
    ``os.environ`` restored, after the block."""
    from ecr_mirror.handlers import _common
    from tests.integration.passes import AtomicWrites, Deployment
    from tests.support.ecr import EcrStandIn
    from tests.support.moto import boto3_env
    from tests.support.proxy import RegistryProxy
    from tests.support.registry import RegistryProcess

    _common.logger.setLevel("WARNING")  # the handlers' JSON logs would drown the bench's own
    with contextlib.ExitStack() as stack, environment():
        upstream = RegistryProcess(storage="memory")
        stack.callback(upstream.stop)
        upstream.start()
        proxy = RegistryProxy(upstream, extensions=list(extensions))
        stack.callback(proxy.stop)
        proxy.start()
        ecr = EcrStandIn(put_image_rate=None)
        stack.callback(ecr.stop)
        ecr.start()
        for key in [k for k in os.environ if k.startswith(("ECR_MIRROR_", "AWS_"))]:
            del os.environ[key]
        os.environ.update(boto3_env(moto.url))
        if atomic:
            serial = AtomicWrites(moto).start()
            stack.callback(serial.stop)
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = serial.url
        os.environ.update(ecr.env)
        os.environ.update({"AWS_CONFIG_FILE": str(work / "no-aws-config"),
                           "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials")})
        d = Deployment(ecr, docker_config=str(work / "no-docker-config"))
        d.apply_env()
        d.create_tables()
        try:
            yield d, upstream, proxy
        finally:
            _common.reset()


def measure(name: str, rows: int, tags: int, *, moto: Any, log: Callable[[str], None], work: Path) -> dict[str, Any]:
    """One workload: seed, then a cold, an unchanged and an audit pass, each counted."""
    from ecr_mirror.rows import STREAM_FILTERS
    from tests.support import images as im

    filters = [dict(p) for p in STREAM_FILTERS]
    with deployment(moto, work) as (d, upstream, proxy):
        for r in range(rows):
            for t in range(tags):
                seed = 100_000 + 1000 * r + t
                index = im.build_index([im.build_image("linux/amd64", seed=seed, layers=1, layer_size=256),
                                        im.build_image("linux/arm64/v8", seed=seed, layers=1, layer_size=256)])
                im.push_index(upstream, f"team/app{r}", index, f"v{t}")
            d.put_row({"id": f"app{r}", "source": f"{proxy.host}/team/app{r}", "tags": [f"v{t}" for t in range(tags)],
                       "target_repository": f"mirror/app{r}"})
        out: dict[str, Any] = {"rows": rows, "tags_per_row": tags, "tags": rows * tags}
        for pass_name, run in (("cold", d.run_pass), ("unchanged", d.run_pass), ("audit", lambda: d.run_pass(audit=True))):
            out[pass_name] = counts = _pass_counts(d, proxy, run, filters)
            log(f"scale {name}: {pass_name} pass: ECR {counts['ecr_registry']} registry + {sum(counts['ecr_api'].values())} API, "
                f"DynamoDB writes {counts['dynamodb_writes']}, upstream {counts['upstream']}, {counts['wall']:.1f} s")
        return out


def per_tag(counts: dict[str, Any], tags: int) -> dict[str, float]:
    """The headline numbers of one pass, per tag."""
    return {
        "upstream_head": counts["upstream"].get("HEAD", 0) / tags,
        "upstream_get": counts["upstream"].get("GET", 0) / tags,
        "ecr": (counts["ecr_registry"] + sum(counts["ecr_api"].values())) / tags,
        "ecr_registry": counts["ecr_registry"] / tags,
        "ecr_api": sum(counts["ecr_api"].values()) / tags,
        "writes": (counts["dynamodb_writes"]["state"] + counts["dynamodb_writes"]["rows"]) / tags,
        "stream": counts["stream_records_passing_filter"] / tags,
    }


def projection(result: dict[str, Any], tags: int = PROJECTED_TAGS) -> dict[str, dict[str, float]]:
    """Per pass at ``tags`` tags of the same shape (rows of the same size, each its own repository).

    Per-tag costs scale with tags, per-row costs (repository checks, ListImages, a row's Query) with rows,
    and a pass's own records do not scale: DynamoDB writes of an unchanged or audit pass are the pass
    record plus one progress record per worker batch of 10 rows, ``1 + ceil(rows / 10)``.
    """
    rows = math.ceil(tags / result["tags_per_row"])
    scale = tags / result["tags"]
    out = {}
    for name in ("cold", "unchanged", "audit"):
        c = result[name]
        writes = c["dynamodb_writes"]["state"] + c["dynamodb_writes"]["rows"]
        measured_overhead = 1 + math.ceil(result["rows"] / 10)
        per_pass_writes = (writes - measured_overhead) * scale + 1 + math.ceil(rows / 10)
        out[name] = {
            "upstream_requests": sum(c["upstream"].values()) * scale,
            "ecr_requests": (c["ecr_registry"] + sum(c["ecr_api"].values())) * scale,
            "dynamodb_writes": per_pass_writes,
            "stream_invocations": math.ceil(c["stream_records_passing_filter"] * scale / 100),
            "sqs_send_message_batch": math.ceil(rows / 10),
        }
    return out


def run(log: Callable[[str], None] = print, *, quick: bool = False) -> dict[str, Any]:
    """Every workload (or the quick one); returns the results, projection included."""
    import tempfile

    from tests.support.moto import MotoServer

    workloads = QUICK_WORKLOADS if quick else WORKLOADS
    results: dict[str, Any] = {"workloads": {}, "projected_tags": PROJECTED_TAGS, "before": BEFORE, "targets": TARGETS}
    with MotoServer() as moto, tempfile.TemporaryDirectory(prefix="ecr-mirror-bench-scale-") as tmp:
        for name, rows, tags in workloads:
            result = measure(name, rows, tags, moto=moto, log=log, work=Path(tmp))
            result["per_tag"] = {p: per_tag(result[p], result["tags"]) for p in ("cold", "unchanged", "audit")}
            result["projection"] = projection(result)
            results["workloads"][name] = result
    return results


def tables(results: dict[str, Any]) -> str:
    """The section's tables (Markdown)."""
    from report import table

    lines = ["Per tag, per pass (measured):", ""]
    headers = ["workload", "pass", "upstream", "ECR registry API", "ECR API", "DynamoDB writes", "stream invocations",
               "audit"]
    rows = []
    for name, w in results["workloads"].items():
        for p in ("cold", "unchanged", "audit"):
            t, c = w["per_tag"][p], w[p]
            upstream = ", ".join(f"{n / w['tags']:g} {m}" for m, n in sorted(c["upstream"].items())) or "0"
            api = ", ".join(f"{n / w['tags']:.2g} {op}" for op, n in sorted(c["ecr_api"].items())) or "0"
            rows.append([name, p, upstream, f"{t['ecr_registry']:.2f}", api, f"{t['writes']:.2f}",
                         str(c["stream_records_passing_filter"]), "yes" if c["audit"] else "no"])
    lines.append(table(headers, rows))
    lines += ["", f"Projected to {results['projected_tags']:,} tags (per pass):", ""]
    headers = ["shape", "pass", "upstream requests", "ECR requests", "DynamoDB writes", "SendMessageBatch", "stream invocations"]
    rows = []
    for name, w in results["workloads"].items():
        for p, v in w["projection"].items():
            rows.append([name, p, f"{v['upstream_requests']:,.0f}", f"{v['ecr_requests']:,.0f}", f"{v['dynamodb_writes']:,.0f}",
                         f"{v['sqs_send_message_batch']:,}", str(v["stream_invocations"])])
    lines.append(table(headers, rows))
    return "\n".join(lines)


def section_main(name: str, description: str, run: Callable[..., dict[str, Any]], tables: Callable[[dict[str, Any]], str],
                 argv: list[str] | None = None) -> int:
    """A bench section run on its own: ``--quick``, ``--json FILE``; prints its tables."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="one small workload (a smoke run)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    results = run(lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True), quick=args.quick)
    print(tables(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    return section_main("scale", "bench scale section: pass costs per tag, on every side", run, tables, argv)


if __name__ == "__main__":
    sys.exit(main())
