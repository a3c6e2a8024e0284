"""Registry authentication: challenges, credential providers, bearer tokens, and the token flow.

Credentials come from a chain of providers: explicit ones (CLI, Secrets Manager),
the Docker config file and its credential helpers (:mod:`.credhelpers`), and for ECR hosts ``ecr:GetAuthorizationToken``
(:class:`ecr_mirror.ecr.EcrCredentials`: registry/ itself knows no AWS API).
Secret values are held in :class:`Credential` whose ``repr`` never shows them.

:class:`Authenticator` answers a registry's ``401`` challenge (RFC 7235 ``WWW-Authenticate``):
``Basic`` with the host's credential (ECR: ``AWS:<token>``), or ``Bearer`` by fetching a token
from the challenge's realm (distribution's token authentication spec, ``docs/spec/auth/token.md``),
cached per (host, scope) until shortly before it expires. Credentials go to a realm only on the
registry's own domain (:func:`~.safety.realm_may_get_credentials`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx

from ..errors import AuthError, ConfigError, ManifestError, TransportError
from ..reference import DOCKER_HUB, DOCKER_HUB_API
from .credhelpers import CredentialHelper
from .retry import RETRY_STATUSES, RetryPolicy, parse_retry_after, retry
from .safety import check_target, realm_may_get_credentials, scheme_for
from .transport import Transport

_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_PARAM_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


#: a token endpoint's answer is a small JSON object; anything larger is refused while reading
MAX_TOKEN_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` lower-case (``bearer``, ``basic``), ``params``
    with lower-case keys (``realm``, ``service``, ``scope``)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        """The ``realm`` parameter (for Bearer: the token endpoint URL), ``""`` if absent."""
        return self.params.get("realm", "")


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` value: ``Bearer realm="…",service="…",scope="…"``."""
    if not header:
        return None
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    if not scheme or "=" in scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        key = m.group(1).lower()
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[key] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


class Credential:
    """Username and secret. ``repr``/``str`` never show the secret."""

    __slots__ = ("username", "password", "token_kind")

    def __init__(self, username: str, password: str, token_kind: str = "basic") -> None:
        self.username = username
        self.password = password
        self.token_kind = token_kind  # "basic", or "identitytoken" (OAuth2 refresh token)

    def basic_header(self) -> str:
        """``Basic <base64(username:password)>`` (RFC 7617)."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credential) and (self.username, self.password) == (other.username, other.password)

    def __hash__(self) -> int:
        return hash(self.username)


class CredentialProvider(Protocol):
    """Where credentials come from: one per registry host, or ``None``."""

    def credential_for(self, host: str) -> Credential | None:
        """The credential for ``host`` (``host[:port]``), or ``None`` if this provider has none."""
        ...

    def secrets(self) -> Iterable[str]:
        """Every secret value this provider knows (for redaction)."""
        ...


def _host_keys(host: str) -> list[str]:
    """Names a credential for ``host`` may be stored under."""
    host = host.lower()
    keys = [host]
    if host in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", "registry.hub.docker.com"):
        keys += [DOCKER_HUB, "index.docker.io", "https://index.docker.io/v1/", DOCKER_HUB_API, "registry.hub.docker.com"]
    keys += [f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    return keys


class StaticCredentials:
    """Credentials given as ``{host: {"username": …, "password": …}}`` (CLI, Secrets Manager JSON)."""

    def __init__(self, entries: Mapping[str, Any] | None = None, *, source: str = "credentials") -> None:
        self._by_host: dict[str, Credential] = {}
        for host, value in (entries or {}).items():
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: entry for {host!r} must be an object with username and password")
            username, password = value.get("username"), value.get("password")
            if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
                raise ConfigError(f"{source}: entry for {host!r} needs non-empty string 'username' and 'password'")
            key = host.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
            self._by_host[key] = Credential(username, password)

    def credential_for(self, host: str) -> Credential | None:
        """The entry for ``host`` (Docker Hub under any of its names), or ``None``."""
        for key in _host_keys(host):
            key = key.removeprefix("https://").removeprefix("http://").rstrip("/")
            if key in self._by_host:
                return self._by_host[key]
        return None

    def secrets(self) -> Iterable[str]:
        """The passwords held."""
        return [c.password for c in self._by_host.values()]


def _config_key(key: str) -> str:
    """A Docker config host key as compared: no scheme, no trailing ``/``, ``/v1``, ``/v2``."""
    key = key.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    return key.removesuffix("/v1").removesuffix("/v2")


class DockerConfigCredentials:
    """Credentials the way Docker finds them in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``).

    For a registry host, first match wins: a ``credHelpers`` entry for the host runs that
    ``docker-credential-<name>`` helper; else ``credsStore`` runs its helper for every host; else the
    ``auths`` entry (``auth`` = base64 ``user:password``, or ``username``/``password``, or
    ``identitytoken``). A helper's "not found" means anonymous, as in Docker
    (:mod:`.credhelpers`). Each host is looked up once per process.

    The file is read on first use; a file that is not JSON, or an ``auth`` that is not base64
    ``user:password``, raises :class:`ConfigError` naming the file (every lookup, not just the first).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, helper: Callable[..., CredentialHelper] = CredentialHelper) -> None:
        if path is None:
            base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
            path = Path(base) / "config.json"
        self.path = Path(path)
        self._helper = helper
        self._loaded: tuple[dict[str, Credential], dict[str, str], str] | None = None
        self._error: ConfigError | None = None
        self._found: dict[str, Credential | None] = {}
        self._lock = threading.Lock()

    def _load(self) -> tuple[dict[str, Credential], dict[str, str], str]:
        """``(auths, credHelpers, credsStore)``, read once. Raises :class:`ConfigError` for a bad file."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._loaded is None:
                try:
                    self._loaded = self._read()
                except ConfigError as exc:
                    self._error = exc
                    raise
            return self._loaded

    def _read(self) -> tuple[dict[str, Credential], dict[str, str], str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}, {}, ""
        except OSError as exc:
            raise ConfigError(f"cannot read Docker config {self.path}: {exc.strerror}") from exc
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"Docker config {self.path} is not valid JSON (line {getattr(exc, 'lineno', '?')})") from exc
        doc = doc if isinstance(doc, dict) else {}
        entries: dict[str, Credential] = {}
        auths = doc.get("auths")
        for key, value in (auths if isinstance(auths, dict) else {}).items():
            if not isinstance(value, dict):
                continue
            cred = None
            if value.get("identitytoken"):
                cred = Credential("<token>", str(value["identitytoken"]), "identitytoken")
            elif value.get("auth"):
                try:
                    user, sep, pw = base64.b64decode(str(value["auth"]), validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"Docker config {self.path}: 'auth' for {key!r} is not base64 user:password") from exc
                if not sep:
                    raise ConfigError(f"Docker config {self.path}: 'auth' for {key!r} is not base64 user:password")
                cred = Credential(user, pw)
            elif value.get("username") and value.get("password"):
                cred = Credential(str(value["username"]), str(value["password"]))
            if cred is not None:
                entries[_config_key(key)] = cred
        helpers = doc.get("credHelpers")
        by_host = {_config_key(k): v for k, v in (helpers if isinstance(helpers, dict) else {}).items()}
        store = doc.get("credsStore")
        return entries, by_host, store if isinstance(store, str) else ""

    def credential_for(self, host: str) -> Credential | None:
        """The credential for ``host`` (helper, then ``auths``), or ``None``. Raises :class:`ConfigError`
        for a bad file or a helper that is missing or fails."""
        entries, helpers, store = self._load()
        keys = [_config_key(k) for k in _host_keys(host)]
        with self._lock:
            if host in self._found:
                return self._found[host]
        name = next((helpers[k] for k in keys if k in helpers), None)
        where = f"credHelpers in {self.path}" if name is not None else f"credsStore in {self.path}"
        name = name if name is not None else store
        if name:
            got = self._helper(name, where=where).get(host)
            cred = None
            if got is not None:
                user, secret = got
                cred = Credential("<token>", secret, "identitytoken") if user == "<token>" else Credential(user, secret)
        else:
            cred = next((entries[k] for k in keys if k in entries), None)
        with self._lock:
            self._found[host] = cred
        return cred

    def secrets(self) -> Iterable[str]:
        """The passwords and identity tokens known so far (file entries, helper answers); none for a bad file."""
        try:
            entries, _, _ = self._load()
        except ConfigError:
            return []
        with self._lock:
            found = [c.password for c in self._found.values() if c is not None]
        return [c.password for c in entries.values()] + found


class ChainCredentials:
    """First provider that knows the host wins."""

    def __init__(self, *providers: CredentialProvider) -> None:
        self.providers = [p for p in providers if p is not None]

    def invalidate(self, host: str, refused: str | None = None) -> bool:
        """Let every provider that caches (ECR tokens) forget what it holds for ``host`` (if still the
        ``refused`` ``Authorization`` value). True if one of them will fetch a fresh credential."""
        fresh = False
        for p in self.providers:
            if hasattr(p, "invalidate"):
                fresh = bool(p.invalidate(host, refused)) or fresh
        return fresh

    def credential_for(self, host: str) -> Credential | None:
        """The first provider's credential for ``host``, or ``None``."""
        for p in self.providers:
            cred = p.credential_for(host)
            if cred is not None:
                return cred
        return None

    def secrets(self) -> Iterable[str]:
        """Every provider's secrets."""
        out: list[str] = []
        for p in self.providers:
            out.extend(p.secrets())
        return out


class NoCredentials:
    """Anonymous: no credential for any host."""

    def credential_for(self, host: str) -> Credential | None:
        """Always ``None``."""
        return None

    def secrets(self) -> Iterable[str]:
        """None."""
        return []


@dataclass
class Token:
    """A bearer token; ``expires_at`` on the cache's clock (seconds), treated as expired ``margin`` seconds early."""

    value: str
    expires_at: float
    margin: float = 0.0

    def __repr__(self) -> str:
        return f"Token(<redacted>, expires_at={self.expires_at})"


class TokenCache:
    """Bearer tokens per (host, scope); refreshed before expiry."""

    MARGIN = 5.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str], Token] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, host: str, scope: str) -> Token | None:
        """The cached token for ``host`` and ``scope`` if it is still good, else ``None``."""
        with self._lock:
            tok = self._tokens.get((host, scope))
            if tok and tok.expires_at - tok.margin > self._clock():
                return tok
            return None

    def put(self, host: str, scope: str, value: str, expires_in: float) -> Token:
        """Cache ``value`` for ``expires_in`` seconds (at least 1)."""
        lifetime = max(expires_in, 1.0)
        # refresh MARGIN seconds early, but a short-lived token (expires_in of a few seconds) must still be used
        tok = Token(value, self._clock() + lifetime, min(self.MARGIN, lifetime / 4))
        with self._lock:
            self._tokens[(host, scope)] = tok
        return tok

    def drop(self, host: str, scope: str) -> None:
        """Forget the token for ``host`` and ``scope`` (the registry refused it)."""
        with self._lock:
            self._tokens.pop((host, scope), None)

    def values(self) -> list[str]:
        """Every cached token value (for redaction)."""
        with self._lock:
            return [t.value for t in self._tokens.values()]


def token_from_response(doc: Any) -> tuple[str, float]:
    """``(token, lifetime in seconds)`` from a token endpoint's JSON answer (``token`` or ``access_token``;
    ``expires_in``, default 60 s per the token spec). Raises :class:`AuthError` for anything else."""
    if not isinstance(doc, dict):
        raise AuthError("token endpoint answered something that is not a JSON object", temporary=False)
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError("token endpoint answered without a token", temporary=False)
    if not _TOKEN_RE.fullmatch(token):  # it goes into an Authorization header: visible ASCII only
        raise AuthError("token endpoint answered a token with characters a header cannot carry", temporary=False)
    expires_in = doc.get("expires_in")
    try:  # NaN, Infinity (Python's json reads them) and integers too large for a float count as absent
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) else 0.0
    except OverflowError:
        lifetime = 0.0
    if not math.isfinite(lifetime) or lifetime <= 0:
        lifetime = 60.0  # distribution's token spec default
    return token, lifetime


class Authenticator:
    """Answers 401 challenges and supplies the ``Authorization`` header per (host, scope).

    ``scope`` is the token scope a request needs (``repository:<name>:pull`` or ``...:pull,push``,
    several separated by spaces). Token requests go through ``transport`` and are retried under
    ``policy`` (inside a request's own retry they are tried once: see :mod:`.retry`).
    """

    def __init__(
        self,
        credentials: CredentialProvider,
        transport: Transport,
        *,
        insecure: frozenset[str],
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.credentials = credentials
        self.transport = transport
        self.insecure = insecure
        self.policy = policy
        self.sleep = sleep
        self.tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}

    def secrets(self) -> list[str]:
        """Every secret held: credentials and bearer tokens (for redaction of output)."""
        return [s for s in [*self.credentials.secrets(), *self.tokens.values()] if s]

    def header(self, host: str, scope: str) -> str | None:
        """The ``Authorization`` value for a request to ``host`` needing ``scope``; ``None`` before a
        challenge, or when the token for this scope is not fetched yet (or expired)."""
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            cred = self.credentials.credential_for(host)
            return cred.basic_header() if cred else None
        tok = self.tokens.get(host, scope)
        return f"Bearer {tok.value}" if tok else None

    def refused(self, host: str, scope: str, sent: str | None) -> None:
        """``host`` answered 401 to ``sent``: forget the bearer token, and a cached Basic credential
        (an expired ECR token) so the next round fetches a fresh one."""
        if sent and sent.startswith("Basic ") and hasattr(self.credentials, "invalidate"):
            self.credentials.invalidate(host)
        self.tokens.drop(host, scope)

    def expired(self, host: str, sent: str | None) -> bool:
        """``host`` answered 403 to Basic ``sent``, as ECR answers a token that expired or was revoked before
        its ``expiresAt`` (403 DENIED, aws/aws-cli#6580): forget the cached credential if it is still
        ``sent``. True if a fresh one will be fetched (an ECR host), so one more try can help."""
        invalidate = getattr(self.credentials, "invalidate", None)
        if not sent or not sent.startswith("Basic ") or invalidate is None:
            return False
        return bool(invalidate(host, sent))

    def authenticate(self, host: str, scope: str, challenge: Challenge | None, what: str) -> None:
        """Take up ``host``'s challenge: remember Basic (if a credential exists), or fetch a Bearer token.

        Raises :class:`AuthError` for a missing or unsupported challenge, missing credentials, or a
        token endpoint that refuses.
        """
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
        except (httpx.InvalidURL, TypeError) as exc:
            raise AuthError(f"{what}: {host} named an invalid token realm", status=401, temporary=False) from exc
        realm_host = realm_url.netloc.decode("ascii") if realm_url.host else ""
        if realm_url.scheme not in ("http", "https") or not realm_host:
            raise AuthError(f"{what}: {host} named a token realm that is not an http(s) URL", status=401, temporary=False)
        origin = httpx.URL(f"{scheme_for(host, self.insecure)}://{host}/")
        check_target(realm_url, origin=origin, insecure=self.insecure, what=f"{what}: token realm")
        if realm_url.scheme == "http" and scheme_for(realm_host, self.insecure) != "http":
            raise AuthError(f"{what}: {host} named a plain-http token realm on {realm_host}; refusing", status=401, temporary=False)
        params = {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        want_scope = scope or challenge.params.get("scope", "")
        headers = {}
        cred = self.credentials.credential_for(host)
        if cred is not None and realm_may_get_credentials(host, realm_url):
            headers["Authorization"] = cred.basic_header()
        query = urlencode(params)
        if want_scope:
            # several scopes are separate scope= parameters
            query = "&".join(filter(None, [query, *(urlencode({"scope": s}) for s in want_scope.split(" ") if s)]))
        url = realm_url.copy_with(query=query.encode() if query else None)
        endpoint = f"{what}: token endpoint {realm_host}"

        def fetch() -> Any:
            try:
                resp = self.transport.send("GET", url, headers=headers, what=endpoint)
                self.transport.read(resp, MAX_TOKEN_RESPONSE_BYTES, endpoint)
            except ManifestError as exc:
                raise AuthError(f"{endpoint} answered more than {MAX_TOKEN_RESPONSE_BYTES} bytes; refused", temporary=False) from exc
            except TransportError as exc:
                name = type(exc.__cause__ or exc).__name__
                raise AuthError(f"{endpoint} unreachable: {name}", temporary=True) from exc
            if resp.status_code != 200:
                who = "with" if "Authorization" in headers else "without"
                temporary = resp.status_code in RETRY_STATUSES
                raise AuthError(
                    f"{endpoint} refused {who} credentials (HTTP {resp.status_code})", status=resp.status_code,
                    temporary=temporary, retry_after=parse_retry_after(resp.headers.get("retry-after")) if temporary else None,
                )
            try:
                return resp.json()
            except (ValueError, RecursionError) as exc:
                raise AuthError(f"{endpoint} answered invalid JSON", temporary=False) from exc

        doc = retry(self.policy, fetch, what=endpoint, sleep=self.sleep)
        value, expires_in = token_from_response(doc)
        self.tokens.put(host, scope, value, expires_in)
