"""An OCI distribution client over httpx.

One :class:`RegistryClient` serves every registry host: it keeps the auth state per host
(challenge, bearer tokens per scope), retries what can be retried, follows redirects safely,
and counts requests per host and method. Build it once, at the edge, and pass it in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from ..errors import (
    AuthError,
    DigestMismatchError,
    ManifestError,
    NotFoundError,
    RegistryError,
    TagImmutableError,
    TransportError,
    UnsafeRedirectError,
)
from ..manifest import ACCEPT, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from ..reference import Reference, host_without_port, is_loopback_host
from .auth import Challenge, CredentialProvider, NoCredentials, TokenCache, parse_challenge, token_from_response
from .retry import RETRY_STATUSES, RetryPolicy

log = logging.getLogger(__name__)

USER_AGENT = "ecr-mirror/0.1 (+https://github.com/ecr-mirror)"
MAX_REDIRECTS = 5
#: a token endpoint's answer is a small JSON object; anything larger is refused while reading
MAX_TOKEN_RESPONSE_BYTES = 1 << 20
_NOT_FOUND_CODES = {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NOT_FOUND"}
_BLOCKED_HOSTNAMES = {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}


def default_http_client(concurrency: int = 8, *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client sized for ``concurrency`` parallel transfers; short keep-alive (Lambda freezes)."""
    limits = httpx.Limits(max_connections=concurrency * 2 + 4, max_keepalive_connections=concurrency * 2 + 4, keepalive_expiry=15.0)
    timeout = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=120.0)
    return httpx.Client(limits=limits, timeout=timeout, follow_redirects=False, transport=transport, headers={"User-Agent": USER_AGENT})


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int | None


def _oci_errors(resp: httpx.Response) -> tuple[list[str], str]:
    """Error codes and a short message from an OCI error body (already read)."""
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


#: instance metadata services reachable on addresses that are not link-local (AWS IMDS and EKS Pod Identity over IPv6)
_BLOCKED_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("fd00:ec2::23")})
#: what the system resolver also takes as an IPv4 address: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
_NUMERIC_HOST_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


def _host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` names literally, in any notation a resolver accepts; ``None`` for a DNS name."""
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST_RE.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            raise UnsafeRedirectError(f"refused a URL with the ambiguous numeric host {host}") from None
    return None


def check_redirect_target(url: httpx.URL, *, origin: httpx.URL, insecure: frozenset[str]) -> None:
    """Refuse redirects to other schemes, to link-local/metadata addresses, or https->http downgrades.

    Checked on the URL alone, before any connection: IP literals in every notation the resolver
    accepts (decimal, hex, octal, short forms, IPv4-mapped IPv6) count as the address they name.
    A DNS name that resolves to such an address is not caught here.
    """
    if url.scheme not in ("http", "https"):
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to a {url.scheme or 'schemeless'}: URL")
    host = url.host or ""
    if not host:
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to a URL without a host")
    name = host.lower().rstrip(".")
    if name in _BLOCKED_HOSTNAMES:
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to metadata host {host}")
    ip = _host_address(host)
    if ip is not None:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip in _BLOCKED_ADDRESSES:
            raise UnsafeRedirectError(f"refused redirect from {origin.host} to address {ip} (link-local/reserved/metadata)")
    if (ip.is_loopback if ip is not None else is_loopback_host(name)) and not is_loopback_host(origin.host or ""):
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to loopback {host}")
    if url.scheme == "http" and origin.scheme == "https":
        hostport = f"{host}:{url.port}" if url.port else host
        if not is_loopback_host(hostport) and hostport.lower() not in insecure and host.lower() not in insecure:
            raise UnsafeRedirectError(f"refused redirect from https://{origin.host} down to plain http://{host}")


#: second-level labels under country TLDs that are public suffixes (co.uk, com.au, co.jp, ...), no domain of anyone's own
_SECOND_LEVEL_SUFFIXES = frozenset({"ac", "co", "com", "edu", "gov", "go", "ne", "net", "or", "org"})


def _realm_may_get_credentials(registry_host: str, realm: httpx.URL) -> bool:
    """Credentials for a registry go only to a realm on that host or under its parent domain.

    ``registry-1.docker.io`` -> ``auth.docker.io`` and ``registry.gitlab.com`` -> ``gitlab.com`` qualify;
    a sibling that merely shares a public suffix (``registry.foo.co.uk`` -> ``evil.co.uk``) does not,
    nor does any host when the registry's parent would be a bare top-level domain (``ghcr.io``).
    """
    reg = host_without_port(registry_host).lower().rstrip(".")
    realm_host = (realm.host or "").lower().rstrip(".")
    if realm_host == reg:
        return True
    if is_loopback_host(reg) and is_loopback_host(realm_host):
        return True
    try:
        ipaddress.ip_address(reg)
        return False  # an IP address has no parent domain
    except ValueError:
        pass
    parent = reg.split(".", 1)[1] if "." in reg else ""
    labels = parent.split(".")
    if len(labels) < 2 or (len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _SECOND_LEVEL_SUFFIXES):
        return False  # a bare TLD, or a public suffix such as co.uk / com.au: no parent to share
    return realm_host == parent or realm_host.endswith("." + parent)


class RegistryClient:
    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        credentials: CredentialProvider | None = None,
        insecure: Iterable[str] = (),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http or default_http_client()
        self.credentials: CredentialProvider = credentials or NoCredentials()
        self.insecure = frozenset(h.lower() for h in insecure)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.ratelimit_remaining: dict[str, int] = {}

    # ------------------------------------------------------------ plumbing

    def scheme(self, host: str) -> str:
        h = host.lower()
        if is_loopback_host(h) or h in self.insecure or host_without_port(h) in self.insecure:
            return "http"
        return "https"

    def url(self, host: str, path: str) -> str:
        return f"{self.scheme(host)}://{host}{path}"

    def request_count(self, host: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(n for (h, m), n in self.requests.items() if (host is None or h == host) and (method is None or m == method))

    def secrets(self) -> list[str]:
        """Every secret this client holds (credentials and tokens), for redaction of output."""
        return [s for s in [*self.credentials.secrets(), *self.tokens.values()] if s]

    def _count(self, url: httpx.URL, method: str) -> None:
        host = url.netloc.decode("ascii")
        with self._lock:
            self.requests[(host, method)] += 1

    def _check_target(self, url: httpx.URL, origin: httpx.URL, what: str) -> None:
        """:func:`check_redirect_target`, its error naming what was being done (so, the image)."""
        try:
            check_redirect_target(url, origin=origin, insecure=self.insecure)
        except UnsafeRedirectError as exc:
            raise UnsafeRedirectError(f"{what}: {exc}") from None

    def _note_ratelimit(self, resp: httpx.Response) -> None:
        value = resp.headers.get("ratelimit-remaining")
        if value:
            try:
                n = int(value.split(";", 1)[0].strip())
            except ValueError:
                return
            with self._lock:
                self.ratelimit_remaining[resp.url.netloc.decode("ascii")] = n

    def _auth_header(self, host: str, scope: str) -> str | None:
        ch = self._challenges.get(host)
        if ch is None:
            return None
        if ch.scheme == "basic":
            cred = self.credentials.credential_for(host)
            return cred.basic_header() if cred else None
        tok = self.tokens.get(host, scope)
        if tok is None:
            return None
        return f"Bearer {tok.value}"

    def _refresh(self, host: str, refused: str) -> bool:
        """Drop ``host``'s cached credentials (if still the ``refused`` ones); True if fresh ones will be fetched (ECR)."""
        invalidate = getattr(self.credentials, "invalidate", None)
        return bool(invalidate(host, refused)) if invalidate is not None else False

    def _authenticate(self, host: str, scope: str, challenge: Challenge | None, what: str) -> None:
        if challenge is None:
            raise AuthError(f"{what}: {host} answered 401 without a usable WWW-Authenticate challenge", status=401, temporary=False)
        if challenge.scheme == "basic":
            if self.credentials.credential_for(host) is None:
                raise AuthError(f"{what}: {host} requires credentials and none are configured for it", status=401, temporary=False)
            self._challenges[host] = challenge
            return
        if challenge.scheme != "bearer":
            raise AuthError(f"{what}: {host} asks for unsupported auth scheme {challenge.scheme!r}", status=401, temporary=False)
        self._challenges[host] = challenge
        self._fetch_token(host, scope, challenge, what)

    def _fetch_token(self, host: str, scope: str, challenge: Challenge, what: str) -> None:
        realm = challenge.realm
        try:
            realm_url = httpx.URL(realm)
        except (httpx.InvalidURL, TypeError):
            raise AuthError(f"{what}: {host} named an invalid token realm", status=401, temporary=False) from None
        realm_host = realm_url.netloc.decode("ascii") if realm_url.host else ""
        if realm_url.scheme not in ("http", "https") or not realm_host:
            raise AuthError(f"{what}: {host} named a token realm that is not an http(s) URL", status=401, temporary=False)
        self._check_target(realm_url, httpx.URL(self.url(host, "/")), f"{what}: token realm")
        if realm_url.scheme == "http" and self.scheme(realm_host) != "http":
            raise AuthError(f"{what}: {host} named a plain-http token realm on {realm_host}; refusing", status=401, temporary=False)
        params = {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        want_scope = scope or challenge.params.get("scope", "")
        headers = {}
        cred = self.credentials.credential_for(host)
        if cred is not None and _realm_may_get_credentials(host, realm_url):
            headers["Authorization"] = cred.basic_header()
        query = urlencode(params)
        if want_scope:
            # several scopes are separate scope= parameters
            query = "&".join(filter(None, [query, *(urlencode({"scope": s}) for s in want_scope.split(" ") if s)]))
        url = realm_url.copy_with(query=query.encode() if query else None)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._count(url, "GET")
                resp = self.http.send(self.http.build_request("GET", url, headers=headers), stream=True)
                self._read_limited(resp, MAX_TOKEN_RESPONSE_BYTES, f"{what}: token endpoint {realm_host}")
            except ManifestError:
                raise AuthError(
                    f"{what}: token endpoint {realm_host} answered more than {MAX_TOKEN_RESPONSE_BYTES} bytes; refused", temporary=False
                ) from None
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt)
                if self.retry.should_retry(attempt, started, delay):
                    self._sleep(delay)
                    continue
                raise AuthError(f"{what}: token endpoint {realm_host} unreachable: {type(exc).__name__}", temporary=True) from None
            if resp.status_code in RETRY_STATUSES:
                delay = self.retry.delay(attempt, resp.headers.get("retry-after"))
                if self.retry.should_retry(attempt, started, delay):
                    self._sleep(delay)
                    continue
            break
        if resp.status_code != 200:
            who = "with" if "Authorization" in headers else "without"
            raise AuthError(
                f"{what}: token endpoint {realm_host} refused {who} credentials (HTTP {resp.status_code})",
                status=resp.status_code,
                temporary=resp.status_code in RETRY_STATUSES,
            )
        try:
            doc = resp.json()
        except (ValueError, RecursionError):
            raise AuthError(f"{what}: token endpoint {realm_host} answered invalid JSON", temporary=False) from None
        value, expires_in = token_from_response(doc)
        self.tokens.put(host, scope, value, expires_in)

    def _exchange(
        self,
        method: str,
        url: httpx.URL,
        *,
        scope: str,
        headers: dict[str, str],
        content: Any,
        replayable: bool,
        what: str,
    ) -> httpx.Response:
        """One request to ``url``'s host with that host's auth; answers a 401 by authenticating once."""
        host = url.netloc.decode("ascii")
        for round_ in range(2):
            h = dict(headers)
            auth = self._auth_header(host, scope)
            if auth:
                h["Authorization"] = auth
            req = self.http.build_request(method, url, headers=h, content=content)
            self._count(url, method)
            try:
                resp = self.http.send(req, stream=True)
            except httpx.InvalidURL:  # httpx builds the redirect request itself, even when not following
                raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from None
            except httpx.RemoteProtocolError as exc:
                if "location header" in str(exc).lower():
                    raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from None
                raise
            self._note_ratelimit(resp)
            if resp.status_code == 403 and round_ == 0 and auth and auth.startswith("Basic ") and self._refresh(host, auth):
                # ECR answers an expired token with 403 DENIED, not 401 (aws/aws-cli#6580): a fresh one, one more try
                resp.close()
                if not replayable:  # a streamed body cannot be sent again: the caller restarts it
                    raise AuthError(f"{what}: {host} refused an expired token (HTTP 403)", status=403, temporary=True)
                continue
            if resp.status_code != 401:
                return resp
            challenge = parse_challenge(resp.headers.get("www-authenticate"))
            resp.close()
            if auth and auth.startswith("Basic ") and hasattr(self.credentials, "invalidate"):
                self.credentials.invalidate(host)  # e.g. an ECR token that expired: fetch a fresh one
            if round_ == 1 or not replayable:
                self.tokens.drop(host, scope)
                # temporary: a streamed body met an expired token (restart it), or a fresh bearer token was
                # refused (tokens expiring or revoked while others were in flight): retrying with a new one helps
                fresh_token_refused = round_ == 1 and challenge is not None and challenge.scheme == "bearer"
                raise AuthError(
                    f"{what}: {host} refused our credentials (HTTP 401)", status=401,
                    temporary=(not replayable and round_ == 0) or fresh_token_refused,
                )
            self.tokens.drop(host, scope)
            self._authenticate(host, scope, challenge, what)
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        content: Any = None,
        replayable: bool = True,
        follow: bool = False,
    ) -> httpx.Response:
        """A request with auth and safe redirect following (streamed response: caller closes)."""
        url = httpx.URL(url)
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._exchange(method, url, scope=scope, headers=headers, content=content, replayable=replayable, what=what)
            if not (follow and resp.is_redirect and method in ("GET", "HEAD")):
                return resp
            location = resp.headers.get("location", "")
            resp.close()
            try:
                nxt = url.join(location)
            except (httpx.InvalidURL, ValueError):
                raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from None
            self._check_target(nxt, url, what)
            url = nxt
        raise UnsafeRedirectError(f"{what}: more than {MAX_REDIRECTS} redirects (a redirect loop?)")

    def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        follow: bool = False,
        ok: Iterable[int] = (200,),
        read: bool = True,
        not_found_ok: bool = False,
    ) -> httpx.Response | None:
        """A replayable request, retried on 429/5xx/transport errors; raises on a non-``ok`` status."""
        ok = tuple(ok)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._send(method, url, scope=scope, what=what, headers=headers, content=content, follow=follow)
                if read or resp.status_code not in ok:
                    self._read_limited(resp, MAX_MANIFEST_BYTES, what)
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt)
                if self.retry.should_retry(attempt, started, delay):
                    log.debug("retrying %s after %s", what, type(exc).__name__)
                    self._sleep(delay)
                    continue
                raise TransportError(f"{what}: {_describe_transport(exc)} after {attempt} attempts") from None
            except AuthError as exc:
                if exc.temporary:
                    delay = self.retry.delay(attempt)
                    if self.retry.should_retry(attempt, started, delay):
                        self._sleep(delay)
                        continue
                raise
            if resp.status_code in RETRY_STATUSES and resp.status_code not in ok:
                delay = self.retry.delay(attempt, resp.headers.get("retry-after"))
                if self.retry.should_retry(attempt, started, delay):
                    log.debug("retrying %s after HTTP %s (wait %.2fs)", what, resp.status_code, delay)
                    self._sleep(delay)
                    continue
            if resp.status_code in ok:
                return resp
            if resp.status_code == 404 and not_found_ok:
                return None
            raise self._error(resp, what)

    def _read_limited(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """Read the body, refusing more than ``limit`` bytes whatever Content-Length says."""
        if resp.is_closed and hasattr(resp, "_content"):
            return resp.content
        chunks, total = [], 0
        try:
            for chunk in resp.iter_raw():
                total += len(chunk)
                if total > limit:
                    raise ManifestError(f"{what}: response larger than {limit} bytes, refused")
                chunks.append(chunk)
        finally:
            resp.close()
        body = b"".join(chunks)
        resp._content = body  # noqa: SLF001 - make .content/.json() work on the drained stream
        return body

    def _error(self, resp: httpx.Response, what: str) -> RegistryError:
        codes, message = _oci_errors(resp)
        status = resp.status_code
        text = f"{what}: HTTP {status}" + (f" {','.join(c for c in codes if c)}" if any(codes) else "") + (f": {message}" if message else "")
        kwargs = dict(status=status, codes=codes, url=str(resp.url.copy_with(query=None)))
        if status == 404 or _NOT_FOUND_CODES & set(codes):
            return NotFoundError(text, **kwargs)
        if "TAG_INVALID" in codes and "immutable" in message.lower() or "ImageTagAlreadyExistsException" in message:
            return TagImmutableError(text, temporary=False, **kwargs)
        if status in (401, 403):
            return AuthError(text, temporary=False, **kwargs)
        return RegistryError(text, **kwargs)

    # ------------------------------------------------------------ scopes

    @staticmethod
    def pull_scope(ref: Reference) -> str:
        return f"repository:{ref.repository}:pull"

    @staticmethod
    def push_scope(ref: Reference, mount_from: str | None = None) -> str:
        scope = f"repository:{ref.repository}:pull,push"
        if mount_from and mount_from != ref.repository:
            scope += f" repository:{mount_from}:pull"
        return scope

    # ------------------------------------------------------------ manifests

    def manifest_head(self, ref: Reference) -> ManifestHead | None:
        """Digest and media type of ``ref`` (tag or digest) with one HEAD; ``None`` if absent."""
        what = f"HEAD manifest {ref}"
        resp = self._request(
            "HEAD", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=self.pull_scope(ref), what=what, headers={"Accept": ACCEPT}, follow=True, not_found_ok=True,
        )
        if resp is None:
            return None
        digest = resp.headers.get("docker-content-digest")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        size = resp.headers.get("content-length")
        if not digest:
            # some registries omit the header on HEAD: fall back to a GET (counted, verified)
            m = self.manifest_get(ref)
            return ManifestHead(m.digest, m.media_type, len(m.raw))
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"{what}: registry reports {digest} for {ref.digest}", expected=ref.digest, actual=digest)
        return ManifestHead(digest, media_type, int(size) if size and size.isdigit() else None)

    def manifest_get(self, ref: Reference, *, expected_digest: str | None = None) -> Manifest:
        """GET a manifest and verify its bytes against the digest asked for and ``Docker-Content-Digest``."""
        what = f"GET manifest {ref}"
        resp = self._request(
            "GET", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=self.pull_scope(ref), what=what, headers={"Accept": ACCEPT}, follow=True,
        )
        assert resp is not None
        raw = resp.content
        expected = expected_digest or ref.digest
        header = resp.headers.get("docker-content-digest")
        try:
            manifest = parse_manifest(raw, resp.headers.get("content-type"), expected_digest=expected)
        except DigestMismatchError as exc:
            raise DigestMismatchError(f"{what}: {exc}", expected=exc.expected, actual=exc.actual) from None
        except ManifestError as exc:
            raise ManifestError(f"{what}: {exc}") from None
        if header and header.startswith("sha256:") and header != manifest.digest:
            raise DigestMismatchError(
                f"{what}: body hashes to {manifest.digest} but Docker-Content-Digest says {header}",
                expected=header, actual=manifest.digest,
            )
        return manifest

    def manifest_put(self, ref: Reference, manifest: Manifest) -> str:
        """PUT the exact bytes under ``ref``'s tag or digest; returns the digest."""
        what = f"PUT manifest {ref}"
        resp = self._request(
            "PUT", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=self.push_scope(ref), what=what, headers={"Content-Type": manifest.media_type},
            content=manifest.raw, ok=(200, 201, 202),
        )
        assert resp is not None
        returned = resp.headers.get("docker-content-digest")
        if returned and returned.startswith("sha256:") and returned != manifest.digest:
            raise DigestMismatchError(
                f"{what}: registry stored {returned}, expected {manifest.digest}", expected=manifest.digest, actual=returned
            )
        return manifest.digest

    def manifest_delete(self, ref: Reference) -> None:
        self._request(
            "DELETE", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=f"repository:{ref.repository}:*", what=f"DELETE manifest {ref}", ok=(200, 202),
        )

    def tags_list(self, ref: Reference, *, page_size: int = 1000, limit: int = 100_000) -> list[str]:
        """Every tag of ``ref``'s repository, following ``Link`` pagination."""
        what = f"list tags of {ref.name}"
        url: str | httpx.URL = self.url(ref.api_host, f"/v2/{ref.repository}/tags/list?n={page_size}")
        tags: list[str] = []
        seen_urls = set()
        while url:
            if str(url) in seen_urls:
                raise RegistryError(f"{what}: pagination loops back to {httpx.URL(url).path}")
            seen_urls.add(str(url))
            resp = self._request("GET", url, scope=self.pull_scope(ref), what=what, follow=True)
            assert resp is not None
            try:
                doc = resp.json()
            except (ValueError, RecursionError):
                raise RegistryError(f"{what}: answer is not JSON") from None
            page = doc.get("tags") if isinstance(doc, dict) else None
            if page is None:
                page = []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: answer has no list of tags")
            tags.extend(page)
            if len(tags) > limit:
                raise RegistryError(f"{what}: more than {limit} tags")
            link = resp.links.get("next", {}).get("url")
            url = ""
            if link:
                try:
                    url = resp.url.join(link)
                except (httpx.InvalidURL, ValueError):
                    raise RegistryError(f"{what}: invalid Link to the next page") from None
                self._check_target(url, resp.url, f"{what}: next page")
        return tags

    # ------------------------------------------------------------ blobs

    def blob_head(self, ref: Reference, digest: str) -> int | None:
        """Size of the blob in ``ref``'s repository, or ``None`` if it is not there."""
        resp = self._request(
            "HEAD", self.url(ref.api_host, f"/v2/{ref.repository}/blobs/{digest}"),
            scope=self.pull_scope(ref) if not ref.tag else self.push_scope(ref), what=f"HEAD blob {digest} in {ref.name}",
            follow=True, not_found_ok=True,
        )
        if resp is None:
            return None
        size = resp.headers.get("content-length", "")
        return int(size) if size.isdigit() else -1

    @contextlib.contextmanager
    def blob_open(self, ref: Reference, digest: str) -> Iterator[httpx.Response]:
        """Open a streaming GET of a blob (redirects followed; no credentials to other hosts)."""
        what = f"GET blob {digest} from {ref.name}"
        resp = self._request(
            "GET", self.url(ref.api_host, f"/v2/{ref.repository}/blobs/{digest}"),
            scope=self.pull_scope(ref), what=what, follow=True, read=False,
        )
        assert resp is not None
        try:
            yield resp
        finally:
            resp.close()

    def blob_upload_start(self, ref: Reference, *, mount: str | None = None, mount_from: str | None = None) -> str | None:
        """POST an upload session. With ``mount``/``mount_from`` try a cross-repository mount first:
        returns ``None`` when mounted (201), else the upload ``Location`` (a 202 means upload normally)."""
        path = f"/v2/{ref.repository}/blobs/uploads/"
        if mount and mount_from:
            path += "?" + urlencode({"mount": mount, "from": mount_from})
        what = f"start blob upload to {ref.name}"
        resp = self._request(
            "POST", self.url(ref.api_host, path), scope=self.push_scope(ref, mount_from), what=what,
            ok=(201, 202), content=b"",
        )
        assert resp is not None
        if resp.status_code == 201 and mount:
            return None
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: HTTP {resp.status_code} without a Location header", status=resp.status_code)
        try:
            upload = resp.url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise RegistryError(f"{what}: invalid upload Location", status=resp.status_code) from None
        self._check_target(upload, resp.url, f"{what}: upload Location")
        return str(upload)

    def blob_upload_finish(self, ref: Reference, location: str, digest: str, size: int, body: Iterable[bytes] | bytes) -> None:
        """One monolithic PUT of the whole blob to the upload session (streamed when ``body`` is an iterator).

        Not retried here: a streamed body cannot be replayed. The caller restarts the blob.
        """
        url = httpx.URL(location).copy_add_param("digest", digest)
        same_host = url.netloc.decode("ascii") == ref.api_host
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        what = f"upload blob {digest} to {ref.name}"
        scope = self.push_scope(ref)
        replayable = isinstance(body, bytes)
        if same_host:
            resp = self._send("PUT", url, scope=scope, what=what, headers=headers, content=body, replayable=replayable)
        else:  # never send our Authorization to a host that did not ask for it
            self._count(url, "PUT")
            resp = self.http.send(self.http.build_request("PUT", url, headers=headers, content=body), stream=True)
        try:
            self._read_limited(resp, 1 << 20, what)
        except ManifestError:
            pass
        if resp.status_code not in (201, 202, 204):
            raise self._error(resp, what)
        returned = resp.headers.get("docker-content-digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise DigestMismatchError(f"{what}: registry stored {returned}", expected=digest, actual=returned)

    def blob_put(self, ref: Reference, digest: str, data: bytes) -> None:
        """Upload a small blob held in memory (POST + PUT), retried as a whole."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            location = self.blob_upload_start(ref)
            assert location is not None
            try:
                self.blob_upload_finish(ref, location, digest, len(data), data)
                return
            except (RegistryError, httpx.TransportError) as exc:
                temporary = isinstance(exc, httpx.TransportError) or exc.temporary
                delay = self.retry.delay(attempt)
                if temporary and self.retry.should_retry(attempt, started, delay):
                    self._sleep(delay)
                    continue
                if isinstance(exc, httpx.TransportError):
                    raise TransportError(f"upload blob {digest} to {ref.name}: {_describe_transport(exc)}") from None
                raise


def _describe_transport(exc: BaseException) -> str:
    name = type(exc).__name__
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}" + (f" ({detail})" if detail else "")
