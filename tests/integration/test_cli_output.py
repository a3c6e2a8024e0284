"""`ecr-mirror` output and errors as a platform engineer meets them (issue 16): data shown as text,
nothing cut when piped, every row attribute listed, exit codes a pipeline can gate on, global
options after the command, the look-up commands (`tags`, `inspect`, `digest`), and one-line errors
that say what to do. Real processes, real registries, moto for AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from tests.support import images as im

EXE = str(Path(sys.executable).parent / "ecr-mirror")
ESC = "\x1b"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "DOCKER_CONFIG": "/nonexistent-docker-config", **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, timeout=120, env={k: v for k, v in full.items() if v is not None})


def text(out: bytes) -> str:
    return out.decode("utf-8")


def one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    err = text(proc.stderr)
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("ecr-mirror: error: "), err
    return err.strip()


def two_platforms(seed: int):
    return im.build_index([im.build_image("linux/amd64", seed=seed), im.build_image("linux/arm64/v8", seed=seed)])


# ---------------------------------------------------------------- data as text, nothing cut


@pytest.fixture
def table(aws_env):
    name = "mirror-" + uuid.uuid4().hex[:8]
    assert run("table", "create", "--table", name).returncode == 0
    return name


def test_list_shows_every_attribute_as_text_and_never_cuts_when_piped(table):
    long_source = "registry.example.com/" + "/".join(f"platform-team-{i}" for i in range(8)) + "/service"
    items = boto3.resource("dynamodb").Table(table)
    items.put_item(Item={"id": "graviton", "source": long_source, "tags": ["1.22", "1.23"], "arch_tags": True,
                         "platforms": ["linux/amd64", "linux/arm64"], "target_repository": "mirror/service"})
    items.put_item(Item={"id": "odd-platform", "source": "docker.io/library/golang", "platforms": ["x"]})  # "[/variant]" in its error
    items.put_item(Item={"id": "hostile", "source": f"evil.example/x{ESC}[2J{ESC}]0;owned\x07[bold]y[/bold]", "tags": ["v1"]})

    listed = run("list", "--table", table)
    assert listed.returncode == 0, text(listed.stderr)
    out = text(listed.stdout)
    assert ESC not in out and "\x07" not in out  # no control character from data reaches the terminal
    assert "evil.example/x\\x1b[2J\\x1b]0;owned\\x07[bold]y[/bold]" in out  # escaped, markup shown as written
    assert "expected os/architecture[/variant]" in out  # the text that crashed rich's markup parser
    assert long_source in out and "…" not in out  # piped: never cut
    header, *lines = out.splitlines()
    assert header.split() == ["id", "source", "tags", "platforms", "target", "arch", "tags", "enabled", "problem"]
    graviton = next(line for line in lines if line.startswith("graviton"))
    assert "1.22, 1.23" in graviton and "linux/amd64, linux/arm64" in graviton and " yes " in graviton

    rows = {r["id"]: r for r in json.loads(text(run("list", "--json", "--table", table).stdout))}
    from ecr_mirror.rows import USER_ATTRIBUTES

    assert all(set(USER_ATTRIBUTES) <= set(r) for r in rows.values())
    assert rows["graviton"]["arch_tags"] is True and rows["graviton"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert rows["graviton"]["enabled"] is True and rows["graviton"]["target_repository"] == "mirror/service"
    assert rows["odd-platform"]["error"].endswith("expected os/architecture[/variant], e.g. linux/arm64")


def test_status_piped_is_complete_and_registry_errors_are_text(table, aws_env, ecr, registry, proxy_factory):
    index, other = two_platforms(seed=61), two_platforms(seed=60)
    im.push_index(registry, "app", index, "v1")
    im.push_index(registry, "app", other, "v2")
    hostile = proxy_factory(registry)
    message = f"quota {ESC}[31mexceeded{ESC}[0m for [link=http://x]{index.digest}[/link]"
    hostile.add_fault(method="GET", path=f"/manifests/{other.digest}$", action="status", status=400, body=json.dumps(
        {"errors": [{"code": "DENIED", "message": message}]}), times=None)
    e = {"ECR_MIRROR_TABLE": table, "ECR_MIRROR_TARGET_REGISTRY": ecr.host}
    assert run("add", "app", "--source", f"{hostile.host}/app", "--tag", "v1", "--tag", "v2", env=e).returncode == 0
    synced = run("sync", env=e)
    assert synced.returncode == 1, text(synced.stdout)  # v2 failed
    assert ESC not in text(synced.stdout) and "\\x1b[31mexceeded\\x1b[0m" in text(synced.stdout)
    status = run("status", env=e)
    out = text(status.stdout)
    assert status.returncode == 0 and ESC not in out
    v1 = next(line for line in out.splitlines() if line.startswith("app  v1 "))
    assert v1.count(index.digest) == 2  # upstream and target digests in full
    assert f"[link=http://x]{index.digest}[/link]" in out  # the error column is not cut mid-digest


# ---------------------------------------------------------------- exit codes


def test_sync_check_and_dry_run_exit_non_zero_until_in_sync(table, aws_env, ecr, registry):
    im.push_index(registry, "app", two_platforms(seed=62), "v1")
    e = {"ECR_MIRROR_TABLE": table, "ECR_MIRROR_TARGET_REGISTRY": ecr.host}
    assert run("add", "app", "--source", f"{registry.host}/app", "--tag", "v1", env=e).returncode == 0
    assert run("sync", "--dry-run", env=e).returncode == 4  # missing: a copy is due
    assert run("sync", "--check", env=e).returncode == 4
    assert run("sync", env=e).returncode == 0
    assert run("sync", "--check", env=e).returncode == 0
    assert run("sync", "--dry-run", env=e).returncode == 0
    im.push_index(registry, "app", two_platforms(seed=63), "v1")  # upstream moves
    assert run("sync", "--check", env=e).returncode == 4
    assert run("add", "gone", "--source", f"{registry.host}/app", "--tag", "no-such-tag", env=e).returncode == 0
    assert run("sync", "--check", env=e).returncode == 1  # a failure outranks "not in sync"
    helped = text(run("--help").stdout) + text(run("sync", "--help").stdout)
    for line in ("4    sync: nothing failed, but a tag is not in sync", "130  interrupted", "1 when a row or tag failed"):
        assert line in " ".join(helped.split()) or line in helped, line


# ---------------------------------------------------------------- options


def test_global_options_work_after_the_command_and_platforms_take_a_comma_list(registry_pair):
    src, dst = registry_pair
    index = two_platforms(seed=64)
    im.push_index(src, "app", index, "v1")
    report = run("copy", "--json", "--concurrency", "2", "--platform", "linux/amd64,linux/arm64", f"{src.host}/app:v1", f"{dst.host}/app:v1")
    assert report.returncode == 0, text(report.stderr)
    assert json.loads(report.stdout)["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    debug = run("copy", "--debug", "127.0.0.1:9/app:v1", f"{dst.host}/app:v1")
    assert debug.returncode != 0 and "Traceback" in text(debug.stderr)  # --debug after the command took effect
    assert run("copy", "--concurrency", "0", "a:1", "b:1").returncode == 2  # and is validated there too
    listed = run("tags", f"{src.host}/app", "--insecure-registry", src.host)
    assert listed.returncode == 0 and text(listed.stdout).split() == ["v1"]


# ---------------------------------------------------------------- tags, inspect, digest


def test_tags_inspect_and_digest(registry_pair, proxy_factory):
    src, _ = registry_pair
    index = two_platforms(seed=65)
    for tag in ("1.22", "1.23", "latest"):
        im.push_index(src, "team/app", index, tag)
    counted = proxy_factory(src)

    assert text(run("tags", f"{counted.host}/team/app").stdout).split() == ["1.22", "1.23", "latest"]
    assert json.loads(run("tags", "--json", f"{counted.host}/team/app").stdout) == ["1.22", "1.23", "latest"]

    counted.reset()
    digest = run("digest", f"{counted.host}/team/app:1.22")
    assert text(digest.stdout).strip() == index.digest
    assert counted.count("HEAD", "/manifests/") == 1 and counted.count("GET") == 0  # one HEAD, as documented

    shown = run("inspect", f"{counted.host}/team/app:1.22")
    assert shown.returncode == 0, text(shown.stderr)
    doc = json.loads(shown.stdout)
    assert doc == json.loads(index.manifest)
    assert [(m["platform"]["architecture"], m["digest"]) for m in doc["manifests"]] == [
        ("amd64", index.images[0].digest), ("arm64", index.images[1].digest)]
    assert text(shown.stdout).startswith('{\n   "')  # indented like `docker manifest inspect`
    assert index.digest in text(shown.stderr)
    raw = run("inspect", "--raw", f"{counted.host}/team/app:1.22")
    assert raw.stdout == index.manifest  # the exact bytes
    arm = json.loads(run("inspect", "--platform", "linux/arm64", f"{counted.host}/team/app:1.22").stdout)
    assert arm == json.loads(index.images[1].manifest)

    assert "not found" in one_line_error(run("digest", f"{counted.host}/team/app:nope"))
    assert "not in" in one_line_error(run("inspect", "--platform", "linux/s390x", f"{counted.host}/team/app:1.22"))
    assert "without a tag" in one_line_error(run("tags", f"{counted.host}/team/app:1.22"))


def test_digest_confirms_a_head_404_with_a_get(registry, proxy_factory):
    """A registry that answers manifest HEADs 404 while GET works (issue 13, kind 3): `digest` does not call the tag missing."""
    index = two_platforms(seed=67)
    im.push_index(registry, "app", index, "v1")
    quirky = proxy_factory(registry)
    quirky.add_fault("HEAD", "/manifests/", "status", status=404, times=None)
    found = run("digest", f"{quirky.host}/app:v1")
    assert found.returncode == 0 and text(found.stdout).strip() == index.digest, text(found.stderr)
    assert "not found" in one_line_error(run("digest", f"{quirky.host}/app:nope"))


def test_list_shows_a_foreign_layers_column_when_a_row_copies_them(table):
    items = boto3.resource("dynamodb").Table(table)
    items.put_item(Item={"id": "linux", "source": "docker.io/library/golang", "tags": ["1.22"]})
    header = text(run("list", "--table", table).stdout).splitlines()[0]
    assert "foreign" not in header  # every row at the default: no column for it
    items.put_item(Item={"id": "windows", "source": "mcr.microsoft.com/windows/servercore", "tags": ["ltsc2022"],
                         "allow_nondistributable_artifacts": True})
    header, *lines = text(run("list", "--table", table).stdout).splitlines()
    assert "foreign layers" in header
    cells = {line.split()[0]: line.split() for line in lines}
    assert "copy" in cells["windows"] and "skip" in cells["linux"]


# ---------------------------------------------------------------- warnings are text too


HOSTILE = f"denied {ESC}[31mred{ESC}[0m \u202e[bold]x[/bold]"


def assert_shown_as_text(err: str) -> None:
    assert ESC not in err and "\u202e" not in err  # no control or bidi character from data reaches the terminal
    assert "\\x1b[31mred\\x1b[0m \\u202e[bold]x[/bold]" in err  # escaped, markup shown as written


def test_copy_warnings_are_text_and_the_summary_counts_foreign_layers_left_out(registry_factory, proxy_factory):
    from tests.support import field as fl

    src = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    dst = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    index = fl.windows_manifest_list(seed=68)
    windows = index.image_for("windows/amd64")
    (foreign,) = windows.foreign
    im.push_index(src, "win/app", index, "ltsc")
    im.push_blob(src, "win/app", foreign, windows.layers[0].data)  # the source registry serves it: opted in, it is sent
    refusing = proxy_factory(dst)
    refusing.add_fault("PUT", foreign.split(":")[1], "status", status=400, times=None,
                       body=json.dumps({"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": HOSTILE}]}).encode())

    skipped = run("copy", f"{src.host}/win/app:ltsc", f"{refusing.host}/app:ltsc")
    assert skipped.returncode == 0, text(skipped.stderr)
    summary, = text(skipped.stderr).splitlines()
    assert summary.endswith("; 1 non-distributable layer left out)"), summary
    assert text(skipped.stdout).strip() == index.digest

    opted = run("copy", "--allow-nondistributable-artifacts", f"{src.host}/win/app:ltsc", f"{refusing.host}/app-full:ltsc")
    assert opted.returncode == 0, text(opted.stderr)
    err = text(opted.stderr)
    summary, warning = err.splitlines()
    assert warning.startswith(f"ecr-mirror: warning: non-distributable layer {foreign} left out"), warning
    assert_shown_as_text(err)


def test_the_ecr_repository_warning_is_text(ecr, registry):
    im.push_image(registry, "app", im.build_image(seed=69), "v1")
    ecr.create_repository("team/app")
    ecr.add_api_fault("DescribeRepositories", "AccessDeniedException", HOSTILE, times=None)
    copied = run("copy", f"{registry.host}/app:v1", f"{ecr.host}/team/app:v1", env={"ECR_MIRROR_TARGET_REGISTRY": ecr.host})
    assert copied.returncode == 0, text(copied.stderr)
    err = text(copied.stderr)
    assert "ecr-mirror: warning: cannot check repository team/app" in err and "AccessDeniedException" in err
    assert_shown_as_text(err)


# ---------------------------------------------------------------- errors say what and what to do


def test_broken_docker_config_is_one_line(auth_registry, registry, tmp_path):
    im.push_image(auth_registry, "app", im.build_image("linux/amd64", seed=66), "v1", auth=auth_registry.auth)
    config = tmp_path / "config.json"
    config.write_text('{"auths": {')
    env = {"DOCKER_CONFIG": str(tmp_path)}
    err = one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v1", env=env))
    assert f"Docker config {config} is not valid JSON (line 1)" in err
    # the case that printed a traceback: an unreachable registry, then redaction reading the broken file
    assert "ConnectError" in one_line_error(run("copy", "127.0.0.1:9/app:v1", f"{registry.host}/app:v1", env=env))
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": "!!not base64!!"}}}))
    err = one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v1", env=env))
    assert f"'auth' for '{auth_registry.host}' is not base64 user:password" in err


def test_aws_errors_name_the_table_region_and_next_step(aws_env, tmp_path):
    err = one_line_error(run("list", "--table", "no-such-table"))
    assert "mirror table 'no-such-table' not found in region us-east-1" in err
    assert "ecr-mirror table create --table no-such-table" in err and "TableName" in err

    no_region = {"AWS_DEFAULT_REGION": None, "AWS_REGION": None, "AWS_CONFIG_FILE": str(tmp_path / "none")}
    err = one_line_error(run("list", "--table", "table-1", env=no_region))
    assert "no AWS region" in err and "AWS_REGION" in err

    no_credentials = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
                      "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                      "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
                      "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None, "AWS_PROFILE": None}
    err = one_line_error(run("list", "--table", "table-1", env=no_credentials))
    assert "NoCredentialsError" in err and "AWS credentials are missing, invalid or expired" in err


def test_a_missing_state_table_is_named_as_the_state_table(table):
    """The mirror table exists, its state table does not: the error names the state table and its option."""
    err = one_line_error(run("status", "--table", table, "--state-table", f"{table}-elsewhere"))
    assert f"state table '{table}-elsewhere' (beside mirror table '{table}') not found in region us-east-1" in err
    assert "--state-table" in err and "StateTableName" in err


def test_remove_checks_every_id_first_and_takes_the_rows_state_with_it(table):
    for row_id in ("a", "b"):
        assert run("add", row_id, "--source", f"registry.example/{row_id}", "--tag", "v1", "--table", table).returncode == 0
    state = boto3.resource("dynamodb").Table(f"{table}-state")
    state.put_item(Item={"pk": "a", "sk": "tag#v1", "state": "in_sync"})  # as a sync recorded it

    err = one_line_error(run("remove", "a", "b", "nosuch", "--table", table))
    assert "no such row: nosuch (nothing removed)" in err
    assert {r["id"] for r in json.loads(run("list", "--json", "--table", table).stdout)} == {"a", "b"}

    done = run("remove", "a", "--table", table)
    assert done.returncode == 0, text(done.stderr)
    assert {r["id"] for r in json.loads(run("list", "--json", "--table", table).stdout)} == {"b"}
    assert state.query(KeyConditionExpression=Key("pk").eq("a"))["Items"] == []  # added again, it starts afresh
