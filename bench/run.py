"""ecr-mirror vs `skopeo copy --all`, side by side on two real registries on loopback.

    make bench                          # the full run (about 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick        # a smoke run with small sizes, one round
    .venv/bin/python bench/run.py --only large,small --rounds 3

Starts a source and (per run) a fresh destination `docker-registry` (filesystem storage unless
BENCH_STORAGE=memory), builds its own images, runs ecr-mirror and skopeo alternately on the same
work, prints a summary table (measures against targets) and writes every number as JSON
(bench/.work/results.json, or --json FILE). What the numbers mean is written up in
bench/RESULTS.md, by hand, from such a run. Measures:

1. cold copy of a ~400 MB two-platform image (4 layers per platform): ecr-mirror / skopeo, and
   throughput as a fraction of the loopback ceiling (plain httpx GET piped into a monolithic PUT);
2. 100 small two-platform images: ecr-mirror in ONE process (shared Copier, images concurrently)
   vs skopeo invoked per image, and vs one `skopeo sync`;
3. unchanged re-copy (and unchanged `ecr-mirror sync` against moto + the ECR stand-in of
   tests/support/ecr): requests per tag at the source and destination, counted;
4. peak RSS copying one 1 GiB layer (each tool's own process, from wait4 rusage);
5. scaling: cold copy of 1, 10, 100 images;
6. a CPU profile of an ecr-mirror copy (hashing vs moving bytes vs HTTP overhead);
7. scale (bench/scale.py): what a scheduled pass costs per tag on every side (upstream, ECR registry API,
   ECR API, DynamoDB writes, the mirror table's stream), cold, unchanged and audit, for rows of 1, 5 and
   10 tags, and projected to 100,000 tags;
8. budget (bench/budget.py): a table needing 3x an upstream's pull window (Docker Hub's headers): pulls spent
   per window and 429s drawn.

Sizes via environment (defaults in brackets): BENCH_LARGE_LAYER_MB [50], BENCH_SMALL_IMAGES [100],
BENCH_SMALL_LAYER_KIB [32], BENCH_HUGE_LAYER_MB [1024], BENCH_ROUNDS [5], BENCH_SMALL_ROUNDS [2],
BENCH_UNCHANGED_TAGS [10], BENCH_CONCURRENCY [8], BENCH_STORAGE [filesystem].
Every process and temp dir it starts is removed on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceiling as C
import env as E
import report as R
import workloads as W

SECTIONS = ("large", "small", "scaling", "unchanged", "sync", "rss", "profile", "scale", "budget")
OPTIONAL = ("whatif",)  # not in a default run: --what-if or --only whatif
WHATIF_LARGE = (
    "none",
    "no-rechunk",
    "no-rechunk,read-1m",
    "no-rechunk,read-1m,hash-overlap",
    "no-verify",
    "no-rechunk,read-1m,no-verify",
)
WHATIF_SMALL = ("none", "pool-per-host", "small-blob-no-head")
RESULTS_JSON = E.BENCH / ".work" / "results.json"
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


@dataclass
class Config:
    large_layer_mb: int = 50
    large_layers: int = 4
    small_images: int = 100
    small_layers: int = 3
    small_layer_kib: int = 32
    huge_layer_mb: int = 1024
    rounds: int = 5
    small_rounds: int = 2
    huge_rounds: int = 1
    scaling: tuple[int, ...] = (1, 10, 100)
    unchanged_tags: int = 10
    concurrency: int = 8
    storage: str = "filesystem"
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    json_out: str | None = None

    @classmethod
    def from_args(cls, argv: list[str] | None) -> Config:
        ap = argparse.ArgumentParser(description="ecr-mirror vs skopeo benchmark: prints a summary table, writes JSON")
        ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, one round")
        ap.add_argument("--rounds", type=int, help="rounds of the large cold copy (BENCH_ROUNDS)")
        ap.add_argument("--small-rounds", type=int, help="rounds of the many-images runs (BENCH_SMALL_ROUNDS)")
        ap.add_argument("--only", help=f"comma-separated sections to run, from: {','.join(SECTIONS + OPTIONAL)}")
        ap.add_argument(
            "--what-if",
            action="store_true",
            help="also measure proposed product changes, patched in at run time (bench/whatif.py)",
        )
        ap.add_argument("--skip", help="comma-separated sections to skip")
        ap.add_argument("--storage", choices=("filesystem", "memory"), help="registry storage driver (BENCH_STORAGE)")
        ap.add_argument("--json", metavar="FILE", help=f"write the results as JSON to FILE (default {RESULTS_JSON.relative_to(E.ROOT)})")
        args = ap.parse_args(argv)
        cfg = cls(
            large_layer_mb=_env_int("BENCH_LARGE_LAYER_MB", 50),
            small_images=_env_int("BENCH_SMALL_IMAGES", 100),
            small_layer_kib=_env_int("BENCH_SMALL_LAYER_KIB", 32),
            huge_layer_mb=_env_int("BENCH_HUGE_LAYER_MB", 1024),
            rounds=_env_int("BENCH_ROUNDS", 5),
            small_rounds=_env_int("BENCH_SMALL_ROUNDS", 2),
            unchanged_tags=_env_int("BENCH_UNCHANGED_TAGS", 10),
            concurrency=_env_int("BENCH_CONCURRENCY", 8),
            storage=os.environ.get("BENCH_STORAGE", "").strip() or "filesystem",
        )
        if args.quick:
            cfg.quick = True
            cfg.large_layer_mb = _env_int("BENCH_LARGE_LAYER_MB", 8)
            cfg.small_images = _env_int("BENCH_SMALL_IMAGES", 10)
            cfg.huge_layer_mb = _env_int("BENCH_HUGE_LAYER_MB", 128)
            cfg.rounds = _env_int("BENCH_ROUNDS", 1)
            cfg.small_rounds = _env_int("BENCH_SMALL_ROUNDS", 1)
            cfg.unchanged_tags = _env_int("BENCH_UNCHANGED_TAGS", 3)
        cfg.json_out = args.json
        if args.rounds:
            cfg.rounds = args.rounds
        if args.small_rounds:
            cfg.small_rounds = args.small_rounds
        if args.storage:
            cfg.storage = args.storage
        n = cfg.small_images
        cfg.scaling = tuple(sorted({1, max(1, n // 10), n}))
        cfg.unchanged_tags = max(1, min(cfg.unchanged_tags, n))
        sections = list(SECTIONS)
        if args.only:
            wanted = [s.strip() for s in args.only.split(",") if s.strip()]
            unknown = set(wanted) - set(SECTIONS + OPTIONAL)
            if unknown:
                ap.error(f"unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS + OPTIONAL)}")
            sections = [s for s in SECTIONS + OPTIONAL if s in wanted]
        if args.what_if and "whatif" not in sections:
            sections.append("whatif")
        if args.skip:
            skipped = {s.strip() for s in args.skip.split(",")}
            sections = [s for s in sections if s not in skipped]
        cfg.sections = tuple(sections)
        return cfg


# ---------------------------------------------------------------------- small utilities


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user+system) a process has used so far; 0 if it is gone."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def registry_cpu(*registries: Any) -> float:
    return sum(proc_cpu(getattr(getattr(r, "_proc", None), "pid", None)) for r in registries)


@dataclass
class Run:
    tool: str
    wall: float
    cpu: float = 0.0  # the tool's own CPU seconds
    registry_cpu: float = 0.0  # CPU seconds both registries spent during the run
    rss_kib: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(runs: list[Run]) -> dict[str, Any]:
    return {
        "n": len(runs),
        "wall": R.median(r.wall for r in runs),
        "walls": [r.wall for r in runs],
        "cpu": R.median(r.cpu for r in runs),
        "registry_cpu": R.median(r.registry_cpu for r in runs),
        "rss_kib": max((r.rss_kib for r in runs), default=0),
    }


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20)
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        except (OSError, subprocess.SubprocessError):
            return "not installed"

    import httpcore
    import httpx

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "httpcore": httpcore.__version__,
        "skopeo": version(["skopeo", "--version"]),
        "registry": version(["docker-registry", "--version"]),
        "kernel": platform.release(),
    }


def product_version() -> dict[str, Any]:
    """The commit the product code was measured at, and whether lambda/ had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=E.ROOT, check=False, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--", "lambda")
    return {"commit": commit, "lambda_modified": bool(status) if status is not None else None}


# ---------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, cfg: Config, cleanup: E.Cleanup) -> None:
        self.cfg = cfg
        self.cleanup = cleanup
        self.work = cleanup.tempdir()
        self.results: dict[str, Any] = {"config": asdict(cfg), "errors": {}}
        self.src = cleanup.registry(cfg.storage)
        self._large: W.Workload | None = None
        self._small: W.Workload | None = None
        self._huge: W.Workload | None = None
        self._startup: float | None = None

    # -------------------------------------------------------------- workloads (built lazily)

    @property
    def large(self) -> W.Workload:
        if self._large is None:
            log(
                f"building and pushing the large image (2 platforms x {self.cfg.large_layers} x {self.cfg.large_layer_mb} MB)"
            )
            t = time.perf_counter()
            self._large = W.push_large(
                self.src, layer_bytes=self.cfg.large_layer_mb * 1_000_000, layers=self.cfg.large_layers
            )
            log(f"  pushed {self._large.bytes / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")
        return self._large

    @property
    def small(self) -> W.Workload:
        if self._small is None:
            log(f"building and pushing {self.cfg.small_images} small two-platform images")
            t = time.perf_counter()
            self._small = W.push_small(
                self.src,
                count=self.cfg.small_images,
                layers=self.cfg.small_layers,
                layer_bytes=self.cfg.small_layer_kib * 1024,
            )
            log(f"  pushed {self._small.bytes / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s")
        return self._small

    @property
    def huge(self) -> W.Workload:
        if self._huge is None:
            log(f"building and pushing the single-layer image ({self.cfg.huge_layer_mb} MiB layer)")
            t = time.perf_counter()
            self._huge = W.push_single_layer(self.src, layer_bytes=self.cfg.huge_layer_mb << 20)
            log(f"  pushed {self._huge.bytes / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")
        return self._huge

    # -------------------------------------------------------------- tool runners

    def _write_pairs(self, pairs: list[tuple[str, str]], name: str = "pairs.json") -> Path:
        path = self.work / name
        path.write_text(json.dumps(pairs))
        return path

    def ecr_copy(self, src: str, dst: str, env: dict[str, str] | None = None) -> tuple[E.ChildRun, dict[str, Any]]:
        run = E.run_child(
            self.cleanup,
            [E.ECR_MIRROR, "--concurrency", str(self.cfg.concurrency), "copy", "--json", src, dst],
            env=env or E.ecr_mirror_env(),
        ).check()
        return run, json.loads(run.stdout)

    def ecr_many(self, pairs: list[tuple[str, str]]) -> tuple[E.ChildRun, dict[str, Any]]:
        path = self._write_pairs(pairs)
        argv = [
            E.PYTHON,
            str(E.BENCH / "many.py"),
            str(path),
            "--concurrency",
            str(self.cfg.concurrency),
            "--image-workers",
            str(self.cfg.concurrency),
        ]
        run = E.run_child(self.cleanup, argv, env=E.ecr_mirror_env()).check()
        return run, json.loads(run.stdout)

    def skopeo_each(self, pairs: list[tuple[str, str]]) -> Run:
        """skopeo copy --all, one invocation per image, one after another (cache cleared first)."""
        E.clear_skopeo_cache()
        runs = E.run_batch(self.cleanup, [E.skopeo_copy_argv(s, d) for s, d in pairs])
        if len(runs) != len(pairs) or runs[-1].returncode != 0:
            (runs[-1] if runs else E.ChildRun([], 0, 1, 0, 0, 0, "", "no command ran")).check()
        return Run("skopeo", sum(r.wall for r in runs), sum(r.cpu for r in runs), 0.0, max(r.maxrss_kib for r in runs))

    def skopeo_sync(self, workload: W.Workload, dst_host: str, n: int | None = None) -> Run:
        """One `skopeo sync --all` over a YAML list of the images (destination: same repository paths)."""
        refs = workload.refs if n is None else workload.refs[:n]
        images: dict[str, list[str]] = {}
        for ref in refs:
            repo, tag = ref.rsplit(":", 1)
            images.setdefault(repo, []).append(tag)
        # skopeo sync keeps only the last path component under the destination: group by parent path
        parents = {repo.rsplit("/", 1)[0] for repo in images}
        if len(parents) != 1:
            raise RuntimeError("skopeo sync comparison expects one parent path")
        (parent,) = parents
        path = self.work / "sync.yaml"
        path.write_text(json.dumps({self.src.host: {"tls-verify": False, "images": images}}))
        E.clear_skopeo_cache()
        argv = [
            "skopeo",
            "sync",
            "--all",
            "--retry-times",
            "0",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
            str(path),
            f"{dst_host}/{parent}",
        ]
        run = E.run_child(self.cleanup, argv).check()
        return Run("skopeo sync", run.wall, run.cpu, 0.0, run.maxrss_kib)

    def startup(self) -> float:
        """Median wall time of starting Python and importing what the CLI's copy path imports."""
        if self._startup is None:
            argv = [E.PYTHON, "-c", "import ecr_mirror.cli, ecr_mirror.copy, ecr_mirror.runtime"]
            self._startup = R.median(E.run_child(self.cleanup, argv).check().wall for _ in range(3))
        return self._startup

    # -------------------------------------------------------------- 1. large cold copy

    def section_large(self) -> None:
        w, cfg = self.large, self.cfg
        ref = w.refs[0]
        runs: dict[str, list[Run]] = {"ecr-mirror": [], "skopeo": [], "ceiling": []}
        order = list(runs)
        for r in range(cfg.rounds):
            rotated = order[r % len(order) :] + order[: r % len(order)]
            for tool in rotated:
                with E.fresh_registry(self.cleanup, cfg.storage) as dst:
                    reg0 = registry_cpu(self.src, dst)
                    if tool == "ecr-mirror":
                        child, _ = self.ecr_copy(f"{self.src.host}/{ref}", f"{dst.host}/{ref}")
                        run = Run(tool, child.wall, child.cpu, 0, child.maxrss_kib)
                    elif tool == "skopeo":
                        E.clear_skopeo_cache()
                        child = E.run_child(
                            self.cleanup, E.skopeo_copy_argv(f"{self.src.host}/{ref}", f"{dst.host}/{ref}")
                        ).check()
                        run = Run(tool, child.wall, child.cpu, 0, child.maxrss_kib)
                    else:
                        c0 = os.times()
                        wall = C.piped(self.src.url, dst.url, w.blobs, cfg.concurrency)
                        c1 = os.times()
                        run = Run(tool, wall, (c1.user - c0.user) + (c1.system - c0.system))
                    run.registry_cpu = registry_cpu(self.src, dst) - reg0
                    if tool != "ceiling":
                        W.verify(dst, w, what=f"{tool} large copy")
                    runs[tool].append(run)
                    log(
                        f"large round {r + 1}/{cfg.rounds} {tool}: {run.wall:.2f}s (cpu {run.cpu:.2f}s, registries {run.registry_cpu:.2f}s)"
                    )
        # the two halves of the ceiling on their own, for context
        get_only, put_only = [], []
        for _ in range(1):
            get_only.append(C.get_only(self.src.url, w.blobs, cfg.concurrency))
            if w.bytes <= (1 << 30):
                with E.fresh_registry(self.cleanup, cfg.storage) as dst:
                    put_only.append(C.put_only(self.src.url, dst.url, w.blobs, cfg.concurrency))
        self.results["large"] = {
            "bytes": w.bytes,
            "blobs": len(w.blobs),
            "startup": self.startup(),
            "runs": {k: summarize(v) for k, v in runs.items()},
            "get_only": R.median(get_only),
            "put_only": R.median(put_only) if put_only else None,
        }

    # -------------------------------------------------------------- 2 and 5. many small images, scaling

    def _small_round(self, n: int, tools: list[str], r: int, runs: dict[str, list[Run]]) -> None:
        w = self.small
        rotated = tools[r % len(tools) :] + tools[: r % len(tools)]
        for tool in rotated:
            with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                pairs = w.pairs(self.src.host, dst.host, n)
                reg0 = registry_cpu(self.src, dst)
                if tool == "ecr-mirror":
                    child, doc = self.ecr_many(pairs)
                    reqs = doc["requests"]
                    split = {"source": reqs.get(self.src.host, {}), "destination": reqs.get(dst.host, {})}
                    run = Run(tool, child.wall, child.cpu, 0, child.maxrss_kib, {"requests": split})
                elif tool == "skopeo":
                    run = self.skopeo_each(pairs)
                else:
                    run = self.skopeo_sync(w, dst.host, n)
                run.registry_cpu = registry_cpu(self.src, dst) - reg0
                W.verify(dst, w, n, what=f"{tool} copy of {n} images")
                runs[tool].append(run)
                log(
                    f"{n} images round {r + 1} {tool}: {run.wall:.2f}s (cpu {run.cpu:.2f}s, registries {run.registry_cpu:.2f}s)"
                )

    def section_small(self) -> None:
        n = self.cfg.small_images
        tools = ["ecr-mirror", "skopeo", "skopeo sync"]
        runs: dict[str, list[Run]] = {t: [] for t in tools}
        for r in range(self.cfg.small_rounds):
            # one `skopeo sync` run is enough to show it (it is not the target's comparison)
            self._small_round(n, tools if r == 0 else tools[:2], r, runs)
        self.results["small"] = {
            "images": n,
            "bytes": self.small.bytes,
            "runs": {k: summarize(v) for k, v in runs.items()},
            "requests": runs["ecr-mirror"][0].extra.get("requests") if runs["ecr-mirror"] else None,
        }

    def section_scaling(self) -> None:
        out: dict[int, Any] = {}
        previous = self.results.get("small")
        for n in self.cfg.scaling:
            if previous and n == previous["images"]:
                out[n] = {k: previous["runs"][k] for k in ("ecr-mirror", "skopeo")}
                continue
            runs: dict[str, list[Run]] = {"ecr-mirror": [], "skopeo": []}
            for r in range(self.cfg.small_rounds):
                self._small_round(n, list(runs), r, runs)
            out[n] = {k: summarize(v) for k, v in runs.items()}
        per_image = self.small.bytes / len(self.small.refs)
        self.results["scaling"] = {"per_image_bytes": per_image, "by_n": out}

    # -------------------------------------------------------------- 3. unchanged re-copy

    def section_unchanged(self) -> None:
        k = self.cfg.unchanged_tags
        large, small = self.large, self.small
        src_proxy = self.cleanup.proxy(self.src)
        out: dict[str, Any] = {"tags_small": k}
        for tool in ("ecr-mirror", "skopeo"):
            with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                dst_proxy = self.cleanup.proxy(dst)
                try:
                    res: dict[str, Any] = {}
                    # large: cold copy directly (not worth pushing 400 MB through a Python proxy)
                    direct = (f"{self.src.host}/{large.refs[0]}", f"{dst.host}/{large.refs[0]}")
                    proxied_large = (f"{src_proxy.host}/{large.refs[0]}", f"{dst_proxy.host}/{large.refs[0]}")
                    proxied_small = small.pairs(src_proxy.host, dst_proxy.host, k)
                    if tool == "ecr-mirror":
                        self.ecr_copy(*direct)
                    else:
                        E.clear_skopeo_cache()
                        E.run_child(self.cleanup, E.skopeo_copy_argv(*direct)).check()
                    # small: cold through the proxies, counted
                    res["cold_small"] = self._counted(tool, proxied_small, src_proxy, dst_proxy, k)
                    W.verify(dst, small, k, what=f"{tool} cold copy via proxies")
                    res["unchanged_large"] = self._counted(tool, [proxied_large], src_proxy, dst_proxy, 1)
                    res["unchanged_small"] = self._counted(tool, proxied_small, src_proxy, dst_proxy, k)
                    W.verify(dst, large, what=f"{tool} unchanged large")
                    W.verify(dst, small, k, what=f"{tool} unchanged small")
                    out[tool] = res
                    log(
                        f"unchanged {tool}: large {res['unchanged_large']['per_tag']}, small {res['unchanged_small']['per_tag']}"
                    )
                finally:
                    dst_proxy.stop()
        src_proxy.stop()
        self.results["unchanged"] = out

    def _counted(
        self, tool: str, pairs: list[tuple[str, str]], src_proxy: Any, dst_proxy: Any, tags: int
    ) -> dict[str, Any]:
        src_proxy.reset()
        dst_proxy.reset()
        if tool == "ecr-mirror":
            child, _ = self.ecr_copy(*pairs[0]) if len(pairs) == 1 else self.ecr_many(pairs)
            wall = child.wall
        else:
            wall = self.skopeo_each(pairs).wall
        return {
            "wall": wall,
            "source": _method_counts(src_proxy),
            "destination": _method_counts(dst_proxy),
            "per_tag": {
                "source": {m: n / tags for m, n in _method_counts(src_proxy).items()},
                "destination": {m: n / tags for m, n in _method_counts(dst_proxy).items()},
            },
        }

    # -------------------------------------------------------------- 3b. unchanged sync (moto + ECR stand-in)

    def section_sync(self) -> None:
        """DynamoDB from moto; ECR (its API and its registry face, with ECR's rules) from the stand-in,
        which counts what it is asked, in requests and in ECR API actions."""
        from tests.support.ecr import EcrStandIn
        from tests.support.moto import MotoServer, boto3_env

        k = self.cfg.unchanged_tags
        small = self.small
        moto = MotoServer()
        self.cleanup.callback(moto.stop)
        moto.start()
        ecr = EcrStandIn(storage=self.cfg.storage)
        self.cleanup.callback(ecr.stop)
        ecr.start()
        src_proxy = self.cleanup.proxy(self.src)
        home = self.cleanup.tempdir("ecr-mirror-bench-home-")
        env = E.ecr_mirror_env()
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
            env.pop(name, None)
        env.update(boto3_env(moto.url))
        env.update(ecr.env)  # boto3's ecr client (only it) -> the stand-in
        env.update(
            {
                "AWS_CONFIG_FILE": str(home / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
                "DOCKER_CONFIG": str(home / "no-docker-config"),
                "ECR_MIRROR_TABLE": "bench-mirror",
                "ECR_MIRROR_TARGET_REGISTRY": ecr.host,
                "ECR_MIRROR_REPOSITORY_PREFIX": "mirror",
                "ECR_MIRROR_CONCURRENCY": str(self.cfg.concurrency),
            }
        )

        def cli(*args: str) -> E.ChildRun:
            return E.run_child(self.cleanup, [E.ECR_MIRROR, *args], env=env).check()

        try:
            cli("table", "create")
            for ref in small.refs[:k]:
                repo, tag = ref.rsplit(":", 1)
                cli("add", repo.rsplit("/", 1)[1], "--source", f"{src_proxy.host}/{repo}", "--tag", tag)
            src_proxy.reset()
            ecr.reset_counts()
            cold = cli("sync", "--json")
            cold_counts = (_method_counts(src_proxy), _method_counts(ecr), _ecr_actions(ecr))
            src_proxy.reset()
            ecr.reset_counts()
            again = cli("sync", "--json")
            states = _sync_states(again.stdout)
            self.results["sync"] = {
                "tags": k,
                "cold_wall": cold.wall,
                "unchanged_wall": again.wall,
                "cold": {"source": cold_counts[0], "destination": cold_counts[1], "ecr_actions": cold_counts[2]},
                "unchanged": {
                    "source": _method_counts(src_proxy),
                    "destination": _method_counts(ecr),
                    "ecr_actions": _ecr_actions(ecr),
                },
                "states": states,
            }
            log(
                f"unchanged sync of {k} tags: source {_method_counts(src_proxy)}, ECR {_ecr_actions(ecr)}, states {states}"
            )
        finally:
            src_proxy.stop()
            ecr.stop()
            moto.stop()

    # -------------------------------------------------------------- 4. peak RSS, one big layer

    def section_rss(self) -> None:
        w = self.huge
        ref = w.refs[0]
        runs: dict[str, list[Run]] = {"ecr-mirror": [], "skopeo": []}
        for r in range(self.cfg.huge_rounds):
            for tool in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                    reg0 = registry_cpu(self.src, dst)
                    if tool == "ecr-mirror":
                        child, _ = self.ecr_copy(f"{self.src.host}/{ref}", f"{dst.host}/{ref}")
                    else:
                        E.clear_skopeo_cache()
                        child = E.run_child(
                            self.cleanup, E.skopeo_copy_argv(f"{self.src.host}/{ref}", f"{dst.host}/{ref}")
                        ).check()
                    run = Run(tool, child.wall, child.cpu, registry_cpu(self.src, dst) - reg0, child.maxrss_kib)
                    W.verify(dst, w, what=f"{tool} single-layer copy")
                    runs[tool].append(run)
                    log(
                        f"1-layer {w.bytes / 2**20:.0f} MiB {tool}: {run.wall:.2f}s, peak RSS {run.rss_kib / 1024:.0f} MiB"
                    )
        self.results["rss"] = {"bytes": w.bytes, "runs": {k: summarize(v) for k, v in runs.items()}}

    # -------------------------------------------------------------- 6. profile

    def section_profile(self) -> None:
        out = {}
        n = min(20, self.cfg.small_images)
        for name, workload, count in (("large", self.large, None), ("small", self.small, n)):
            with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                pairs = workload.pairs(self.src.host, dst.host, count)
                path = self._write_pairs(pairs, f"profile-{name}.json")
                argv = [
                    E.PYTHON,
                    str(E.BENCH / "profile_copy.py"),
                    "--pairs",
                    str(path),
                    "--clock",
                    "cpu",
                    "--top",
                    "12",
                    "--concurrency",
                    str(self.cfg.concurrency),
                    "--image-workers",
                    str(self.cfg.concurrency),
                ]
                child = E.run_child(self.cleanup, argv, env=E.ecr_mirror_env()).check()
                doc = json.loads(child.stdout)
                doc["images"] = len(pairs)
                doc["total_bytes"] = workload.bytes if count is None else workload.subset(count).bytes
                out[name] = doc
                log(f"profile {name}: wall {doc['wall_s']:.2f}s, cpu {doc['process_cpu_s']:.2f}s")
        self.results["profile"] = out

    # -------------------------------------------------------------- 7. scale: what a pass costs (bench/scale.py)

    def section_scale(self) -> None:
        import scale

        results = scale.run(log, quick=self.cfg.quick)
        log("scale:\n" + scale.tables(results))
        self.results["scale"] = results

    # -------------------------------------------------------------- 8. budget: a table needing 3x the pull window

    def section_budget(self) -> None:
        import budget

        results = budget.run(log, quick=self.cfg.quick)
        log("budget:\n" + budget.tables(results))
        self.results["budget"] = results

    # -------------------------------------------------------------- what-if: proposed changes, patched in

    def section_whatif(self) -> None:
        out: dict[str, Any] = {}
        rounds = max(1, min(3, self.cfg.rounds))
        ref = self.large.refs[0]
        runs: dict[str, list[Run]] = {v: [] for v in (*WHATIF_LARGE, "skopeo")}
        for r in range(rounds):
            order = list(runs)
            for variant in order[r % len(order) :] + order[: r % len(order)]:
                with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                    if variant == "skopeo":
                        E.clear_skopeo_cache()
                        child = E.run_child(
                            self.cleanup, E.skopeo_copy_argv(f"{self.src.host}/{ref}", f"{dst.host}/{ref}")
                        ).check()
                    else:
                        argv = [
                            E.PYTHON,
                            str(E.BENCH / "whatif.py"),
                            "--patch",
                            variant,
                            "cli",
                            "--concurrency",
                            str(self.cfg.concurrency),
                            "copy",
                            "--json",
                            f"{self.src.host}/{ref}",
                            f"{dst.host}/{ref}",
                        ]
                        child = E.run_child(self.cleanup, argv, env=E.ecr_mirror_env()).check()
                    W.verify(dst, self.large, what=f"what-if {variant}")
                    runs[variant].append(Run(variant, child.wall, child.cpu, 0, child.maxrss_kib))
                    log(f"what-if large round {r + 1} [{variant}]: {child.wall:.2f}s cpu {child.cpu:.2f}s")
        out["large"] = {k: summarize(v) for k, v in runs.items()}
        n = self.cfg.small_images
        runs = {v: [] for v in WHATIF_SMALL}
        for r in range(max(1, min(2, self.cfg.small_rounds))):
            order = list(runs)
            for variant in order[r % len(order) :] + order[: r % len(order)]:
                with E.fresh_registry(self.cleanup, self.cfg.storage) as dst:
                    path = self._write_pairs(self.small.pairs(self.src.host, dst.host, n))
                    argv = [
                        E.PYTHON,
                        str(E.BENCH / "whatif.py"),
                        "--patch",
                        variant,
                        "many",
                        str(path),
                        "--concurrency",
                        str(self.cfg.concurrency),
                        "--image-workers",
                        str(self.cfg.concurrency),
                    ]
                    child = E.run_child(self.cleanup, argv, env=E.ecr_mirror_env()).check()
                    W.verify(dst, self.small, n, what=f"what-if {variant}")
                    runs[variant].append(Run(variant, child.wall, child.cpu, 0, child.maxrss_kib))
                    log(f"what-if {n} images round {r + 1} [{variant}]: {child.wall:.2f}s cpu {child.cpu:.2f}s")
        out["small"] = {k: summarize(v) for k, v in runs.items()}
        out["small_images"] = n
        self.results["whatif"] = out

    # -------------------------------------------------------------- driver

    def run(self) -> dict[str, Any]:
        self.results["machine"] = machine_info()
        self.results["product"] = product_version()
        self.results["load_before"] = os.getloadavg()
        started = time.perf_counter()
        for name in self.cfg.sections:
            log(f"--- section {name}")
            try:
                getattr(self, f"section_{name}")()
            except (KeyboardInterrupt, E.Interrupted):
                raise
            except Exception as exc:  # noqa: BLE001 - one section failing must not hide the others
                log(f"section {name} FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                self.results["errors"][name] = f"{type(exc).__name__}: {str(exc)[:500]}"
        self.results["load_after"] = os.getloadavg()
        self.results["elapsed"] = time.perf_counter() - started
        return self.results


def _method_counts(proxy: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method, _ in proxy.requests:
        counts[method] = counts.get(method, 0) + 1
    return dict(sorted(counts.items()))


def _ecr_actions(ecr: Any) -> dict[str, int]:
    """What the ECR stand-in was asked, as ECR API actions: its API calls, and its registry requests counted
    as the action each is billed and throttled as (a manifest HEAD is BatchGetImage, a blob HEAD
    BatchCheckLayerAvailability...; tests/support/ecr ``ecr_action``)."""
    from tests.support.ecr import ecr_action

    counts: dict[str, int] = {}
    for op in [c.op for c in ecr.api_calls] + [ecr_action(r.method, r.target) or "other" for r in ecr.records]:
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


def _sync_states(stdout: str) -> dict[str, int]:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return {}
    states: dict[str, int] = {}

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if "state" in x and "tag" in x:
                states[str(x["state"])] = states.get(str(x["state"]), 0) + 1
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    return states


def main(argv: list[str] | None = None) -> int:
    cfg = Config.from_args(argv)
    for tool in ("skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            print(f"bench: `{tool}` is not installed (make system-deps)", file=sys.stderr)
            return 2
    E.install_signal_handlers()
    log(f"sections: {', '.join(cfg.sections)}; storage {cfg.storage}; rounds {cfg.rounds}/{cfg.small_rounds}")
    try:
        with E.Cleanup() as cleanup:
            results = Bench(cfg, cleanup).run()
    except (KeyboardInterrupt, E.Interrupted):
        print("bench: interrupted; every process and temp dir it started has been removed", file=sys.stderr)
        return 130
    from render import render

    target = Path(cfg.json_out) if cfg.json_out else RESULTS_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1, default=str))
    print(render(results))
    log(f"wrote {target}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
