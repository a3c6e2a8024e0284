"""Version ranges (a row's ``versions``): the grammar, the project's version order, pre-releases."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import MirrorError, RowError
from ecr_mirror.tags import version_key as version_key_from_tags
from ecr_mirror.versions import parse_version_range, version_key

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOLANG = ["1.20", "1.20.14", "1.21", "1.21.0", "1.21.3", "1.21.3-alpine", "1.21rc2", "1.22.0-rc.1", "1.22",
          "1.9", "1.10", "2", "2.0", "v1.21.5", "latest", "alpine", "bookworm", "10.1"]


def inside(text: str, tags=GOLANG) -> list[str]:
    r = parse_version_range(text)
    return [t for t in tags if t in r]


def test_version_key_is_the_one_order():
    assert version_key_from_tags is version_key
    assert sorted(["1.10", "1.9", "1.22rc1", "1.22", "1.21.3-alpine", "1.21.3"], key=version_key) == [
        "1.9", "1.10", "1.21.3", "1.21.3-alpine", "1.22rc1", "1.22"]


def test_and_is_space_or_comma():
    assert inside(">=1.21 <2") == ["1.21", "1.21.0", "1.21.3", "1.21.3-alpine", "1.22", "v1.21.5"]
    assert inside(">=1.21, <2") == inside(">=1.21 <2") == inside(">= 1.21  < 2")


def test_or_joins_clauses():
    assert inside("==1.20 || >=2") == ["1.20", "2", "2.0", "10.1"]
    assert inside("<1.10 || ==v1.21.5") == ["1.9", "v1.21.5"]


def test_comparisons():
    assert inside("==1.21") == ["1.21"]  # not 1.21.0: digit runs, then the end, compare
    assert inside("!=1.21 >=1.21 <1.22") == ["1.21.0", "1.21.3", "1.21.3-alpine", "v1.21.5"]
    assert inside(">1.21.3 <=1.22") == ["1.21.3-alpine", "1.22", "v1.21.5"]
    assert inside("<2") == inside("<2 >=0")  # text tags (latest, alpine) are never versions
    assert "2.0" not in parse_version_range("<2") and "2" in parse_version_range("<=2")


def test_a_leading_v_is_not_compared():
    r = parse_version_range(">=v1.21 <v2")
    assert "v1.21.5" in r and "1.21.5" in r and "V1.21.5" in r and "vv1.21" not in r and "version1" not in r


def test_pre_releases_only_when_the_clause_names_one_of_the_same_release():
    assert "1.21rc2" not in parse_version_range(">=1.20")
    assert "1.22.0-rc.1" not in parse_version_range(">=1.20")
    r = parse_version_range(">=1.22.0-rc.0 <1.23")
    assert "1.22.0-rc.1" in r and "1.22.0" in r
    assert "1.23.0-rc.1" not in parse_version_range(">=1.22.0-rc.0 <1.24")  # another release's pre-release
    # per clause: the second clause names no pre-release, so it does not let one in
    assert "1.22.0-rc.1" not in parse_version_range(">=1.22.0-rc.0 <1.22.0-rc.1 || >=1.0")
    assert "1.22.0-rc.0" in parse_version_range(">=1.22.0-rc.0 <1.22.0-rc.1 || >=1.0")
    assert "1.21.3-alpine" in parse_version_range(">=1.21 <2")  # a suffix that is no pre-release marker


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1.21", "needs an operator (write ==1.21"),
        ("~1.21", "unsupported operator"),
        ("^1.2", "unsupported operator"),
        ("=>1.2", "unsupported operator"),
        ("=1.2", "unsupported operator"),
        ("<<2", "unsupported operator"),
        (">=", "needs a version after >="),
        (">=1.21 ||", "clause 2 is empty"),
        ("|| <2", "clause 1 is empty"),
        (">=latest", "'latest' is not a version"),
        (">=1.2/3", "invalid tag"),
        (">=1.21\t<2", "only printable characters and plain spaces"),
        (">=1.21\n", "only printable characters"),
        ("<2 " * 40, "more than 32 comparisons"),
        (">=1" * 100, "over the limit of 256"),
    ],
)
def test_bad_ranges_name_the_problem(text, message):
    with pytest.raises(RowError) as info:
        parse_version_range(text)
    assert info.value.attribute == "versions"
    assert message in str(info.value) and message in info.value.detail
    assert "\n" not in str(info.value)


def test_not_a_string():
    with pytest.raises(RowError, match="not a string"):
        parse_version_range(1.2)


versions = st.from_regex(r"v?[0-9]{1,3}(\.[0-9]{1,3}){0,3}(-(alpine|rc\.[0-9]|beta[0-9]|bookworm))?", fullmatch=True)


@SETTINGS
@given(versions, versions)
def test_a_single_comparison_agrees_with_version_key(tag, bound):
    """For a tag that is not a pre-release, ``>=bound`` holds exactly when the version order says so."""
    r = parse_version_range(f">={bound}")
    tag_key = version_key(tag.lstrip("v"))[0]
    bound_key = version_key(bound.lstrip("v"))[0]
    if any(marker in tag for marker in ("rc.", "beta")):
        return
    assert (tag in r) == (tag_key >= bound_key)
    assert (tag in parse_version_range(f"<{bound}")) == (tag_key < bound_key)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([">=", ">", "<=", "<", "==", "!="]), versions), min_size=1, max_size=4),
       st.lists(versions, max_size=10))
def test_the_written_form_parses_to_the_same_range(comparisons, tags):
    text = " ".join(op + v for op, v in comparisons)
    r = parse_version_range(text)
    again = parse_version_range(str(r))
    assert [t in r for t in tags] == [t in again for t in tags]


@SETTINGS
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_a_row_error(text):
    try:
        r = parse_version_range(text)
    except MirrorError as exc:
        assert isinstance(exc, RowError) and exc.attribute == "versions" and "\n" not in str(exc)
    else:
        assert r.clauses and all(r.clauses)
