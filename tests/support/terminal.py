"""A process on a pseudo-terminal, and a small screen model of what it leaves on the terminal.

    with TerminalRun([exe, "copy", src, dst], env=env, columns=100) as run:
        run.wait_for("linux/amd64")            # the progress display is up
        run.interrupt()                        # SIGINT, as Ctrl-C sends it
        code = run.wait(timeout=30)
    screen = Screen(columns=100).feed(run.output)
    assert "━" not in screen.text and screen.cursor_visible

The process gets the pty as stdin, stdout and stderr (so ``isatty()`` is true for all three) with
the given window size, and as its controlling terminal in a session of its own (util-linux
``setsid --ctty``, which execs the command in place), so :meth:`TerminalRun.press_ctrl_c` works as
the key does: the terminal sends SIGINT to the process and echoes ``^C`` unless told not to. :class:`Screen` applies the bytes as a VT100-style terminal would, for the
subset that progress displays use: printable text with line wrap, CR, LF, BS, cursor up/down/
forward/back/column/position (``ESC [ n A/B/C/D/G/H``), erase in line and display (``ESC [ n K/J``),
cursor visibility (``ESC [ ? 25 l/h``); colours and other modes are ignored. The screen has no
bottom (it grows), so scrolling never loses a line.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence

__all__ = ["Screen", "TerminalRun", "strip_escapes"]

_OSC_RE = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_ESCAPES_RE = re.compile(r"\x1b\[[?0-9;]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (CSI, OSC, charset selections)."""
    return _ESCAPES_RE.sub("", text)


class TerminalRun:
    """``argv`` started on a new pseudo-terminal of ``columns`` x ``rows``; :attr:`output` collects
    everything it writes (bytes), read continuously so the process never blocks on a full pty."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], columns: int = 100, rows: int = 40) -> None:
        self.argv = ["setsid", "--ctty", *argv]  # not a process-group leader here, so setsid execs in place
        self.env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        self.env.pop("NO_COLOR", None)
        self.columns, self.rows = columns, rows
        self.proc: subprocess.Popen | None = None
        self._master = -1
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> TerminalRun:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.columns, 0, 0))
        self._master = master
        try:
            self.proc = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave, env=self.env, close_fds=True)
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO once the process and every copy of the slave are gone
                return
            if not data:
                return
            with self._lock:
                self._buffer.extend(data)

    @property
    def output(self) -> bytes:
        """Everything written to the terminal so far."""
        with self._lock:
            return bytes(self._buffer)

    @property
    def text(self) -> str:
        """:attr:`output` decoded, escape sequences removed."""
        return strip_escapes(self.output.decode("utf-8", "replace"))

    def wait_for(self, needle: str | re.Pattern[str], timeout: float = 60.0) -> None:
        """Wait until :attr:`text` contains ``needle``; AssertionError (with the output) if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text
            if (needle.search(text) if isinstance(needle, re.Pattern) else needle in text):
                return
            if self.proc is not None and self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain the last bytes
                text = self.text
                if (needle.search(text) if isinstance(needle, re.Pattern) else needle in text):
                    return
                raise AssertionError(f"process ended (status {self.proc.returncode}) without showing {needle!r}:\n{text}")
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not shown within {timeout:g}s:\n{self.text}")

    def interrupt(self) -> float:
        """Send SIGINT to the process (``kill -INT``); returns the :func:`time.monotonic` reading when sent."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        return sent

    def press_ctrl_c(self) -> float:
        """Type Ctrl-C on the terminal (the line discipline turns it into SIGINT for the foreground
        process group, and echoes ``^C`` if ECHO and ECHOCTL are on); returns when it was typed."""
        sent = time.monotonic()
        os.write(self._master, b"\x03")
        return sent

    def wait(self, timeout: float = 120.0) -> int:
        """The exit status, once the process ended and its output is read."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def __enter__(self) -> TerminalRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Screen:
    """What a terminal ``columns`` wide shows after the bytes :meth:`feed` gives it."""

    def __init__(self, columns: int = 100) -> None:
        self.columns = columns
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0
        self.cursor_visible = True

    # -- the grid
    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _put(self, ch: str) -> None:
        width = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if self.col + width > self.columns:  # auto-wrap
            self.row += 1
            self.col = 0
        line = self._line()
        while len(line) < self.col + width:
            line.append(" ")
        line[self.col] = ch
        if width == 2:
            line[self.col + 1] = ""
        self.col += width

    def _erase_line(self, mode: int) -> None:
        line = self._line()
        if mode == 0:
            del line[self.col :]
        elif mode == 1:
            for i in range(min(self.col + 1, len(line))):
                line[i] = " "
        else:
            line.clear()

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            if params == "?25" and final in "hl":
                self.cursor_visible = final == "h"
            return
        nums = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = (nums[0] if nums else 0) or 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final in "BE":
            self.row += n
            if final == "E":
                self.col = 0
        elif final == "C":
            self.col = min(self.columns - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.columns - 1, n - 1)
        elif final in "Hf":
            self.row = max(0, (nums[0] if nums else 1) - 1)
            self.col = max(0, (nums[1] if len(nums) > 1 else 1) - 1)
        elif final == "K":
            self._erase_line(nums[0] if nums else 0)
        elif final == "J":
            mode = nums[0] if nums else 0
            if mode == 0:
                self._erase_line(0)
                del self.lines[self.row + 1 :]
            elif mode in (2, 3):
                self.lines = [[]]
        # "m" (colours) and anything else: no effect on the text

    def feed(self, data: bytes) -> Screen:
        """Apply ``data`` (UTF-8 text with escape sequences); returns ``self``."""
        data = _OSC_RE.sub(b"", data)
        pos = 0
        text = data.decode("utf-8", "replace")
        for match in _ESCAPES_RE.finditer(text):
            self._text(text[pos : match.start()])
            seq = match.group()
            csi = re.fullmatch(r"\x1b\[([?0-9;]*)([@-~])", seq)
            if csi:
                self._csi(csi.group(1), csi.group(2))
            pos = match.end()
        self._text(text[pos:])
        return self

    def _text(self, text: str) -> None:
        for ch in text:
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self._line()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\t":
                self.col = min(self.columns - 1, (self.col // 8 + 1) * 8)
            elif ch in "\x07\x00\x1b" or unicodedata.category(ch) == "Cc":
                continue
            else:
                self._put(ch)

    @property
    def text_lines(self) -> list[str]:
        """The screen's lines, right-trimmed, trailing empty lines dropped."""
        out = ["".join(line).rstrip() for line in self.lines]
        while out and not out[-1]:
            out.pop()
        return out

    @property
    def text(self) -> str:
        return "\n".join(self.text_lines)
