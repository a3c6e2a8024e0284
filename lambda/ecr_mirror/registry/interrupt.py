"""Stopping a registry client's work from another thread, at once (Ctrl-C in the CLI).

:class:`Interrupter` is shared by a :class:`~.client.RegistryClient`, its
:class:`~.transport.Transport` and (through :meth:`Interrupter.backend`) the httpcore connection
pool of its httpx client. :meth:`Interrupter.interrupt`:

- refuses every request, connection and retry wait from then on (:class:`~ecr_mirror.errors.Interrupted`);
- shuts down (``shutdown(SHUT_RDWR)``) every open connection of the pool, so a thread blocked
  reading a body, waiting for response headers or writing an upload wakes up with an error
  instead of waiting for its read timeout (closing a socket from another thread does not wake a
  blocked ``recv`` on Linux; shutting it down does).

An error raised because of the interruption surfaces as :class:`~ecr_mirror.errors.Interrupted`,
which is never temporary, so nothing is retried.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpcore

from ..errors import Interrupted


class Interrupter:
    """A one-way switch: once :meth:`interrupt` is called the client's work stops. Thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._streams: set[_TrackedStream] = set()
        self._lock = threading.Lock()

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` was called."""
        return self._event.is_set()

    def interrupt(self) -> None:
        """Refuse new work and cut off open connections. Safe to call from any thread, more than once."""
        self._event.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.shutdown()

    def check(self, what: str) -> None:
        """Raise :class:`Interrupted` (naming ``what`` was to be done) once interrupted."""
        if self._event.is_set():
            raise Interrupted(f"{what}: interrupted")

    def sleep(self, seconds: float, what: str = "waiting to retry", fallback: Callable[[float], None] | None = None) -> None:
        """Wait ``seconds``, cut short by :meth:`interrupt` (then :class:`Interrupted`). ``fallback``: a
        test's sleep, called instead of waiting on the switch."""
        if fallback is not None and fallback is not time.sleep:
            self.check(what)
            fallback(seconds)
        else:
            self._event.wait(max(0.0, seconds))
        self.check(what)

    def backend(self, inner: httpcore.NetworkBackend | None = None) -> httpcore.NetworkBackend:
        """An httpcore network backend over ``inner`` (default: httpcore's ``SyncBackend``) whose
        connections :meth:`interrupt` shuts down, and which refuses new ones after it."""
        return _TrackingBackend(inner or httpcore.SyncBackend(), self)

    # -- bookkeeping for the backend
    def _track(self, stream: httpcore.NetworkStream) -> _TrackedStream:
        tracked = _TrackedStream(stream, self)
        with self._lock:
            self._streams.add(tracked)
        if self._event.is_set():  # interrupted while connecting
            tracked.shutdown()
        return tracked

    def _forget(self, stream: _TrackedStream) -> None:
        with self._lock:
            self._streams.discard(stream)


class _TrackedStream(httpcore.NetworkStream):
    """A network stream the :class:`Interrupter` can shut down."""

    def __init__(self, inner: httpcore.NetworkStream, owner: Interrupter) -> None:
        self._inner = inner
        self._owner = owner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._owner._forget(self)
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        upgraded = self._inner.start_tls(ssl_context, server_hostname, timeout)
        self._owner._forget(self)  # the plain socket now lives inside the TLS one
        return self._owner._track(upgraded)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shutdown(self) -> None:
        """Shut the connection down both ways; a thread blocked on it wakes with an error."""
        sock = self._inner.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            try:  # the plain socket call: ssl.SSLSocket.shutdown would also drop its SSL object under a reader
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _TrackingBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, owner: Interrupter) -> None:
        self._inner = inner
        self._owner = owner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        self._owner.check(f"connect to {host}:{port}")
        return self._owner._track(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        self._owner.check(f"connect to {path}")
        return self._owner._track(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


__all__ = ["Interrupter"]
