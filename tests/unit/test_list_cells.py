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


def test_pins_show_however_the_row_writes_them() -> None:
    """``tags: [1.22@sha256:…]`` (the README's form), a ``digests`` list and a map all list as ``tag@digest``,
    in the table and in ``list --json``."""
    from ecr_mirror.cli import row_listing
    from ecr_mirror.rows import parse_row

    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    item = {"id": "pin", "source": "registry.example/app", "tags": [f"1.22@{d1}", "1.23"], "digests": [f"old@{d2}"]}
    listed = row_listing(item, parse_row(item), None)
    assert listed["digests"] == {"1.22": d1, "old": d2}
    assert _list_cell("tags", listed) == f"1.23, 1.22@{d1}, old@{d2}"
    # an invalid row is shown as written: the list form of digests too
    assert _list_cell("tags", {"tags": ["1.23"], "digests": [f"old@{d2}"]}) == f"1.23, old@{d2}"
