"""What the CLI puts on a terminal: data shown as text, tables, sizes, progress, and Ctrl-C.

Rules (issue 16):

- Text from data (row values, registry and AWS errors, tags, digests) is shown as text: never read
  as markup (``rich.text.Text``, ``markup=False``), and with control characters escaped (:func:`safe`),
  so an ``ESC``, a newline or a bidi override in a row id or an upstream error cannot move the
  cursor, recolour the terminal or reorder what is seen.
- Tables fit the terminal (long cells wrap, nothing is cut); piped, they are plain columns at full
  width, never truncated, without escape codes (:func:`print_table`).
- Progress goes to stderr, on a terminal only, and is erased when done (:class:`CopyDisplay`,
  :class:`SyncDisplay`); sizes are decimal units, as Docker shows them (:func:`human_size`).
- Ctrl-C (:func:`interrupt_guard`): the work is aborted from a side thread at once, the display is
  cleared, one line says so, exit status 130; should anything still hang, the process leaves anyway
  :data:`INTERRUPT_GRACE` seconds after the key press, terminal restored.

Nothing here talks to a registry or AWS; rich is imported lazily (only for terminals).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from .copy import CopyProgress
from .sync import TagEvent

#: exit status after Ctrl-C (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130
#: seconds from Ctrl-C after which the process leaves even if some transfer has not noticed yet
INTERRUPT_GRACE = 0.8
INTERRUPTED_MESSAGE = "ecr-mirror: interrupted"

# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text
# (soft hyphen, zero-width and bidi marks, embeddings, overrides, isolates, line/paragraph separators, BOM)
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: Any) -> str:
    """``str(value)`` with control and invisible formatting characters written as escapes (``\\x1b``,
    ``\\n``, ``\\u202e``): what reaches the terminal is exactly the characters it shows."""
    text = "" if value is None else str(value)
    return _CONTROL_RE.sub(_escape, text)


def human_size(n: float) -> str:
    """Bytes in decimal units, as Docker and rich show them: ``999 B``, ``1.5 kB``, ``301.4 MB``, ``2.1 GB``."""
    n = float(n)
    if abs(n) < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``2 min 5 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s"


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (and not ``TERM=dumb``)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- tables


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    styles: Callable[[int, str], str | None] | None = None,
    file: IO[str] | None = None,
) -> None:
    """Print ``rows`` under ``headers``, every cell through :func:`safe`.

    On a terminal: a rich table as wide as the terminal; a long cell wraps inside its column
    (``overflow="fold"``), nothing is cut. ``styles(column, text)`` may colour a cell there.
    Otherwise (piped, redirected): plain columns separated by two spaces, each as wide as its widest
    cell, no escape codes, nothing cut.
    """
    out = file or sys.stdout
    cells = [[safe(c) for c in row] for row in rows]
    if not is_terminal(out):
        from rich.cells import cell_len

        widths = [max([cell_len(h), *(cell_len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for line in [list(headers), *cells]:
            padded = [c + " " * (widths[i] - cell_len(c)) for i, c in enumerate(line)]
            out.write("  ".join(padded).rstrip() + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in cells:
        table.add_row(*(Text(c, style=(styles(i, c) if styles else None) or "") for i, c in enumerate(row)))
    Console(file=out, highlight=False).print(table)


# ---------------------------------------------------------------- progress


def _progress(console: Any) -> Any:
    """The progress display: on a narrow terminal the description gives way (cut with an ellipsis) and the
    bar shrinks; sizes, rate and time left always keep one line each."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.table import Column

    def fixed() -> Column:
        return Column(no_wrap=True, overflow="fold")

    return Progress(
        TextColumn("{task.description}", markup=False,
                   table_column=Column(no_wrap=True, overflow="ellipsis", ratio=3, min_width=12)),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
        DownloadColumn(table_column=fixed()),
        TransferSpeedColumn(table_column=fixed()),
        TimeRemainingColumn(table_column=fixed()),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout may be a pipe (the digest); only stderr is the display
        expand=True,
    )


class _Display(CopyProgress):
    """A rich progress display on stderr while the ``with`` block runs, erased at its end; nothing
    when stderr is not a terminal. Lines are tasks keyed by name; :meth:`abandon` restores the
    terminal from another thread.

    While it is shown the terminal does not echo keys (``ECHO``, ``ECHOCTL`` off; Ctrl-C still
    interrupts): an echoed ``^C`` at the end of a full-width line would move the cursor to a new line,
    and erasing the display would then leave its first line behind.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = is_terminal(sys.stderr) if enabled is None else enabled
        self.progress: Any = None
        self._saved_tty: list[Any] | None = None
        self._lock = threading.RLock()
        self._ids: dict[str, Any] = {}
        self._totals: dict[str, int] = {}
        if self.enabled:
            from rich.console import Console

            self.progress = _progress(Console(stderr=True, highlight=False))

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self._quiet_keys()
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self._restore_keys()

    def _quiet_keys(self) -> None:
        try:
            import termios

            fd = sys.stderr.fileno()
            attrs = termios.tcgetattr(fd)
            quiet = list(attrs)
            quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)  # lflag
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
            self._saved_tty = attrs
        except (ImportError, OSError, ValueError, AttributeError):  # not a real terminal (or not POSIX): leave it
            self._saved_tty = None

    def _restore_keys(self) -> None:
        if self._saved_tty is None:
            return
        try:
            import termios

            termios.tcsetattr(sys.stderr.fileno(), termios.TCSANOW, self._saved_tty)
        except (ImportError, OSError, ValueError):
            pass
        self._saved_tty = None

    def abandon(self) -> None:
        """Erase the display's lines, show the cursor and echo keys again, without waiting for any
        lock (the process is about to leave while a thread may be stuck)."""
        if self.progress is None or not self.progress.live.is_started:
            return
        lines = len(self._ids)
        sys.stderr.write("\r\x1b[2K" + "\x1b[1A\x1b[2K" * max(0, lines - 1) + "\x1b[?25h")
        sys.stderr.flush()
        self._restore_keys()

    def _line(self, key: str, description: str, total: int | None = 0) -> None:
        """Show line ``key`` (created on first use, in order) with ``description``."""
        with self._lock:
            if key not in self._ids:
                self._ids[key] = self.progress.add_task(description, total=total)
                self._totals[key] = total or 0
            else:
                self.progress.update(self._ids[key], description=description)

    def _drop(self, key: str) -> None:
        with self._lock:
            if key in self._ids:
                self.progress.remove_task(self._ids.pop(key))
                self._totals.pop(key, None)

    def _grow(self, keys: Sequence[str], size: int) -> None:
        """Add ``size`` bytes (negative: take away) to the totals of lines ``keys``."""
        with self._lock:
            for key in keys:
                if key in self._ids:
                    self._totals[key] = max(0, self._totals[key] + size)
                    self.progress.update(self._ids[key], total=self._totals[key])

    def _advance(self, keys: Sequence[str], n: int) -> None:
        with self._lock:
            for key in keys:
                if key in self._ids:
                    self.progress.advance(self._ids[key], n)


class CopyDisplay(_Display):
    """``ecr-mirror copy`` progress: a total line, then a line per platform (bytes done of the total,
    bar, rate, time left).

    The total is the sum of the blob sizes the manifests list, less the blobs found at the
    destination or mounted; it is known once the manifests are read.
    """

    TOTAL = "total"

    def _keys(self, label: str) -> list[str]:
        if self.progress is None:
            return []
        self._line(self.TOTAL, self.TOTAL)
        self._line(label, safe(label))
        return [label, self.TOTAL]

    def planned(self, destination: str, label: str, size: int) -> None:
        self._grow(self._keys(label), size)

    def moved(self, destination: str, label: str, n: int) -> None:
        self._advance(self._keys(label), n)

    def settled(self, destination: str, label: str, size: int) -> None:
        self._grow(self._keys(label), -size)


def copy_summary(report: Any, seconds: float) -> str:
    """One line about a finished copy: where, which platforms, what moved, in human sizes (and the
    non-distributable layers left out, absent by design)."""
    where = f"{safe(report.destination)}: {safe(', '.join(report.platforms) or report.media_type)}"
    if report.unchanged:
        return f"{where} (unchanged, nothing copied)"
    rate = f", {human_size(report.bytes_copied / seconds)}/s" if seconds > 0 and report.bytes_copied else ""
    foreign = report.nondistributable_skipped
    left_out = f"; {foreign} non-distributable layer{'s' if foreign != 1 else ''} left out" if foreign else ""
    return (f"{where} ({report.blobs_copied} blobs copied, {human_size(report.bytes_copied)} in {human_duration(seconds)}{rate}; "
            f"{report.blobs_skipped} already there, {report.blobs_mounted} mounted{left_out})")


class SyncDisplay(_Display):
    """``ecr-mirror sync`` progress: a line counting tags done and all bytes copied, then a line per
    tag being worked on (``row:tag checking``, ``copying`` with its bytes, rate and time left).

    Off a terminal it writes one line to ``log`` as each copy starts (``copying row:tag -> dest``).
    """

    OVERALL = "\x00overall"  # no destination looks like this

    def __init__(self, enabled: bool | None = None, *, log: IO[str] | None = None) -> None:
        super().__init__(enabled)
        self.log = log
        self._copying: set[str] = set()
        self._done = self._copied = self._failed = 0

    def __enter__(self) -> SyncDisplay:
        super().__enter__()
        if self.progress is not None:
            self._line(self.OVERALL, self._headline())
        return self

    def _headline(self) -> str:
        return f"sync: {self._done} tags done, {self._copied} copied, {self._failed} failed"

    def tag(self, event: TagEvent) -> None:
        """Take a :class:`~ecr_mirror.sync.TagEvent` from the Syncer (any thread)."""
        label = safe(f"{event.row_id}:{event.tag}")
        if event.phase == "copying" and self.progress is None and self.log is not None:
            self.log.write(f"copying {label} -> {safe(event.destination)}\n")
            self.log.flush()
        if self.progress is None:
            return
        with self._lock:
            if event.phase == "done":
                self._done += 1
                self._copied += event.destination in self._copying and event.state == "in_sync"
                self._failed += event.state == "failed"
                self._copying.discard(event.destination)
                self._drop(event.destination)
                self._line(self.OVERALL, self._headline())
                return
            if event.phase == "copying":
                self._copying.add(event.destination)
            self._line(event.destination, f"  {label} {event.phase}", total=None)

    def _keys(self, destination: str) -> list[str]:
        return [destination, self.OVERALL] if self.progress is not None else []

    def planned(self, destination: str, label: str, size: int) -> None:
        self._grow(self._keys(destination), size)

    def settled(self, destination: str, label: str, size: int) -> None:
        self._grow(self._keys(destination), -size)

    def moved(self, destination: str, label: str, n: int) -> None:
        self._advance(self._keys(destination), n)


# ---------------------------------------------------------------- Ctrl-C

_reported = threading.Event()
_sigint_seen = threading.Event()


def report_interrupted() -> None:
    """Write :data:`INTERRUPTED_MESSAGE` on stderr, once per process."""
    if not _reported.is_set():
        _reported.set()
        sys.stderr.write(INTERRUPTED_MESSAGE + "\n")
        sys.stderr.flush()


def exit_interrupted() -> None:
    """Report the interruption and leave with :data:`EXIT_INTERRUPTED`.

    After a Ctrl-C the process leaves at once (``os._exit``, stdout and stderr flushed): the
    interpreter's own exit would first wait for transfer threads to notice the abort and tear
    every module down, a few hundred milliseconds that only delay the prompt. Otherwise (an
    :class:`~ecr_mirror.errors.Interrupted` without a signal) it exits normally.
    """
    report_interrupted()
    sys.stdout.flush()
    sys.stderr.flush()
    if _sigint_seen.is_set():
        os._exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def interrupt_guard(abort: Callable[[], None], display: _Display | None = None) -> Iterator[None]:
    """While the block runs, Ctrl-C (SIGINT) calls ``abort()`` on a side thread (so threads the main
    thread is waiting for stop) and raises :class:`KeyboardInterrupt` in the main thread, which
    unwinds (erasing the display); ``abort()`` runs again as the interrupt leaves the block. If the
    process is still there :data:`INTERRUPT_GRACE` seconds after the key, or at a second Ctrl-C, it
    restores the terminal and leaves with status 130. ``abort`` must be safe to call twice, from any
    thread. Outside the main thread: does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave_now() -> None:
        if display is not None:
            display.abandon()
        report_interrupted()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)

    def watchdog() -> None:
        time.sleep(INTERRUPT_GRACE)
        leave_now()

    hits = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal hits
        hits += 1
        _sigint_seen.set()
        if hits > 1:
            leave_now()
        threading.Thread(target=abort, name="abort", daemon=True).start()
        threading.Thread(target=watchdog, name="interrupt-watchdog", daemon=True).start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        abort()  # here too, synchronously: the block's own clean-up must not wait for transfers
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------- logs


class SafeFormatter(logging.Formatter):
    """A log formatter whose lines show data as text: control characters escaped (:func:`safe`),
    except the newlines of a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(safe(line) for line in super().format(record).split("\n"))


__all__ = [
    "EXIT_INTERRUPTED",
    "CopyDisplay",
    "SafeFormatter",
    "SyncDisplay",
    "copy_summary",
    "exit_interrupted",
    "human_duration",
    "human_size",
    "interrupt_guard",
    "is_terminal",
    "print_table",
    "report_interrupted",
    "safe",
]
