"""Image references, parsed and normalised the way Docker does it. Pure: no I/O.

``golang`` is ``docker.io/library/golang:latest``; ``index.docker.io`` is ``docker.io``;
the Docker Hub API host is ``registry-1.docker.io``. Grammar after distribution's
``reference/regexp.go``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from .errors import ReferenceError_, shown

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?\Z")
#: the longest tag the OCI distribution spec allows ("Pulling manifests": ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``)
MAX_TAG_LENGTH = 128
_TAG_RE = re.compile(rf"^[\w][\w.-]{{0,{MAX_TAG_LENGTH - 1}}}\Z", re.ASCII)
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
MAX_NAME_LENGTH = 255


def validate_digest(digest: str, *, what: str = "digest") -> str:
    """Return ``digest`` if it is ``algorithm:hex`` with a known algorithm and the right length."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ReferenceError_(f"invalid {what} {digest!r}: expected sha256:<64 hex digits>")
    algorithm, _, encoded = digest.partition(":")
    expected = _HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise ReferenceError_(f"invalid {what} {digest!r}: unsupported algorithm {algorithm!r}")
    if len(encoded) != expected:
        raise ReferenceError_(
            f"invalid {what} {digest!r}: {algorithm} needs {expected} lowercase hex digits, got {len(encoded)}"
        )
    if not re.fullmatch(r"[0-9a-f]+", encoded):
        raise ReferenceError_(f"invalid {what} {digest!r}: {algorithm} digest must be lowercase hex (0-9, a-f)")
    return digest


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag; raises :class:`ReferenceError_` otherwise."""
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ReferenceError_(
            f"invalid tag {tag!r}: up to 128 of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )
    return tag


def check_tag(tag: object) -> str:
    """:func:`validate_tag` for a tag from data of any size: a long or blank-holding value is named
    shortened (a row's ``tags``, a registry's tag list). Raises :class:`ReferenceError_`."""
    if not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH or any(c.isspace() for c in tag):
        raise ReferenceError_(f"invalid tag {shown(tag)}: up to 128 of letters, digits, '_', '.', '-'")
    return validate_tag(tag)


def is_valid_tag(tag: object) -> bool:
    """Whether ``tag`` is a valid OCI tag (up to 128 of ``[A-Za-z0-9_.-]``, not starting with ``.``/``-``)."""
    try:
        check_tag(tag)
    except ReferenceError_:
        return False
    return True


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def _normalise(original: str, name: str) -> tuple[str, str]:
    if not name:
        raise ReferenceError_(f"invalid reference {original!r}: empty repository name")
    domain, path = _split_domain(name)
    if not _HOST_RE.match(domain):
        raise ReferenceError_(f"invalid reference {original!r}: bad registry host {domain!r}")
    if domain.lower() in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH_RE.match(path):
        hint = " (repository names must be lowercase)" if path.lower() != path else ""
        raise ReferenceError_(f"invalid reference {original!r}: bad repository name {path!r}{hint}")
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise ReferenceError_(f"invalid reference {original!r}: name longer than {MAX_NAME_LENGTH} characters")
    host = domain.lower()
    if not ("." in host or ":" in host or host == "localhost"):
        # an uppercase single-label host (``MyRegistry/app``): Docker keeps it as given; lowercased,
        # ``myregistry/app`` would parse back as the Docker Hub repository docker.io/myregistry/app
        host = domain
    return host, path


@dataclass(frozen=True, order=True)
class Reference:
    """A normalised reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Host to talk the registry API to (Docker Hub's API lives elsewhere)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (no digest); raises :class:`ReferenceError_` for a bad tag."""
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (no tag); raises :class:`ReferenceError_` for a bad digest."""
        return replace(self, tag=None, digest=validate_digest(digest))

    def in_repository(self, repository: str) -> Reference:
        """The same registry, tag and digest in another repository (not validated: callers pass known names)."""
        return replace(self, repository=repository)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse ``[host[:port]/]path[:tag][@digest]``; a bare name gets ``default_tag``."""
    if not isinstance(text, str):
        raise ReferenceError_(f"invalid reference {text!r}: not a string")
    original = text
    if text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError_(f"invalid reference {original!r}: contains whitespace")
    if "://" in text:
        raise ReferenceError_(f"invalid reference {original!r}: drop the scheme, write host/repository:tag")
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        validate_digest(digest, what=f"digest in reference {original!r}")
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        try:
            validate_tag(tag)
        except ReferenceError_ as exc:
            raise ReferenceError_(f"invalid reference {original!r}: {exc}") from exc
    registry, repository = _normalise(original, text)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repository, tag, digest)


def parse_repository(text: str) -> Reference:
    """Parse a repository without tag or digest, e.g. ``docker.io/library/golang`` or ``golang``."""
    ref = parse_reference(text, default_tag=None)
    if ref.tag or ref.digest:
        raise ReferenceError_(f"invalid repository {text!r}: give the repository without a tag or digest")
    return ref


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    hostname = host_without_port(host)
    if hostname.lower() == "localhost" or hostname.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def host_without_port(host: str) -> str:
    """``host:port`` -> ``host``; ``[::1]:5000`` -> ``::1``; a bare IPv6 address is returned as is."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


_ECR_HOST_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr(?:-ecr|\.ecr)(?:-fips)?\.(?P<region>[a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws|on\.amazonwebservices\.com\.cn)\Z"
)


def ecr_host_region(host: str) -> tuple[str, str] | None:
    """``(account, region)`` for an ECR private registry host, else ``None``."""
    m = _ECR_HOST_RE.match(host_without_port(host).lower())
    return (m["account"], m["region"]) if m else None


# ---------------------------------------------------------------- ECR repository names

#: one path component of an ECR repository name
_ECR_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
#: the ``repositoryName`` pattern of ECR's CreateRepository
#: (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html)
ECR_REPOSITORY_RE = re.compile(rf"(?:{_ECR_COMPONENT}/)*{_ECR_COMPONENT}")
ECR_REPOSITORY_MIN, ECR_REPOSITORY_MAX = 2, 256


def is_ecr_repository_path(text: object) -> bool:
    """Whether ``text`` is made of valid ECR path components (any length): a repository prefix, say."""
    return isinstance(text, str) and ECR_REPOSITORY_RE.fullmatch(text) is not None


def is_valid_ecr_repository(name: object) -> bool:
    """Whether ``name`` is a valid ECR repository name: lowercase ``/``-separated components of
    ``[a-z0-9]`` joined by single ``.``, ``_`` or ``-``, 2-256 characters in all (API_CreateRepository)."""
    return (
        isinstance(name, str)
        and ECR_REPOSITORY_MIN <= len(name) <= ECR_REPOSITORY_MAX
        and ECR_REPOSITORY_RE.fullmatch(name) is not None
    )
