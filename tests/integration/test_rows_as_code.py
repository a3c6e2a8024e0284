"""Rows as code through the real `ecr-mirror` command: `apply -f FILE [--dry-run] [--prune]`, `export`,
and `add` refusing a second writer of a target repository and tag. DynamoDB is moto (server mode).

"Nothing written" is checked twice: the table's items, and the table's stream (every write puts a record
on it, and the stream is what makes the service sync a row).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

EXE = str(Path(sys.executable).parent / "ecr-mirror")
PIN = "sha256:" + "ab" * 32


class Table:
    """A fresh mirror table on moto, the CLI pointed at it, and a way to count the writes it saw."""

    def __init__(self, tmp_path: Path) -> None:
        self.name = "rows-" + uuid.uuid4().hex[:8]
        self.tmp = tmp_path
        self.env = {"ECR_MIRROR_TABLE": self.name, "ECR_MIRROR_REPOSITORY_PREFIX": "mirror",
                    "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
        self.client = boto3.client("dynamodb")
        created = self.cli("table", "create")
        assert created.returncode == 0, created.stderr
        self.stream_arn = self.client.describe_table(TableName=self.name)["Table"]["LatestStreamArn"]
        self.streams = boto3.client("dynamodbstreams")
        self._seen = 0

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, input=stdin,
                              env={**os.environ, **self.env})

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        out = self.cli(*args)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
        return out

    def file(self, text: str, name: str = "mirror.yaml") -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    def items(self) -> dict[str, dict]:
        table = boto3.resource("dynamodb").Table(self.name)
        return {i["id"]: i for i in table.scan(ConsistentRead=True)["Items"]}

    def put(self, item: dict) -> None:
        boto3.resource("dynamodb").Table(self.name).put_item(Item=item)

    def new_writes(self) -> int:
        """How many stream records (writes) appeared since the last call."""
        total = 0
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            iterator = self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard["ShardId"],
                                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator)
                total += len(page["Records"])
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        new, self._seen = total - self._seen, total
        return new


@pytest.fixture
def table(aws_env, tmp_path) -> Table:
    return Table(tmp_path)


MIRROR = f"""\
    # platform team mirrors
    x-both: &both [linux/amd64, linux/arm64]
    version: 1
    defaults:
      platforms: *both
    sources:
      - id: golang
        source: docker.io/library/golang
        tags: [1.20, "1.22@{PIN}"]
        arch_tags: true
      - source: node
        tag_patterns: ['22\\.[0-9]+\\.[0-9]+-alpine', '20\\.[0-9]+\\.[0-9]+-alpine']
        exclude_patterns: ['.*-rc.*']
        versions: ">=20 <23"
        keep_latest: 3
      - id: kubectl
        source: registry.k8s.io/kubectl
        versions: ">=1.30 <2"
        keep_latest: 5
        platforms: ~
        referrers: false
      - id: tool
        assemble: [ghcr.io/org/tool:1.0-amd64, ghcr.io/org/tool:1.0-arm64]
        tags: ["1.0"]
        target_repository: mirror/tool
"""


def test_apply_writes_the_file_and_a_second_apply_changes_nothing(table):
    path = table.file(MIRROR)
    first = table.ok("apply", "-f", path)
    assert first.stdout.splitlines()[0] == "+ golang"
    assert "applied: 4 added, 0 changed, 0 deleted, 0 unchanged" in first.stdout
    items = table.items()
    assert set(items) == {"golang", "docker.io/library/node", "kubectl", "tool"}  # node's id derived from its source
    assert items["golang"] == {
        "id": "golang", "source": "docker.io/library/golang", "tags": ["1.20", f"1.22@{PIN}"], "arch_tags": True,
        "platforms": ["linux/amd64", "linux/arm64"],  # from defaults
    }
    node = items["docker.io/library/node"]
    assert node["tag_patterns"] == [r"22\.[0-9]+\.[0-9]+-alpine", r"20\.[0-9]+\.[0-9]+-alpine"]
    assert node["versions"] == ">=20 <23" and node["keep_latest"] == Decimal(3)
    assert node["exclude_patterns"] == [".*-rc.*"]
    assert "platforms" not in items["kubectl"] and items["kubectl"]["referrers"] is False  # null: no default
    assert "platforms" not in items["tool"]  # platforms defaults do not apply to assemble entries
    assert table.new_writes() == 4

    second = table.ok("apply", "-f", path)
    assert second.stdout == "applied: 0 added, 0 changed, 0 deleted, 4 unchanged\n"
    assert table.new_writes() == 0  # nothing written: the stream saw nothing, no row re-syncs
    assert table.items() == items


def test_a_change_is_shown_attribute_by_attribute_and_written(table):
    table.ok("apply", "-f", table.file(MIRROR))
    table.new_writes()
    changed = MIRROR.replace('tags: [1.20, "1.22@', 'tags: [1.20, 1.21, "1.22@').replace("\n        arch_tags: true", "")
    out = table.ok("apply", "-f", table.file(changed))
    assert out.stdout.splitlines() == [
        "~ golang",
        f'    tags: ["1.20", "1.22@{PIN}"] -> ["1.20", "1.21", "1.22@{PIN}"]',
        "    arch_tags: true -> (absent)",
        "applied: 0 added, 1 changed, 0 deleted, 3 unchanged",
    ]
    assert table.new_writes() == 1
    assert table.items()["golang"]["tags"] == ["1.20", "1.21", f"1.22@{PIN}"]
    assert "arch_tags" not in table.items()["golang"]


def test_dry_run_prints_the_diff_and_writes_nothing(table):
    table.put({"id": "golang", "source": "golang", "tags": ["1.19"]})
    table.new_writes()
    before = table.items()
    out = table.ok("apply", "--dry-run", "-f", table.file(MIRROR))
    lines = out.stdout.splitlines()
    assert lines[:2] == ["~ golang", '    source: "golang" -> "docker.io/library/golang"']
    assert "+ kubectl" in lines and "+ tool" in lines
    assert lines[-1] == "dry run: 3 to add, 1 to change, 0 to delete, 0 unchanged; nothing written"
    assert table.items() == before
    assert table.new_writes() == 0


def test_rows_not_in_the_file_are_listed_and_kept_unless_pruned(table):
    table.put({"id": "legacy", "source": "busybox", "tags": ["1.36"]})
    table.put({"id": "broken", "source": "Busybox", "tags": ["1"]})  # invalid rows are listed and pruned too
    path = table.file("""\
        - id: golang
          source: golang
          tags: ["1.22"]
    """)
    kept = table.ok("apply", "-f", path)
    assert "? broken: in the table, not in the file (left as it is; --prune deletes it)" in kept.stdout
    assert "? legacy: in the table, not in the file (left as it is; --prune deletes it)" in kept.stdout
    assert kept.stdout.endswith("applied: 1 added, 0 changed, 0 deleted, 0 unchanged, 2 not in the file (left)\n")
    assert set(table.items()) == {"golang", "legacy", "broken"}
    table.new_writes()

    dry = table.ok("apply", "--prune", "--dry-run", "-f", path)
    assert "- broken" in dry.stdout.splitlines() and "- legacy" in dry.stdout.splitlines()
    assert set(table.items()) == {"golang", "legacy", "broken"} and table.new_writes() == 0

    pruned = table.ok("apply", "--prune", "-f", path)
    assert pruned.stdout.splitlines() == ["- broken", "- legacy", "applied: 0 added, 0 changed, 2 deleted, 1 unchanged"]
    assert set(table.items()) == {"golang"}
    assert table.new_writes() == 2
    again = table.ok("apply", "--prune", "-f", path)
    assert again.stdout == "applied: 0 added, 0 changed, 0 deleted, 1 unchanged\n" and table.new_writes() == 0


def test_export_then_apply_changes_nothing(table):
    """Rows written every way (the CLI, put-item with string sets, numbers and maps) survive the round trip."""
    table.ok("add", "golang", "--source", "golang", "--tag", f"1.22@{PIN}", "--tag", "1.20", "--arch-tags")
    table.ok("add", "node", "--source", "node", "--tag-pattern", r"22\.\d+", "--tag-pattern", r"20\.\d+",
             "--exclude-pattern", ".*-rc.*", "--versions", ">=20 <23", "--keep-latest", "2", "--no-referrers")
    table.put({"id": "sets", "source": "busybox", "tags": {"1.36", "1.35", "no"}, "platforms": {"linux/arm64"},
               "digests": {"stable": "sha256:" + "cd" * 32}, "enabled": False})
    table.put({"id": "junk", "source": "busybox", "tags": ["1"], "colour": "red"})
    table.new_writes()

    exported = table.ok("export", "-o", str(table.tmp / "exported.yaml"))
    assert exported.stderr.splitlines() == [
        "ecr-mirror: warning: row junk not exported: it does not validate (attribute 'colour': unknown attribute "
        "(known: id, source, assemble, tags, digests, tag_pattern, tag_patterns, exclude_patterns, versions, "
        "keep_latest, platforms, target_repository, arch_tags, allow_nondistributable_artifacts, referrers, enabled))",
        "wrote 3 rows to " + str(table.tmp / "exported.yaml"),
    ]
    text = (table.tmp / "exported.yaml").read_text()
    assert table.ok("export").stdout == text  # standard output by default, the same bytes
    assert "tags: ['1.35', '1.36', 'no']" in text  # quoted: any YAML reader gets strings back

    applied = table.ok("apply", "-f", str(table.tmp / "exported.yaml"))
    assert applied.stdout.splitlines() == [
        "? junk: in the table, not in the file (left as it is; --prune deletes it)",
        "applied: 0 added, 0 changed, 0 deleted, 3 unchanged, 1 not in the file (left)",
    ]
    assert table.new_writes() == 0

    # into an empty table, the exported file makes the same rows
    other = Table(table.tmp / "other")
    (table.tmp / "other").mkdir(exist_ok=True)
    other.ok("apply", "-f", str(table.tmp / "exported.yaml"))
    strip = {k: v for k, v in table.items().items() if k != "junk"}
    sets = strip.pop("sets")
    assert {k: v for k, v in other.items().items() if k != "sets"} == strip
    assert other.items()["sets"]["tags"] == ["1.35", "1.36", "no"] and sets["tags"] == {"1.35", "1.36", "no"}


def test_an_invalid_file_writes_nothing_and_names_file_line_entry_and_attribute(table):
    path = table.file("""\
        sources:
          - id: good
            source: golang
            tags: ["1.22"]
          - id: yaml11
            source: golang
            tags: ["1.23"]
            enabled: no
          - source: node
            tags: ["22"]
            versions: "~22"
          - id: "[bold]markup[/bold]"
            source: busybox
            tags: ["1"]
    """)
    out = table.cli("apply", "-f", path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"ecr-mirror: error: {path}:8: entry 2 (id 'yaml11'): attribute 'enabled': must be true or false, not 'no' "
        "(YAML 1.1 reads no as a boolean, YAML 1.2 as a string: write true or false)",
        f"ecr-mirror: error: {path}:11: entry 3 (derived id 'docker.io/library/node'): attribute 'versions': "
        "'~22': comparison '~22': unsupported operator (use >=, <=, ==, !=, >, <)",
        f"ecr-mirror: error: {path}:12: entry 4 (id '[bold]markup[/bold]'): attribute 'id': may contain only "
        "letters, digits and ._:@/+- and must start with a letter or digit",
    ]
    assert table.items() == {} and table.new_writes() == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("sources:\n  - id: a\n    versions: >=1.21 <2\n", ":3:16: not valid YAML: while scanning a block scalar: did not find expected comment or line "
         "break (a value starting with > ! | % @ or ` must be quoted, e.g. versions: \">=1.21 <2\")"),
        ("sources:\n  - id: a\n    source: golang\n    versions: !=1.2\n",
         "mirror.yaml:4: entry 1 (id 'a'): attribute 'versions': uses the YAML tag '!=1.2': quote the value"),
        ("", ": is empty: expected a list of sources"),
        ("sources: {a: 1}\n", ": sources: must be a list of entries, not a map"),
        ("- a\n---\n- b\n", ":2:1: not valid YAML: expected a single document in the stream: but found another"),
        ("sources:\n  - id: a\n    source: golang\n    tags: 1.22\n", "must be a list (e.g. [1.22])"),
        ("sources:\n  - id: a\n    source: golang\n    tags: ['1']\n    tags: ['2']\n", "key 'tags' is given twice"),
        ("defaults: {tags: ['1']}\nsources: []\n", "defaults: attribute 'tags': cannot have a default"),
        ("version: 2\nsources: []\n", "only version 1 is known, not 2"),
        ("sources:\n  - &a [*a]\n", "entry 1: must be a map of attributes"),
        ("sources:\n  - id: a\n    source: golang\n    tags: &t [*t]\n", "refers to itself"),
        ("- id: a\n  source: golang\n  tags: ['1']\n- id: a\n  source: busybox\n  tags: ['1']\n",
         ":4: entry 2: attribute 'id': 'a' is already the id of entry 1"),
        ("- source: golang\n  tags: ['1']\n- source: golang\n  tags: ['2']\n",
         "is already the id of entry 1 (derived from source and target_repository: give them ids)"),
    ],
)
def test_bad_files_are_one_line_each(tmp_path, text, message):
    """A file that does not validate is refused before the table is read (the table here does not exist)."""
    path = tmp_path / "mirror.yaml"
    path.write_text(text)
    out = subprocess.run([EXE, "apply", "-f", str(path), "--table", "no-such-table"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stderr
    assert message in out.stderr, out.stderr
    assert all(line.startswith(f"ecr-mirror: error: {path}") for line in out.stderr.splitlines())


def test_a_missing_file_is_one_line(table):
    out = table.cli("apply", "-f", str(table.tmp / "nope.yaml"))
    assert out.returncode == 1
    assert out.stderr == f"ecr-mirror: error: cannot read rows file {table.tmp / 'nope.yaml'}: No such file or directory\n"


def test_apply_reads_standard_input(table):
    out = table.cli("apply", "-f", "-", stdin="- id: a\n  source: golang\n  tags: [1.20]\n")
    assert out.returncode == 0, out.stderr
    assert table.items()["a"]["tags"] == ["1.20"]


def test_apply_refuses_two_writers_of_one_target_tag(table):
    clash = table.file("""\
        - id: a
          source: golang
          tags: ["1.22", "1.23"]
        - id: b
          source: docker.io/library/golang
          tags: ["1.23"]
          platforms: [linux/arm64]
    """)
    out = table.cli("apply", "-f", clash)
    assert out.returncode == 1
    assert out.stderr == (f"ecr-mirror: error: {clash}:4: entries 1 and 2: rows 'a' and 'b' both write "
                          "mirror/docker.io/library/golang:1.23; each target repository and tag may be written by "
                          "one entry only\n")
    assert table.items() == {}

    # a row in the table (not in the file) that the file would clash with: refused unless pruned
    table.put({"id": "old", "source": "golang", "tags": ["1.22"]})
    single = table.file("- id: a\n  source: golang\n  tags: ['1.22']\n", "single.yaml")
    refused = table.cli("apply", "-f", single)
    assert refused.returncode == 1
    assert "rows 'a' and 'old' both write mirror/docker.io/library/golang:1.22; row 'old' is in the table" in refused.stderr
    assert set(table.items()) == {"old"}
    table.ok("apply", "--prune", "-f", single)
    assert set(table.items()) == {"a"}


def test_apply_warns_about_pattern_rows_sharing_a_repository(table):
    out = table.ok("apply", "-f", table.file("""\
        - id: pinned
          source: golang
          tags: ["1.22"]
        - id: newest
          source: golang
          versions: ">=1.21"
    """))
    assert out.stderr == ("ecr-mirror: warning: rows 'pinned' and 'newest' both write to mirror/docker.io/library/golang, "
                          "and one selects tags by pattern or version range: where both select a tag, they conflict\n")
    assert set(table.items()) == {"pinned", "newest"}


def test_add_refuses_a_second_row_writing_the_same_target_and_tag(table):
    table.ok("add", "golang", "--source", "golang", "--tag", "1.22")
    out = table.cli("add", "golang-arm", "--source", "docker.io/library/golang", "--tag", "1.23,1.22",
                    "--platform", "linux/arm64")
    assert out.returncode == 1
    assert out.stderr == ("ecr-mirror: error: rows 'golang' and 'golang-arm' both write mirror/docker.io/library/golang:1.22: "
                          "each target repository and tag may be written by one row only (give another target "
                          "repository or tag, or remove row 'golang' first)\n")
    assert set(table.items()) == {"golang"}
    # another target repository is fine; so is replacing the row itself
    table.ok("add", "golang-arm", "--source", "golang", "--tag", "1.22", "--target-repository", "mirror/golang-arm")
    table.ok("add", "golang", "--source", "golang", "--tag", "1.22", "--tag", "1.23", "--replace")
    # a pattern row on the same repository: added, with a warning
    warned = table.ok("add", "newest", "--source", "golang", "--tag-pattern", r"1\.2[0-9]", "--keep-latest", "2")
    assert warned.stderr.splitlines() == [
        "ecr-mirror: warning: rows 'golang' and 'newest' both write to mirror/docker.io/library/golang, and one "
        "selects tags by pattern or version range: where both select a tag, they conflict",
        "row newest: docker.io/library/golang -> mirror/docker.io/library/golang",
    ]
    assert set(table.items()) == {"golang", "golang-arm", "newest"}


def test_add_pins_a_tag_to_a_digest(table):
    table.ok("add", "base", "--source", "debian", "--tag", f"bookworm@{PIN}", "--tag", "trixie")
    assert table.items()["base"]["tags"] == [f"bookworm@{PIN}", "trixie"]
    bad = table.cli("add", "bad", "--source", "debian", "--tag", "bookworm@sha256:abc")
    assert bad.returncode == 1
    assert bad.stderr == ("ecr-mirror: error: row 'bad': attribute 'tags': entry 1: invalid digest of 'bookworm' "
                          "'sha256:abc': sha256 needs 64 lowercase hex digits, got 3\n")


def test_a_file_row_with_a_range_and_deny_patterns_syncs_what_it_selects(ecr, table, registry_factory):
    """From the file to ECR through today's sync: a version range, a deny pattern and newest-N pick the tags."""
    from tests.support import images as im

    upstream = registry_factory()
    for i, tag in enumerate(["1.20.1", "1.21.0", "1.21.3", "1.22.0-rc.1", "1.22.0", "1.22.0-alpine", "2.0", "latest"]):
        im.push_image(upstream, "app", im.build_image("linux/amd64", seed=300 + i), tag)
    table.ok("apply", "-f", table.file(f"""\
        - id: app
          source: {upstream.host}/app
          versions: ">=1.21 <2"
          exclude_patterns: ['.*-alpine']
          keep_latest: 2
          target_repository: mirror/app
    """))
    table.env["ECR_MIRROR_TARGET_REGISTRY"] = ecr.host
    synced = table.ok("sync", "--json")
    assert sorted((r["tag"], r["state"]) for r in json.loads(synced.stdout)) == [("1.21.3", "in_sync"), ("1.22.0", "in_sync")]
    assert im.list_tags(ecr, "mirror/app", auth=ecr.auth) == ["1.21.3", "1.22.0"]
