"""An OCI distribution client over httpx: manifests, tags and blobs (distribution-spec ``spec.md``).

One :class:`RegistryClient` serves every registry host. Underneath each endpoint method, one
request goes through, outermost first:

- :func:`~.retry.retry`: repeats the whole request on a temporary error (429, 5xx, a reset), within
  the client's :class:`~.retry.RetryPolicy`;
- redirects (GET/HEAD only), each target checked by :mod:`.safety` before it is contacted;
- auth: the host's ``Authorization`` (:class:`~.auth.Authenticator`), one new round after a 401;
- :class:`~.transport.Transport`: httpx, counting, response observers, httpx errors translated.

Build it once, at the edge, and pass it in. Endpoints are methods named noun then verb
(``manifest_get``, ``blob_head``, ``referrers_list``); a new endpoint is one more method over
:meth:`RegistryClient._request`, whose ``not_found_ok`` serves answers where a 404 means "none"
(the referrers API's fallback to the tag schema, distribution-spec 1.1 "Listing Referrers").
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpcore
import httpx

from ..budget import HostPacer, PullBudget
from ..errors import AuthError, DigestMismatchError, ManifestError, NotFoundError, RegistryError, UnsafeRedirectError
from ..manifest import (
    ACCEPT,
    KNOWN_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    Manifest,
    is_media_type,
    parse_manifest,
)
from ..reference import Reference
from ..referrers import tag_schema_tag
from .auth import Authenticator, CredentialProvider, NoCredentials, parse_challenge
from .interrupt import Interrupter
from .retry import RetryPolicy, retry
from .safety import check_target, scheme_for
from .tls import tls_context
from .transport import RateLimit, RateLimits, Transport, error_for_response, netloc, parse_ratelimit, pull_limit_reached

log = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "ecr-mirror/0.1 (+https://github.com/ecr-mirror)"
MAX_REDIRECTS = 5
#: an upload's answer is a status and headers; its body is read (and dropped) up to this many bytes
MAX_UPLOAD_ANSWER_BYTES = 1 << 20


def default_http_client(
    concurrency: int = 8,
    *,
    transport: httpx.BaseTransport | None = None,
    ca_file: str | None = None,
    interrupter: Interrupter | None = None,
) -> httpx.Client:
    """An httpx client sized for ``concurrency`` parallel transfers (``2 * concurrency + 4`` connections).

    Timeouts in seconds: connect 10, read and write 60, waiting for a pooled connection 120.
    Keep-alive 15 s, short because Lambda freezes the process between invocations and pooled
    sockets go stale (ecr-facts.md, "Connection reuse"). Redirects are never followed by httpx:
    :class:`RegistryClient` follows them itself, checked. https is verified against the default
    trust plus ``ca_file`` (:func:`~.tls.tls_context`; raises :class:`~ecr_mirror.errors.ConfigError`
    for a file it cannot use). With ``interrupter``, its :meth:`~.interrupt.Interrupter.interrupt`
    shuts this client's connections down (give the same one to :class:`RegistryClient`).
    """
    limits = httpx.Limits(max_connections=concurrency * 2 + 4, max_keepalive_connections=concurrency * 2 + 4, keepalive_expiry=15.0)
    timeout = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=120.0)
    verify: Any = True
    if transport is None:
        verify = tls_context(ca_file)  # also given to the client: proxies from the environment use it too
        http_transport = httpx.HTTPTransport(verify=verify, limits=limits)
        pool = getattr(http_transport, "_pool", None)  # httpx 0.28 (pinned) builds its httpcore pool here
        if interrupter is not None and isinstance(pool, httpcore.ConnectionPool):
            pool._network_backend = interrupter.backend(pool._network_backend)  # noqa: SLF001 - no public hook
        transport = http_transport
    return httpx.Client(limits=limits, timeout=timeout, follow_redirects=False, transport=transport, verify=verify,
                        headers={"User-Agent": USER_AGENT})


@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells: ``digest`` (``Docker-Content-Digest``), ``media_type``, ``size`` in
    bytes (``None`` when the registry sent no ``Content-Length``: the header is optional on HEAD).

    ``manifest``: the manifest itself when the answer took a GET (no ``Docker-Content-Digest``, or a
    HEAD 404 confirmed by GET), so the caller need not GET it again.
    """

    digest: str
    media_type: str
    size: int | None
    manifest: Manifest | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ManifestPut:
    """What a manifest PUT answered: the ``digest`` stored, and ``oci_subject``, the ``OCI-Subject``
    header (distribution-spec 1.1: present when the registry indexed the manifest's ``subject`` for
    the referrers API; ``None`` from registries without it, which leave the tag schema to the client)."""

    digest: str
    oci_subject: str | None = None


class RegistryClient:
    """The OCI distribution API of every registry host, with auth, retries and safe redirects.

    ``http``: the httpx client (:func:`default_http_client` if omitted); ``credentials``: where
    credentials come from (anonymous if omitted); ``insecure``: hosts (``host`` or ``host:port``)
    spoken to over plain http (loopback always is); ``retry``: the budget of every retried
    operation; ``sleep``: waits between tries (injectable for tests).

    ``interrupter``: the switch :meth:`abort` throws (pass the one the httpx client was built with,
    :func:`default_http_client`, so open connections are cut off too).

    ``requests`` counts requests per ``(host, method)``; :meth:`ratelimit` gives a host's last stated
    pull allowance. Methods raise :class:`~ecr_mirror.errors.RegistryError` subclasses (and
    :class:`~ecr_mirror.errors.ManifestError`/:class:`~ecr_mirror.errors.DigestMismatchError` for
    content), never httpx's exceptions. Thread-safe.
    """

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        credentials: CredentialProvider | None = None,
        insecure: Iterable[str] = (),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        interrupter: Interrupter | None = None,
    ) -> None:
        self.interrupter = interrupter or Interrupter()
        self.http = http or default_http_client(interrupter=self.interrupter)
        self.credentials: CredentialProvider = credentials or NoCredentials()
        self.insecure = frozenset(h.lower() for h in insecure)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.ratelimits = RateLimits()
        self.transport = Transport(self.http, observers=(self.ratelimits,), interrupter=self.interrupter)
        self.auth = Authenticator(self.credentials, self.transport, insecure=self.insecure, policy=self.retry, sleep=self._pause)
        #: the pull budget (:meth:`use_budget`); None: pulls are not counted
        self.budget: PullBudget | None = None
        self._put_pace: HostPacer | None = None
        #: hosts whose manifest PUTs are paced like ECR's (:meth:`pace_manifest_puts`): the configured target
        #: registry when it is not named like ECR (a VPC endpoint, a stand-in)
        self.put_pace_hosts: set[str] = set()

    def use_budget(self, budget: PullBudget | None) -> None:
        """Spend upstream pulls through ``budget`` (issue 15): every response's ``ratelimit-*`` headers are
        announced to it, every manifest GET to a host with a budget draws a pull first (raising
        :class:`~ecr_mirror.errors.PullLimitReached` when it cannot), and a 429 from such a host is a
        :class:`~ecr_mirror.errors.PullLimitReached`, never retried."""
        self.budget = budget
        self.transport.announce = self._announce if budget is not None else None

    def _announce(self, host: str, headers: Any, started: float) -> None:
        seen = parse_ratelimit(headers)
        if seen is not None and self.budget is not None:
            self.budget.announce(host, seen.limit, seen.remaining, seen.window, started,
                                 headers.get("docker-ratelimit-source") or None)

    def pace_hosts(self, rates: Mapping[str, float], *, clock: Callable[[], float] = time.monotonic) -> HostPacer:
        """Hold requests to each host to its request-rate cap: ``rates`` (requests per second), else the
        documented ones (public.ecr.aws: 1/s anonymous, 10/s with credentials; ecr-facts.md section 4). A
        token bucket per host (:class:`~ecr_mirror.budget.HostPacer`); waits end at :meth:`abort`."""
        pacer = HostPacer(rates, authenticated=lambda host: self.credentials.credential_for(host) is not None,
                          sleep=self._pause, clock=clock)
        self.transport.pace = pacer
        return pacer

    def pace_manifest_puts(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> HostPacer | None:
        """Hold manifest PUTs to ECR hosts (:func:`~ecr_mirror.reference.ecr_host_region`, and any host
        :attr:`put_pace_hosts` names) to ``rate`` per second per host: ECR's ``PutImage`` quota is 10/s per
        account and region (ecr-facts.md section 1, service quotas), and a burst of tags (a first sync, a
        base image release with many arch tags) would otherwise draw 429s. ``rate`` 0 or less: no cap.
        Other requests are not held back (their quotas are 100 to 2,000 per second)."""
        from ..reference import ecr_host_region

        if rate <= 0:
            self._put_pace = None
            return None

        def default(host: str) -> float | None:
            return rate if ecr_host_region(host) is not None or host.lower() in self.put_pace_hosts else None

        self._put_pace = HostPacer({}, sleep=self._pause, clock=clock, default=default)
        return self._put_pace

    def _pause(self, seconds: float) -> None:
        """Waits between tries (``sleep``); :meth:`abort` cuts them short."""
        self.interrupter.sleep(seconds, fallback=self._sleep)

    def abort(self) -> None:
        """Stop everything this client is doing, from any thread: no new request starts, open connections
        are shut down, waits between retries end. Every call from then on raises
        :class:`~ecr_mirror.errors.Interrupted`. For Ctrl-C; the client cannot be used again."""
        self.interrupter.interrupt()

    # ------------------------------------------------------------ plumbing

    @property
    def requests(self) -> Any:
        """Requests made so far, per ``(host, method)`` (a :class:`collections.Counter`)."""
        return self.transport.requests

    def ratelimit(self, host: str) -> RateLimit | None:
        """``host``'s pull allowance as its last response stated it (``ratelimit-*`` headers), or ``None``."""
        return self.ratelimits.get(host)

    def scheme(self, host: str) -> str:
        """``http`` for loopback and insecure hosts, else ``https``."""
        return scheme_for(host, self.insecure)

    def url(self, host: str, path: str) -> str:
        """``scheme://host/path`` for a registry API path."""
        return f"{self.scheme(host)}://{host}{path}"

    def secrets(self) -> list[str]:
        """Every secret this client holds (credentials and tokens), for redaction of output."""
        return self.auth.secrets()

    def retrying(self, operation: Callable[[], T], *, what: str) -> T:
        """``operation()`` under this client's retry policy (:func:`~.retry.retry`): for work made of
        several requests that must be restarted as a whole, such as a blob's GET piped into its upload."""
        return retry(self.retry, operation, what=what, sleep=self._pause)

    def _exchange(
        self, method: str, url: httpx.URL, *, scope: str, headers: dict[str, str], content: Any, replayable: bool, what: str,
    ) -> httpx.Response:
        """One request to ``url``'s host with that host's auth; answers a 401 by authenticating once, and
        ECR's 403 to an expired token with a fresh token (:meth:`~.auth.Authenticator.expired`).
        ``scope=""``: an anonymous request (no credentials to any host, a 401 is the answer). After
        :meth:`abort` no credential or token is fetched for another round (:class:`~ecr_mirror.errors.Interrupted`)."""
        host = netloc(url)
        if not scope:
            return self.transport.send(method, url, headers=headers, content=content, what=what)
        for round_ in range(2):
            self.interrupter.check(what)  # before the credential: after an abort no token is fetched (ECR: an API call)
            h = dict(headers)
            auth = self.auth.header(host, scope)
            if auth:
                h["Authorization"] = auth
            resp = self.transport.send(method, url, headers=h, content=content, what=what)
            if resp.status_code == 403 and round_ == 0 and self.auth.expired(host, auth):
                # ECR answers an expired token with 403 DENIED, not 401: a fresh token, one more try
                resp.close()
                self.interrupter.check(what)  # aborted meanwhile: no GetAuthorizationToken, no retry
                if not replayable:  # a streamed body cannot be sent again: the caller restarts it
                    raise AuthError(f"{what}: {host} refused an expired token (HTTP 403)", status=403, temporary=True)
                continue
            if resp.status_code != 401:
                return resp
            challenge = parse_challenge(resp.headers.get("www-authenticate"))
            resp.close()
            self.interrupter.check(what)
            self.auth.refused(host, scope, auth)
            if round_ == 1 or not replayable:
                # temporary: a streamed body met an expired token (restart it), or a fresh bearer token was
                # refused (tokens expiring or revoked while others were in flight): retrying with a new one helps
                fresh_token_refused = round_ == 1 and challenge is not None and challenge.scheme == "bearer"
                raise AuthError(
                    f"{what}: {host} refused our credentials (HTTP 401)", status=401,
                    temporary=(not replayable and round_ == 0) or fresh_token_refused,
                )
            self.auth.authenticate(host, scope, challenge, what)
        raise AssertionError("unreachable")

    def _send(
        self, method: str, url: str | httpx.URL, *, scope: str, what: str, headers: dict[str, str] | None = None,
        content: Any = None, replayable: bool = True, follow: bool = False,
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
            except (httpx.InvalidURL, ValueError) as exc:
                raise UnsafeRedirectError(f"{what}: redirect to an invalid URL") from exc
            check_target(nxt, origin=url, insecure=self.insecure, what=what)
            url = nxt
        raise UnsafeRedirectError(f"{what}: more than {MAX_REDIRECTS} redirects (a redirect loop?)")

    def _request(
        self, method: str, url: str | httpx.URL, *, scope: str, what: str, headers: dict[str, str] | None = None,
        content: bytes | None = None, follow: bool = False, ok: Iterable[int] = (200,), read: bool = True,
        not_found_ok: bool = False, pull: bool = False,
    ) -> httpx.Response | None:
        """A replayable request, retried while temporary; the response, ``None`` for a 404 when
        ``not_found_ok``. Raises the :class:`RegistryError` a non-``ok`` status means. The body is read
        (up to :data:`~ecr_mirror.manifest.MAX_MANIFEST_BYTES`) unless ``read=False``: then the caller
        streams and closes it. ``pull``: each try costs a pull of the host's budget (a manifest GET)."""
        ok = tuple(ok)
        host = netloc(httpx.URL(url))

        def attempt() -> httpx.Response | None:
            budget = self.budget
            if pull and budget is not None:
                budget.draw(host)
            resp = self._send(method, url, scope=scope, what=what, headers=headers, content=content, follow=follow)
            if read or resp.status_code not in ok:
                self.transport.read(resp, MAX_MANIFEST_BYTES, what)
            if resp.status_code in ok:
                return resp
            if resp.status_code == 404 and not_found_ok:
                return None
            if resp.status_code == 429 and budget is not None and budget.budgeted(host):
                raise pull_limit_reached(resp, f"{what}: HTTP 429 (pull limit)")
            raise error_for_response(resp, what)

        return retry(self.retry, attempt, what=what, sleep=self._pause)

    # ------------------------------------------------------------ scopes

    @staticmethod
    def pull_scope(ref: Reference) -> str:
        """The token scope to read ``ref``'s repository."""
        return f"repository:{ref.repository}:pull"

    @staticmethod
    def push_scope(ref: Reference, mount_from: str | None = None) -> str:
        """The token scope to write ``ref``'s repository (and read ``mount_from``, for a cross-repository mount)."""
        scope = f"repository:{ref.repository}:pull,push"
        if mount_from and mount_from != ref.repository:
            scope += f" repository:{mount_from}:pull"
        return scope

    # ------------------------------------------------------------ manifests

    def manifest_head(self, ref: Reference, *, confirm_missing: bool = False) -> ManifestHead | None:
        """Digest, media type and size of ``ref`` (tag or digest) with one HEAD; ``None`` if absent.

        A registry that omits ``Docker-Content-Digest`` costs a GET instead (verified). HEAD is optional
        behaviour some registries get wrong (Harbor and Nexus behind some proxies answer 404 while GET
        works): with ``confirm_missing`` a 404 is confirmed with a GET before ``None`` is returned (a
        GET of an absent manifest is one more request, and costs a pull only where the manifest exists).
        Use it wherever a wrong "missing" would be reported: sources, upstream checks. Raises
        :class:`DigestMismatchError` when a digest reference answers another digest.
        """
        what = f"HEAD manifest {ref}"
        resp = self._request(
            "HEAD", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=self.pull_scope(ref), what=what, headers={"Accept": ACCEPT}, follow=True, not_found_ok=True,
        )
        if resp is None:
            if not confirm_missing:
                return None
            self.interrupter.check(what)  # aborted while the HEAD was answered: no confirming GET
            try:
                m = self.manifest_get(ref)
            except NotFoundError:
                return None
            log.info("%s: HEAD answered 404 but GET found %s", ref, m.digest)
            return ManifestHead(m.digest, m.media_type, len(m.raw), m)
        digest = resp.headers.get("docker-content-digest")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        size = resp.headers.get("content-length")
        if not digest:
            m = self.manifest_get(ref)
            return ManifestHead(m.digest, m.media_type, len(m.raw), m)
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"{what}: registry reports {digest} for {ref.digest}", expected=ref.digest, actual=digest)
        return ManifestHead(digest, media_type, int(size) if size and size.isdigit() else None)

    def manifest_get(self, ref: Reference, *, expected_digest: str | None = None, media_type: str | None = None) -> Manifest:
        """GET a manifest, its bytes verified against the digest asked for (``ref``'s or ``expected_digest``)
        and ``Docker-Content-Digest``.

        ``media_type``: the type an index entry gives it. One ecr-mirror does not know is added to
        ``Accept``, and bytes of an unknown type then come back as an opaque :class:`Manifest` (copied
        as bytes) instead of an error. Raises :class:`NotFoundError`, :class:`ManifestError` (malformed,
        over 4 MiB), :class:`DigestMismatchError`.
        """
        what = f"GET manifest {ref}"
        unknown = media_type if media_type and media_type not in KNOWN_TYPES and is_media_type(media_type) else None
        resp = self._request(
            "GET", self.url(ref.api_host, f"/v2/{ref.repository}/manifests/{ref.identifier}"),
            scope=self.pull_scope(ref), what=what, headers={"Accept": f"{ACCEPT}, {unknown}" if unknown else ACCEPT},
            follow=True, pull=True,
        )
        assert resp is not None
        expected = expected_digest or ref.digest
        header = resp.headers.get("docker-content-digest")
        try:
            manifest = parse_manifest(
                resp.content, resp.headers.get("content-type"), expected_digest=expected, opaque_type=unknown
            )
        except DigestMismatchError as exc:
            raise DigestMismatchError(f"{what}: {exc}", expected=exc.expected, actual=exc.actual) from exc
        except ManifestError as exc:
            raise ManifestError(f"{what}: {exc}") from exc
        if header and header.startswith("sha256:") and header != manifest.digest:
            raise DigestMismatchError(
                f"{what}: body hashes to {manifest.digest} but Docker-Content-Digest says {header}",
                expected=header, actual=manifest.digest,
            )
        return manifest

    def manifest_put(self, ref: Reference, manifest: Manifest) -> ManifestPut:
        """PUT the exact bytes under ``ref``'s tag or digest, with their media type.

        Reads no ``Location`` (optional, and ECR's manifest PUT has none: ecr-facts.md section 3); the
        digest is the bytes' own, checked against ``Docker-Content-Digest`` when the registry sends it.
        Raises :class:`TagImmutableError` where the tag may not be overwritten.
        """
        what = f"PUT manifest {ref}"
        if self._put_pace is not None:
            self._put_pace(ref.api_host)
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
        return ManifestPut(manifest.digest, resp.headers.get("oci-subject") or None)

    # ------------------------------------------------------------ tags

    def _pages(
        self, ref: Reference, url: str, *, what: str, headers: dict[str, str] | None = None, not_found_ok: bool = False,
        next_without_link: Callable[[], str] | None = None,
    ) -> Iterator[httpx.Response]:
        """GET ``url`` and every next page (distribution-spec "Listing Tags" and "Listing Referrers"): the one its
        ``Link`` header names (RFC 8288), checked like a redirect target; without ``Link`` (it is optional),
        ``next_without_link()`` if given, called once the caller has read the page ("" ends the list). Nothing
        when the first page is a 404 and ``not_found_ok``. Raises :class:`RegistryError` for a pagination loop
        or an invalid ``Link``."""
        next_url: str | httpx.URL = url
        seen_urls = set()
        while next_url:
            if str(next_url) in seen_urls:
                raise RegistryError(f"{what}: pagination loops back to {httpx.URL(next_url).path}")
            seen_urls.add(str(next_url))
            resp = self._request("GET", next_url, scope=self.pull_scope(ref), what=what, headers=headers, follow=True,
                                 not_found_ok=not_found_ok and len(seen_urls) == 1)
            if resp is None:
                return
            yield resp
            link = resp.links.get("next", {}).get("url")
            next_url = ""
            if link:
                try:
                    next_url = resp.url.join(link)
                except (httpx.InvalidURL, ValueError) as exc:
                    raise RegistryError(f"{what}: invalid Link to the next page") from exc
                check_target(next_url, origin=resp.url, insecure=self.insecure, what=f"{what}: next page")
            elif next_without_link is not None:
                next_url = next_without_link()

    @staticmethod
    def _json_list(resp: httpx.Response, key: str, what: str) -> list[Any]:
        """``resp``'s JSON ``{key: [...]}`` list (``[]`` for null); raises :class:`RegistryError` for another shape."""
        try:
            doc = resp.json()
        except (ValueError, RecursionError) as exc:
            raise RegistryError(f"{what}: answer is not JSON") from exc
        found = doc.get(key) if isinstance(doc, dict) else None
        if found is None:
            found = []
        if not isinstance(found, list):
            raise RegistryError(f"{what}: answer has no list of {key}")
        return found

    def tags_list(self, ref: Reference, *, page_size: int = 1000, limit: int = 100_000) -> list[str]:
        """Every tag of ``ref``'s repository (each once, in the order served), at most ``limit``.

        Pages are followed by ``Link`` (RFC 8288), or, when a registry pages without sending ``Link``
        (it is optional), by asking again with ``last=<the page's last tag>`` after a full page
        (distribution-spec "Listing Tags"); a page that brings no new tag ends the list. Raises
        :class:`RegistryError` for an answer without a list of tags, or a ``Link`` loop.
        """
        what = f"list tags of {ref.name}"
        tags: list[str] = []
        known: set[str] = set()
        after = ""  # the next page's URL when the registry sent no Link

        def next_without_link() -> str:
            return after

        url = self.url(ref.api_host, f"/v2/{ref.repository}/tags/list?n={page_size}")
        for resp in self._pages(ref, url, what=what, next_without_link=next_without_link):
            page = self._json_list(resp, "tags", what)
            if not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: answer has no list of tags")
            fresh = [t for t in dict.fromkeys(page) if t not in known]
            known.update(fresh)
            tags.extend(fresh)
            if len(tags) > limit:
                raise RegistryError(f"{what}: more than {limit} tags")
            after = ""
            if len(page) == page_size and fresh:
                # a full page without Link: there may be more (a registry that ignores `last` repeats
                # itself, brings nothing new, and ends the list)
                query = urlencode({"n": page_size, "last": page[-1]})
                after = self.url(ref.api_host, f"/v2/{ref.repository}/tags/list?{query}")
        return tags

    # ------------------------------------------------------------ referrers

    def referrers_list(self, ref: Reference, digest: str, *, limit: int = 10_000) -> list[Descriptor] | None:
        """The descriptors of the manifests whose ``subject`` is ``digest`` in ``ref``'s repository, from
        ``GET /v2/<name>/referrers/<digest>`` following ``Link`` pages (distribution-spec 1.1, "Listing
        Referrers"); ``None`` when the registry answers 404: it has no referrers API, so the referrers
        tag schema applies (:meth:`referrers_tag_get`).

        Raises :class:`RegistryError` for any other error answer (ECR answers 405 for some subjects:
        aws/containers-roadmap#2783), an answer that is not an index of descriptors, or more than ``limit``.
        """
        what = f"list referrers of {ref.name}@{digest}"
        found: list[Descriptor] = []
        answered = False
        url = self.url(ref.api_host, f"/v2/{ref.repository}/referrers/{digest}")
        for resp in self._pages(ref, url, what=what, headers={"Accept": OCI_INDEX}, not_found_ok=True):
            answered = True
            for entry in self._json_list(resp, "manifests", what):
                try:
                    found.append(Descriptor.from_json(entry, where=what))
                except ManifestError as exc:
                    raise RegistryError(f"{what}: {exc}") from exc
            if len(found) > limit:
                raise RegistryError(f"{what}: more than {limit} referrers")
        return found if answered else None

    def referrers_tag_get(self, ref: Reference, digest: str) -> Manifest | None:
        """The referrers tag schema index of subject ``digest`` (the tag ``sha256-<hex>``) in ``ref``'s
        repository, or ``None`` if there is no such tag (distribution-spec 1.1, "Referrers Tag Schema").
        Raises what :meth:`manifest_get` raises but :class:`NotFoundError`."""
        try:
            return self.manifest_get(ref.with_tag(tag_schema_tag(digest)))
        except NotFoundError:
            return None

    # ------------------------------------------------------------ blobs

    def blob_head(self, ref: Reference, digest: str) -> int | None:
        """The size in bytes of blob ``digest`` in ``ref``'s repository, ``None`` if it is not there,
        ``-1`` if it is there but the registry sent no ``Content-Length``.

        A ``ref`` with a tag is a destination: its token scope includes push (one token for the copy).
        """
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
    def blob_open(self, ref: Reference, digest: str) -> Iterator[Iterator[bytes]]:
        """A streaming GET of blob ``digest``: yields an iterator of ``bytes`` chunks as the socket delivers them.

        Redirects are followed (no credentials to other hosts). Getting the answer is retried; reading
        the body is not (restart the whole transfer: :meth:`retrying`). The chunks are unverified: check
        them against the descriptor (``ecr_mirror.copy.verified_chunks``). Iterating raises
        :class:`TransportError` when the body is cut short or stalls.
        """
        what = f"GET blob {digest} from {ref.name}"
        resp = self._request(
            "GET", self.url(ref.api_host, f"/v2/{ref.repository}/blobs/{digest}"),
            scope=self.pull_scope(ref), what=what, follow=True, read=False,
        )
        assert resp is not None
        try:
            yield self.transport.chunks(resp, what)
        finally:
            resp.close()

    @contextlib.contextmanager
    def blob_open_url(self, ref: Reference, url: str, digest: str) -> Iterator[Iterator[bytes]]:
        """A streaming GET of blob ``digest`` from one of its descriptor's ``urls`` (non-distributable
        layers: descriptor.md ``urls``), as :meth:`blob_open` does from a registry.

        Anonymous: no credentials go to a URL found in a manifest. The URL is checked as a redirect from
        ``ref``'s registry would be (:mod:`.safety`: http(s) only, no metadata or link-local addresses,
        no https -> http), and so is every redirect it answers. Raises :class:`UnsafeRedirectError`,
        :class:`NotFoundError`, :class:`RegistryError`.
        """
        what = f"GET blob {digest} from its URL {url}"
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise UnsafeRedirectError(f"{what}: not a valid URL") from exc
        check_target(target, origin=httpx.URL(self.url(ref.api_host, "/v2/")), insecure=self.insecure, what=what)
        resp = self._request("GET", target, scope="", what=what, follow=True, read=False)
        assert resp is not None
        try:
            yield self.transport.chunks(resp, what)
        finally:
            resp.close()

    def blob_upload_start(self, ref: Reference, *, mount: str | None = None, mount_from: str | None = None) -> str | None:
        """POST an upload session; returns its ``Location`` URL (checked like a redirect target).

        With ``mount`` (a digest) and ``mount_from`` (a repository on the same registry), try a
        cross-repository mount first: ``None`` when mounted (201); a 202 opens a session to upload
        normally (distribution-spec, "Mounting a blob from another repository").
        """
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
        except (httpx.InvalidURL, ValueError) as exc:
            raise RegistryError(f"{what}: invalid upload Location", status=resp.status_code) from exc
        check_target(upload, origin=resp.url, insecure=self.insecure, what=f"{what}: upload Location")
        return str(upload)

    def blob_upload_finish(self, ref: Reference, location: str, digest: str, size: int, body: Iterable[bytes] | bytes) -> None:
        """One monolithic PUT of the whole blob (``size`` bytes) to the upload session at ``location``.

        ``body`` is streamed when it is an iterator. Not retried here: a streamed body cannot be
        replayed, and ECR cannot resume a session (ecr-facts.md, section 2): the caller restarts the
        blob from a new session. ``Authorization`` goes only to the registry's own host.
        """
        url = httpx.URL(location).copy_add_param("digest", digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        what = f"upload blob {digest} to {ref.name}"
        if netloc(url) == ref.api_host:
            resp = self._send("PUT", url, scope=self.push_scope(ref), what=what, headers=headers, content=body,
                              replayable=isinstance(body, bytes))
        else:  # never send our Authorization to a host that did not ask for it
            resp = self.transport.send("PUT", url, headers=headers, content=body, what=what)
        with contextlib.suppress(ManifestError):
            self.transport.read(resp, MAX_UPLOAD_ANSWER_BYTES, what)
        if resp.status_code not in (201, 202, 204):
            raise error_for_response(resp, what)
        returned = resp.headers.get("docker-content-digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise DigestMismatchError(f"{what}: registry stored {returned}", expected=digest, actual=returned)
