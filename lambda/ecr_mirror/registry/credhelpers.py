"""Docker credential helpers: the ``docker-credential-<name>`` programs that ``credsStore`` and
``credHelpers`` in the Docker config name (``docker-credential-ecr-login``, ``-desktop``,
``-pass``, ``-osxkeychain``, ...).

The protocol (docker/docker-credential-helpers, ``client/client.go`` and ``credentials/credentials.go``):
run ``docker-credential-<name> get`` with the server URL on stdin; on success it prints
``{"ServerURL": …, "Username": …, "Secret": …}``. A ``Username`` of ``<token>`` means ``Secret`` is
an identity token (an OAuth2 refresh token), as in ``auths`` entries. When it has nothing for that
server it exits non-zero with ``credentials not found in native keychain`` on stdout
(``credentials.ErrCredentialsNotFound``): that is "no credentials", not an error. Docker asks about
Docker Hub as ``https://index.docker.io/v1/`` and about any other registry by its ``host[:port]``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..reference import DOCKER_HUB, DOCKER_HUB_API

#: what a helper prints when it has no credentials for the server (credentials.ErrCredentialsNotFound)
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
#: the name Docker stores and asks Docker Hub's credentials under
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
#: Docker Hub under any of its names
DOCKER_HUB_HOSTS = frozenset({DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", "registry.hub.docker.com"})
#: seconds a helper may take (docker-credential-ecr-login calls AWS; desktop stores may prompt)
HELPER_TIMEOUT = 60.0
#: helper names are part of a program name: no path separators, nothing a shell would read
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def server_url(host: str) -> str:
    """What Docker passes a helper for registry ``host``: ``https://index.docker.io/v1/`` for Docker Hub, else ``host``."""
    return DOCKER_HUB_SERVER_URL if host.lower() in DOCKER_HUB_HOSTS else host.lower()


class CredentialHelper:
    """One ``docker-credential-<name>`` program. ``where`` says where it was configured (for messages).

    ``run`` is :func:`subprocess.run` (injectable). Raises :class:`ConfigError` for a name that is not
    a plain program name.
    """

    def __init__(self, name: str, *, where: str = "the Docker config", timeout: float = HELPER_TIMEOUT,
                 run: Callable[..., Any] = subprocess.run) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigError(f"{where}: credential helper name {name!r} is not a plain program name")
        self.name = name
        self.program = f"docker-credential-{name}"
        self.where = where
        self.timeout = timeout
        self._run = run

    def get(self, host: str) -> tuple[str, str] | None:
        """``(username, secret)`` the helper holds for registry ``host``, or ``None`` when it has none.

        Raises :class:`ConfigError` when the helper is not on ``PATH``, fails, hangs past its timeout or
        answers something that is not its JSON.
        """
        url = server_url(host)
        path = shutil.which(self.program)
        if path is None:
            raise ConfigError(f"credential helper {self.program} (named by {self.where}) is not on PATH")
        what = f"credential helper {self.program} get {url}"
        try:
            done = self._run([path, "get"], input=url.encode(), capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(f"{what}: no answer within {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise ConfigError(f"{what}: cannot run it ({exc.strerror})") from exc
        out = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            if NOT_FOUND_MESSAGE in out:
                return None
            detail = (out or done.stderr.decode("utf-8", "replace").strip()).splitlines()
            raise ConfigError(f"{what}: failed (exit {done.returncode})" + (f": {detail[0][:200]}" if detail else ""))
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        username, secret = (doc.get("Username"), doc.get("Secret")) if isinstance(doc, dict) else (None, None)
        if not isinstance(username, str) or not isinstance(secret, str):
            raise ConfigError(f"{what}: answer is not a JSON object with string Username and Secret")
        if not secret:
            return None
        return username, secret


__all__ = ["DOCKER_HUB_SERVER_URL", "NOT_FOUND_MESSAGE", "CredentialHelper", "server_url"]
