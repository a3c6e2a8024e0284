"""The bench's printed summary: one table of measures against their targets, from the results dict.

The raw numbers go to JSON (``bench/run.py --json``); what they mean, and why a target was missed,
is written up by hand in bench/RESULTS.md. Each section of the results gives its rows here through
one small function; a section that did not run gives none.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import env as E
from report import fmt_mb_s, fmt_mib, fmt_ratio, fmt_s, table, verdict

LINEAR_SLACK = 1.2  # t(N) / t(N/10) up to 10 x this still counts as linear
HEADERS = ["measure", "ecr-mirror", "skopeo", "result", "target", ""]
Row = list[str]


def _sanitize(text: str) -> str:
    for path, name in ((str(E.ROOT), "<repo>"), (tempfile.gettempdir(), "<tmp>")):
        text = text.replace(path, name)
    return text


def _counts(d: dict[str, float] | None) -> str:
    if not d:
        return "none"
    return ", ".join(f"{round(v, 1):g} {k}" for k, v in sorted(d.items()))


def _source_is_one_head(per_tag_source: dict[str, float]) -> bool:
    return per_tag_source.get("HEAD", 0) == 1 and per_tag_source.get("GET", 0) == 0 and len(per_tag_source) == 1


def large_rows(res: dict[str, Any]) -> list[Row]:
    """1. Cold copy of the large image: wall ratio to skopeo, and throughput against the loopback ceiling."""
    large = res["large"]
    e, s, c = (large["runs"][k] for k in ("ecr-mirror", "skopeo", "ceiling"))
    ratio = e["wall"] / s["wall"]
    copy_time = max(e["wall"] - large["startup"], 1e-9)
    fraction = c["wall"] / copy_time
    mb = large["bytes"] / 1e6
    return [
        [f"1. Cold copy, {mb:.0f} MB, 2 platforms x {res['config']['large_layers']} layers: wall",
         fmt_s(e["wall"]), fmt_s(s["wall"]), f"ratio {fmt_ratio(ratio)}", "≤ 0.8", verdict(ratio <= 0.8)],
        ["1. Same copy: throughput vs loopback ceiling", fmt_mb_s(large["bytes"], copy_time),
         f"ceiling {fmt_mb_s(large['bytes'], c['wall'])}", f"{fraction:.2f} of ceiling", "≥ 0.7", verdict(fraction >= 0.7)],
    ]


def small_rows(res: dict[str, Any]) -> list[Row]:
    """2. Many small images in one process, against skopeo per image and one ``skopeo sync``."""
    small = res["small"]
    e, s, y = (small["runs"][k] for k in ("ecr-mirror", "skopeo", "skopeo sync"))
    ratio = e["wall"] / s["wall"]
    return [
        [f"2. {small['images']} small two-platform images, cold: wall", fmt_s(e["wall"]), f"{fmt_s(s['wall'])} (per image)",
         f"ratio {fmt_ratio(ratio)}", "≤ 0.5", verdict(ratio <= 0.5)],
        ["2. Same, against one `skopeo sync` process", fmt_s(e["wall"]), fmt_s(y["wall"]),
         f"ratio {fmt_ratio(e['wall'] / y['wall'])}", "(shown)", "n/a"],
    ]


def unchanged_rows(res: dict[str, Any]) -> list[Row]:
    """3. Requests per tag of an unchanged re-copy, at the source and at the destination."""
    un = res["unchanged"]
    if "ecr-mirror" not in un:
        return []
    e, s = un["ecr-mirror"], un.get("skopeo", {})
    es, ss = e["unchanged_small"]["per_tag"], s.get("unchanged_small", {}).get("per_tag", {})
    ok = all(_source_is_one_head(p["source"]) for p in (e["unchanged_large"]["per_tag"], es))
    return [
        ["3. Unchanged re-copy: requests per tag at the source", _counts(es["source"]), _counts(ss.get("source")), "",
         "1 HEAD, 0 GET", verdict(ok)],
        ["3. Unchanged re-copy: requests per tag at the destination", _counts(es["destination"]),
         _counts(ss.get("destination")), "", "(shown)", "n/a"],
    ]


def sync_rows(res: dict[str, Any]) -> list[Row]:
    """3. Requests per tag of an unchanged ``ecr-mirror sync`` of table rows."""
    sync = res["sync"]
    k = sync["tags"]
    per = {side: {m: n / k for m, n in sync["unchanged"][side].items()} for side in ("source", "destination")}
    rows = [[f"3. Unchanged `ecr-mirror sync` ({k} rows): per tag at source / at ECR",
             f"{_counts(per['source'])} / {_counts(per['destination'])}", "–", "", "1 HEAD, 0 GET",
             verdict(_source_is_one_head(per["source"]))]]
    actions = sync["unchanged"].get("ecr_actions")  # the ECR stand-in's count, each request as the action it is billed as
    if actions:
        rows.append(["3. Same sync: ECR API actions per tag (the ECR stand-in's count)",
                     _counts({a: n / k for a, n in actions.items()}), "–", "", "(shown)", "n/a"])
    return rows


def rss_rows(res: dict[str, Any]) -> list[Row]:
    """4. Peak RSS copying one large layer."""
    rss = res["rss"]
    e, s = rss["runs"]["ecr-mirror"], rss["runs"]["skopeo"]
    return [[f"4. Peak RSS copying one {rss['bytes'] / 2**20:.0f} MiB layer", fmt_mib(e["rss_kib"]), fmt_mib(s["rss_kib"]), "",
             "≤ 150 MiB", verdict(e["rss_kib"] <= 150 * 1024)]]


def scaling_rows(res: dict[str, Any]) -> list[Row]:
    """5. Cold copies of 1, N/10 and N images: linear growth."""
    by_n = {int(n): v for n, v in res["scaling"]["by_n"].items()}
    ns = sorted(by_n)
    if len(ns) < 2:
        return []
    big, smaller = ns[-1], ns[-2]
    growth = by_n[big]["ecr-mirror"]["wall"] / by_n[smaller]["ecr-mirror"]["wall"]
    return [[f"5. Scaling: cold copy of {', '.join(map(str, ns))} images (ecr-mirror)",
             " / ".join(fmt_s(by_n[n]["ecr-mirror"]["wall"]) for n in ns), " / ".join(fmt_s(by_n[n]["skopeo"]["wall"]) for n in ns),
             f"x{growth:.1f} for x{big // smaller} images", f"≤ x{big / smaller * LINEAR_SLACK:.0f} (linear)",
             verdict(growth <= (big / smaller) * LINEAR_SLACK)]]


def profile_rows(res: dict[str, Any]) -> list[Row]:
    """6. Where the CPU goes: the hashing share of a large copy, the HTTP share of many small ones."""
    rows = []
    for name, doc in res["profile"].items():
        cats = doc["categories"]
        total = sum(cats.values()) or 1
        if name == "large":
            share, what = cats.get("hashing (sha256 update/digest)", 0) / total, "large copy: hashing share"
        else:
            share, what = cats.get("HTTP framing (h11/httpcore/httpx)", 0) / total, "small images: httpx/httpcore share"
        rows.append([f"6. CPU profile, {what}", f"{share:.0%} of CPU", "", "", "(shown)", "n/a"])
    return rows


def whatif_rows(res: dict[str, Any]) -> list[Row]:
    """What-if: each patched-in product change against the code as it is (and skopeo)."""
    wi = res["whatif"]
    rows = []
    for group, label in (("large", "large copy"), ("small", f"{wi['small_images']} images")):
        base, sk = wi[group]["none"], wi[group].get("skopeo")
        for variant, r in wi[group].items():
            if variant == "skopeo":
                continue
            vs_skopeo = f", {fmt_ratio(r['wall'] / sk['wall'])} of skopeo" if sk else ""
            rows.append([f"what-if, {label}: {variant if variant != 'none' else 'as is'}", fmt_s(r["wall"]), "",
                         f"{fmt_ratio(r['wall'] / base['wall'])} of as is{vs_skopeo}", "(shown)", "n/a"])
    return rows


def scale_rows(res: dict[str, Any]) -> list[Row]:
    """7. What a pass costs per tag (bench/scale.py): the issue's workload (else the first measured) against the
    targets; the other workloads' values alongside."""
    scale = res["scale"]
    workloads = scale["workloads"]
    name = "10 rows x 5 tags" if "10 rows x 5 tags" in workloads else next(iter(workloads))
    w, targets, before = workloads[name], scale["targets"], scale["before"]
    un, cold, audit = (w["per_tag"][p] for p in ("unchanged", "cold", "audit"))
    upstream = {m: n / w["tags"] for m, n in w["unchanged"]["upstream"].items()}

    def each(key: str, p: str = "unchanged") -> str:
        return ", ".join(f"{v['per_tag'][p][key]:.2f} ({n})" for n, v in workloads.items())

    overhead = 1 + -(-w["rows"] // 10)  # the pass record and one progress record per worker batch of 10 rows
    tag_writes = (w["cold"]["dynamodb_writes"]["state"] - overhead) / w["tags"]
    stream = max(v[p]["stream_records_passing_filter"] for v in workloads.values() for p in ("cold", "unchanged", "audit"))
    return [
        [f"7. Unchanged pass ({name}): upstream per tag", _counts(upstream), "–", "", "1 HEAD, 0 GET",
         verdict(_source_is_one_head(upstream))],
        ["7. Unchanged pass: ECR requests per tag (registry + API)", each("ecr"), "–", f"before: {before['ecr']}",
         f"≤ {targets['ecr_unchanged']}", verdict(all(v["per_tag"]["unchanged"]["ecr"] <= targets["ecr_unchanged"]
                                                      for v in workloads.values()))],
        ["7. Unchanged pass: DynamoDB writes per tag (pass records only)", each("writes"), "–",
         f"before: {before['writes_unchanged']}", f"≤ {targets['writes_unchanged']}", verdict(un["writes"] <= targets["writes_unchanged"])],
        [f"7. Cold pass ({name}): tag-status writes per tag", f"{tag_writes:.2f} (+{overhead} pass records)", "–",
         f"before: {before['writes_cold']}", f"≤ {targets['writes_cold']}", verdict(tag_writes <= targets["writes_cold"])],
        ["7. Audit pass: ECR requests per tag (ListImages; registry requests)", each("ecr", "audit"), "–",
         f"registry: {audit['ecr_registry']:.0f}", "(shown)", "n/a"],
        ["7. Stream invocations per pass (any workload, any pass)", str(stream), "–", "", "0", verdict(stream == 0)],
    ]


def budget_rows(res: dict[str, Any]) -> list[Row]:
    """8. A table needing 3x the upstream's pull window (bench/budget.py): pulls spent per window, 429s drawn."""
    rows: list[Row] = []
    for name, w in res["budget"]["workloads"].items():
        spendable = w["limit"] - w["reserve"]
        per_window = ", ".join(str(win["pulls"]) for win in w["windows"])
        within = all(win["pulls"] <= spendable for win in w["windows"])
        rows.append([f"8. Pull budget ({name}): pulls spent per window", per_window, "–",
                     f"{w['pulls_needed']} needed, {len(w['windows'])} windows", f"≤ {spendable} each", verdict(within)])
        done = w["windows"][-1]["deferred"] == 0 and w["windows"][-1]["failed"] == 0
        rows.append([f"8. Pull budget ({name}): 429s drawn; all in sync at the end", f"{w['total_429']}; "
                     + ("yes" if done else "no"), "–", f"before: {res['budget']['before']['requests_that_hit_429']} 429s",
                     "0; yes", verdict(w["total_429"] == 0 and done)])
    return rows


#: results key -> the rows it gives, in the order printed
SECTIONS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "large": large_rows,
    "small": small_rows,
    "unchanged": unchanged_rows,
    "sync": sync_rows,
    "rss": rss_rows,
    "scaling": scaling_rows,
    "profile": profile_rows,
    "whatif": whatif_rows,
    "scale": scale_rows,
    "budget": budget_rows,
}


def summary_rows(res: dict[str, Any]) -> list[Row]:
    """Every row of the summary table, from the sections present in ``res``."""
    rows: list[Row] = []
    for key, rows_of in SECTIONS.items():
        if res.get(key):
            rows.extend(rows_of(res))
    return rows


def render(res: dict[str, Any]) -> str:
    """The summary the bench prints: where it ran, the table, and any section that failed."""
    m, cfg = res["machine"], res["config"]
    load = max(res.get("load_before", (0,))[0], res.get("load_after", (0,))[0])
    lines = [
        f"ecr-mirror vs skopeo: {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, httpx {m['httpx']}, "
        f"{m['skopeo']}, docker-registry {m['registry']}; {cfg['storage']} storage; "
        f"ecr-mirror at {(res.get('product') or {}).get('commit') or 'an unknown commit'}; max load {load:.1f}; "
        f"{res.get('elapsed', 0):.0f} s" + (" (--quick: small sizes, one round; not a measurement)" if cfg.get("quick") else ""),
        "",
        table(HEADERS, summary_rows(res)),
    ]
    if res.get("errors"):
        lines += ["", "Sections that failed:"] + [f"- {k}: {v}" for k, v in res["errors"].items()]
    return _sanitize("\n".join(lines))
