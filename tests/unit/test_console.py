"""ecr_mirror.console and the CLI's pure helpers: data shown as text, sizes, tables, exit statuses."""

from __future__ import annotations

import io
import logging

import pytest

from ecr_mirror import drift
from ecr_mirror.cli import EXIT_ERROR, EXIT_NOT_IN_SYNC, EXIT_OK, row_listing, sync_exit_status
from ecr_mirror.console import SafeFormatter, human_size, print_table, safe
from ecr_mirror.rows import USER_ATTRIBUTES, parse_row
from ecr_mirror.sync import RowResult, TagResult


@pytest.mark.parametrize(
    "value, shown",
    [
        ("golang", "golang"),
        ("é 中文 🐳 [bold]x[/bold]", "é 中文 🐳 [bold]x[/bold]"),  # printable text, markup-looking or not, as is
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # ESC: no cursor moves or colours from data
        ("title\x1b]0;owned\x07", "title\\x1b]0;owned\\x07"),
        ("two\nlines\r\tx", "two\\x0alines\\x0d\\x09x"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("abc\u202edcba", "abc\\u202edcba"),  # bidi override: what is seen is what is there
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        (None, ""),
        (42, "42"),
    ],
)
def test_safe_escapes_control_and_invisible_characters(value, shown):
    assert safe(value) == shown


@pytest.mark.parametrize("n, shown", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (301_400_000, "301.4 MB"),
                                       (2_100_000_000, "2.1 GB"), (1.5e15, "1.5 PB")])
def test_human_size_is_decimal_like_docker(n, shown):
    assert human_size(n) == shown


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_table_is_plain_full_width_and_escaped():
    digest = "sha256:" + "ab" * 32
    out = io.StringIO()
    print_table(["id", "error"], [["r1", f"bad {digest} [red]x[/red] \x1b[2J"], ["longer-id", ""]], file=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "id         error"
    assert lines[1] == f"r1         bad {digest} [red]x[/red] \\x1b[2J"  # nothing cut, no escape codes
    assert lines[2] == "longer-id"


def test_terminal_table_wraps_to_the_width_and_cuts_nothing(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    monkeypatch.setenv("TERM", "xterm")
    digest = "sha256:" + "cd" * 32
    out = FakeTerminal()
    print_table(["id", "error"], [["r1", f"upstream says {digest} \x1b[31m"]], file=out)
    from tests.support.terminal import Screen

    screen = Screen(50).feed(out.getvalue().encode())
    assert all(len(line) <= 50 for line in screen.text_lines), screen.text
    assert "…" not in screen.text and "\x1b[31m" not in out.getvalue()
    error_column = "".join(line[4:].strip() for line in screen.text_lines[1:])
    assert error_column.replace(" ", "") == f"upstreamsays{digest}\\x1b[31m"


def test_log_lines_escape_data_but_keep_traceback_lines():
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "row %s failed", ("a\x1b[2J",), None)
    assert formatter.format(record) == "ERROR row a\\x1b[2J failed"
    try:
        raise ValueError("boom\x1b")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "\n" in text and "\x1b" not in text and "ValueError: boom\\x1b" in text


def test_list_rows_show_every_user_attribute_defaults_filled_in():
    item = {"id": "golang", "source": "golang", "tags": ["1.22"], "arch_tags": True, "platforms": ["linux/arm64"]}
    listed = row_listing(item, parse_row(item), None)
    assert set(USER_ATTRIBUTES) <= set(listed)
    assert listed["arch_tags"] is True and listed["enabled"] is True
    assert listed["source"] == "docker.io/library/golang" and listed["platforms"] == ["linux/arm64"]
    assert listed["target_repository"] == "mirror/docker.io/library/golang"
    invalid = {"id": "bad", "platforms": ["x"]}
    listed = row_listing(invalid, None, "row 'bad': no source")
    assert listed["platforms"] == ["x"] and listed["arch_tags"] is None and listed["error"] == "row 'bad': no source"


def _row(*states: str, invalid: str | None = None) -> RowResult:
    r = RowResult("r", invalid=invalid)
    r.tags = [TagResult("r", f"t{i}", s) for i, s in enumerate(states)]
    return r


@pytest.mark.parametrize(
    "rows, code",
    [
        ([_row(drift.IN_SYNC, drift.IN_SYNC)], EXIT_OK),
        ([], EXIT_OK),
        ([_row(drift.IN_SYNC), _row(drift.BEHIND)], EXIT_NOT_IN_SYNC),
        ([_row(drift.MISSING)], EXIT_NOT_IN_SYNC),
        ([_row(drift.DIVERGED)], EXIT_NOT_IN_SYNC),
        ([_row(drift.BEHIND), _row(drift.FAILED)], EXIT_ERROR),
        ([_row(invalid="row 'r': bad")], EXIT_ERROR),
    ],
)
def test_sync_exit_status(rows, code):
    assert sync_exit_status(rows) == code


def test_progress_lines_keep_sizes_on_one_line_on_a_narrow_terminal():
    """80 columns, a long sync description and a long row:tag: the description is cut, never the sizes (they
    wrapped onto a second line before: "105.2/360.1" then "MB" below)."""
    import io

    from rich.console import Console

    from ecr_mirror.console import _progress

    buf = io.StringIO()
    con = Console(file=buf, width=80, force_terminal=True, color_system=None)
    p = _progress(con)
    p.add_task("sync: 0 tags done, 0 copied, 0 failed", total=360_100_000, completed=105_200_000)
    p.add_task("  a-very-long-row-id-for-this-test:1.22.3-bookworm copying", total=180_000_000, completed=45_300_000)
    con.print(p.make_tasks_table(p.tasks))
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert all(len(line) <= 80 for line in lines)
    assert "105.2/360.1 MB" in lines[0] and "45.3/180.0 MB" in lines[1]
    assert lines[0].startswith("sync: 0 tags done") and "…" in lines[1]
