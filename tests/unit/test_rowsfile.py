"""The rows file: loading YAML by what each attribute needs, defaults, derived ids, one-line problems,
the plan that makes a table match (idempotent), and export (round trip). Pure: no table here."""

from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import RowsFileError
from ecr_mirror.rowsfile import (
    DEFAULTABLE,
    canonical_item,
    derive_id,
    dump_rows_yaml,
    export_document,
    load_rows_yaml,
    parse_rows_document,
    plan_changes,
)
from tests.unit.test_dependencies import _import_blocked

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIN = "sha256:" + "c" * 64


def load(text: str):
    return load_rows_yaml(textwrap.dedent(text), name="m.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(RowsFileError) as info:
        load(text)
    assert all("\n" not in p for p in info.value.problems)
    return info.value.problems


def items(text: str) -> dict[str, dict]:
    return {e.row.id: e.item for e in load(text).entries}


# ---------------------------------------------------------------- YAML read by what the attribute needs


def test_yaml_11_lookalikes_stay_text_where_text_is_wanted():
    got = items("""\
        - id: 1.20
          source: golang
          tags: [1.20, no, on, 2024-01-01, 010, 1e3, null-ish, "1.21"]
          target_repository: mirror/golang
    """)
    assert got == {"1.20": {"id": "1.20", "source": "golang", "tags": ["1.20", "no", "on", "2024-01-01", "010",
                                                                       "1e3", "null-ish", "1.21"],
                            "target_repository": "mirror/golang"}}


@pytest.mark.parametrize(
    "attribute_line, message",
    [
        ("enabled: yes", "attribute 'enabled': must be true or false, not 'yes' (YAML 1.1 reads yes as a boolean"),
        ("enabled: Off", "must be true or false, not 'Off'"),
        ("enabled: 'true'", "attribute 'enabled': must be a boolean (true/false), not the string 'true'"),
        ("enabled: 1", "must be a boolean (true/false), not '1'"),
        ("arch_tags: [true]", "attribute 'arch_tags': must be a boolean (true/false), not a list"),
        ("keep_latest: '3'", "attribute 'keep_latest': must be a whole number, not the string '3'"),
        ("keep_latest: 3.0", "must be a whole number, not '3.0'"),
        ("keep_latest: 0x10", "must be a whole number, not '0x10'"),
        ("source: [golang]", "attribute 'source': must be a string, not a list"),
        ("tags: 1.22", "attribute 'tags': must be a list (e.g. [1.22]), not the single value '1.22'"),
        ("tags: {a: b}", "attribute 'tags': must be a list of strings, not a map"),
        ("tags: [[1]]", "attribute 'tags': entry 1: must be a string, not a list"),
        ("tags: [~]", "attribute 'tags': entry 1 must be a string, not a null"),
        ("versions: !=1.2", "attribute 'versions': uses the YAML tag '!=1.2': quote the value"),
        ("colour: red", "attribute 'colour': unknown attribute"),
    ],
)
def test_values_of_the_wrong_kind_are_one_line_naming_file_line_entry_attribute(attribute_line, message):
    lines = {"source": "source: golang", "tags": "tags: ['1']"}
    lines[attribute_line.split(":")[0]] = attribute_line
    text = "sources:\n  - id: golang\n" + "".join(f"    {line}\n" for line in lines.values())
    found = problems(text)
    assert len(found) == 1, found
    line = 3 + list(lines.values()).index(attribute_line)
    assert found[0].startswith(f"m.yaml:{line}: entry 1 (id 'golang'): "), found
    assert message in found[0], found


def test_every_problem_is_listed_and_nothing_is_returned():
    found = problems("""\
        sources:
          - id: a
            source: golang
            tags: ["1"]
          - id: b
            source: Golang
            tags: ["1"]
          - 42
          - id: d
            source: golang
            tags: ["2"]
            platforms: [linux]
    """)
    assert found == [
        "m.yaml:6: entry 2 (id 'b'): attribute 'source': invalid reference 'Golang': bad repository name "
        "'library/Golang' (repository names must be lowercase)",
        "m.yaml:8: entry 3: must be a map of attributes, not a number",
        "m.yaml:12: entry 4 (id 'd'): attribute 'platforms': invalid platform 'linux': expected "
        "os/architecture[/variant], e.g. linux/arm64",
    ]


def test_many_problems_are_capped():
    text = "".join(f"- id: r{i}\n  source: Bad\n  tags: ['1']\n" for i in range(60))
    found = problems(text)
    assert len(found) == 51 and found[-1] == "... and 10 more problems"


def test_markup_and_control_characters_arrive_as_text():
    found = problems('- id: "[red]x[/red]"\n  source: golang\n  tags: ["\\e[31m"]\n')
    assert "'[red]x[/red]'" in found[0]
    assert "\x1b" not in found[0] and "\\x1b" in problems('- id: a\n  source: golang\n  tags: ["\\e[31m"]\n')[0]


def test_yaml_syntax_errors_have_line_and_column_and_a_hint_for_unquoted_ranges():
    assert problems("- id: a\n  versions: >=1.21 <2\n") == [
        'm.yaml:2:14: not valid YAML: while scanning a block scalar: did not find expected comment or line break '
        '(a value starting with > ! | % @ or ` must be quoted, e.g. versions: ">=1.21 <2")']
    assert problems("- id: a\n\tsource: x\n")[0].startswith("m.yaml:2:1: not valid YAML: ")
    assert problems("")[0] == "m.yaml: is empty: expected a list of sources, or a map with 'sources'"
    assert problems("a: '\x01'")[0].startswith("m.yaml: not valid YAML: unacceptable character #x0001")


def test_bytes_are_utf8():
    assert load_rows_yaml(b"\xef\xbb\xbf- id: a\n  source: golang\n  tags: ['1']\n").entries[0].row.id == "a"
    with pytest.raises(RowsFileError, match="is not UTF-8 text"):
        load_rows_yaml(b"- id: \xff\n")


def test_alias_bombs_and_self_references_are_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7))
    assert "too many values" in problems(bomb + "sources: []\n")[0]
    assert "refers to itself" in problems("- id: a\n  source: golang\n  tags: &t [*t]\n")[0]


# ---------------------------------------------------------------- the format


def test_defaults_apply_where_an_entry_sets_nothing():
    got = items("""\
        defaults:
          platforms: [linux/amd64, linux/arm64]
          arch_tags: true
          referrers: false
        sources:
          - id: a
            source: golang
            tags: ["1"]
          - id: b
            source: golang
            tags: ["2"]
            platforms: [linux/arm64]
            arch_tags: false
          - id: c
            source: golang
            tags: ["3"]
            platforms: ~
          - id: d
            assemble: [ghcr.io/o/app:1-amd64, ghcr.io/o/app:1-arm64]
            tags: ["1"]
    """)
    assert got["a"] == {"id": "a", "source": "golang", "tags": ["1"], "platforms": ["linux/amd64", "linux/arm64"],
                        "arch_tags": True, "referrers": False}
    assert got["b"]["platforms"] == ["linux/arm64"] and got["b"]["arch_tags"] is False
    assert "platforms" not in got["c"]  # null: not set, no default
    assert "platforms" not in got["d"] and got["d"]["arch_tags"] is True  # platforms defaults skip assemble entries


def test_bad_defaults():
    assert problems("defaults: {tags: ['1']}\nsources: []\n") == [
        f"m.yaml:1: defaults: attribute 'tags': cannot have a default (can: {', '.join(DEFAULTABLE)})"]
    assert problems("defaults:\n  platforms: [linux]\nsources: []\n")[0].startswith(
        "m.yaml:2: defaults: attribute 'platforms': invalid platform 'linux'")
    assert problems("defaults: [1]\nsources: []\n") == ["m.yaml:1: defaults: must be a map of attributes, not a list"]


def test_top_level_shape():
    assert problems("sources: []\ncolour: red\n") == [
        "m.yaml:2: unknown key 'colour' (known: version, defaults, sources; keys starting with x- are ignored)"]
    assert problems("version: 2\nsources: []\n") == ["m.yaml:1: version: only version 1 is known, not 2"]
    assert problems("version: '1'\nsources: []\n")[0].startswith("m.yaml:1: version: only version 1 is known")
    assert problems("defaults: {}\n") == ["m.yaml: sources: is missing"]
    assert problems("just text\n") == ["m.yaml: must be a list of sources, or a map with 'sources', not a single value"]
    assert load("version: 1\nx-anything: {a: 1}\nsources: []\n").entries == ()


def test_extension_keys_and_merges_make_anchors_useful():
    got = items("""\
        x-golang: &golang
          source: golang
          platforms: [linux/amd64]
        sources:
          - <<: *golang
            id: a
            tags: ["1.22"]
            x-note: pinned for team a
          - <<: *golang
            id: b
            tags: ["1.23"]
            platforms: [linux/arm64]
    """)
    assert got == {"a": {"id": "a", "source": "golang", "platforms": ["linux/amd64"], "tags": ["1.22"]},
                   "b": {"id": "b", "source": "golang", "platforms": ["linux/arm64"], "tags": ["1.23"]}}


def test_duplicate_keys_are_refused():
    assert problems("- id: a\n  source: golang\n  tags: ['1']\n  tags: ['2']\n") == [
        "m.yaml:1: entry 1: must be a map of attributes, not line 4: key 'tags' is given twice"]


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"source": "golang"}, "docker.io/library/golang"),
        ({"source": "ghcr.io/org/app", "target_repository": "team/app"}, "ghcr.io/org/app+team/app"),
        ({"source": "localhost:5000/app"}, "localhost:5000/app"),
        ({"assemble": ["ghcr.io/o/app:1-amd64", "ghcr.io/o/app:1-arm64"], "tags": ["1"]}, "ghcr.io/o/app:1"),
        ({"assemble": ["ghcr.io/o/a:1", "quay.io/o/b:1"], "tags": ["1"], "target_repository": "x/y"}, "x/y:1"),
        ({"assemble": ["ghcr.io/o/a:1", "quay.io/o/b:1"], "tags": ["1"]}, None),
        ({"source": "Bad"}, None),
        ({}, None),
    ],
)
def test_derived_ids(entry, expected):
    assert derive_id(entry) == expected


def test_ids_that_cannot_be_derived_or_collide():
    assert problems("- assemble: [ghcr.io/o/a:1, quay.io/o/b:1]\n  tags: ['1']\n") == [
        "m.yaml:1: entry 1: attribute 'id': is needed (it cannot be derived: an assemble entry's references come "
        "from several repositories, and it gives no target_repository)"]
    assert problems("- source: golang\n  tags: ['1']\n- source: docker.io/library/golang\n  tags: ['2']\n") == [
        "m.yaml:3: entry 2: attribute 'id': 'docker.io/library/golang' is already the id of entry 1 (derived from "
        "source and target_repository: give them ids)"]
    long = "a" * 200
    assert "is not a valid id" in problems(f"- source: ghcr.io/{long}\n  tags: ['1']\n  target_repository: m/{long}\n")[0]


def test_two_entries_writing_one_target_tag_are_refused_and_pattern_overlaps_are_not():
    assert problems("""\
        - id: a
          source: golang
          tags: ["1.22"]
        - id: b
          source: golang
          digests: {"1.22": "%s"}
    """ % PIN) == ["m.yaml:4: entries 1 and 2: rows 'a' and 'b' both write mirror/docker.io/library/golang:1.22; "
                   "each target repository and tag may be written by one entry only"]
    assert len(load("- {id: a, source: golang, tags: ['1.22']}\n- {id: b, source: golang, versions: '>=1'}\n").entries) == 2


def test_the_lambda_side_needs_no_yaml():
    """parse_rows_document, plan_changes and export_document work on plain data: importing them with PyYAML
    blocked succeeds (the Lambda does not bundle PyYAML)."""
    outcome = _import_blocked(("ecr_mirror.rowsfile",), blocked=("yaml", "httpx", "boto3", "botocore"))
    assert outcome == {"failed": {}, "leaked": []}
    rows_file = parse_rows_document([{"id": "a", "source": "golang", "tags": ["1"]}])
    assert [e.row.id for e in rows_file.entries] == ["a"]


def test_a_plain_document_is_checked_strictly():
    with pytest.raises(RowsFileError) as info:
        parse_rows_document({"sources": [{"id": "a", "source": "golang", "tags": [1.2]}]}, name="doc.json")
    assert info.value.problems == ["doc.json: entry 1 (id 'a'): attribute 'tags': entry 1 must be a string, not a number"]


# ---------------------------------------------------------------- plan and export


def apply(table: dict[str, dict], plan) -> dict[str, dict]:
    """What the CLI does with a plan, on a dict standing in for the table (put_row writes user attributes)."""
    table = dict(table)
    for change in plan.writes:
        if change.action == "delete":
            table.pop(change.row_id)
        else:
            table[change.row_id] = dict(change.item)
    return table


def test_the_plan_is_attribute_level_and_idempotent():
    rows_file = load("""\
        - {id: a, source: golang, tags: ["1.22", "1.23"], platforms: [linux/amd64]}
        - {id: b, source: node, versions: ">=20"}
        - {id: c, source: busybox, tags: ["1"]}
    """)
    table = {
        "a": {"id": "a", "source": "golang", "tags": {"1.23", "1.22"}, "arch_tags": True, "status": {"1.22": {}}},
        "b": {"id": "b", "source": "node", "versions": ">=20", "keep_latest": None},
        "old": {"id": "old", "source": "x", "tags": ["1"]},
    }
    plan = plan_changes(rows_file, table.values())
    assert list(plan.lines()) == [
        "~ a",
        '    platforms: (absent) -> ["linux/amd64"]',
        "    arch_tags: true -> (absent)",
        "+ c",
        '    source: "busybox"',
        '    tags: ["1"]',
        "? old: in the table, not in the file (left as it is; --prune deletes it)",
    ]
    assert plan.unchanged == ["b"]  # null counts as absent; a string set equals its sorted list
    assert plan.summary(applied=False) == "1 to add, 1 to change, 0 to delete, 1 unchanged, 1 not in the file (left)"
    after = apply(table, plan)
    again = plan_changes(rows_file, after.values())
    assert again.writes == [] and [c.action for c in again.changes] == ["keep"]
    pruned = plan_changes(rows_file, after.values(), prune=True)
    assert [(c.action, c.row_id) for c in pruned.changes] == [("delete", "old")]
    assert plan_changes(rows_file, apply(after, pruned).values(), prune=True).changes == []


def test_data_from_the_table_is_shown_as_text():
    rows_file = parse_rows_document([{"id": "a", "source": "golang", "tags": ["1"]}])
    table = [{"id": "a", "source": "golang", "tags": ["1"], "\x1b[31mred": "[bold]x\x07"},
             {"id": "\x1b]0;title\x07", "source": "x"}]
    lines = list(plan_changes(rows_file, table).lines())
    assert lines == ["~ a", '    "\\u001b[31mred": "[bold]x\\u0007" -> (absent)',
                     '? "\\u001b]0;title\\u0007": in the table, not in the file (left as it is; --prune deletes it)']
    assert all(c.isprintable() for line in lines for c in line)


def test_every_attribute_has_a_yaml_kind():
    from ecr_mirror.rows import USER_ATTRIBUTES
    from ecr_mirror.rowsfile import _KINDS

    assert set(_KINDS) == set(USER_ATTRIBUTES)


def test_stored_types_count():
    """``true`` is not ``1`` and list order counts; map key order and Decimal vs int do not."""
    rows_file = parse_rows_document([{"id": "a", "source": "golang", "tags": ["2", "1"], "enabled": True,
                                      "digests": {"x": PIN, "y": PIN}, "keep_latest": 2, "versions": ">=1"}])
    same = {"id": "a", "source": "golang", "tags": ["2", "1"], "enabled": True, "digests": {"y": PIN, "x": PIN},
            "keep_latest": Decimal(2), "versions": ">=1"}
    assert plan_changes(rows_file, [same]).unchanged == ["a"]
    for changed in ({**same, "enabled": 1}, {**same, "tags": ["1", "2"]}, {**same, "keep_latest": Decimal("2.5")}):
        assert [c.action for c in plan_changes(rows_file, [changed]).changes] == ["change"]


def test_a_kept_row_that_clashes_with_the_file_is_a_problem_unless_pruned():
    rows_file = parse_rows_document([{"id": "a", "source": "golang", "tags": ["1.22"]}], name="m.yaml")
    table = [{"id": "old", "source": "docker.io/library/golang", "tags": ["1.22"]}]
    assert plan_changes(rows_file, table).problems == [
        "m.yaml: rows 'a' and 'old' both write mirror/docker.io/library/golang:1.22; row 'old' is in the table but "
        "not in the file: remove it, or apply with --prune"]
    assert plan_changes(rows_file, table, prune=True).problems == []
    warned = plan_changes(rows_file, [{"id": "new", "source": "golang", "tag_pattern": "1.*"}])
    assert warned.problems == [] and len(warned.warnings) == 1


def test_export_keeps_what_owners_wrote_and_leaves_out_invalid_rows():
    table = [
        {"id": "b", "source": "busybox", "tags": {"1.36", "no"}, "keep_latest": None, "status": {"1.36": {}},
         "row_error": "x"},
        {"id": "a", "source": "golang", "versions": ">=1.21 <2", "keep_latest": Decimal(3), "digests": {"1.20": PIN}},
        {"id": "z", "source": "Bad", "tags": ["1"]},
    ]
    document, warnings = export_document(table)
    assert document == {"version": 1, "sources": [
        {"id": "a", "source": "golang", "digests": {"1.20": PIN}, "versions": ">=1.21 <2", "keep_latest": 3},
        {"id": "b", "source": "busybox", "tags": ["1.36", "no"]},
    ]}
    assert warnings == ["row z not exported: it does not validate (attribute 'source': invalid reference 'Bad': "
                        "bad repository name 'library/Bad' (repository names must be lowercase))"]
    text = dump_rows_yaml(document, header="exported\n\nby a test")
    assert text.startswith("# exported\n#\n# by a test\nversion: 1\n")
    assert "tags: ['1.36', 'no']" in text and "versions: '>=1.21 <2'" in text
    reloaded = load_rows_yaml(text)
    assert plan_changes(reloaded, table[:2]).writes == [] and plan_changes(reloaded, table[:2]).unchanged == ["a", "b"]


tags = st.one_of(st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}", fullmatch=True),
                 st.sampled_from(["no", "yes", "on", "null", "true", "1e3", "0x1f", "2024-01-01", "latest", "010", "1_0"]))
rows = st.fixed_dictionaries(
    {"id": st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True),
     "source": st.sampled_from(["golang", "ghcr.io/org/app", "localhost:5000/a", "quay.io/x/y"])},
    optional={
        "tags": st.lists(tags, min_size=1, max_size=4, unique=True),
        "digests": st.dictionaries(tags, st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True), min_size=1, max_size=2),
        "tag_patterns": st.lists(st.sampled_from([r"1\..*", r"[0-9.]+-alpine", "v.*"]), min_size=1, max_size=2, unique=True),
        "versions": st.sampled_from([">=1.21 <2", "==1 || >=3", "!=2.0"]),
        "platforms": st.lists(st.sampled_from(["linux/amd64", "linux/arm64", "linux/arm/v7"]), min_size=1, max_size=3,
                              unique=True),
        "target_repository": st.sampled_from(["mirror/a", "team/b-c", "x.y/z"]),
        "arch_tags": st.booleans(), "enabled": st.booleans(), "referrers": st.booleans(),
        "allow_nondistributable_artifacts": st.booleans(),
    },
)


@SETTINGS
@given(st.lists(rows, max_size=6, unique_by=lambda r: r["id"]))
def test_export_then_load_is_the_same_table(table):
    valid = []
    for item in table:
        try:
            parse_rows_document([item])
        except RowsFileError:
            continue
        valid.append(item)
    document, warnings = export_document(valid)
    assert warnings == []
    text = dump_rows_yaml(document)
    try:
        reloaded = load_rows_yaml(text)
    except RowsFileError as exc:  # only overlaps between generated rows may refuse the file
        assert all("both write" in p for p in exc.problems), exc.problems
        return
    assert {e.row.id: e.item for e in reloaded.entries} == {i["id"]: canonical_item(i) for i in valid}
    assert plan_changes(reloaded, valid).writes == []


def _readme_yaml_blocks(heading: str) -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_the_readme_examples_load():
    """The full example of README "Rows as code" and the ecr-mirror column of the side-by-side table are
    valid files (with real digests in place of the placeholders)."""
    digest = "sha256:" + "e" * 64
    example, = _readme_yaml_blocks("### The file\n")
    side_by_side = _readme_yaml_blocks("### The same mirrors in regsync and skopeo sync\n")[0]
    loaded = load_rows_yaml(example.replace("sha256:<64 hex digits>", digest))
    assert [e.row.id for e in loaded.entries] == ["golang", "node", "kubectl", "debian", "windows", "tool-1.0"]
    assert loaded.entries[3].row.pins == (("bookworm", digest), ("bullseye", digest))
    assert loaded.entries[0].row.platforms and loaded.entries[2].row.platforms is None
    assert [e.row.id for e in load_rows_yaml(side_by_side.replace("sha256:…", digest)).entries] == [
        "golang", "node", "kubectl", "debian"]
