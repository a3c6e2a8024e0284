"""``moto_server`` on loopback, for boto3 code under test.

    with MotoServer() as moto:
        os.environ.update(boto3_env(moto.url))
        boto3.client("dynamodb").list_tables()

ECR is not played by moto here (its registry API is missing, and its images are not the registry's):
:class:`tests.support.ecr.EcrStandIn` plays both ECR faces; point boto3's ``ecr`` client at it with
``AWS_ENDPOINT_URL_ECR`` (:attr:`EcrStandIn.env`).

The executable is the one installed next to the running Python (the project venv), else the
one on PATH. A missing executable raises RuntimeError: tests fail, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from .process import LOOPBACK, PortInUse, find_free_port, stop_process, wait_until_answers

__all__ = ["MotoServer", "boto3_env", "moto_server_executable"]

REGION = "us-east-1"
_START_ATTEMPTS = 3


def moto_server_executable() -> str:
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError(
            "`moto_server` not found next to the Python interpreter or on PATH; "
            "install `moto[server]` (pip install -r requirements.txt)"
        )
    return found


def boto3_env(url: str, region: str = REGION) -> dict[str, str]:
    """Environment variables that point boto3 at a moto server with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
    }


class MotoServer:
    """``moto_server -H 127.0.0.1 -p <free port>`` in its own temp dir."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._log_file = None

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("moto server is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def env(self) -> dict[str, str]:
        return boto3_env(self.url)

    def start(self) -> MotoServer:
        if self._proc is not None:
            raise RuntimeError("moto server already started")
        executable = moto_server_executable()
        self._workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-moto-"))
        try:
            for attempt in range(_START_ATTEMPTS):
                self.port = find_free_port()
                log = self._workdir / "moto.log"
                self._log_file = log.open("wb")
                self._proc = subprocess.Popen(
                    [executable, "-H", LOOPBACK, "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self._workdir,
                )
                try:
                    wait_until_answers(
                        self._proc, LOOPBACK, self.port, "/moto-api/", self.startup_timeout, log, "moto_server"
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

    def reset(self) -> None:
        """Forget all state (repositories, tables, queues...) in every moto backend."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=30).raise_for_status()

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client pointed at this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
        self._close_log()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MotoServer {self.url if self.port else 'not started'}>"
