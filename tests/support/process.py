"""Helpers shared by the process wrappers: free ports, readiness polling, clean shutdown."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


def find_free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (bind to port 0 and let the kernel choose).

    There is a small window between closing this socket and the caller binding the port;
    callers that start a process on it retry when the process reports the port in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_answers(host: str, port: int, path: str, timeout: float = 1.0) -> bool:
    """True when anything answers an HTTP GET on ``path`` (any status counts: 401 means up)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def read_tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


def wait_until_answers(
    proc: subprocess.Popen, host: str, port: int, path: str, timeout: float, log: Path, what: str
) -> None:
    """Poll until the process answers HTTP, or raise RuntimeError with its log tail.

    Raises :class:`PortInUse` when the process died complaining about its address, so the
    caller can retry on another port.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = read_tail(log)
            if "address already in use" in tail.lower():
                raise PortInUse(tail)
            raise RuntimeError(f"{what} exited with status {proc.returncode} before answering; output:\n{tail}")
        if http_answers(host, port, path):
            return
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"{what} did not answer on {host}:{port} within {timeout:g}s; output:\n{read_tail(log)}")
        time.sleep(0.05)


class PortInUse(RuntimeError):
    """The process could not bind its port (someone took it between pick and bind)."""


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate, wait, then kill if it is still there."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
