"""A threaded, streaming HTTP reverse proxy to put in front of a test registry.

    with RegistryProcess() as reg, RegistryProxy(reg) as proxy:
        proxy.add_fault(method="GET", path=r"/blobs/sha256:", action="status", status=503, times=2)
        ...point the code under test at proxy.url...
        assert proxy.count("GET", "/blobs/") == 3

What it does:

- Passes requests through faithfully: method, path and query, headers (``Host`` rewritten),
  request bodies streamed (``Content-Length`` or chunked), response status, headers and body
  streamed in 64 KiB pieces. ``Location`` headers that point at the upstream are rewritten to
  point at the proxy, so blob uploads keep going through it.
- Records every request (:attr:`RegistryProxy.records`, :meth:`count`, :meth:`reset`).
- Optionally fronts the registry with bearer-token auth (``bearer=True``, optionally with
  ``credentials=(user, password)``): a ``401`` challenge pointing at its own ``/token``
  endpoint, short-lived opaque tokens scoped per repository, and a record of what was asked.
- Injects faults (:meth:`add_fault`); see :data:`ACTIONS`.
- Takes extensions (``extensions=[...]`` or :meth:`add_extension`): objects that may answer a request
  themselves (``on_request``) and edit the headers of every answer (``on_response``); see
  :class:`ProxyExtension`. The pull limiter (:mod:`tests.support.ratelimit`) and tag-list paging
  (:class:`tests.support.quirks.TagPager`) are extensions.

It binds 127.0.0.1 port 0 itself, so there is no port race.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .process import LOOPBACK

__all__ = ["ACTIONS", "Fault", "RegistryProxy", "RequestRecord", "TokenGrant", "TokenRequest"]
__all__ += ["ProxyExtension", "Reply"]

CHUNK = 64 * 1024

#: fault actions, see :meth:`RegistryProxy.add_fault`
ACTIONS = frozenset(
    {
        "status",  # answer `status` (+ headers, OCI JSON error body) without asking upstream
        "redirect",  # answer `status` (302) with Location: `location`
        "reset",  # reset the connection (RST) before any response
        "reset_mid_body",  # send status, headers and `after_bytes` of the body, then RST
        "truncate",  # send headers (full Content-Length) and `after_bytes` of the body, then close cleanly
        "stall",  # send status, headers and `after_bytes` of the body, then sleep `delay` and close
        "hang",  # send nothing at all for `delay` seconds, then close
        "corrupt",  # pass through, but flip the byte at `offset` (default: the middle) of the body
        "delay",  # sleep `delay` seconds, then pass through
        "expire_tokens",  # expire every issued bearer token, then handle the request as usual
        "drop_headers",  # pass through, minus the response headers named in `drop` (no Content-Length: chunked)
    }
)
# actions that answer by themselves unless forward=True
_LOCAL_ACTIONS = frozenset({"status", "redirect", "reset", "hang"})

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
    }
)

_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NAME_UNKNOWN",
    405: "UNSUPPORTED",
    429: "TOOMANYREQUESTS",
    500: "UNKNOWN",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}

_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)/")


def oci_error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """An OCI distribution error body: ``{"errors": [{"code", "message", "detail"}]}``."""
    code = code or _ERROR_CODES.get(status, "UNKNOWN")
    message = message or http.client.responses.get(status, "error").lower()
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def repository_of(path: str) -> str | None:
    """Repository name of a ``/v2/<name>/...`` path, or None (``/v2/``, ``/v2/_catalog``)."""
    match = _REPO_PATH.match(path)
    return match.group("name") if match else None


# ---------------------------------------------------------------------- records


@dataclass
class RequestRecord:
    method: str
    target: str  # path and query, as sent by the client
    authorization: str | None
    status: int | None = None  # status sent to the client (None: connection reset/hung/failed)
    fault: str | None = None  # action of the fault that fired on this request, if any
    notes: dict[str, Any] = field(default_factory=dict)  # what extensions noted about this request

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass
class Fault:
    """One fault rule. Fires on requests matching ``method`` (None: any) and ``path``
    (``re.search`` on path+query), at most ``times`` times (None: forever)."""

    action: str
    method: str | None = None
    path: str = ""
    times: int | None = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # default for status actions: an OCI JSON error body
    after_bytes: int | None = None  # partial-body actions; default: half the body
    delay: float = 30.0  # stall/hang/delay seconds
    location: str | Callable[[str, str], str] | None = None  # redirect target, or f(method, target)
    offset: int | None = None  # corrupt: byte offset to flip; default: the middle
    forward: bool = False  # local actions: still send the request upstream first (side effects happen)
    drop: tuple[str, ...] = ()  # drop_headers: response header names to remove (case-insensitive)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; choose from {sorted(ACTIONS)}")
        if self.action == "redirect":
            if self.location is None:
                raise ValueError("a redirect fault needs location=")
            if self.status == 503:
                self.status = 302
        if self.action == "drop_headers" and not self.drop:
            raise ValueError("a drop_headers fault needs drop=[header names]")
        self._pattern = re.compile(self.path)

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self._pattern.search(target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass
class TokenGrant:
    token: str
    username: str | None
    scopes: dict[str, frozenset[str]]  # repository -> actions
    issued_at: float  # time.time()
    expires_at: float  # time.monotonic()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


@dataclass
class TokenRequest:
    service: str | None
    scopes: list[str]
    username: str | None  # from Basic credentials, whether or not they were accepted
    granted: bool


@dataclass
class Reply:
    """An answer an extension gives instead of asking upstream."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class ProxyExtension(Protocol):
    """What :class:`RegistryProxy` calls on an extension (both methods optional; run in handler threads).

    ``on_request(proxy, record)`` runs after faults and bearer auth, before the request goes upstream;
    returning a :class:`Reply` answers it locally (the request body is drained first; the first extension
    that answers wins). ``on_response(proxy, record, status, headers)`` runs on every answer, relayed
    from upstream or made by the proxy (extensions, faults, auth, handler subclasses), before the
    headers are sent; it may edit the ``headers`` list in place. ``record.notes`` carries what
    ``on_request`` noted to ``on_response``.
    """

    def on_request(self, proxy: RegistryProxy, record: RequestRecord) -> Reply | None: ...

    def on_response(
        self, proxy: RegistryProxy, record: RequestRecord, status: int, headers: list[tuple[str, str]]
    ) -> None: ...


# ---------------------------------------------------------------------- the proxy


class RegistryProxy:
    """Reverse proxy on 127.0.0.1:<free port> in front of ``upstream`` (a URL or anything with ``.url``).

    Subclasses may set :attr:`handler_class` to a subclass of the request handler that overrides
    ``_serve(record, fault)`` (called after faults and bearer auth; the default forwards upstream),
    as the ECR stand-in does (:mod:`tests.support.ecr`).
    """

    #: request handler class; None means the plain pass-through handler
    handler_class: type | None = None

    def __init__(
        self,
        upstream: object,
        *,
        bearer: bool = False,
        credentials: tuple[str, str] | None = None,
        token_ttl: float = 300.0,
        report_expires_in: bool = True,
        service: str = "test-registry",
        check_scope: bool = True,
        upstream_timeout: float = 120.0,
        extensions: Iterable[ProxyExtension] = (),
    ) -> None:
        url = upstream if isinstance(upstream, str) else upstream.url  # type: ignore[attr-defined]
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {url!r}")
        self.upstream_url = f"http://{parts.netloc}"
        self.upstream_netloc = parts.netloc
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.bearer = bearer or credentials is not None
        self.credentials = credentials
        self.token_ttl = token_ttl
        self.report_expires_in = report_expires_in
        self.service = service
        self.check_scope = check_scope
        self.upstream_timeout = upstream_timeout
        self.extensions: list[ProxyExtension] = list(extensions)

        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._tokens: dict[str, TokenGrant] = {}
        self._token_requests: list[TokenRequest] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The listening port (still known after stop(), so a test can check it is closed)."""
        if self._port is None:
            raise RuntimeError("proxy is not started")
        return self._port

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RegistryProxy:
        if self._server is not None:
            raise RuntimeError("proxy already started")
        self._stopping.clear()
        self._server = _Server((LOOPBACK, 0), self.handler_class or _Handler, self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake stalled handlers, and cut open client connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RegistryProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"<RegistryProxy {where} -> {self.upstream_url}{' bearer' if self.bearer else ''}>"

    # ------------------------------------------------------------------ records

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path-with-query)`` of every request so far, in arrival order."""
        return [(r.method, r.target) for r in self.records]

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        path_regex: str | None = None,
        status: int | None = None,
    ) -> int:
        pattern = re.compile(path_regex) if path_regex else None
        return sum(
            1
            for r in self.records
            if (method is None or r.method == method.upper())
            and (path_contains is None or path_contains in r.target)
            and (pattern is None or pattern.search(r.target))
            and (status is None or r.status == status)
        )

    def reset(self) -> None:
        """Forget recorded requests, token requests and handler errors (faults and tokens stay)."""
        with self._lock:
            self._records.clear()
            self._token_requests.clear()
            self._errors.clear()

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised inside the proxy (not client disconnects)."""
        with self._lock:
            return list(self._errors)

    def authorizations(self, path_contains: str | None = None) -> list[str | None]:
        """``Authorization`` header values seen on requests (None where there was none)."""
        return [r.authorization for r in self.records if path_contains is None or path_contains in r.target]

    # ------------------------------------------------------------------ faults

    def add_fault(
        self,
        method: str | None = None,
        path: str = "",
        action: str = "status",
        *,
        times: int | None = 1,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
        after_bytes: int | None = None,
        delay: float = 30.0,
        location: str | Callable[[str, str], str] | None = None,
        offset: int | None = None,
        forward: bool = False,
        drop: Iterable[str] = (),
    ) -> Fault:
        """Add a fault rule; the first matching rule that has not fired ``times`` times wins.

        ``path`` is a regex searched in the request's path+query. Actions are in :data:`ACTIONS`.
        ``forward=True`` makes ``status``/``redirect``/``reset``/``hang`` send the request upstream
        first (e.g. the manifest PUT succeeds, but the client sees a 500 or a reset).
        ``drop_headers`` passes through and removes the headers named in ``drop`` from the answer (e.g.
        ``Content-Length`` on a HEAD, ``Link`` on a tag list, ``Location`` on a PUT, ``OCI-Subject``).
        Returns the rule; its ``fired`` attribute counts how often it fired.
        """
        fault = Fault(
            action=action,
            method=method.upper() if method else None,
            path=path,
            times=times,
            status=status if status is not None else (302 if action == "redirect" else 503),
            headers=dict(headers or {}),
            body=body.encode() if isinstance(body, str) else body,
            after_bytes=after_bytes,
            delay=delay,
            location=location,
            offset=offset,
            forward=forward,
            drop=tuple(drop),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def _take_fault(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, target):
                    fault.fired += 1
                    return fault
        return None

    # ------------------------------------------------------------------ tokens

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    @property
    def tokens(self) -> list[TokenGrant]:
        """Every token issued so far, oldest first."""
        with self._lock:
            return list(self._tokens.values())

    def expire_tokens(self) -> None:
        """Make every issued token invalid now (the client must fetch a new one)."""
        with self._lock:
            for grant in self._tokens.values():
                grant.expires_at = 0.0

    def issue_token(self, scopes: list[str], username: str | None = None) -> TokenGrant:
        granted: dict[str, set[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                granted.setdefault(name, set()).update(a for a in actions.split(",") if a)
        grant = TokenGrant(
            token=secrets.token_urlsafe(24),
            username=username,
            scopes={name: frozenset(actions) for name, actions in granted.items()},
            issued_at=time.time(),
            expires_at=time.monotonic() + self.token_ttl,
        )
        with self._lock:
            self._tokens[grant.token] = grant
        return grant

    def _token_valid(self, authorization: str | None, method: str, path: str) -> bool:
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        with self._lock:
            grant = self._tokens.get(authorization[7:].strip())
        if grant is None or grant.expired:
            return False
        name = repository_of(path)
        if name is None or not self.check_scope:
            return True
        return _needed_actions(method) <= grant.scopes.get(name, frozenset())

    def challenge(self, path: str, method: str) -> str:
        header = f'Bearer realm="{self.realm}",service="{self.service}"'
        name = repository_of(path)
        if name is not None:
            header += f',scope="repository:{name}:{",".join(sorted(_needed_actions(method)))}"'
        return header

    def _check_basic(self, authorization: str | None) -> tuple[str | None, bool]:
        """(username presented, accepted) for the token endpoint."""
        username = password = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                username, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                username = None
        if self.credentials is None:
            return username, True
        return username, (username, password) == tuple(self.credentials)

    # ------------------------------------------------------------------ extensions

    def add_extension(self, extension: ProxyExtension) -> ProxyExtension:
        """Add an extension (see :class:`ProxyExtension`); returns it."""
        with self._lock:
            self.extensions.append(extension)
        return extension

    def fetch_upstream(
        self, method: str, target: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request straight to the upstream (not recorded, no faults): ``(status, headers, body)``.

        Header names in the result are lower case. For extensions that need what upstream holds.
        """
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
        try:
            conn.request(method, target, headers={k: v for k, v in (headers or {}).items() if v is not None})
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def _extension_reply(self, record: RequestRecord) -> Reply | None:
        for extension in list(self.extensions):
            on_request = getattr(extension, "on_request", None)
            reply = on_request(self, record) if on_request is not None else None
            if reply is not None:
                return reply
        return None

    def _extension_headers(self, record: RequestRecord, status: int, headers: list[tuple[str, str]]) -> None:
        for extension in list(self.extensions):
            on_response = getattr(extension, "on_response", None)
            if on_response is not None:
                on_response(self, record, status, headers)

    # ------------------------------------------------------------------ internals used by the handler

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _rewrite_location(self, value: str) -> str:
        if value.startswith(self.upstream_url):
            return self.url + value[len(self.upstream_url) :]
        return value


def _needed_actions(method: str) -> frozenset[str]:
    return frozenset({"pull"}) if method in ("GET", "HEAD") else frozenset({"pull", "push"})


# ---------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, proxy: RegistryProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            self.proxy._note_error(exc)


class _Abort(Exception):
    """Stop handling this request; the connection has been dealt with."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _drop_headers: frozenset[str] = frozenset()  # response headers a drop_headers fault removes (lower case)

    # quiet: no access log on stderr
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.proxy._lock:
            self.server.proxy._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.proxy._lock:
            self.server.proxy._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, http.client.HTTPException, _Abort):  # client gone, or a fault cut the connection
            self.close_connection = True
        except Exception as exc:  # a bug in the proxy: record it (RegistryProxy.errors) and drop the connection
            self.server.proxy._note_error(exc)
            self.close_connection = True

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        proxy = self.server.proxy
        method, target = self.command, self.path
        record = RequestRecord(method, target, self.headers.get("Authorization"))
        proxy._record(record)
        path = urlsplit(target).path

        fault = proxy._take_fault(method, target)
        self._drop_headers = frozenset()
        if fault is not None:
            record.fault = fault.action
            if fault.action == "drop_headers":  # applies to whatever answers: upstream, an extension, a subclass
                self._drop_headers = frozenset(name.lower() for name in fault.drop)
            if fault.action == "delay":
                self._sleep(fault.delay)
                fault = None
            elif fault.action == "expire_tokens":
                proxy.expire_tokens()
                fault = None
            elif fault.action in _LOCAL_ACTIONS and not fault.forward:
                self._local_fault(fault, record)
                return

        if proxy.bearer and path == "/token":
            self._drain_body()
            self._serve_token(record)
            return
        if proxy.bearer and path.startswith("/v2") and not proxy._token_valid(record.authorization, method, path):
            self._drain_body()
            body = oci_error_body(401, "authentication required")
            self._respond(
                record,
                401,
                [("WWW-Authenticate", proxy.challenge(path, method)), ("Content-Type", "application/json")],
                body,
            )
            return
        if proxy.extensions:
            reply = proxy._extension_reply(record)
            if reply is not None:
                self._drain_body()
                self._respond(record, reply.status, list(reply.headers), reply.body)
                return
        self._serve(record, fault)

    def _serve(self, record: RequestRecord, fault: Fault | None) -> None:
        """Answer a request that passed faults, auth and extensions; subclasses add behaviour here."""
        self._forward(record, fault)

    def _local_fault(self, fault: Fault, record: RequestRecord, *, drain: bool = True) -> None:
        if fault.action == "reset":
            self._reset()
        if fault.action == "hang":
            self._sleep(fault.delay)
            self._close()
        if drain:  # read the request body first, so the connection stays usable
            self._drain_body()
        headers = dict(fault.headers)
        if fault.action == "redirect":
            location = fault.location
            if callable(location):
                location = location(record.method, record.target)
            headers["Location"] = str(location)
            body = fault.body or b""
        else:
            body = fault.body if fault.body is not None else oci_error_body(fault.status)
            headers.setdefault("Content-Type", "application/json")
        self._respond(record, fault.status, list(headers.items()), body)

    # every method goes through _dispatch
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    # ------------------------------------------------------------------ token endpoint

    def _serve_token(self, record: RequestRecord) -> None:
        proxy = self.server.proxy
        if record.method not in ("GET", "HEAD"):
            self._respond(record, 405, [("Content-Type", "application/json")], oci_error_body(405))
            return
        query = parse_qs(urlsplit(record.target).query)
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        service = query.get("service", [None])[0]
        username, accepted = proxy._check_basic(record.authorization)
        with proxy._lock:
            proxy._token_requests.append(TokenRequest(service, scopes, username, accepted))
        if not accepted:
            body = json.dumps({"details": "incorrect username or password"}).encode()
            headers = [("WWW-Authenticate", 'Basic realm="test-token-service"'), ("Content-Type", "application/json")]
            self._respond(record, 401, headers, body)
            return
        grant = proxy.issue_token(scopes, username)
        payload: dict[str, object] = {"token": grant.token, "access_token": grant.token}
        if proxy.report_expires_in:
            payload["expires_in"] = max(1, math.ceil(proxy.token_ttl))
        payload["issued_at"] = datetime.fromtimestamp(grant.issued_at, UTC).isoformat().replace("+00:00", "Z")
        self._respond(record, 200, [("Content-Type", "application/json")], json.dumps(payload).encode())

    # ------------------------------------------------------------------ pass-through

    def _forward(self, record: RequestRecord, fault: Fault | None, target: str | None = None) -> None:
        """Send the request upstream (to ``target``, default: the client's) and relay the answer."""
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout)
        try:
            try:
                response = self._send_upstream(upstream, record, target)
            except (OSError, http.client.HTTPException) as exc:
                if self._client_gone(exc):
                    raise _Abort from exc
                self.close_connection = True  # the request body may be half read
                self._respond(
                    record, 502, [("Content-Type", "application/json")], oci_error_body(502, f"upstream: {exc}")
                )
                return
            if fault is not None and fault.action in _LOCAL_ACTIONS:  # forward=True: upstream saw it, client won't
                response.read()
                self._local_fault(fault, record, drain=False)
                return
            self._relay_response(record, response, fault)
        finally:
            upstream.close()

    def _client_gone(self, exc: BaseException) -> bool:
        return getattr(exc, "_from_client", False)

    def _send_upstream(
        self, upstream: http.client.HTTPConnection, record: RequestRecord, target: str | None = None
    ) -> http.client.HTTPResponse:
        proxy = self.server.proxy
        upstream.putrequest(record.method, target or record.target, skip_host=True, skip_accept_encoding=True)
        upstream.putheader("Host", proxy.upstream_netloc)
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower == "content-length":
                continue
            if lower == "authorization" and proxy.bearer:
                continue  # our tokens mean nothing upstream
            upstream.putheader(name, value)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for piece in self._body_pieces():
                upstream.send(b"%X\r\n%s\r\n" % (len(piece), piece))
            upstream.send(b"0\r\n\r\n")
        elif length is not None:
            upstream.putheader("Content-Length", length)
            upstream.endheaders()
            for piece in self._body_pieces():
                upstream.send(piece)
        else:
            upstream.endheaders()
        return upstream.getresponse()

    def _relay_response(self, record: RequestRecord, response: http.client.HTTPResponse, fault: Fault | None) -> None:
        proxy = self.server.proxy
        headers = []
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower == "location":
                value = proxy._rewrite_location(value)
            headers.append((name, value))
        headers = self._final_headers(record, response.status, headers)
        no_body = record.method == "HEAD" or response.status in (204, 304) or response.status < 200
        length_header = next((v for n, v in headers if n.lower() == "content-length"), None)
        length = int(length_header) if length_header is not None and not no_body else None
        chunked = not no_body and length is None
        if chunked:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            headers.append(("Transfer-Encoding", "chunked"))

        record.status = response.status
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        action = fault.action if fault is not None else None
        if no_body:
            response.read()
            if action == "reset_mid_body":
                self._reset()
            if action in ("truncate", "stall"):
                if action == "stall":
                    self._sleep(fault.delay)
                self._close()
            return

        cut = None  # stop after this many body bytes
        if action in ("reset_mid_body", "truncate", "stall"):
            default = 0 if action == "stall" else (length // 2 if length else CHUNK)
            cut = fault.after_bytes if fault.after_bytes is not None else default
        flip = None
        if action == "corrupt":
            flip = fault.offset if fault.offset is not None else (length // 2 if length else 0)

        sent = 0
        while True:
            piece = response.read(CHUNK if cut is None else max(0, min(CHUNK, cut - sent)))
            if not piece:
                break
            if flip is not None and sent <= flip < sent + len(piece):
                i = flip - sent
                piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1 :]
            self._write_body(piece, chunked)
            sent += len(piece)
            if cut is not None and sent >= cut:
                break

        if action == "reset_mid_body":
            self._reset()
        if action == "truncate":
            self._close()
        if action == "stall":
            self._sleep(fault.delay)
            self._close()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # ------------------------------------------------------------------ I/O helpers

    def _write_body(self, piece: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
        else:
            self.wfile.write(piece)

    def _final_headers(
        self, record: RequestRecord, status: int, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Headers of an answer after extensions edited them and a drop_headers fault removed some."""
        headers = list(headers)
        if self.server.proxy.extensions:
            self.server.proxy._extension_headers(record, status, headers)
        if self._drop_headers:
            headers = [(n, v) for n, v in headers if n.lower() not in self._drop_headers]
        return headers

    def _respond(self, record: RequestRecord, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        headers = self._final_headers(record, status, headers)
        record.status = status
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        chunked = "content-length" in self._drop_headers and record.method != "HEAD"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "content-length" not in self._drop_headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if record.method == "HEAD":
            return
        if not chunked:
            self.wfile.write(body)
            return
        if body:
            self._write_body(body, True)
        self.wfile.write(b"0\r\n\r\n")

    def _body_pieces(self) -> Iterator[bytes]:
        """The request body, de-chunked if needed, in pieces of at most 64 KiB."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                while True:
                    line = self.rfile.readline(CHUNK + 1)
                    if not line:
                        raise ConnectionError("client closed during chunked body")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(CHUNK + 1) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return
                    yield from self._read_exactly(size)
                    self.rfile.readline(CHUNK + 1)  # CRLF after the chunk
            else:
                yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))
        except OSError as exc:
            exc._from_client = True  # type: ignore[attr-defined]
            raise

    def _read_exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            piece = self.rfile.read(min(CHUNK, size))
            if not piece:
                raise ConnectionError("client closed during body")
            size -= len(piece)
            yield piece

    def _drain_body(self) -> None:
        for _ in self._body_pieces():
            pass

    def _sleep(self, seconds: float) -> None:
        self.server.proxy._stopping.wait(seconds)

    def _close(self) -> None:
        """Close the connection cleanly (FIN) and stop handling."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Abort

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and stop handling."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # the buffered file objects hold references; close them so close() is real
            self.rfile.close()
            self.wfile.close()
            sock.close()
        except OSError:
            pass
        raise _Abort
