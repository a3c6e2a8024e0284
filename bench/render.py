"""Turn the bench's results dict into bench/RESULTS.md."""

from __future__ import annotations

import tempfile
from typing import Any

import env as E
from report import fmt_mb_s, fmt_mib, fmt_ratio, fmt_s, spread, table, verdict

LINEAR_SLACK = 1.2  # t(N) / t(N/10) up to 10 x this still counts as linear


def _sanitize(text: str) -> str:
    for path, name in ((str(E.ROOT), "<repo>"), (tempfile.gettempdir(), "<tmp>")):
        text = text.replace(path, name)
    return text


def _counts(d: dict[str, float] | None) -> str:
    if not d:
        return "none"
    return ", ".join(f"{round(v, 1):g} {k}" for k, v in sorted(d.items()))


def _per_tag(counts: dict[str, int] | None, tags: int) -> dict[str, float] | None:
    return {name: n / tags for name, n in counts.items()} if counts else None


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    cfg = res["config"]
    lines: list[str] = ["# ecr-mirror vs skopeo: benchmark results", ""]
    lines.append(
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}; "
        f"Python {m['python']}, httpx {m['httpx']}, httpcore {m['httpcore']}; {m['skopeo']}; "
        f"docker-registry {m['registry']}."
    )
    prod = res.get("product") or {}
    if prod.get("commit"):
        state = {True: "with uncommitted changes in lambda/", False: "lambda/ unmodified"}.get(
            prod.get("lambda_modified"), ""
        )
        lines.append(
            f"Product measured: ecr-mirror at commit `{prod['commit']}`" + (f" ({state})" if state else "") + "."
        )
    lb, la = res.get("load_before", (0, 0, 0)), res.get("load_after", (0, 0, 0))
    lines.append(
        f"Registries: `docker-registry` on loopback, **{cfg['storage']}** storage, a fresh destination per run. "
        f"Load average at start {lb[0]:.1f}, at end {la[0]:.1f}"
        + (
            " (**the machine was busy with other work: absolute times are inflated; ratios come from alternating runs**)"
            if max(lb[0], la[0]) > (m["cores"] or 1)
            else ""
        )
        + f". Whole run: {res.get('elapsed', 0):.0f} s"
        + (" (`--quick`: small sizes, one round; not a real measurement)" if cfg.get("quick") else "")
        + "."
    )
    lines.append("")
    summary: list[list[str]] = []
    details: list[str] = []

    # ------------------------------------------------------------------ 1. large cold copy
    large = res.get("large")
    if large:
        runs = large["runs"]
        e, s, c = runs["ecr-mirror"], runs["skopeo"], runs["ceiling"]
        ratio = e["wall"] / s["wall"]
        copy_time = max(e["wall"] - large["startup"], 1e-9)
        fraction = c["wall"] / copy_time
        fraction_raw = c["wall"] / e["wall"]
        mb = large["bytes"] / 1e6
        summary.append(
            [
                f"1. Cold copy, {mb:.0f} MB, 2 platforms x {cfg['large_layers']} layers: wall",
                fmt_s(e["wall"]),
                fmt_s(s["wall"]),
                f"ratio {fmt_ratio(ratio)}",
                "≤ 0.8",
                verdict(ratio <= 0.8),
            ]
        )
        summary.append(
            [
                "1. Same copy: throughput vs loopback ceiling",
                fmt_mb_s(large["bytes"], copy_time),
                f"ceiling {fmt_mb_s(large['bytes'], c['wall'])}",
                f"{fraction:.2f} of ceiling",
                "≥ 0.7",
                verdict(fraction >= 0.7),
            ]
        )
        details += [
            f"## 1. Cold copy of one {mb:.0f} MB two-platform image",
            "",
            (
                f"{cfg['rounds']} rounds, order rotated each round; median (min–max). CPU = the tool's own CPU seconds; "
                "registries = CPU seconds both registry processes spent during the run (same 2 cores)."
            ),
            "",
            table(
                ["", "wall", "throughput", "tool CPU", "registries CPU", "peak RSS"],
                [
                    [
                        "ecr-mirror (CLI process)",
                        spread(e["walls"]),
                        fmt_mb_s(large["bytes"], e["wall"]),
                        fmt_s(e["cpu"]),
                        fmt_s(e["registry_cpu"]),
                        fmt_mib(e["rss_kib"]),
                    ],
                    [
                        "skopeo copy --all",
                        spread(s["walls"]),
                        fmt_mb_s(large["bytes"], s["wall"]),
                        fmt_s(s["cpu"]),
                        fmt_s(s["registry_cpu"]),
                        fmt_mib(s["rss_kib"]),
                    ],
                    [
                        "ceiling: plain GET piped into monolithic PUT",
                        spread(c["walls"]),
                        fmt_mb_s(large["bytes"], c["wall"]),
                        fmt_s(c["cpu"]),
                        fmt_s(c["registry_cpu"]),
                        "–",
                    ],
                    [
                        "(plain streaming GET only)",
                        fmt_s(large["get_only"]),
                        fmt_mb_s(large["bytes"], large["get_only"]),
                        "",
                        "",
                        "",
                    ],
                    [
                        "(plain monolithic PUT only, body in memory)",
                        fmt_s(large["put_only"]),
                        fmt_mb_s(large["bytes"], large["put_only"]),
                        "",
                        "",
                        "",
                    ],
                ],
            ),
            "",
            (
                f"The ceiling moves the same {large['blobs']} blobs with stock httpx and the same concurrency "
                f"({cfg['concurrency']}): each blob's streaming GET is the body of its monolithic PUT; no hashing, no checks. "
                f"ecr-mirror's copy time excludes interpreter start and imports ({large['startup']:.2f} s, measured): "
                f"{copy_time:.2f} s, {fraction:.2f} of the ceiling (with start-up included: {fraction_raw:.2f}). "
                f"ecr-mirror / skopeo wall ratio: **{ratio:.2f}**."
            ),
            "",
        ]
        if large.get("put_only"):
            details += [
                (
                    f"How close skopeo already is to the limit: its whole copy takes {s['wall'] / c['wall']:.2f} x the plain "
                    f"piped copy and {s['wall'] / large['put_only']:.2f} x the plain PUT alone (bodies already in memory, no GET "
                    f"at all). A ratio of 0.8 would need ecr-mirror to finish in {0.8 * s['wall']:.2f} s, "
                    f"{'below' if 0.8 * s['wall'] < min(c['wall'], large['put_only']) else 'near'} what the destination "
                    "registry accepts from the simplest possible client on this machine."
                ),
                "",
            ]

    # ------------------------------------------------------------------ 2. many small images
    small = res.get("small")
    if small:
        runs = small["runs"]
        e, s, y = runs["ecr-mirror"], runs["skopeo"], runs["skopeo sync"]
        ratio, ratio_sync = e["wall"] / s["wall"], e["wall"] / y["wall"]
        n = small["images"]
        summary.append(
            [
                f"2. {n} small two-platform images, cold: wall",
                fmt_s(e["wall"]),
                f"{fmt_s(s['wall'])} (per image)",
                f"ratio {fmt_ratio(ratio)}",
                "≤ 0.5",
                verdict(ratio <= 0.5),
            ]
        )
        summary.append(
            [
                "2. Same, against one `skopeo sync` process",
                fmt_s(e["wall"]),
                fmt_s(y["wall"]),
                f"ratio {fmt_ratio(ratio_sync)}",
                "(shown)",
                "n/a",
            ]
        )
        reqs = small.get("requests") or {}
        total_reqs = sum(sum(v.values()) for v in reqs.values())
        details += [
            f"## 2. {n} small two-platform images ({small['bytes'] / 1e6:.1f} MB in all)",
            "",
            (
                f"ecr-mirror: ONE process (`bench/many.py`): one shared Copier (concurrency {cfg['concurrency']}) and "
                f"{cfg['concurrency']} images in flight. skopeo: `skopeo copy --all` once per image, one after another, as "
                "users script it; and, for fairness, one `skopeo sync --all` over a YAML list of the same images "
                f"(skopeo syncs them one at a time; run once). {cfg['small_rounds']} rounds, order rotated."
            ),
            "",
            table(
                ["", "wall", "per image", "tool CPU", "registries CPU", "peak RSS"],
                [
                    [
                        name,
                        spread(r["walls"]),
                        fmt_s(r["wall"] / n),
                        fmt_s(r["cpu"]),
                        fmt_s(r["registry_cpu"]),
                        fmt_mib(r["rss_kib"]),
                    ]
                    for name, r in (
                        ("ecr-mirror (1 process)", e),
                        ("skopeo copy --all, per image", s),
                        ("skopeo sync (1 process)", y),
                    )
                ],
            ),
            "",
            f"ecr-mirror made {total_reqs} requests ({total_reqs / n:.0f} per image): "
            + "; ".join(f"{side} {_counts(v)}" for side, v in reqs.items())
            + ".",
            "",
        ]

    # ------------------------------------------------------------------ 3. unchanged
    un = res.get("unchanged")
    if un and "ecr-mirror" in un:
        e, s = un["ecr-mirror"], un.get("skopeo", {})
        el = e["unchanged_large"]["per_tag"]
        es, ss = e["unchanged_small"]["per_tag"], s.get("unchanged_small", {}).get("per_tag", {})
        ok = all(
            p["source"].get("HEAD", 0) == 1 and p["source"].get("GET", 0) == 0 and len(p["source"]) == 1
            for p in (el, es)
        )
        summary.append(
            [
                "3. Unchanged re-copy: requests per tag at the source",
                _counts(es["source"]),
                _counts(ss.get("source")),
                "",
                "1 HEAD, 0 GET",
                verdict(ok),
            ]
        )
        summary.append(
            [
                "3. Unchanged re-copy: requests per tag at the destination",
                _counts(es["destination"]),
                _counts(ss.get("destination")),
                "",
                "(shown)",
                "n/a",
            ]
        )
        k = un["tags_small"]
        rows = []
        for label, key, tags in (
            ("cold copy, small images", "cold_small", k),
            ("unchanged, large image", "unchanged_large", 1),
            ("unchanged, small images", "unchanged_small", k),
        ):
            for tool, d in (("ecr-mirror", e), ("skopeo", s)):
                if key in d:
                    p = d[key]["per_tag"]
                    rows.append(
                        [label, tool, tags, _counts(p["source"]), _counts(p["destination"]), fmt_s(d[key]["wall"])]
                    )
        details += [
            "## 3. Requests: unchanged re-copy",
            "",
            (
                "Counted by proxies in front of the source and the destination (`tests/support/proxy.py`). "
                f"The small-image rows are {k} tags (per-tag averages); ecr-mirror copies them in one process, skopeo per image. "
                "Wall times here include the Python proxies."
            ),
            "",
            table(["", "tool", "tags", "source, per tag", "destination, per tag", "wall"], rows),
            "",
        ]
    sync = res.get("sync")
    if sync:
        k = sync["tags"]
        per = {side: {mth: n / k for mth, n in sync["unchanged"][side].items()} for side in ("source", "destination")}
        ok = per["source"].get("HEAD", 0) == 1 and per["source"].get("GET", 0) == 0 and len(per["source"]) == 1
        summary.append(
            [
                f"3. Unchanged `ecr-mirror sync` ({k} rows): per tag at source / at ECR",
                f"{_counts(per['source'])} / {_counts(per['destination'])}",
                "–",
                "",
                "1 HEAD, 0 GET",
                verdict(ok),
            ]
        )
        cold = {side: {mth: n / k for mth, n in sync["cold"][side].items()} for side in ("source", "destination")}
        details += [
            "### Unchanged sync of table rows",
            "",
            (
                f"`ecr-mirror sync` (the worker's code) over {k} rows of one tag each: DynamoDB from moto; ECR (its API and its "
                "registry endpoint, with ECR's rules, over one store) from the ECR stand-in of `tests/support/ecr`, which counts "
                "what it is asked; the source behind a counting proxy. The last column gives ECR's side in ECR API actions "
                "(each registry request counted as the action it is billed and throttled as)."
            ),
            "",
            table(
                ["sync", "wall (CLI process)", "source, per tag", "ECR registry, per tag", "states", "ECR actions, per tag"],
                [
                    [
                        "first (cold)",
                        fmt_s(sync["cold_wall"]),
                        _counts(cold["source"]),
                        _counts(cold["destination"]),
                        "",
                        _counts(_per_tag(sync["cold"].get("ecr_actions"), k)),
                    ],
                    [
                        "second (unchanged)",
                        fmt_s(sync["unchanged_wall"]),
                        _counts(per["source"]),
                        _counts(per["destination"]),
                        ", ".join(f"{n} {st}" for st, n in sync.get("states", {}).items()),
                        _counts(_per_tag(sync["unchanged"].get("ecr_actions"), k)),
                    ],
                ],
            ),
            "",
        ]

    # ------------------------------------------------------------------ 4. RSS
    rss = res.get("rss")
    if rss:
        e, s = rss["runs"]["ecr-mirror"], rss["runs"]["skopeo"]
        mib = rss["bytes"] / 2**20
        summary.append(
            [
                f"4. Peak RSS copying one {mib:.0f} MiB layer",
                fmt_mib(e["rss_kib"]),
                fmt_mib(s["rss_kib"]),
                "",
                "≤ 150 MiB",
                verdict(e["rss_kib"] <= 150 * 1024),
            ]
        )
        details += [
            f"## 4. One {mib:.0f} MiB layer",
            "",
            "Peak RSS of the tool's own process (`wait4` rusage of that child).",
            "",
            table(
                ["", "wall", "throughput", "tool CPU", "peak RSS"],
                [
                    [
                        name,
                        spread(r["walls"]),
                        fmt_mb_s(rss["bytes"], r["wall"]),
                        fmt_s(r["cpu"]),
                        fmt_mib(r["rss_kib"]),
                    ]
                    for name, r in (("ecr-mirror (CLI)", e), ("skopeo copy --all", s))
                ],
            ),
            "",
        ]

    # ------------------------------------------------------------------ 5. scaling
    sc = res.get("scaling")
    if sc:
        by_n = {int(k): v for k, v in sc["by_n"].items()}
        ns = sorted(by_n)
        rows = []
        for n in ns:
            e, s = by_n[n]["ecr-mirror"], by_n[n]["skopeo"]
            rows.append(
                [
                    n,
                    f"{n * sc['per_image_bytes'] / 1e6:.1f} MB",
                    fmt_s(e["wall"]),
                    fmt_s(e["wall"] / n),
                    fmt_s(s["wall"]),
                    fmt_s(s["wall"] / n),
                    fmt_ratio(e["wall"] / s["wall"]),
                ]
            )
        linear = None
        if len(ns) >= 2:
            big, small_n = ns[-1], ns[-2]
            growth = by_n[big]["ecr-mirror"]["wall"] / by_n[small_n]["ecr-mirror"]["wall"]
            linear = growth <= (big / small_n) * LINEAR_SLACK
            summary.append(
                [
                    f"5. Scaling: cold copy of {', '.join(map(str, ns))} images (ecr-mirror)",
                    " / ".join(fmt_s(by_n[n]["ecr-mirror"]["wall"]) for n in ns),
                    " / ".join(fmt_s(by_n[n]["skopeo"]["wall"]) for n in ns),
                    f"x{growth:.1f} for x{big // small_n} images",
                    f"≤ x{big / small_n * LINEAR_SLACK:.0f} (linear)",
                    verdict(linear),
                ]
            )
        details += [
            "## 5. Scaling",
            "",
            (
                "Cold copies of the first N small images (ecr-mirror in one process; skopeo per image), medians. "
                f"Linear means t({ns[-1]}) / t({ns[-2] if len(ns) > 1 else ns[-1]}) at most {LINEAR_SLACK:g} x the ratio of image counts."
            ),
            "",
            table(["images", "bytes", "ecr-mirror", "per image", "skopeo", "per image", "ratio"], rows),
            "",
        ]

    # ------------------------------------------------------------------ 6. profile
    prof = res.get("profile")
    if prof:
        details += [
            "## 6. Where ecr-mirror's CPU goes",
            "",
            (
                "cProfile in every thread with `time.thread_time` as the clock (CPU seconds, not waiting), merged "
                "(`bench/profile_copy.py`). Profiling slows the copy; compare the shares, not the absolute times."
            ),
            "",
        ]
        for name, doc in prof.items():
            cats = doc["categories"]
            total = sum(cats.values()) or 1
            what = f"{doc['images']} image(s), {doc['total_bytes'] / 1e6:.0f} MB, {doc['requests']} requests"
            details += [
                f"### {name}: {what}",
                "",
                f"Wall {doc['wall_s']:.2f} s, process CPU {doc['process_cpu_s']:.2f} s.",
                "",
                table(
                    ["category", "CPU s", "share"],
                    [[k, f"{v:.2f}", f"{v / total:.0%}"] for k, v in sorted(cats.items(), key=lambda kv: -kv[1])],
                ),
                "",
                table(
                    ["top functions (own time)", "calls", "own s", "cumulative s"],
                    [
                        [f"`{r['function']}`", r["calls"], f"{r['own_s']:.2f}", f"{r['cumulative_s']:.2f}"]
                        for r in doc["top"]
                    ],
                ),
                "",
            ]
            if name == "large":
                share = cats.get("hashing (sha256 update/digest)", 0) / total
                summary.append(
                    ["6. CPU profile, large copy: hashing share", f"{share:.0%} of CPU", "", "", "(shown)", "n/a"]
                )
            else:
                share = cats.get("HTTP framing (h11/httpcore/httpx)", 0) / total
                summary.append(
                    [
                        "6. CPU profile, small images: httpx/httpcore share",
                        f"{share:.0%} of CPU",
                        "",
                        "",
                        "(shown)",
                        "n/a",
                    ]
                )

    wi = res.get("whatif")
    if wi:
        rows = []
        base_l = wi["large"]["none"]
        sk = wi["large"].get("skopeo")
        for variant, r in wi["large"].items():
            rows.append(
                [
                    f"large copy: {variant if variant != 'none' else 'as is'}",
                    fmt_s(r["wall"]),
                    fmt_s(r["cpu"]),
                    fmt_ratio(r["wall"] / base_l["wall"]),
                    fmt_ratio(r["wall"] / sk["wall"]) if sk else "–",
                ]
            )
        base_s = wi["small"]["none"]
        for variant, r in wi["small"].items():
            rows.append(
                [
                    f"{wi['small_images']} images: {variant if variant != 'none' else 'as is'}",
                    fmt_s(r["wall"]),
                    fmt_s(r["cpu"]),
                    fmt_ratio(r["wall"] / base_s["wall"]),
                    "",
                ]
            )
        details += [
            "## What-if: proposed product changes, patched in at run time",
            "",
            (
                "`bench/whatif.py` applies each change to the product in the copying process only (the product files are "
                "untouched) and runs the same CLI copy / many-images driver; rounds alternate with skopeo."
            ),
            "",
            table(["variant", "wall", "tool CPU", "vs as is", "vs skopeo"], rows),
            "",
        ]

    gaps = _gaps(res)
    if gaps:
        details += ["## Missed targets: by how much, and why", ""] + gaps + [""]

    if res.get("errors"):
        details += ["## Sections that failed", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]

    out = (
        lines
        + ["## Summary", "", table(["measure", "ecr-mirror", "skopeo", "result", "target", ""], summary), ""]
        + details
    )
    out += [
        "---",
        (
            "Written by `make bench` (`bench/run.py`); `--quick` for a smoke run; `--what-if` adds a table of "
            "proposed product changes patched in at run time (`bench/whatif.py`); sizes via `BENCH_*` "
            "environment variables (see the docstring of bench/run.py)."
        ),
        "",
    ]
    return _sanitize("\n".join(out))


def _gaps(res: dict[str, Any]) -> list[str]:
    """A paragraph per missed target, from the measured numbers (profile shares, CPU seconds)."""
    out: list[str] = []
    large, prof = res.get("large"), res.get("profile") or {}
    if large:
        e, s, c = (large["runs"][k] for k in ("ecr-mirror", "skopeo", "ceiling"))
        ratio = e["wall"] / s["wall"]
        fraction = c["wall"] / max(e["wall"] - large["startup"], 1e-9)
        if ratio > 0.8 or fraction < 0.7:
            cats = (prof.get("large") or {}).get("categories") or {}
            total = sum(cats.values()) or 1
            share = {k: v / total for k, v in cats.items()}
            hashing = share.get("hashing (sha256 update/digest)", 0)
            moving = sum(
                share.get(k, 0) for k in ("HTTP framing (h11/httpcore/httpx)", "byte buffers (joins, slices, BytesIO)")
            )
            out.append(
                f"- **Cold copy of the large image**: ratio {ratio:.2f} against a target of 0.8 "
                f"({(ratio / 0.8 - 1):.0%} over); {fraction:.2f} of the ceiling against 0.7. ecr-mirror's process used "
                f"{e['cpu']:.2f} s of CPU for a {e['wall']:.2f} s copy (skopeo: {s['cpu']:.2f} s, the plain ceiling client: "
                f"{c['cpu']:.2f} s), while the two registries needed {e['registry_cpu']:.2f} s of the same "
                f"{res['machine']['cores']} cores"
                + (
                    ": ecr-mirror's process is CPU-bound (its CPU time is about its wall time: the GIL keeps the Python "
                    "part of all 8 transfers on one core), and it is its own CPU that is in excess. "
                    if e["cpu"] >= 0.8 * e["wall"]
                    else " (the machine was shared during this run, so the walls are inflated; the CPU seconds are not). "
                )
                + f"The profile puts {hashing:.0%} of it in sha256 (client-side digest verification) and {moving:.0%} in "
                "moving bytes through Python (an h11 event and a few buffer copies per 64 KiB socket read); the rest "
                "is interpreter start, imports and bookkeeping. "
                "`--what-if` measures the proposed fixes."
            )
    small = res.get("small")
    if small:
        e, s = small["runs"]["ecr-mirror"], small["runs"]["skopeo"]
        ratio = e["wall"] / s["wall"]
        if ratio > 0.5:
            reqs = small.get("requests") or {}
            n_req = sum(sum(v.values()) for v in reqs.values()) or 1
            cats = (prof.get("small") or {}).get("categories") or {}
            total = sum(cats.values()) or 1
            http = cats.get("HTTP framing (h11/httpcore/httpx)", 0) / total
            out.append(
                f"- **Many small images**: ratio {ratio:.2f} against 0.5. ecr-mirror spent {1000 * e['cpu'] / n_req:.1f} ms "
                f"of CPU per request ({n_req} requests) and the registries {1000 * e['registry_cpu'] / n_req:.1f} ms; the "
                f"profile puts {http:.0%} of ecr-mirror's CPU in httpx/httpcore/h11, led by httpcore's connection-pool "
                "bookkeeping (`_assign_requests_to_connections`, quadratic in open connections) and httpx URL parsing."
            )
    return out
