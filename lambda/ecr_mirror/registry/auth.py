"""Registry authentication: challenge parsing, credentials, token cache.

Credentials come from a chain of providers: explicit ones (CLI, Secrets Manager),
the Docker config file, and for ECR hosts ``ecr:GetAuthorizationToken`` via boto3.
Secret values are held in :class:`Credential` whose ``repr`` never shows them.
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

from ..errors import AuthError, AwsError, ConfigError
from ..reference import DOCKER_HUB, DOCKER_HUB_API, ecr_host_region

_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_PARAM_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
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
    def credential_for(self, host: str) -> Credential | None: ...

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
        for key in _host_keys(host):
            key = key.removeprefix("https://").removeprefix("http://").rstrip("/")
            if key in self._by_host:
                return self._by_host[key]
        return None

    def secrets(self) -> Iterable[str]:
        return [c.password for c in self._by_host.values()]


class DockerConfigCredentials:
    """``auths`` entries of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``).

    Credential helpers (``credsStore``/``credHelpers``) are not run.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
            path = Path(base) / "config.json"
        self.path = Path(path)
        self._entries: dict[str, Credential] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Credential]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            entries: dict[str, Credential] = {}
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                self._entries = entries
                return entries
            except OSError as exc:
                raise ConfigError(f"cannot read Docker config {self.path}: {exc.strerror}") from exc
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"Docker config {self.path} is not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
            auths = doc.get("auths") if isinstance(doc, dict) else None
            for key, value in (auths or {}).items():
                if not isinstance(value, dict):
                    continue
                cred = None
                if value.get("identitytoken"):
                    cred = Credential("<token>", str(value["identitytoken"]), "identitytoken")
                elif value.get("auth"):
                    try:
                        user, _, pw = base64.b64decode(value["auth"]).decode().partition(":")
                    except (ValueError, UnicodeDecodeError):
                        raise ConfigError(f"Docker config {self.path}: 'auth' for {key!r} is not base64 user:password") from None
                    cred = Credential(user, pw)
                elif value.get("username") and value.get("password"):
                    cred = Credential(str(value["username"]), str(value["password"]))
                if cred is not None:
                    norm = key.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
                    norm = norm.removesuffix("/v1").removesuffix("/v2")
                    entries[norm] = cred
            self._entries = entries
            return entries

    def credential_for(self, host: str) -> Credential | None:
        entries = self._load()
        for key in _host_keys(host):
            key = key.removeprefix("https://").removeprefix("http://").rstrip("/").removesuffix("/v1").removesuffix("/v2")
            if key in entries:
                return entries[key]
        return None

    def secrets(self) -> Iterable[str]:
        return [c.password for c in self._load().values()]


class EcrCredentials:
    """ECR registry hosts get Basic ``AWS:<password>`` from ``GetAuthorizationToken``, cached per region.

    ``client_factory(region)`` returns a boto3 ECR client; it is called lazily, at most once per region.
    Also serves ``extra_hosts`` (e.g. ``ECR_MIRROR_TARGET_REGISTRY`` pointing at a stand-in).
    """

    REFRESH_MARGIN = 15 * 60  # refresh this long before expiresAt

    def __init__(
        self,
        client_factory: Callable[[str], Any],
        *,
        extra_hosts: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._factory = client_factory
        self._extra = {h.lower(): region for h, region in (extra_hosts or {}).items()}
        self._cache: dict[str, tuple[Credential, float]] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def region_for(self, host: str) -> str | None:
        if host.lower() in self._extra:
            return self._extra[host.lower()]
        found = ecr_host_region(host)
        return found[1] if found else None

    def credential_for(self, host: str) -> Credential | None:
        region = self.region_for(host)
        if region is None:
            return None
        with self._lock:
            cached = self._cache.get(region)
            if cached and cached[1] - self.REFRESH_MARGIN > self._clock():
                return cached[0]
            try:
                client = self._clients.get(region)
                if client is None:
                    client = self._clients[region] = self._factory(region)
                answer = client.get_authorization_token()
                data = answer["authorizationData"][0]
                user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            except Exception as exc:  # botocore errors, malformed answers
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
                raise AwsError(f"ecr:GetAuthorizationToken failed in {region}: {code}", code=str(code)) from None
            expires = data.get("expiresAt")
            now = self._clock()
            expires_at = expires.timestamp() if hasattr(expires, "timestamp") else now + 12 * 3600
            if expires_at - self.REFRESH_MARGIN <= now:
                # an expiry already inside the margin (emulators report odd ones): reuse for a short while
                expires_at = now + self.REFRESH_MARGIN + 300
            cred = Credential(user, password)
            self._cache[region] = (cred, expires_at)
            return cred

    def invalidate(self, host: str, refused: str | None = None) -> bool:
        """Forget the cached token for ``host``'s region after the registry refused it (``refused``: the
        ``Authorization`` value sent; a token cached since, by another thread, is kept). True for an ECR host."""
        region = self.region_for(host)
        with self._lock:
            cached = self._cache.get(region or "")
            if cached is not None and (refused is None or cached[0].basic_header() == refused):
                del self._cache[region or ""]
        return region is not None

    def secrets(self) -> Iterable[str]:
        return [c.password for c, _ in self._cache.values()]


class ChainCredentials:
    """First provider that knows the host wins."""

    def invalidate(self, host: str, refused: str | None = None) -> bool:
        """Drop cached credentials for ``host``; True if a provider will fetch fresh ones (ECR)."""
        refreshed = False
        for p in self.providers:
            if hasattr(p, "invalidate"):
                refreshed = bool(p.invalidate(host, refused)) or refreshed
        return refreshed

    def __init__(self, *providers: CredentialProvider) -> None:
        self.providers = [p for p in providers if p is not None]

    def credential_for(self, host: str) -> Credential | None:
        for p in self.providers:
            cred = p.credential_for(host)
            if cred is not None:
                return cred
        return None

    def secrets(self) -> Iterable[str]:
        out: list[str] = []
        for p in self.providers:
            out.extend(p.secrets())
        return out


class NoCredentials:
    def credential_for(self, host: str) -> Credential | None:
        return None

    def secrets(self) -> Iterable[str]:
        return []


@dataclass
class Token:
    value: str
    expires_at: float
    margin: float = 0.0  # treated as expired this long before expires_at

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
        with self._lock:
            tok = self._tokens.get((host, scope))
            if tok and tok.expires_at - tok.margin > self._clock():
                return tok
            return None

    def put(self, host: str, scope: str, value: str, expires_in: float) -> Token:
        lifetime = max(expires_in, 1.0)
        # refresh MARGIN seconds early, but a short-lived token (expires_in of a few seconds) must still be used
        tok = Token(value, self._clock() + lifetime, min(self.MARGIN, lifetime / 4))
        with self._lock:
            self._tokens[(host, scope)] = tok
        return tok

    def drop(self, host: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((host, scope), None)

    def values(self) -> list[str]:
        with self._lock:
            return [t.value for t in self._tokens.values()]


def token_from_response(doc: Any) -> tuple[str, float]:
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
