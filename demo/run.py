#!/usr/bin/env python3
"""`make demo`: ecr-mirror doing its job end to end, on loopback, with no AWS account.

    .venv/bin/python demo/run.py          (what `make demo` runs after its set-up)

Starts moto (the AWS APIs but ECR), an upstream docker-registry behind a request-counting proxy and
the ECR stand-in (ECR's API and registry face, with ECR's rules, over one store); seeds the upstream;
adds rows with the real `ecr-mirror` CLI; runs the schedule and worker Lambda handlers through SQS as the
deployed stack does; reads the result back like `docker manifest inspect`; verifies the upstream's cosign
signature at the mirror; proves the second sync copies nothing, GETs nothing upstream and asks nothing of
ECR; overwrites a mirrored tag by hand and shows the audit find the drift and the next run repair it.

Every claim printed is also checked: the script exits 1 if any check fails (CI runs it), 130 on
Ctrl-C and 143 on SIGTERM, and stops everything it started in every case.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.syntax import Syntax  # noqa: E402
from rich.table import Table  # noqa: E402

from demo import images as seed  # noqa: E402
from demo.world import PREFIX, WORKER_BATCH_SIZE, Interrupted, SyncRun, World, cli_json, install_signal_handlers  # noqa: E402
from tests.support import images as im  # noqa: E402
from tests.support.cosign import VerificationError, verify  # noqa: E402

console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 132, highlight=False)

STEPS = 9
HOSTS = ("linux/amd64", "linux/arm64/v8")


class CheckFailed(Exception):
    pass


class Demo:
    def __init__(self, world: World) -> None:
        self.world = world
        self.checks: list[str] = []
        self.timings: list[tuple[str, float]] = []
        self.upstream: seed.Upstream | None = None
        self.targets: dict[str, str] = {}

    # ------------------------------------------------------------------ presentation helpers

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        n = len(self.timings) + 1
        console.print()
        console.rule(f"[bold cyan]Step {n}/{STEPS} · {title}", align="left")
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.timings.append((title, seconds))
            console.print(f"[dim]  ⏱  step {n} took {seconds:.1f} s[/]")

    def check(self, ok: bool, claim: str, detail: str = "") -> None:
        if ok:
            self.checks.append(claim)
            console.print(f"  [green]✓[/] {escape(claim)}")
            return
        console.print(f"  [bold red]✗ {escape(claim)}[/]" + (f"\n    {escape(detail)}" if detail else ""))
        raise CheckFailed(f"{claim}: {detail}" if detail else claim)

    def cli(self, *args: str, expect: int | None = 0, show: bool = True, color: bool = False) -> subprocess.CompletedProcess[str]:
        console.print(f"[bold]$ ecr-mirror {escape(shlex.join(args))}[/]")
        result = self.world.cli(*args, color=color)
        if show:
            for stream in (result.stdout, result.stderr):
                text = stream.rstrip("\n")
                if text:  # as the command printed it: no re-wrapping
                    console.print(text if color else escape(text), markup=color, highlight=False, soft_wrap=True)
        if expect is not None and result.returncode != expect:
            self.check(False, f"`ecr-mirror {args[0]}` exits {expect}",
                       f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def status(self) -> dict[tuple[str, str | None], dict[str, Any]]:
        return {(r["id"], r["tag"]): r for r in cli_json("status", "--json")}

    def show_run(self, run: SyncRun) -> None:
        console.print(
            f"  schedule handler → enqueued [bold]{run.schedule.result.get('enqueued')}[/] rows on SQS;  "
            f"worker handler invoked {len(run.workers)}× (batch size {WORKER_BATCH_SIZE}, as the stack configures);  "
            f"{run.seconds:.1f} s in the handlers")
        table = Table("level", "worker log (Powertools JSON, condensed)", box=None, padding=(0, 1))
        for rec in run.logs:
            extra = []
            if rec.get("row"):
                extra.append(f"row={rec['row']}")
            if rec.get("tags"):
                extra.append("tags=" + ",".join(f"{t}:{s}" for t, s in rec["tags"].items()))
            if rec.get("error"):
                extra.append(f"error={rec['error']}")
            colour = {"INFO": "green", "WARNING": "yellow", "ERROR": "red"}.get(rec["level"], "white")
            table.add_row(f"[{colour}]{rec['level']}[/]", escape(f"{rec['message']}  {'  '.join(extra)}"))
        console.print(table)
        names = ("TagsCopied", "TagsInSync", "TagsDrifted", "TagsFailed", "RowsInvalid", "BytesCopied",
                 "BlobsCopied", "BlobsSkipped")
        m = run.metrics
        console.print("  EMF metrics (namespace EcrMirror): " + "  ".join(f"{n}=[bold]{m.get(n, 0):,.0f}[/]" for n in names))

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        return im.get_manifest(self.world.ecr, repo, ref, auth=self.world.ecr.auth)

    def index_table(self, index: dict[str, Any], title: str, arch_tags: dict[str, str] | None = None) -> None:
        table = Table("platform", "digest", "size", *(("also tagged",) if arch_tags else ()), title=title,
                      title_justify="left", box=None, padding=(0, 2))
        for desc in index["manifests"]:
            row = [seed.platform_string(desc), desc["digest"], str(desc["size"])]
            if arch_tags:
                row.append(arch_tags.get(desc["digest"], ""))
            table.add_row(*map(escape, row))
        console.print(table)

    def pulls(self, repo: str, ref: str, index: dict[str, Any], expected: dict[str, str | None]) -> None:
        """Which child each host pulls; the child's config must say that platform."""
        ecr = self.world.ecr
        for host in HOSTS:
            desc = seed.pull_choice(index, host)
            want = expected[host]
            if desc is None:
                console.print(f"  a [bold]{host}[/] host running `docker pull {ecr.host}/{repo}:{ref}` gets: "
                              "no matching manifest (this mirror holds no image for it)")
                self.check(want is None, f"{repo}:{ref} has no image a {host} host could run")
                continue
            child, _, _ = im.get_manifest(ecr, repo, desc["digest"], auth=ecr.auth)
            config = json.loads(im.get_blob(ecr, repo, json.loads(child)["config"]["digest"], auth=ecr.auth))
            runs = "/".join([config["os"], config["architecture"]] + ([config["variant"]] if config.get("variant") else []))
            console.print(f"  a [bold]{host}[/] host running `docker pull {ecr.host}/{repo}:{ref}` gets "
                          f"{desc['digest'][:19]}…  (its config says {runs})")
            self.check(desc["digest"] == want and seed.normalise_platform(config)[:2] == seed.normalise_platform(
                im.parse_platform(host))[:2], f"a {host} host pulls the upstream {host} image from {repo}:{ref}",
                f"got {desc['digest']} ({runs}), expected {want}")

    # ------------------------------------------------------------------ the steps

    def start(self) -> None:
        with self.step("Start the stand-ins: moto (AWS APIs), upstream registry + counting proxy, the ECR stand-in"):
            w = self.world
            w.start_processes()
            w.configure_environment()
            table = Table("component", "plays", "address", box=None, padding=(0, 2))
            table.add_row("moto_server", "AWS APIs: DynamoDB, SQS (everything but ECR)", w.moto.url)
            table.add_row("docker-registry", "upstream (Docker Hub)", w.upstream.url)
            table.add_row("RegistryProxy", "the way to upstream: counts every request", w.proxy.url)
            table.add_row("ECR stand-in", "ECR's API (boto3 ecr, AWS_ENDPOINT_URL_ECR)", w.ecr.api_url)
            table.add_row("", "ECR's registry endpoint, over the same store (a docker-registry behind ECR's rules)", w.ecr.url)
            console.print(table)
            self.check(httpx.get(f"{w.ecr.url}/v2/").status_code == 401
                       and httpx.get(f"{w.ecr.url}/v2/", auth=w.ecr.auth).status_code == 200,
                       "the ECR stand-in refuses anonymous requests and accepts AWS:<password> from its GetAuthorizationToken")
            self.check(httpx.get(f"{w.ecr.url}/v2/{PREFIX}/nothing/tags/list", auth=w.ecr.auth).status_code == 404,
                       "and, like ECR, knows no repository its API did not create (NAME_UNKNOWN)")

    def seed(self) -> None:
        with self.step("Seed the upstream (images built locally: real layers, real configs)"):
            self.upstream = up = seed.seed_upstream(self.world.upstream)
            table = Table("image", "kind", "platforms", "digest", box=None, padding=(0, 2))
            for name, _, kind, platforms, digest in up.rows():
                table.add_row(name, kind, ", ".join(p for p in platforms if p), digest)
            console.print(table)
            console.print(f"  {up.total_bytes / 1e6:.1f} MB of blobs upstream")
            console.print("  [dim]Before ecr-mirror, mirroring golang meant: docker pull --platform linux/amd64 golang:1.19.2, "
                          "docker tag …:1.19.2-amd64, docker push; the same for arm64; docker manifest create "
                          "…:1.19.2 --amend …-amd64 --amend …-arm64; docker manifest push.[/]")

    def add_rows(self) -> None:
        with self.step("Create the tables and add rows with the CLI (a deployed stack creates tables and queue)"):
            w, up = self.world, self.world.proxy.host  # sources name the proxy, so every upstream request is counted
            self.cli("table", "create")
            w.create_queue()
            self.cli("add", "golang", "--source", f"{up}/library/golang", "--tag", seed.GOLANG_TAG, "--arch-tags")
            self.cli("add", "app-arm64", "--source", f"{up}/team/app", "--tag", seed.APP_TAGS[-1],
                     "--platform", "linux/arm64", "--target-repository", f"{PREFIX}/team/app-arm64")
            self.cli("add", "app", "--source", f"{up}/team/app", "--tag-pattern", seed.APP_PATTERN,
                     "--keep-latest", str(seed.APP_KEEP_LATEST))
            self.cli("add", "tool", "--assemble", f"{up}/team/tool:{seed.TOOL_TAG}-amd64",
                     "--assemble", f"{up}/team/tool:{seed.TOOL_TAG}-arm64", "--tag", seed.TOOL_TAG)
            self.cli("list")
            listed = cli_json("list", "--json")
            self.targets = {r["id"]: r["target_repository"] for r in listed}
            self.check(sorted(self.targets) == ["app", "app-arm64", "golang", "tool"] and not any(r["error"] for r in listed),
                       "four valid rows: full mirror, platform subset, tag pattern + keep_latest, assemble")

    def first_sync(self) -> None:
        with self.step("First scheduled run: EventBridge → schedule handler → SQS → worker handler"):
            w = self.world
            w.load_handlers()
            w.proxy.reset()
            run = w.sync_run()
            self.show_run(run)
            m = run.metrics
            self.check(run.schedule.result.get("enqueued") == 4 and run.messages == 4, "one SQS message per enabled row (4)")
            self.check(run.failures == [], "no batch item failures", f"failed rows: {run.failures}")
            self.check(m.get("TagsCopied") == 5 and m.get("TagsInSync") == 5 and not m.get("TagsFailed"),
                       "5 tags copied, 5 in sync (golang 1.19.2, app-arm64 v1.10.0, app v1.10.0 + v1.9.0, tool 1.0)",
                       f"metrics: {m}")
            self.check(m.get("BytesCopied", 0) > 10_000_000, f"{m.get('BytesCopied', 0) / 1e6:.1f} MB copied (BytesCopied metric)")
            console.print(f"  upstream requests through the proxy: GET {w.proxy.count('GET')}, HEAD {w.proxy.count('HEAD')}")
            ecr_api = w.ecr.client()
            repos = ecr_api.describe_repositories()["repositories"]
            table = Table("ECR repository (created by the worker)", "scan on push", "tag mutability", "encryption",
                          box=None, padding=(0, 2))
            for r in sorted(repos, key=lambda r: r["repositoryName"]):
                table.add_row(r["repositoryName"], str(r["imageScanningConfiguration"]["scanOnPush"]),
                              r["imageTagMutability"], r.get("encryptionConfiguration", {}).get("encryptionType", ""))
            console.print(table)
            self.check(sorted(r["repositoryName"] for r in repos) == sorted(set(self.targets.values()))
                       and all(r["imageScanningConfiguration"]["scanOnPush"] for r in repos),
                       "the worker created each target repository through the ECR API, with scan on push")
            golang = ecr_api.describe_images(repositoryName=self.targets["golang"],
                                             imageIds=[{"imageTag": seed.GOLANG_TAG}])["imageDetails"]
            self.check([d["imageDigest"] for d in golang] == [self.upstream.golang.digest]
                       and sorted(golang[0]["imageTags"]) == [seed.GOLANG_TAG],
                       "ECR's DescribeImages reports the index the registry face received (one store, two faces)",
                       json.dumps(golang, default=str))

    def inspect(self) -> None:
        up = self.upstream
        assert up is not None
        with self.step("What landed in the ECR stand-in (as `docker manifest inspect` shows it)"):
            ecr = self.world.ecr
            # -- the full mirror: byte-identical manifest list, plus -amd64/-arm64 tags
            repo = self.targets["golang"]
            raw, content_type, digest = self.manifest(repo, seed.GOLANG_TAG)
            console.print(f"[bold]$ docker manifest inspect {ecr.host}/{repo}:{seed.GOLANG_TAG}[/]")
            console.print(Syntax(raw.decode(), "json", theme="ansi_dark", background_color="default"))
            index = json.loads(raw)
            arch = {im.head_manifest(ecr, repo, f"{seed.GOLANG_TAG}-{a}", auth=ecr.auth): f"{seed.GOLANG_TAG}-{a}"
                    for a in ("amd64", "arm64")}
            self.index_table(index, f"{repo}:{seed.GOLANG_TAG}  {digest}", arch_tags=arch)
            self.check(digest == up.golang.digest and raw == up.golang.manifest,
                       "golang:1.19.2 in ECR is byte-identical to upstream: same index digest", f"{digest} != {up.golang.digest}")
            self.check(content_type == im.DOCKER_LIST, "and the same media type (Docker manifest list)", content_type)
            self.check(arch.get(up.golang.image_for("linux/amd64").digest) == f"{seed.GOLANG_TAG}-amd64"
                       and arch.get(up.golang.image_for("linux/arm64/v8").digest) == f"{seed.GOLANG_TAG}-arm64",
                       "1.19.2-amd64 and 1.19.2-arm64 tags point at the platform images (the manual flow's tags)")
            self.pulls(repo, seed.GOLANG_TAG, index, {h: up.golang.image_for(h).digest for h in HOSTS})
            console.print(f"[bold]$ cosign verify --key cosign.pub {ecr.host}/{repo}@{up.golang.digest}[/]")
            try:
                signatures = verify(ecr, repo, up.golang.digest, up.key.public_pem, auth=ecr.auth)
            except VerificationError as exc:
                signatures, why = [], str(exc)
            else:
                why = ""
                console.print(f"  {len(signatures)} signature verified: payload names {up.golang.digest[:19]}…, "
                              f"signed by the upstream's key for {escape(signatures[0].docker_reference)}")
            self.check(bool(signatures),
                       "the upstream's cosign signature came along (its .sig tag) and verifies at the mirror", why)

            # -- the platform subset: a new index, same child digests, attestation kept
            console.print()
            repo = self.targets["app-arm64"]
            tag = seed.APP_TAGS[-1]
            source = up.app[tag]
            raw, _, digest = self.manifest(repo, tag)
            index = json.loads(raw)
            self.index_table(index, f"{repo}:{tag}  {digest}  (row app-arm64: --platform linux/arm64)")
            arm = source.image_for("linux/arm64/v8")
            att = next(a for a in source.attestations if a.annotations["vnd.docker.reference.digest"] == arm.digest)
            self.check([d["digest"] for d in index["manifests"]] == [arm.digest, att.digest],
                       "subset index holds upstream's arm64 image and its attestation, digests unchanged")
            self.check(digest != source.digest, "its own index digest (a rewritten index cannot keep upstream's)")
            self.pulls(repo, tag, index, {"linux/amd64": None, "linux/arm64/v8": arm.digest})

            # -- the tag pattern: newest two by version order, attestations included
            console.print()
            repo = self.targets["app"]
            tags = im.list_tags(ecr, repo, auth=ecr.auth)
            console.print(f"  {repo}: tags {tags}  (upstream has {', '.join(up.app)} and latest; pattern "
                          f"{seed.APP_PATTERN}, keep_latest {seed.APP_KEEP_LATEST})")
            self.check(sorted(tags) == ["v1.10.0", "v1.9.0"],
                       "keep_latest 2 chose v1.10.0 and v1.9.0 (version order; string order would pick v1.9.0, v1.2.0)")
            for t in tags:
                raw, _, digest = self.manifest(repo, t)
                self.check(digest == up.app[t].digest and len(json.loads(raw)["manifests"]) == 4,
                           f"app:{t} is digest-identical to upstream, attestation manifests included")

            # -- the assemble row: the manual `docker manifest create` as a row
            console.print()
            repo = self.targets["tool"]
            raw, content_type, digest = self.manifest(repo, seed.TOOL_TAG)
            index = json.loads(raw)
            self.index_table(index, f"{repo}:{seed.TOOL_TAG}  {digest}  (row tool: assembled from :1.0-amd64 + :1.0-arm64)")
            amd, arm = up.tool[f"{seed.TOOL_TAG}-amd64"], up.tool[f"{seed.TOOL_TAG}-arm64"]
            self.check([d["digest"] for d in index["manifests"]] == [amd.digest, arm.digest]
                       and content_type == im.DOCKER_LIST,
                       "tool:1.0 is a manifest list of the two single-arch images, their digests unchanged")
            self.pulls(repo, seed.TOOL_TAG, index, {"linux/amd64": amd.digest, "linux/arm64/v8": arm.digest})

    def second_sync(self) -> None:
        with self.step("Second scheduled run: upstream unchanged, so nothing is copied, fetched or asked of ECR"):
            w = self.world
            w.proxy.reset()
            w.ecr.reset_counts()
            run = w.sync_run()  # fresh containers: nothing is remembered in memory between runs
            self.show_run(run)
            m = run.metrics
            requests = w.proxy.requests
            table = Table("method", "upstream request (through the counting proxy)", box=None, padding=(0, 2))
            for method, target in requests:
                table.add_row(method, target)
            console.print(table)
            heads = [t for m_, t in requests if m_ == "HEAD"]
            gets = [t for m_, t in requests if m_ == "GET"]
            content_gets = [t for t in gets if "/manifests/" in t or "/blobs/" in t]
            expected_heads = 1 + 1 + seed.APP_KEEP_LATEST + 2  # golang, app-arm64, app's 2 tags, tool's 2 sources
            self.check(m.get("TagsCopied") == 0 and m.get("BytesCopied") == 0 and m.get("TagsInSync") == 5,
                       "nothing copied: TagsCopied=0, BytesCopied=0, TagsInSync=5", f"metrics: {m}")
            self.check(not content_gets and w.proxy.count("GET", "/manifests/") == 0 and w.proxy.count("GET", "/blobs/") == 0,
                       "zero upstream manifest or blob GETs (Docker Hub counts manifest GETs as pulls; HEADs are free)",
                       f"GETs: {content_gets}")
            self.check(len(heads) == expected_heads and set(heads) == {
                f"/v2/library/golang/manifests/{seed.GOLANG_TAG}", "/v2/team/app/manifests/v1.10.0",
                "/v2/team/app/manifests/v1.9.0", f"/v2/team/tool/manifests/{seed.TOOL_TAG}-amd64",
                f"/v2/team/tool/manifests/{seed.TOOL_TAG}-arm64"},
                f"one HEAD per mirrored tag or assembled source: {expected_heads} HEADs", f"HEADs: {heads}")
            self.check(gets == ["/v2/team/app/tags/list?n=1000"] or (len(gets) == 1 and gets[0].startswith("/v2/team/app/tags/list")),
                       "the only GET is the pattern row's tag listing (a tag_pattern row must list tags)", f"GETs: {gets}")
            ecr = w.ecr
            actions = ("BatchGetImage", "BatchCheckLayerAvailability", "DescribeRepositories", "GetAuthorizationToken",
                       "PutImage", "InitiateLayerUpload", "GetDownloadUrlForLayer", "CreateRepository")
            counted = {a: ecr.count(op=a) for a in actions}
            console.print("  at ECR, in ECR's terms (registry requests counted as the API action they are billed as): "
                          + "  ".join(f"{a}={n}" for a, n in counted.items()))
            writes = {a: counted[a] for a in ("PutImage", "InitiateLayerUpload", "CreateRepository")}
            self.check(not any(writes.values()) and counted["GetDownloadUrlForLayer"] == 0,
                       "nothing written to ECR and no layer downloaded there (PutImage, InitiateLayerUpload, CreateRepository = 0)",
                       f"counts: {counted}")
            registry, api = ecr.count(), ecr.count(face="api")
            console.print(f"  requests at ECR in all: registry API {registry}, ECR API {api}")
            self.check(registry == 0 and api == 0,
                       "zero requests at ECR: every tag is settled (in sync as recorded, upstream unmoved), so the "
                       "target is not asked (the audit checks it on its own cadence)", f"registry {registry}, API {api}")

    def drift(self) -> None:
        up = self.upstream
        assert up is not None
        with self.step("Drift: overwrite a mirrored tag by hand; the audit sees it, the next run repairs it"):
            w, ecr = self.world, self.world.ecr
            repo = self.targets["golang"]
            intruder = im.build_image("linux/amd64", seed=99)
            im.push_image(ecr, repo, intruder, seed.GOLANG_TAG, auth=ecr.auth)
            console.print(f"[bold]$ docker push {ecr.host}/{repo}:{seed.GOLANG_TAG}[/]   [dim]# someone pushes a "
                          f"local build over the mirror: now {intruder.digest[:19]}…[/]")
            self.check(im.head_manifest(ecr, repo, seed.GOLANG_TAG, auth=ecr.auth) == intruder.digest,
                       "the ECR tag now points at the hand-pushed image")
            console.print("  [dim]An unchanged tag costs nothing at ECR, so a hand-made change is found by the audit: "
                          "every auditInterval (24 h) a scheduled pass lists each repository through ECR's API; "
                          "`--audit` runs one now.[/]")
            w.ecr.reset_counts()
            result = self.cli("sync", "--check", "--audit", "--id", "golang", expect=None)
            console.print(f"  [dim](exit status {result.returncode}: --check records states, it does not fail on drift)[/]")
            record = self.status()[("golang", seed.GOLANG_TAG)]
            self.check(record["state"] == "diverged" and record["target_digest"] == intruder.digest,
                       "`sync --check --audit` recorded golang:1.19.2 as diverged (target is not what ecr-mirror put there)",
                       f"status: {record}, exit {result.returncode}")
            self.check(w.ecr.count(op="ListImages", face="api") == 1 and w.ecr.count() == 0,
                       "the audit asked ECR one ListImages and made no registry request (no GET, no blob request)",
                       f"API {[c.op for c in w.ecr.api_calls]}, registry {w.ecr.requests}")
            self.cli("status", "--id", "golang", color=console.is_terminal)
            run = w.sync_run()
            self.show_run(run)
            m = run.metrics
            self.check(m.get("TagsDrifted") == 1, "the worker emitted TagsDrifted=1 (the drift alarm's metric)", f"metrics: {m}")
            self.check(m.get("TagsCopied") == 1 and not m.get("TagsFailed"), "and repaired exactly that tag (TagsCopied=1)",
                       f"metrics: {m}")
            record = self.status()[("golang", seed.GOLANG_TAG)]
            now = im.head_manifest(ecr, repo, seed.GOLANG_TAG, auth=ecr.auth)
            self.check(record["state"] == "in_sync" and record["target_digest"] == up.golang.digest and now == up.golang.digest,
                       "golang:1.19.2 is back to upstream's digest and in_sync", f"status: {record}, ECR tag: {now}")

    def final_status(self) -> None:
        with self.step("`ecr-mirror status`: what the service recorded for every row and tag"):
            self.cli("status", color=console.is_terminal)
            records = self.status()
            self.check(len(records) == 5 and all(r["state"] == "in_sync" and r["last_success"] for r in records.values()),
                       "5 tags, every one in_sync with a last success time",
                       json.dumps(list(records.values()), indent=1, default=str))

    def verify_stopped(self, children_before: list[tuple[int, str]]) -> None:
        """After :meth:`World.close`: no child process left, the proxy closed, the temp dir gone."""
        from tests.support.process import http_answers

        console.print()
        with self.step("Stop everything the demo started"):
            names = ", ".join(sorted({name for _, name in children_before})) or "none seen"
            left = child_processes()
            self.check(not left, f"every child process has exited ({len(children_before)} were running: {names})",
                       f"still running: {left}")
            proxy = self.world.proxy
            if proxy is not None:
                self.check(not http_answers("127.0.0.1", proxy.port, "/v2/", timeout=0.5), "the counting proxy is closed")
            self.check(self.world.tmp is None or not self.world.tmp.exists(), "the demo's temp dir is removed")

    def summary(self, total: float) -> None:
        console.print()
        console.rule("[bold green]Demo passed", align="left")
        table = Table("step", "seconds", box=None, padding=(0, 2))
        for title, seconds in self.timings:
            table.add_row(title, f"{seconds:.1f}")
        table.add_row("[bold]total[/]", f"[bold]{total:.1f}[/]")
        console.print(table)
        console.print(f"  [green]{len(self.checks)} checks passed.[/]")


def child_processes() -> list[tuple[int, str]]:
    """(pid, command name) of this process's live children, from /proc (Linux; empty elsewhere)."""
    me, out = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != "Z":
            out.append((int(entry.parent.name), name))
    return sorted(out)


def main() -> int:
    install_signal_handlers()
    started = time.perf_counter()
    console.rule("[bold]ecr-mirror demo[/]: mirror multi-arch images into (a stand-in for) Amazon ECR", align="left")
    world = World()
    demo = Demo(world)
    code = 0
    try:
        demo.start()
        demo.seed()
        demo.add_rows()
        demo.first_sync()
        demo.inspect()
        demo.second_sync()
        demo.drift()
        demo.final_status()
    except CheckFailed as exc:
        console.print(f"\n[bold red]DEMO FAILED[/]: {escape(str(exc))}")
        code = 1
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted (Ctrl-C): stopping everything[/]")
        code = 130
    except Interrupted as exc:
        console.print(f"\n[yellow]interrupted ({exc}): stopping everything[/]")
        code = 128 + exc.signum
    except Exception:
        console.print("\n[bold red]DEMO FAILED with an unexpected error[/]")
        console.print_exception(max_frames=20)
        code = 1
    finally:
        children = child_processes()
        world.close()
    if code == 0:
        try:
            demo.verify_stopped(children)
        except CheckFailed as exc:
            console.print(f"\n[bold red]DEMO FAILED[/]: {escape(str(exc))}")
            return 1
        demo.summary(time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
