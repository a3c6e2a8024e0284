"""`ecr-mirror` on a terminal: progress, Ctrl-C, tables. A real process on a pseudo-terminal, real registries.

The terminal's final state is read with a small screen model (tests/support/terminal.py): what a
person sees after the command, not just which bytes were written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from tests.support import images as im
from tests.support.terminal import Screen, TerminalRun

EXE = str(Path(sys.executable).parent / "ecr-mirror")
COLUMNS = 100
BAR = "━"  # rich's progress bar glyph


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DOCKER_CONFIG": "/nonexistent-docker-config", **extra}


def two_platforms(seed: int, layer_size: int = 3_000_000):
    return im.build_index([im.build_image(p, seed=seed, layers=2, layer_size=layer_size) for p in ("linux/amd64", "linux/arm64/v8")])


def blob_bytes(index) -> int:
    return sum(size for image in index.images for size in image.blob_sizes.values())


def test_copy_progress_has_totals_per_platform_and_the_summary_human_sizes(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = two_platforms(seed=41)
    im.push_index(src, "app", index, "v1")
    slow = proxy_factory(src)
    slow.add_fault(method="GET", path=r"/blobs/sha256:", action="delay", delay=0.3, times=None)  # a few frames get drawn
    with TerminalRun([EXE, "copy", f"{slow.host}/app:v1", f"{dst.host}/app:v1"], env=env(), columns=COLUMNS) as run:
        assert run.wait(timeout=120) == 0, run.text
    drawn = run.text
    total = blob_bytes(index)
    per_platform = {str(p): sum(i.blob_sizes.values()) for p, i in zip(("linux/amd64", "linux/arm64/v8"), index.images)}
    # a line per platform and a total, each with bytes of a known total, a rate and time left
    lines = [line for line in drawn.replace("\r", "\n").split("\n") if BAR in line]
    for label, size in [("total", total), *per_platform.items()]:
        shown = [line for line in lines if line.strip().startswith(label + " ")]
        assert shown, f"no progress line for {label}:\n{drawn}"
        assert any(f"/{size / 1e6:.1f} MB" in line for line in shown), shown  # the total is known from the manifests
        assert any("MB/s" in line or "kB/s" in line for line in shown) and any(":" in line.split()[-1] for line in shown)
    screen = Screen(COLUMNS).feed(run.output)
    assert BAR not in screen.text and screen.cursor_visible, screen.text  # the display is gone, cursor back
    assert screen.text_lines[-1] == index.digest
    summary = "".join(screen.text.split("sha256:")[0].split())  # the line wraps at the terminal's width
    assert f"{dst.host}/app:v1:linux/amd64,linux/arm64/v8(6blobscopied,{total / 1e6:.1f}MBin" in summary, screen.text
    assert "/s;0alreadythere,0mounted)" in summary


@pytest.mark.parametrize("how", ["key", "kill"])
def test_ctrl_c_mid_copy_stops_leaves_the_tag_and_a_clean_terminal(how, registry_pair, proxy_factory, record_property):
    """Ctrl-C typed on the terminal (SIGINT from the line discipline, ``^C`` echo) or ``kill -INT``."""
    src, dst = registry_pair
    index = two_platforms(seed=42, layer_size=8_000_000)
    im.push_index(src, "app", index, "v2")
    before = im.build_image("linux/amd64", seed=43)
    im.push_image(dst, "app", before, "v1")  # what the destination tag holds before the copy
    stalled = proxy_factory(src)
    # every layer arrives in part, then the upstream stalls (for longer than the test waits)
    stalled.add_fault(method="GET", path=r"/blobs/sha256:", action="stall", after_bytes=2_000_000, delay=120, times=None)
    with TerminalRun([EXE, "copy", f"{stalled.host}/app:v2", f"{dst.host}/app:v1"], env=env(), columns=COLUMNS) as run:
        run.wait_for("linux/arm64/v8")
        run.wait_for(re.compile(r"total\s+\S+\s+[1-9][0-9.]*/"))  # bytes are moving (each layer's first 2 MB)
        sent = run.press_ctrl_c() if how == "key" else run.interrupt()
        code = run.wait(timeout=60)  # without the abort: the 60 s read timeout, then retries
        stopped = time.monotonic() - sent
    record_property("ctrl_c_stop_seconds", round(stopped, 3))
    print(f"Ctrl-C ({how}) to exit: {stopped:.3f} s")
    assert code == 130, run.text
    assert im.head_manifest(dst, "app", "v1") == before.digest  # the tag is untouched
    assert not any(im.blob_exists(dst, "app", layer.digest) for image in index.images for layer in image.layers)
    screen = Screen(COLUMNS).feed(run.output)
    assert screen.text_lines == ["ecr-mirror: interrupted"], screen.text  # no half-drawn bar, nothing else
    assert screen.cursor_visible


def test_list_on_a_terminal_fits_its_width_and_wraps_instead_of_cutting(aws_env):
    table = "mirror-" + uuid.uuid4().hex[:8]
    long_source = "registry.example.com/" + "/".join(f"team-{i}" for i in range(12)) + "/app"
    with TerminalRun([EXE, "table", "create", "--table", table], env=env(), columns=80) as run:
        assert run.wait() == 0, run.text
    boto3.resource("dynamodb").Table(table).put_item(Item={
        "id": "long", "source": long_source, "tags": ["1.0"], "arch_tags": True, "target_repository": "mirror/app"})
    with TerminalRun([EXE, "list", "--table", table], env=env(), columns=80) as run:
        assert run.wait() == 0, run.text
    screen = Screen(80).feed(run.output)
    assert all(len(line) <= 80 for line in screen.text_lines), screen.text
    assert "…" not in screen.text
    joined = "".join(line.split("  ")[1].strip() if line.startswith("long") else line.strip() for line in screen.text_lines[1:])
    assert long_source in joined.replace(" ", ""), screen.text  # folded over several lines, all of it there


def test_sync_on_a_terminal_shows_row_tag_and_bytes(aws_env, ecr, registry_factory, proxy_factory, tmp_path):
    upstream = registry_factory()
    index = two_platforms(seed=44)
    im.push_index(upstream, "app", index, "v1")
    slow = proxy_factory(upstream)
    slow.add_fault(method="GET", path=r"/blobs/sha256:", action="delay", delay=0.3, times=None)
    table = "mirror-" + uuid.uuid4().hex[:8]
    e = env(ECR_MIRROR_TABLE=table, ECR_MIRROR_TARGET_REGISTRY=ecr.host)
    with TerminalRun([EXE, "table", "create"], env=e) as run:
        assert run.wait() == 0, run.text
    with TerminalRun([EXE, "add", "golang", "--source", f"{slow.host}/app", "--tag", "v1"], env=e) as run:
        assert run.wait() == 0, run.text
    with TerminalRun([EXE, "sync"], env=e, columns=COLUMNS) as run:
        assert run.wait(timeout=120) == 0, run.text
    drawn = run.text
    assert "golang:v1 checking" in drawn and "golang:v1 copying" in drawn, drawn
    assert f"/{blob_bytes(index) / 1e6:.1f} MB" in drawn  # the tag's bytes, total known
    assert "sync: 1 tags done, 1 copied, 0 failed" in drawn
    screen = Screen(COLUMNS).feed(run.output)
    assert BAR not in screen.text and screen.text_lines[-1].startswith("golang:v1  in_sync"), screen.text
    status = json.loads(subprocess.run([EXE, "status", "--json"], env=e, capture_output=True, text=True, timeout=60).stdout)
    assert [r["state"] for r in status] == ["in_sync"]
    # on an 80-column terminal a tag's status is one line: 12 hex digits per digest, the time to the second
    with TerminalRun([EXE, "status"], env=e, columns=80) as run:
        assert run.wait(timeout=60) == 0, run.text
    lines = Screen(80).feed(run.output).text_lines
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines), lines
    assert f"{index.digest[7:19]}…" in lines[1] and status[0]["last_verified"][:19].replace("T", " ") + "Z" in lines[1]


def test_ctrl_c_mid_sync_gives_the_leases_back(aws_env, ecr, registry_factory, proxy_factory):
    """Ctrl-C while two tags are being copied: exit 130, and neither tag is left leased, so the next sync copies
    them at once instead of skipping them as "another sync is copying it" until the leases lapse."""
    upstream = registry_factory()
    for n in (1, 2):
        im.push_index(upstream, "app", two_platforms(seed=50 + n, layer_size=4_000_000), f"v{n}")
    stalled = proxy_factory(upstream)
    stalled.add_fault(method="GET", path=r"/blobs/sha256:", action="stall", after_bytes=1_000_000, delay=120, times=None)
    table = "mirror-" + uuid.uuid4().hex[:8]
    e = env(ECR_MIRROR_TABLE=table, ECR_MIRROR_TARGET_REGISTRY=ecr.host)
    assert subprocess.run([EXE, "table", "create"], env=e, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([EXE, "add", "app", "--source", f"{stalled.host}/app", "--tag", "v1", "--tag", "v2"],
                          env=e, capture_output=True, timeout=60).returncode == 0
    with TerminalRun([EXE, "sync"], env=e, columns=COLUMNS) as run:
        run.wait_for(re.compile(r"[1-9][0-9.]*/\S+ MB"))  # bytes are moving
        run.interrupt()
        code = run.wait(timeout=60)
    assert code == 130, run.text
    states = json.loads(subprocess.run([EXE, "status", "--json"], env=e, capture_output=True, text=True, timeout=60).stdout)
    assert sorted(s["tag"] for s in states) == ["v1", "v2"]  # both were leased before their copy began
    state_table = boto3.resource("dynamodb").Table(f"{table}-state")
    items = state_table.scan()["Items"]
    assert [i for i in items if i.get("lease_owner")] == [], items
