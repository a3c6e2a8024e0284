"""The one place ``registry/`` touches httpx for sending and reading, and where its errors become ours.

:func:`transport_errors` translates httpx's exceptions into the package's
(:class:`~ecr_mirror.errors.TransportError`, temporary; :class:`~ecr_mirror.errors.UnsafeRedirectError`
for a redirect to a URL httpx cannot parse), as httpx's own ``map_httpcore_exceptions`` does for
httpcore. It wraps every send and every body read (:class:`Transport`), so no httpx exception
leaves ``registry/``, and a blob body is handed out as plain ``bytes`` chunks.

:func:`error_for_response` turns an HTTP error answer into the matching
:class:`~ecr_mirror.errors.RegistryError`, with the OCI error codes of its body
(distribution-spec, "Error Codes"), ``temporary`` for :data:`~.retry.RETRY_STATUSES`, and the
``Retry-After`` hint.

Every response passes the :attr:`Transport.observers` (``(host, method, status, headers)``) once
its headers are in: the per-host rate-limit record (:class:`RateLimits`) is the first of them.
The pull budget (:class:`ecr_mirror.budget.PullBudget`) is told of every response through
:attr:`Transport.announce` (it also needs the time the request left), and :attr:`Transport.pace`
holds a request back while its host's request-rate cap says so.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import (
    AuthError,
    ManifestError,
    NotFoundError,
    PullLimitReached,
    RegistryError,
    TagImmutableError,
    TransportError,
    UnsafeRedirectError,
)
from .interrupt import Interrupter
from .retry import RETRY_STATUSES, parse_retry_after

#: ``observer(host, method, status, headers)``, called for every response once its headers are in
Observer = Callable[[str, str, int, Mapping[str, str]], None]
#: ``announce(host, headers, started)``: every response's headers and when (Unix seconds) its request left
Announce = Callable[[str, Mapping[str, str], float], None]
#: ``pace(host)``: called before each request; blocks while ``host``'s request-rate cap holds it back
Pace = Callable[[str], None]

_NOT_FOUND_CODES = {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NOT_FOUND"}


def netloc(url: httpx.URL) -> str:
    """``host[:port]`` of ``url`` as the registry is addressed (the key of per-host state)."""
    return url.netloc.decode("ascii")


def _describe(exc: BaseException) -> str:
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return type(exc).__name__ + (f" ({detail})" if detail else "")


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it was raised from, outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


@contextlib.contextmanager
def transport_errors(what: str) -> Iterator[None]:
    """Translate httpx's exceptions raised inside into the package's, naming ``what`` was being done.

    httpx builds the request for a redirect's ``Location`` even when not following it, so a
    malformed ``Location`` surfaces here as :class:`UnsafeRedirectError`; every other transport
    failure (connect, read, write, timeouts, a body cut short) as :class:`TransportError`, temporary
    except for a server certificate that does not verify.
    """
    try:
        yield
    except httpx.InvalidURL as exc:
        raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from exc
    except httpx.RemoteProtocolError as exc:
        if "location header" in str(exc).lower():
            raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from exc
        raise TransportError(f"{what}: {_describe(exc)}") from exc
    except httpx.TransportError as exc:
        # a certificate that does not verify will not verify on the next try either
        untrusted = any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc))
        raise TransportError(f"{what}: {_describe(exc)}", temporary=not untrusted) from exc


# ---------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class RateLimit:
    """A registry's pull allowance as its last response stated it (Docker Hub's ``ratelimit-*`` headers).

    ``remaining``: pulls left; ``limit``: pulls per window (``None`` if not sent); ``window``: the
    window in seconds from ``;w=`` (``None`` if not sent). Source: docker/docs
    ``content/manuals/docker-hub/usage/pulls.md`` (``ratelimit-limit: 100;w=21600``).
    """

    remaining: int
    limit: int | None = None
    window: float | None = None


#: the longest ``w=`` window believed (Docker Hub's is 6 hours); a longer, zero, negative or non-finite one is
#: read as absent, like any other value that makes no sense (a header is data from a registry)
MAX_RATELIMIT_WINDOW = 7 * 24 * 3600
_COUNT_RE = re.compile(r"[0-9]{1,9}")  # a count of pulls: a plain non-negative integer, not "1_000" or "+5"


def _count_and_window(value: str | None) -> tuple[int | None, float | None]:
    """``(count, window seconds)`` of a ``ratelimit-*`` value such as ``100;w=21600``; None for what is absent
    or unreadable (a count that is not 0 to 999,999,999; a window outside (0, :data:`MAX_RATELIMIT_WINDOW`])."""
    if not value:
        return None, None
    count_text, *params = value.split(";")
    count = int(count_text.strip()) if _COUNT_RE.fullmatch(count_text.strip()) else None
    window = None
    for param in params:
        key, _, raw = param.strip().partition("=")
        if key.strip().lower() == "w":
            try:
                window = float(raw.strip())
            except ValueError:
                window = None
            if window is not None and not 0 < window <= MAX_RATELIMIT_WINDOW:  # (False for nan too)
                window = None
    return count, window


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimit | None:
    """The :class:`RateLimit` of a response's headers, or ``None`` without a readable ``ratelimit-remaining``."""
    remaining, window = _count_and_window(headers.get("ratelimit-remaining"))
    if remaining is None:
        return None
    limit, limit_window = _count_and_window(headers.get("ratelimit-limit"))
    return RateLimit(remaining=remaining, limit=limit, window=window if window is not None else limit_window)


class RateLimits:
    """The latest :class:`RateLimit` seen per registry host; an :data:`Observer`. Thread-safe."""

    def __init__(self) -> None:
        self._by_host: dict[str, RateLimit] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str, method: str, status: int, headers: Mapping[str, str]) -> None:
        seen = parse_ratelimit(headers)
        if seen is not None:
            with self._lock:
                self._by_host[host] = seen

    def get(self, host: str) -> RateLimit | None:
        """What ``host`` (``host[:port]`` as requested) last said, or ``None``."""
        with self._lock:
            return self._by_host.get(host)

    def snapshot(self) -> dict[str, RateLimit]:
        """Every host's latest :class:`RateLimit`."""
        with self._lock:
            return dict(self._by_host)


# ---------------------------------------------------------------- sending and reading


class Transport:
    """Sends requests over an httpx client and reads their bodies; counts, observes, translates errors.

    ``requests`` counts requests per ``(host, method)``. Responses are streamed: the caller reads
    them with :meth:`read` or :meth:`chunks` (both close the response) or closes them.
    """

    def __init__(self, http: httpx.Client, *, observers: tuple[Observer, ...] = (), interrupter: Interrupter | None = None) -> None:
        self.http = http
        self.observers: list[Observer] = list(observers)
        self.requests: Counter[tuple[str, str]] = Counter()
        self.interrupter = interrupter or Interrupter()
        self._lock = threading.Lock()
        #: told of every response with the time its request left (the pull budget); None: nobody
        self.announce: Announce | None = None
        #: called before every request (per-host request-rate caps); None: no cap
        self.pace: Pace | None = None

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """:func:`transport_errors`; once interrupted, any failure is :class:`~ecr_mirror.errors.Interrupted`."""
        try:
            with transport_errors(what):
                yield
        except TransportError:
            self.interrupter.check(what)
            raise

    def send(
        self, method: str, url: httpx.URL, *, headers: Mapping[str, str], what: str, content: Any = None
    ) -> httpx.Response:
        """One request, no redirects followed; the response streamed. Raises :class:`TransportError`
        (or :class:`UnsafeRedirectError`, see :func:`transport_errors`)."""
        self.interrupter.check(what)
        host = netloc(url)
        if self.pace is not None:
            self.pace(host)
        with self._lock:
            self.requests[(host, method)] += 1
        started = time.time()
        with self._errors(what):
            resp = self.http.send(self.http.build_request(method, url, headers=dict(headers), content=content), stream=True)
        for observe in self.observers:
            observe(host, method, resp.status_code, resp.headers)
        if self.announce is not None:
            self.announce(host, resp.headers, started)
        return resp

    def read(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """The whole body, refusing more than ``limit`` bytes whatever ``Content-Length`` says.

        Raises :class:`ManifestError` when the body is larger, :class:`TransportError` when it is cut short.
        Afterwards ``resp.content``/``resp.json()`` work as on a read response.
        """
        if resp.is_closed and hasattr(resp, "_content"):
            return resp.content
        pieces, total = [], 0
        try:
            with self._errors(what):
                for piece in resp.iter_raw():
                    total += len(piece)
                    if total > limit:
                        raise ManifestError(f"{what}: response larger than {limit} bytes, refused")
                    pieces.append(piece)
        finally:
            resp.close()
        body = b"".join(pieces)
        resp._content = body  # noqa: SLF001 - make .content/.json() work on the drained stream
        return body

    def chunks(self, resp: httpx.Response, what: str) -> Iterator[bytes]:
        """The body as the socket delivers it, in ``bytes`` pieces; closes the response at the end.
        Raises :class:`TransportError` while iterating when the body is cut short or stalls."""
        try:
            if hasattr(resp, "_content"):  # read already (an in-memory answer)
                yield resp.content
                return
            with self._errors(what):
                for piece in resp.iter_raw():
                    self.interrupter.check(what)
                    yield piece
        finally:
            resp.close()


# ---------------------------------------------------------------- error answers


def oci_errors(resp: httpx.Response) -> tuple[list[str], str]:
    """Error codes and a short message from an OCI error body (already read):
    ``{"errors": [{"code": …, "message": …}]}`` (distribution-spec, "Error Codes"), else short plain text."""
    try:
        doc = json.loads(resp.content[:65536]) if resp.content else None
    except (ValueError, RecursionError, httpx.ResponseNotRead):  # a hostile body may nest deeper than Python recurses
        doc = None
    codes, messages = [], []
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        for e in doc["errors"][:5]:
            if isinstance(e, dict):
                codes.append(str(e.get("code", "")))
                msg = str(e.get("message", ""))[:300]
                if msg:
                    messages.append(msg)
    if not messages:
        try:
            text = resp.text.strip()
        except (httpx.ResponseNotRead, UnicodeDecodeError):
            text = ""
        if text and len(text) < 300 and "<" not in text:
            messages.append(text)
    return codes, "; ".join(messages)


#: the shortest wait after a 429 that spent the pulls: a ``Retry-After`` of 0 or a date in the past would
#: otherwise have the row sent back into the same 429 every second
MIN_DEFERRAL_SECONDS = 60.0


def pull_limit_reached(resp: httpx.Response, text: str, **kwargs: Any) -> PullLimitReached:
    """The :class:`PullLimitReached` of a 429 answer: ``retry_at`` from ``Retry-After`` (RFC 9110 10.2.3)
    when sent, else from the ``w=`` window of ``ratelimit-*`` (Docker Hub's rolling window: the
    conservative guess), else unknown."""
    hint = parse_retry_after(resp.headers.get("retry-after"))
    seen = parse_ratelimit(resp.headers)
    if hint is None and seen is not None and seen.window:
        hint = seen.window
    if hint is not None:  # a wait that makes sense: not a loop on the 429 (0, a past date), not centuries
        hint = min(max(hint, MIN_DEFERRAL_SECONDS), MAX_RATELIMIT_WINDOW)
    retry_at = time.time() + hint if hint is not None else None
    kwargs.setdefault("status", resp.status_code)
    kwargs.setdefault("url", str(resp.url.copy_with(query=None)))
    return PullLimitReached(text, host=netloc(resp.url), retry_at=retry_at, remaining=seen.remaining if seen else None,
                            retry_after=hint, **kwargs)


def error_for_response(resp: httpx.Response, what: str) -> RegistryError:
    """The :class:`RegistryError` an error answer means (its body read first, up to a limit).

    404 or a ``*_UNKNOWN`` code: :class:`NotFoundError`; ``TAG_INVALID`` about immutability (ECR's
    registry API) or ``ImageTagAlreadyExistsException``: :class:`TagImmutableError`; 401/403:
    :class:`AuthError`; a 429 with ``ratelimit-*`` headers: :class:`PullLimitReached` (never retried);
    else :class:`RegistryError`, temporary for :data:`~.retry.RETRY_STATUSES`.
    """
    codes, message = oci_errors(resp)
    status = resp.status_code
    text = f"{what}: HTTP {status}" + (f" {','.join(c for c in codes if c)}" if any(codes) else "") + (f": {message}" if message else "")
    kwargs: dict[str, Any] = dict(status=status, codes=codes, url=str(resp.url.copy_with(query=None)))
    if status == 404 or _NOT_FOUND_CODES & set(codes):
        return NotFoundError(text, **kwargs)
    if "TAG_INVALID" in codes and "immutable" in message.lower() or "ImageTagAlreadyExistsException" in message:
        return TagImmutableError(text, temporary=False, **kwargs)
    if status in (401, 403):
        return AuthError(text, temporary=False, **kwargs)
    if status == 429 and parse_ratelimit(resp.headers) is not None:
        # a pull limit (Docker Hub's headers): retrying spends nothing but the next window (issue 15)
        return pull_limit_reached(resp, text, **kwargs)
    temporary = status in RETRY_STATUSES
    hint = parse_retry_after(resp.headers.get("retry-after")) if temporary else None
    return RegistryError(text, temporary=temporary, retry_after=hint, **kwargs)
