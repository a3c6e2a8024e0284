"""An upstream with Docker Hub's pull-limit semantics, in front of a real registry.

    limiter = PullLimiter(limit=8, window=21600)             # 8 pulls per 6 h window, on a clock the test moves
    hub = proxy_factory(registry, extensions=[limiter])      # a RegistryProxy with the limiter on it
    ...point the code under test at hub.url...
    assert limiter.rejected == 0 and limiter.spent == 8
    limiter.refill()                                          # the next window starts now; no sleeping

What Docker Hub does (docker/docs ``content/manuals/docker-hub/usage/pulls.md``; ecr-facts.md section 8):

- Every registry answer (HEAD included) carries ``ratelimit-limit: <N>;w=<seconds>``,
  ``ratelimit-remaining: <n>;w=<seconds>`` and ``docker-ratelimit-source: <client address>``.
- A manifest GET (``GET /v2/<name>/manifests/<reference>``, by tag or by digest) counts as a pull;
  HEAD requests ("version checks") and blob GETs do not. A multi-arch pull counts once per manifest fetched.
- Once the window's pulls are spent, manifest GETs answer ``429 TOOMANYREQUESTS`` (with ``Retry-After``:
  seconds until the window refills, unless ``retry_after=False``); HEADs and blobs still work.

The window is fixed: it starts at the first request (or at :meth:`PullLimiter.refill`) and ends ``window``
seconds later by ``clock`` -- by default a :class:`ManualClock` that only the test moves, so no test sleeps.
Counts are kept per window (:attr:`PullLimiter.windows`) and in total. Pulls are taken under a lock before
the request goes upstream, so concurrent clients (threads or processes) can never overspend a window.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .proxy import RegistryProxy, Reply, RequestRecord, oci_error_body

__all__ = ["DOCKER_HUB_LIMIT_MESSAGE", "ManualClock", "PullLimiter", "WindowStats", "parse_ratelimit"]

#: the message Docker Hub sends with its 429
DOCKER_HUB_LIMIT_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: "
    "https://www.docker.com/increase-rate-limit"
)
_MANIFEST_PATH = re.compile(r"^/v2/.+/manifests/[^/]+$")
_HEADER = re.compile(r"^\s*(?P<count>-?\d+)\s*(?:;\s*w\s*=\s*(?P<window>\d+))?\s*$")


def parse_ratelimit(value: str) -> tuple[int, int | None]:
    """``"76;w=21600"`` -> ``(76, 21600)``; ``"100"`` -> ``(100, None)``. ValueError if malformed."""
    match = _HEADER.match(value)
    if match is None:
        raise ValueError(f"not a ratelimit header value: {value!r}")
    window = match.group("window")
    return int(match.group("count")), int(window) if window is not None else None


class ManualClock:
    """A clock in seconds that moves only when told to (:meth:`advance`). Thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now


@dataclass
class WindowStats:
    """What happened in one window."""

    number: int  # 0 for the first window
    started_at: float  # by the limiter's clock
    pulls: int = 0  # manifest GETs let through (each spent one pull)
    rejected: int = 0  # manifest GETs answered 429
    by_hand: int = 0  # pulls spent by someone else from the same address (:attr:`PullLimiter.spend_at_next_pull`)
    heads: int = 0  # manifest HEADs (free, answered with the headers)
    other: int = 0  # every other request under /v2/ (blobs, tags, uploads...), free


class PullLimiter:
    """Docker Hub's pull limit as a :class:`RegistryProxy` extension (see the module docstring).

    ``limit`` pulls per ``window`` seconds. ``clock`` is a zero-argument callable returning seconds
    (default: a new :class:`ManualClock`, at :attr:`clock`); pass ``time.monotonic`` for real time.
    ``source`` is the ``docker-ratelimit-source`` value (Docker Hub sends the client's IP address).
    ``retry_after=False`` sends 429s without ``Retry-After``.
    """

    def __init__(
        self,
        limit: int = 100,
        window: int = 21600,
        *,
        clock: Callable[[], float] | None = None,
        source: str = "127.0.0.1",
        retry_after: bool = True,
    ) -> None:
        if limit < 0 or window < 1:
            raise ValueError("limit must be >= 0 and window >= 1 second")
        self.limit = limit
        self.window = window
        self.clock: Callable[[], float] = clock if clock is not None else ManualClock()
        self.source = source
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._windows: list[WindowStats] = [WindowStats(0, self.clock())]
        self._remaining = limit
        #: set it: the next manifest GET finds the window spent by someone pulling by hand from the same address
        #: (between a client's HEAD and its GET), so it meets the 429
        self.spend_at_next_pull = False

    # ------------------------------------------------------------------ state

    @property
    def remaining(self) -> int:
        with self._lock:
            self._roll()
            return self._remaining

    @property
    def windows(self) -> list[WindowStats]:
        """Every window so far, oldest first (copies)."""
        with self._lock:
            self._roll()
            return [WindowStats(**vars(w)) for w in self._windows]

    @property
    def current(self) -> WindowStats:
        return self.windows[-1]

    @property
    def spent(self) -> int:
        """Pulls spent over all windows."""
        return sum(w.pulls for w in self.windows)

    @property
    def rejected(self) -> int:
        """429s answered over all windows."""
        return sum(w.rejected for w in self.windows)

    def refill(self) -> WindowStats:
        """Start a new window now: ``limit`` pulls again. Returns the new window's stats."""
        with self._lock:
            self._start_window(self.clock())
            return WindowStats(**vars(self._windows[-1]))

    def seconds_to_refill(self) -> int:
        """Whole seconds until the current window ends (what ``Retry-After`` says)."""
        with self._lock:
            self._roll()
            return self._seconds_left()

    def header_values(self, remaining: int | None = None) -> list[tuple[str, str]]:
        """The three headers Docker Hub sends, for ``remaining`` (default: now)."""
        left = self.remaining if remaining is None else remaining
        return [
            ("ratelimit-limit", f"{self.limit};w={self.window}"),
            ("ratelimit-remaining", f"{left};w={self.window}"),
            ("docker-ratelimit-source", self.source),
        ]

    # ------------------------------------------------------------------ extension hooks

    def on_request(self, proxy: RegistryProxy, record: RequestRecord) -> Reply | None:
        if not record.path.startswith("/v2/"):
            return None
        is_manifest = _MANIFEST_PATH.match(record.path) is not None
        with self._lock:
            self._roll()
            stats = self._windows[-1]
            if is_manifest and record.method == "GET":
                if self.spend_at_next_pull:
                    self.spend_at_next_pull = False
                    stats.by_hand += self._remaining
                    self._remaining = 0
                if self._remaining <= 0:
                    stats.rejected += 1
                    record.notes["ratelimit-remaining"] = 0
                    headers = [("Content-Type", "application/json")]
                    if self.retry_after:
                        headers.append(("Retry-After", str(self._seconds_left())))
                    return Reply(429, headers, oci_error_body(429, DOCKER_HUB_LIMIT_MESSAGE, "TOOMANYREQUESTS"))
                self._remaining -= 1
                stats.pulls += 1
            elif is_manifest and record.method == "HEAD":
                stats.heads += 1
            else:
                stats.other += 1
            record.notes["ratelimit-remaining"] = self._remaining
        return None

    def on_response(
        self, proxy: RegistryProxy, record: RequestRecord, status: int, headers: list[tuple[str, str]]
    ) -> None:
        if "ratelimit-remaining" in record.notes:
            headers.extend(self.header_values(record.notes["ratelimit-remaining"]))

    # ------------------------------------------------------------------ internals (hold the lock)

    def _roll(self) -> None:
        """Start the next window if the clock passed the end of the current one."""
        now = self.clock()
        current = self._windows[-1]
        if now >= current.started_at + self.window:
            elapsed = math.floor((now - current.started_at) / self.window)
            self._start_window(current.started_at + elapsed * self.window)

    def _start_window(self, started_at: float) -> None:
        self._windows.append(WindowStats(len(self._windows), started_at))
        self._remaining = self.limit

    def _seconds_left(self) -> int:
        return max(1, math.ceil(self._windows[-1].started_at + self.window - self.clock()))
