"""Where the client may go, and where credentials may go: redirect, address and scheme checks.

Every URL a registry hands us is checked here before a connection is made: redirect targets,
upload ``Location`` headers, ``Link`` pagination, token realms (:func:`check_redirect_target`).
Registry credentials go to a token realm only on the registry's own domain
(:func:`realm_may_get_credentials`). Plain http is spoken only to loopback and to hosts the
operator named (:func:`scheme_for`).

Sources: distribution-spec (redirects: never forward ``Authorization`` across hosts, commit
dbaac7b); AWS instance metadata addresses (IMDS ``169.254.169.254``, ``fd00:ec2::254``; EKS Pod
Identity ``169.254.170.23``, ``fd00:ec2::23``).
"""

from __future__ import annotations

import ipaddress
import re
import socket

import httpx

from ..errors import UnsafeRedirectError
from ..reference import host_without_port, is_loopback_host

#: host names of cloud metadata services
BLOCKED_HOSTNAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})
#: instance metadata services reachable on addresses that are not link-local (AWS IMDS and EKS Pod Identity over IPv6)
BLOCKED_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("fd00:ec2::23")})
#: what the system resolver also takes as an IPv4 address: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
_NUMERIC_HOST_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)
#: second-level labels under country TLDs that are public suffixes (co.uk, com.au, co.jp, ...), no domain of anyone's own
_SECOND_LEVEL_SUFFIXES = frozenset({"ac", "co", "com", "edu", "gov", "go", "ne", "net", "or", "org"})


def scheme_for(host: str, insecure: frozenset[str]) -> str:
    """``http`` for loopback hosts and hosts named in ``insecure`` (lower-case, with or without port), else ``https``."""
    h = host.lower()
    if is_loopback_host(h) or h in insecure or host_without_port(h) in insecure:
        return "http"
    return "https"


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` names literally, in any notation a resolver accepts; ``None`` for a DNS name.

    Raises :class:`UnsafeRedirectError` for a numeric host no notation makes an address of.
    """
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST_RE.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError as exc:
            raise UnsafeRedirectError(f"refused a URL with the ambiguous numeric host {host}") from exc
    return None


def check_redirect_target(url: httpx.URL, *, origin: httpx.URL, insecure: frozenset[str]) -> None:
    """Refuse redirects to other schemes, to link-local/metadata addresses, or https->http downgrades.

    Checked on the URL alone, before any connection: IP literals in every notation the resolver
    accepts (decimal, hex, octal, short forms, IPv4-mapped IPv6) count as the address they name.
    A DNS name that resolves to such an address is not caught here. Loopback is reached only from
    loopback; plain http from https only for hosts in ``insecure``. Raises :class:`UnsafeRedirectError`.
    """
    if url.scheme not in ("http", "https"):
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to a {url.scheme or 'schemeless'}: URL")
    host = url.host or ""
    if not host:
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to a URL without a host")
    name = host.lower().rstrip(".")
    if name in BLOCKED_HOSTNAMES:
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to metadata host {host}")
    ip = host_address(host)
    if ip is not None:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip in BLOCKED_ADDRESSES:
            raise UnsafeRedirectError(f"refused redirect from {origin.host} to address {ip} (link-local/reserved/metadata)")
    if (ip.is_loopback if ip is not None else is_loopback_host(name)) and not is_loopback_host(origin.host or ""):
        raise UnsafeRedirectError(f"refused redirect from {origin.host} to loopback {host}")
    if url.scheme == "http" and origin.scheme == "https":
        hostport = f"{host}:{url.port}" if url.port else host
        if not is_loopback_host(hostport) and hostport.lower() not in insecure and host.lower() not in insecure:
            raise UnsafeRedirectError(f"refused redirect from https://{origin.host} down to plain http://{host}")


def check_target(url: httpx.URL, *, origin: httpx.URL, insecure: frozenset[str], what: str) -> None:
    """:func:`check_redirect_target`, its error naming ``what`` was being done (so, the image)."""
    try:
        check_redirect_target(url, origin=origin, insecure=insecure)
    except UnsafeRedirectError as exc:
        raise UnsafeRedirectError(f"{what}: {exc}") from exc


def realm_may_get_credentials(registry_host: str, realm: httpx.URL) -> bool:
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
