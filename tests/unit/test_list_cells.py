"""`ecr-mirror list` shows every way a row selects tags in its tags cell, and optional columns only when used."""

from __future__ import annotations

from ecr_mirror.cli import _list_cell


def test_tags_cell_shows_explicit_tags_pins_patterns_ranges_and_exclusions() -> None:
    row = {
        "tags": ["1.22", "bookworm"],
        "digests": {"bookworm": "sha256:" + "a" * 64},
        "tag_patterns": ["1[.]2[0-9]+", "2[.].*"],
        "exclude_patterns": [".*-rc.*"],
        "versions": ">=1.21 <2",
        "keep_latest": 3,
    }
    cell = _list_cell("tags", row)
    assert cell == (f"1.22, bookworm@sha256:{'a' * 64}, /1[.]2[0-9]+/, /2[.].*/, versions >=1.21 <2, "
                    "not /.*-rc.*/ (newest 3)")


def test_tags_cell_of_a_single_pattern_row() -> None:
    assert _list_cell("tags", {"tags": [], "tag_pattern": "22[.].*", "keep_latest": None}) == "/22[.].*/"
