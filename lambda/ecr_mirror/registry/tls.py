"""Which certificate authorities an https registry may be signed by.

Default trust is what httpx itself would use: the file named by ``SSL_CERT_FILE`` or the directory
named by ``SSL_CERT_DIR`` when set (the OpenSSL variables, https://docs.openssl.org/3.0/man3/SSL_CTX_load_verify_locations/),
else certifi's Mozilla bundle. ``ca_file`` (the CLI's ``--ca-file``) adds the CAs of a PEM file on top:
a private registry signed by its own CA is then trusted without losing the public ones, as Docker's
``certs.d/<host>/ca.crt`` does for one host.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

from ..errors import ConfigError

ENV_CERT_FILE = "SSL_CERT_FILE"
ENV_CERT_DIR = "SSL_CERT_DIR"


def _trusting(what: str, *, cafile: str | None = None, capath: str | None = None,
              ctx: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A new default client context trusting ``cafile``/``capath``, or ``ctx`` with them added."""
    try:
        if ctx is None:
            return ssl.create_default_context(cafile=cafile, capath=capath)
        ctx.load_verify_locations(cafile=cafile, capath=capath)
        return ctx
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{what}: is a directory, not a PEM file") from exc
    except PermissionError as exc:
        raise ConfigError(f"{what}: permission denied") from exc
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{what}: not a PEM file of CA certificates") from exc


def tls_context(ca_file: str | None = None, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` that verifies registries against the default trust plus ``ca_file``.

    Raises :class:`ConfigError` naming the file or variable when a certificate file cannot be used.
    """
    import certifi  # httpx's own dependency, and its default bundle

    env = os.environ if environ is None else environ
    if env.get(ENV_CERT_FILE):
        ctx = _trusting(f"{ENV_CERT_FILE}={env[ENV_CERT_FILE]}", cafile=env[ENV_CERT_FILE])
    elif env.get(ENV_CERT_DIR):
        if not os.path.isdir(env[ENV_CERT_DIR]):
            raise ConfigError(f"{ENV_CERT_DIR}={env[ENV_CERT_DIR]}: no such directory")
        ctx = _trusting(f"{ENV_CERT_DIR}={env[ENV_CERT_DIR]}", capath=env[ENV_CERT_DIR])
    else:
        ctx = _trusting("certifi's CA bundle", cafile=certifi.where())
    if ca_file:
        _trusting(f"--ca-file {ca_file}", cafile=ca_file, ctx=ctx)
    return ctx


__all__ = ["ENV_CERT_DIR", "ENV_CERT_FILE", "tls_context"]
