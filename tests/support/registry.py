"""A real CNCF distribution registry (``docker-registry serve``) on loopback, for tests.

    with RegistryProcess() as reg:                       # anonymous, delete enabled
        httpx.get(f"{reg.url}/v2/")
    with RegistryProcess(htpasswd={"AWS": "secret"}) as reg:   # demands Basic auth
        httpx.get(f"{reg.url}/v2/", auth=reg.auth)
    with RegistryProcess(manifest_urls_allow=["^https?://"]) as reg:   # accepts foreign layers with urls
        ...
    with RegistryProcess(tls=(cert, key), address="192.0.2.2") as reg:   # https on that address
        ...                                                         # (tests/support/tls.py makes both)

Each instance has its own temp dir (config, htpasswd file, storage, log) removed on stop.
``storage="filesystem"`` (default) keeps blobs under that dir; the registry fsyncs every blob, which
costs tens of milliseconds per upload on a disk. ``storage="memory"`` uses distribution's
``inmemory`` driver: same HTTP API, several times faster, gone when the process stops.
A missing binary raises RuntimeError: tests fail, they do not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .process import LOOPBACK, PortInUse, find_free_port, stop_process, wait_until_answers

__all__ = ["RegistryProcess", "find_free_port", "registry_binary"]

BINARY = "docker-registry"
_START_ATTEMPTS = 3


def registry_binary(name: str = BINARY) -> str:
    """Path of the registry binary, or RuntimeError telling how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"`{name}` (CNCF distribution registry) is not on PATH; install it with "
            "`apt-get install -y docker-registry` (or run `make system-deps`)"
        )
    return path


class RegistryProcess:
    """``docker-registry serve`` on 127.0.0.1 and a free port, in its own temp dir."""

    def __init__(
        self,
        *,
        htpasswd: Mapping[str, str] | None = None,
        delete: bool = True,
        storage: str = "filesystem",
        realm: str = "test-registry",
        startup_timeout: float = 15.0,
        binary: str = BINARY,
        tls: tuple[str | Path, str | Path] | None = None,
        address: str = LOOPBACK,
        manifest_urls_allow: Sequence[str] | None = None,
    ) -> None:
        self.htpasswd = dict(htpasswd or {})
        #: regexes for ``validation.manifests.urls.allow``: with them, distribution accepts manifests whose
        #: non-distributable (foreign) layers carry ``urls`` matching one of them (their bytes are not checked);
        #: without, it refuses every layer descriptor that has ``urls`` (MANIFEST_INVALID)
        self.manifest_urls_allow = list(manifest_urls_allow) if manifest_urls_allow is not None else None
        self.delete = delete
        if storage not in ("filesystem", "memory"):
            raise ValueError(f"storage must be 'filesystem' or 'memory', got {storage!r}")
        self.storage = storage
        self.realm = realm
        self.startup_timeout = startup_timeout
        self.binary = binary
        self.tls = (str(tls[0]), str(tls[1])) if tls else None  # (certificate PEM, key PEM): serve https
        self.address = address
        self.port: int | None = None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` (or ``ADDRESS:PORT``), as it appears in image references."""
        if self.port is None:
            raise RuntimeError("registry is not started")
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def data_dir(self) -> Path:
        """Where a filesystem-storage registry keeps its blobs and repositories."""
        if self.workdir is None:
            raise RuntimeError("registry is not started")
        if self.storage != "filesystem":
            raise RuntimeError("a memory-storage registry has no data directory")
        return self.workdir / "data"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first htpasswd user and password, or None for an anonymous registry."""
        return next(iter(self.htpasswd.items()), None)

    @property
    def auth(self):
        """An ``httpx.BasicAuth`` for :attr:`credentials`, or None."""
        if not self.htpasswd:
            return None
        import httpx

        user, password = self.credentials
        return httpx.BasicAuth(user, password)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RegistryProcess:
        if self._proc is not None:
            raise RuntimeError("registry already started")
        binary = registry_binary(self.binary)
        self.workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-registry-"))
        (self.workdir / "data").mkdir()
        if self.htpasswd:
            _write_htpasswd(self.workdir / "htpasswd", self.htpasswd)
        try:
            for attempt in range(_START_ATTEMPTS):
                self.port = find_free_port(self.address)
                config = self.workdir / "config.yml"
                # JSON is valid YAML, and quotes paths safely
                config.write_text(json.dumps(self._config(), indent=2))
                log = self.workdir / "registry.log"
                self._log_file = log.open("wb")
                self._proc = subprocess.Popen(
                    [binary, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
                try:
                    # a TLS registry answers a plain-http probe with 400: it is up all the same
                    wait_until_answers(
                        self._proc, self.address, self.port, "/v2/", self.startup_timeout, log, "docker-registry"
                    )
                    return self
                except PortInUse:
                    self._close_log()
                    self._proc = None
                    if attempt == _START_ATTEMPTS - 1:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _config(self) -> dict[str, Any]:
        assert self.workdir is not None
        driver: dict[str, Any] = (
            {"filesystem": {"rootdirectory": str(self.workdir / "data")}}
            if self.storage == "filesystem"
            else {"inmemory": {}}
        )
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "error", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                **driver,
                "delete": {"enabled": self.delete},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            # a fixed secret avoids a startup warning; only used to sign upload state
            "http": {"addr": f"{self.address}:{self.port}", "secret": "ecr-mirror-test-registry"},
        }
        if self.tls:
            config["http"]["tls"] = {"certificate": self.tls[0], "key": self.tls[1]}
        if self.manifest_urls_allow is not None:
            config["validation"] = {"manifests": {"urls": {"allow": self.manifest_urls_allow}}}
        if self.htpasswd:
            config["auth"] = {"htpasswd": {"realm": self.realm, "path": str(self.workdir / "htpasswd")}}
        return config

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
        self._close_log()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        auth = " htpasswd" if self.htpasswd else ""
        return f"<RegistryProcess {where} {self.storage}{auth}>"


def _write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    import bcrypt

    lines = []
    for user, password in users.items():
        if ":" in user:
            raise ValueError(f"htpasswd user names cannot contain ':': {user!r}")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:{hashed}\n")
    path.write_text("".join(lines))
