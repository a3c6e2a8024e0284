"""Row schema additions and what they select: several allow patterns, deny patterns, version ranges,
newest-N, pinned digests, ``referrers``; and rows that write the same target repository and tag."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import MirrorError, RowError
from ecr_mirror.rows import USER_ATTRIBUTES, Overlap, find_overlaps, parse_row, row_to_item
from ecr_mirror.tagpattern import compile_tag_pattern
from ecr_mirror.tags import SelectedTag, select, select_tags, version_key

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIN = "sha256:" + "a" * 64
PIN2 = "sha256:" + "b" * 64
UPSTREAM = ["1.20", "1.20.14", "1.21.0", "1.21.3", "1.21.3-alpine", "1.22rc1", "1.22.0", "1.22.1", "1.22.1-alpine",
            "1.23.0-rc.1", "2.0", "latest", "alpine", "1.21.3-windowsservercore"]


def row(**attrs):
    return parse_row({"id": "golang", "source": "golang", **attrs})


def error(**attrs) -> RowError:
    with pytest.raises(RowError) as info:
        row(**attrs)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------- allow and deny patterns


def test_several_allow_patterns_select_what_any_of_them_matches():
    r = row(tag_patterns=[r"1\.21\.[0-9]+", r"1\.22\.[0-9]+-alpine"])
    assert r.tag_patterns == (r"1\.21\.[0-9]+", r"1\.22\.[0-9]+-alpine") and r.needs_tag_list
    assert select_tags(r, UPSTREAM) == ["1.22.1-alpine", "1.21.3", "1.21.0"]


def test_tag_pattern_keeps_working_and_counts_as_the_one_allow_pattern():
    r = row(tag_pattern=r"1\.21\.[0-9]+")
    assert r.tag_pattern == r"1\.21\.[0-9]+" and r.tag_patterns == (r"1\.21\.[0-9]+",)
    assert select_tags(r, UPSTREAM) == ["1.21.3", "1.21.0"]


def test_deny_patterns_filter_what_patterns_and_ranges_select():
    r = row(tag_patterns=[r"1\.2[0-9]\..*"], exclude_patterns=[".*-alpine", ".*windows.*"])
    assert select_tags(r, UPSTREAM) == ["1.23.0-rc.1", "1.22.1", "1.22.0", "1.21.3", "1.21.0", "1.20.14"]
    assert select_tags(row(versions=">=1.21", exclude_patterns=[".*-.*"]), UPSTREAM) == [
        "2.0", "1.22.1", "1.22.0", "1.21.3", "1.21.0"]


def test_versions_alone_select_every_version_tag_in_range_and_with_patterns_both_must_hold():
    assert select_tags(row(versions=">=1.21 <2"), UPSTREAM) == [
        "1.22.1-alpine", "1.22.1", "1.22.0", "1.21.3-windowsservercore", "1.21.3-alpine", "1.21.3", "1.21.0"]
    both = row(tag_patterns=[r"[0-9.]+-alpine"], versions=">=1.21 <2")
    assert select_tags(both, UPSTREAM) == ["1.22.1-alpine", "1.21.3-alpine"]


def test_keep_latest_applies_to_ranges_too():
    assert select_tags(row(versions=">=1.21 <2", exclude_patterns=[".*-.*"], keep_latest=2), UPSTREAM) == [
        "1.22.1", "1.22.0"]


# ---------------------------------------------------------------- pins


def test_a_tags_entry_with_a_digest_pins_the_tag():
    r = row(tags=["1.21", f"1.22@{PIN}"])
    assert r.tags == ("1.21", "1.22") and r.pins == (("1.22", PIN),)
    assert r.pinned_digest("1.22") == PIN and r.pinned_digest("1.21") is None
    assert select(r, UPSTREAM) == [SelectedTag("1.21"), SelectedTag("1.22", PIN)]


@pytest.mark.parametrize("digests", [{"1.22": PIN, "1.20": PIN2}, [f"1.22@{PIN}", f"1.20@{PIN2}"]])
def test_digests_attribute_map_or_list(digests):
    r = row(tags=["latest"], digests=digests)
    expected_order = ("latest", "1.20", "1.22") if isinstance(digests, dict) else ("latest", "1.22", "1.20")
    assert r.tags == expected_order  # a map in tag order, a list in its order
    assert dict(r.pins) == {"1.22": PIN, "1.20": PIN2}
    assert [s.pinned_digest for s in select(r)] == [None, *(dict(r.pins)[t] for t in expected_order[1:])]


def test_a_pinned_tag_in_tags_and_digests_must_agree():
    assert row(tags=[f"1.22@{PIN}"], digests={"1.22": PIN}).pins == (("1.22", PIN),)
    assert row(tags=["1.22"], digests={"1.22": PIN}).tags == ("1.22",)  # pinned through digests
    e = error(tags=[f"1.22@{PIN}"], digests={"1.22": PIN2})
    assert e.attribute == "digests" and "pinned to" in str(e)


def test_pins_and_patterns_together_explicit_first():
    r = row(tags=[f"1.20@{PIN}"], tag_patterns=[r"1\.2[0-9]\.[0-9]+"], keep_latest=2)
    assert select(r, UPSTREAM) == [SelectedTag("1.20", PIN), SelectedTag("1.22.1", explicit=False),
                                   SelectedTag("1.22.0", explicit=False)]


def test_row_to_item_writes_the_new_attributes():
    item = row_to_item("k", source="registry.k8s.io/kubectl", versions=">=1.30", tag_patterns=["v1.*"],
                       exclude_patterns=[".*-rc.*"], digests={"v1.29.0": PIN}, referrers=False, keep_latest=3)
    assert item == {"id": "k", "source": "registry.k8s.io/kubectl", "keep_latest": 3, "tag_patterns": ["v1.*"],
                    "exclude_patterns": [".*-rc.*"], "versions": ">=1.30", "digests": {"v1.29.0": PIN},
                    "referrers": False}
    assert parse_row(item).referrers is False and row(tags=["1"]).referrers is True


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "attrs, attribute, message",
    [
        ({"tag_patterns": "1.*"}, "tag_patterns", "must be a list of strings, not a string"),
        ({"tag_patterns": []}, "tag_patterns", "must not be empty"),
        ({"tag_patterns": ["a", "(a+)+"]}, "tag_patterns", "entry 2: pattern '(a+)+': could backtrack"),
        ({"tag_patterns": ["a", "a"]}, "tag_patterns", "listed twice"),
        ({"tag_patterns": ["x"] * 17}, "tag_patterns", "over the limit of 16"),
        ({"tag_pattern": "a", "tag_patterns": ["b"]}, "tag_patterns", "cannot be combined with tag_pattern"),
        ({"tags": ["1"], "exclude_patterns": ["x"]}, "exclude_patterns", "only applies together with"),
        ({"tag_patterns": ["1.*"], "exclude_patterns": [".*.*.*x"]}, "exclude_patterns", "entry 1: pattern"),
        ({"tags": ["1.22-rc"], "versions": ">=1", "exclude_patterns": [".*-rc"]}, "exclude_patterns",
         "excludes '1.22-rc', which the row names explicitly"),
        ({"versions": 1.21}, "versions", "must be a string, not a number"),
        ({"versions": "~1.2"}, "versions", "unsupported operator"),
        ({"tags": ["1"], "keep_latest": 2}, "keep_latest", "only applies together with tag_pattern, tag_patterns or versions"),
        ({"tags": ["1.22@sha256:abc"]}, "tags", "entry 1: invalid digest of '1.22'"),
        ({"tags": ["1.22@" + "x" * 300]}, "tags", "entry 1: the digest of '1.22' must be a string such as"),
        ({"tags": [f"1.2 2@{PIN}"]}, "tags", "entry 1: invalid tag"),
        ({"tags": ["1", f"1@{PIN}"]}, "tags", "tag '1' is listed twice"),
        ({"digests": ["1.22"]}, "digests", "is not tag@digest"),
        ({"digests": {"1.22": 5}}, "digests", "must be a string such as sha256"),
        ({"digests": {"bad tag": PIN}}, "digests", "invalid tag"),
        ({"digests": {}}, "digests", "must not be empty"),
        ({"digests": "1@" + PIN}, "digests", "must be a map of tag to digest, or a list of tag@digest, not a string"),
        ({"digests": {f"t{i}": PIN for i in range(101)}}, "digests", "over the limit of 100"),
        ({"tags": [f"a{i}" for i in range(60)], "digests": {f"b{i}": PIN for i in range(60)}}, "digests",
         "name 120 tags, over the limit of 100"),
        ({"referrers": "yes"}, "referrers", "must be a boolean"),
        ({}, "tags", "a source row needs tags (or digests), tag_pattern(s) or versions"),
    ],
)
def test_bad_attributes_name_row_and_attribute(attrs, attribute, message):
    e = error(**attrs)
    assert e.attribute == attribute
    assert str(e).startswith(f"row 'golang': attribute '{attribute}': ")
    assert message in str(e) and message in e.detail


@pytest.mark.parametrize("attribute, value", [
    ("tag_patterns", ["1"]), ("exclude_patterns", ["1"]), ("versions", ">=1"), ("digests", {"1": PIN}),
])
def test_selection_attributes_do_not_apply_to_assemble_rows(attribute, value):
    item = {"id": "app", "assemble": ["ghcr.io/o/a:1-amd64", "ghcr.io/o/a:1-arm64"], "tags": ["1"], attribute: value}
    with pytest.raises(RowError) as info:
        parse_row(item)
    assert info.value.attribute == attribute and "assemble rows" in str(info.value)
    with pytest.raises(RowError, match="pins do not apply to assemble rows"):
        parse_row({"id": "app", "assemble": ["ghcr.io/o/a:1-amd64"], "tags": [f"1@{PIN}"]})


# ---------------------------------------------------------------- overlaps


def test_two_rows_writing_one_target_and_tag_are_found():
    a = row(tags=["1.22", "1.23"])
    b = parse_row({"id": "golang-arm", "source": "docker.io/library/golang", "tags": ["1.23"], "platforms": ["linux/arm64"]})
    elsewhere = parse_row({"id": "other", "source": "golang", "tags": ["1.23"], "target_repository": "mirror/golang"})
    assert find_overlaps([a, b, elsewhere]) == [Overlap("golang", "golang-arm", "mirror/docker.io/library/golang", "1.23")]
    pinned = parse_row({"id": "pinned", "source": "golang", "digests": {"1.22": PIN}})
    assert find_overlaps([a, pinned])[0].tag == "1.22"  # a pin writes its tag too
    disabled = parse_row({"id": "off", "source": "golang", "tags": ["1.22"], "enabled": False})
    assert find_overlaps([a, disabled]) == []


def test_pattern_rows_sharing_a_repository_are_an_overlap_without_a_tag():
    a = row(tags=["1.22"])
    b = parse_row({"id": "newest", "source": "golang", "versions": ">=1.21"})
    found = find_overlaps([a, b])
    assert found == [Overlap("golang", "newest", "mirror/docker.io/library/golang", None)]
    assert "one selects tags by pattern or version range" in found[0].describe()
    other_tag = parse_row({"id": "x", "source": "golang", "tags": ["1.23"]})
    assert find_overlaps([a, other_tag]) == []  # explicit rows with different tags do not overlap


def test_an_assemble_row_writes_its_tag():
    a = parse_row({"id": "joined", "assemble": ["ghcr.io/o/app:1-amd64", "ghcr.io/o/app:1-arm64"], "tags": ["1"]})
    b = parse_row({"id": "copy", "source": "ghcr.io/o/app", "tags": ["1"]})
    assert find_overlaps([a, b]) == [Overlap("joined", "copy", "mirror/ghcr.io/o/app", "1")]


# ---------------------------------------------------------------- properties

tags = st.from_regex(r"v?[0-9]{1,2}(\.[0-9]{1,2}){0,2}(-(alpine|rc[0-9]|slim))?|latest|edge", fullmatch=True)
patterns = st.sampled_from([r"[0-9.]+", r".*-alpine", r"1\..*", r"v.*", r"[0-9]+", "latest", r".*rc.*"])
ranges = st.sampled_from([">=1", "<2", ">=1.5 <10", "==3 || >=20", "!=1.0", ">=1.0-rc1 <1.1"])


@SETTINGS
@given(st.lists(tags, max_size=30), st.lists(patterns, max_size=3, unique=True), st.lists(patterns, max_size=2, unique=True),
       st.one_of(st.none(), ranges), st.one_of(st.none(), st.integers(1, 5)))
def test_selection_obeys_every_rule(upstream, allow, deny, versions, keep):
    attrs = {"tag_patterns": allow or None, "exclude_patterns": deny or None, "versions": versions, "keep_latest": keep}
    attrs = {k: v for k, v in attrs.items() if v is not None}
    try:
        r = row(**attrs)
    except RowError:
        return  # e.g. exclude_patterns or keep_latest without patterns or versions
    chosen = select(r, upstream)
    names = [s.tag for s in chosen]
    assert len(names) == len(set(names))
    assert all(not s.explicit and s.pinned_digest is None for s in chosen)
    assert set(names) <= set(upstream)
    for tag in names:
        assert not allow or any(compile_tag_pattern(p).fullmatch(tag) for p in allow)
        assert not any(compile_tag_pattern(p).fullmatch(tag) for p in deny)
        assert r.versions is None or tag in r.versions
    assert names == sorted(names, key=version_key, reverse=True)
    if keep is not None:
        assert len(names) <= keep
    # nothing left out that should be in: the newest ones that pass every filter
    passing = {t for t in upstream if (not allow or any(compile_tag_pattern(p).fullmatch(t) for p in allow))
               and not any(compile_tag_pattern(p).fullmatch(t) for p in deny)
               and (r.versions is None or t in r.versions)}
    assert names == sorted(passing, key=version_key, reverse=True)[: keep or len(passing)]


hex_digest = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@SETTINGS
@given(st.dictionaries(tags, hex_digest, max_size=5), st.lists(tags, max_size=5, unique=True))
def test_every_pin_is_selected_with_its_digest(pins, plain):
    entries = [t for t in plain if t not in pins] + [f"{t}@{d}" for t, d in pins.items()]
    if not entries:
        return
    r = row(tags=entries)
    assert {s.tag: s.pinned_digest for s in select(r, plain)} == {
        **{t: None for t in plain if t not in pins}, **pins}


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "tags": st.one_of(st.lists(st.one_of(tags, st.text(max_size=10), tags.map(lambda t: f"{t}@{PIN}")), max_size=4),
                      st.text(max_size=5), st.integers()),
    "digests": st.one_of(st.dictionaries(st.one_of(tags, st.text(max_size=5)), st.one_of(hex_digest, st.text(max_size=8)),
                                         max_size=3),
                         st.lists(st.text(max_size=12), max_size=3), st.integers(), st.none()),
    "tag_patterns": st.one_of(st.lists(st.one_of(patterns, st.text(max_size=8)), max_size=3), st.text(max_size=4)),
    "exclude_patterns": st.one_of(st.lists(st.one_of(patterns, st.text(max_size=8)), max_size=3), st.booleans()),
    "versions": st.one_of(ranges, st.text(max_size=12), st.floats()),
    "keep_latest": st.one_of(st.integers(-2, 300), st.text(max_size=3)),
    "referrers": st.one_of(st.booleans(), st.text(max_size=3)),
}))
def test_new_attributes_raise_only_row_errors_naming_a_known_attribute(attrs):
    try:
        r = row(**attrs)
    except MirrorError as exc:
        assert isinstance(exc, RowError) and exc.attribute in USER_ATTRIBUTES and "\n" not in str(exc)
    else:
        assert r.tags or r.needs_tag_list
        assert set(dict(r.pins)) <= set(r.tags)
