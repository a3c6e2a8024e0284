"""The `ecr-mirror` command as users run it: a real process, real registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import images as im

EXE = str(Path(sys.executable).parent / "ecr-mirror")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DOCKER_CONFIG": "/nonexistent-docker-config", **(env or {})})


def test_copy_prints_digest_and_json_report(registry_pair):
    src, dst = registry_pair
    index = im.build_index([im.build_image("linux/amd64", seed=1), im.build_image("linux/arm64", seed=1)])
    im.push_index(src, "app", index, "v1")
    plain = run("copy", f"{src.host}/app:v1", f"{dst.host}/app:v1")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == index.digest
    report = run("copy", "--json", f"{src.host}/app:v1", f"{dst.host}/app:v2")
    doc = json.loads(report.stdout)
    assert doc["digest"] == index.digest and doc["media_type"] == im.OCI_INDEX
    assert doc["platforms"] == ["linux/amd64", "linux/arm64"]
    # children already in the repository (first copy): not fetched again, only the index is read
    assert doc["manifests_skipped"] == 2 and doc["blobs_copied"] == 0 and doc["bytes_copied"] == 0
    # + referrer discovery: one tag listing and one referrers API request (404: distribution 2.8 has no API)
    assert doc["requests"][src.host] == {"GET": 3, "HEAD": 1}
    assert doc["referrers"]["items"] == [] and doc["referrers"]["copied"] == 0
    again = json.loads(run("copy", "--json", f"{src.host}/app:v1", f"{dst.host}/app:v2").stdout)
    assert again["unchanged"] is True and again["requests"][src.host] == {"GET": 2, "HEAD": 1}
    bare = json.loads(run("copy", "--json", "--no-referrers", f"{src.host}/app:v1", f"{dst.host}/app:v2").stdout)
    assert bare["unchanged"] is True and bare["requests"][src.host] == {"HEAD": 1} and bare["referrers"] is None


def test_destination_tag_defaults_to_source_tag(registry_pair):
    src, dst = registry_pair
    image = im.build_image("linux/amd64", seed=2)
    im.push_image(src, "app", image, "1.2.3")
    assert run("copy", f"{src.host}/app:1.2.3", f"{dst.host}/copy").returncode == 0
    assert im.head_manifest(dst, "copy", "1.2.3") == image.digest


def test_cross_repository_mount_within_destination(registry_pair):
    """A second copy into another repository of the same registry mounts the blobs it already has."""
    from tests.integration.helpers import copier, ref

    src, dst = registry_pair
    index = im.build_index([im.build_image("linux/amd64", seed=3), im.build_image("linux/arm64", seed=3)])
    im.push_index(src, "app", index, "v1")
    with copier() as c:
        first = c.copy(ref(src.host, "app:v1"), ref(dst.host, "team-a/app:v1"))
        second = c.copy(ref(src.host, "app:v1"), ref(dst.host, "team-b/app:v1"))
    assert first.blobs_copied == 6 and first.blobs_mounted == 0
    assert second.blobs_mounted == 6 and second.blobs_copied == 0 and second.bytes_copied == 0
    for child in index.children:
        for blob in child.blob_digests:
            assert im.blob_exists(dst, "team-b/app", blob)


def test_assemble_command(registry_pair):
    src, dst = registry_pair
    amd, arm = im.build_image("linux/amd64", seed=4, oci=False), im.build_image("linux/arm64/v8", seed=4, oci=False)
    im.push_image(src, "app", amd, "1.0-amd64")
    im.push_image(src, "app", arm, "1.0-arm64")
    out = run("assemble", "--json", f"{dst.host}/app:1.0", f"{src.host}/app:1.0-amd64", f"{src.host}/app:1.0-arm64")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["media_type"] == im.DOCKER_LIST and doc["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    raw, _, digest = im.get_manifest(dst, "app", "1.0")
    assert digest == doc["digest"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["copy", "Golang:1", "localhost:1/x:1"], "repository names must be lowercase"),
        (["copy", "a b", "localhost:1/x:1"], "contains whitespace"),
        (["copy", "127.0.0.1:9/app:v1", "127.0.0.1:9/x@sha256:" + "a" * 64], "tag, not a digest"),
        (["copy", "--platform", "linux", "127.0.0.1:9/app:v1", "127.0.0.1:9/x:1"], "invalid platform 'linux'"),
        (["copy", "127.0.0.1:9/app:v1", "127.0.0.1:9/x:1"], "ConnectError"),
        (["assemble", "127.0.0.1:9/x", "127.0.0.1:9/a:1"], "DESTINATION needs a tag"),
        (["status"], "no table given"),
    ],
)
def test_errors_are_one_line_without_traceback(args, message):
    out = run(*args, env={"ECR_MIRROR_TABLE": ""})
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_missing_source_tag_is_a_clear_error(registry_pair):
    src, dst = registry_pair
    out = run("copy", f"{src.host}/app:nope", f"{dst.host}/app:nope")
    assert out.returncode == 1
    assert out.stderr.strip() == f"ecr-mirror: error: source {src.host}/app:nope not found"


def test_help_explains_commands():
    out = run("--help")
    for command in ("copy", "assemble", "add", "sync", "status", "list", "remove", "table"):
        assert command in out.stdout
    assert "--platform" in run("copy", "--help").stdout
    assert "--dry-run" in run("sync", "--help").stdout
