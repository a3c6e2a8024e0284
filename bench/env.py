"""Processes, registries and measurement plumbing for the benchmark.

Everything started here is registered with a :class:`Cleanup` (an ExitStack) so that a normal exit,
an exception, Ctrl-C or SIGTERM stops every registry, proxy and child process and removes every
temp dir. Child processes are waited for with ``os.wait4`` so each run gets its own rusage
(peak RSS and CPU seconds), not a sum over all children.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
for p in (str(ROOT), str(ROOT / "lambda")):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.support.proxy import RegistryProxy
from tests.support.registry import RegistryProcess

PYTHON = sys.executable
ECR_MIRROR = str(Path(sys.executable).parent / "ecr-mirror")
LAUNCHER = BENCH / "launch.py"


def skopeo_cache_files() -> list[Path]:
    """Where skopeo (containers/image) keeps its blob-info cache: root and rootless locations."""
    home = Path.home()
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return [
        Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
        data / "containers" / "cache" / "blob-info-cache-v1.boltdb",
        data / "containers" / "cache" / "blob-info-cache-v1.sqlite",
    ]


def clear_skopeo_cache() -> None:
    for f in skopeo_cache_files():
        with contextlib.suppress(FileNotFoundError, PermissionError):
            f.unlink()


class Interrupted(BaseException):
    """SIGTERM/SIGHUP, turned into an exception so every ``finally`` runs."""


def install_signal_handlers() -> None:
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


class Cleanup(contextlib.ExitStack):
    """One stack for everything the bench starts; children tracked for kill on the way out."""

    def __init__(self) -> None:
        super().__init__()
        self.children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.callback(self._kill_children)

    def __exit__(self, *exc: object) -> bool:
        """Unwind with Ctrl-C/SIGTERM ignored, so a second signal cannot cut a stop() or rmtree short."""
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            return super().__exit__(*exc)
        finally:
            for sig, handler in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler)

    def _kill_children(self) -> None:
        with self._lock:
            children = list(self.children)
            self.children.clear()
        for proc in children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in children:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def tempdir(self, prefix: str = "ecr-mirror-bench-") -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def registry(self, storage: str = "filesystem") -> RegistryProcess:
        reg = RegistryProcess(storage=storage)
        self.callback(reg.stop)
        return reg.start()

    def proxy(self, upstream: object) -> RegistryProxy:
        proxy = RegistryProxy(upstream)
        self.callback(proxy.stop)
        return proxy.start()


@contextlib.contextmanager
def fresh_registry(cleanup: Cleanup, storage: str = "filesystem"):
    """A registry for one run, stopped (and its storage removed) afterwards."""
    reg = RegistryProcess(storage=storage)
    cleanup.callback(reg.stop)  # in case of Ctrl-C; stop() is idempotent
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@dataclass
class ChildRun:
    argv: list[str]
    wall: float
    returncode: int
    maxrss_kib: int
    cpu_user: float
    cpu_sys: float
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def maxrss_mib(self) -> float:
        return self.maxrss_kib / 1024

    def check(self) -> ChildRun:
        if self.returncode != 0:
            name = Path(self.argv[0]).name
            raise RuntimeError(f"{name} exited {self.returncode}: {self.stderr.strip()[-2000:]}")
        return self


def run_child(
    cleanup: Cleanup, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900.0
) -> ChildRun:
    """Run ``argv`` to completion: its wall time, exit status and its own rusage (peak RSS, CPU).

    It runs under ``bench/launch.py`` (see there why), which times it and reports its rusage, so the
    wall time excludes the launcher's own start. stdout/stderr go to temp files (no pipe-reading
    threads competing for the CPU we measure). The launcher gets its own process group, so cleanup
    ends it together with the command.
    """
    return _launch(cleanup, [argv], env=env, timeout=timeout)[0]


def run_batch(
    cleanup: Cleanup, commands: list[list[str]], *, env: dict[str, str] | None = None, timeout: float = 1800.0
) -> list[ChildRun]:
    """Run ``commands`` one after another under ONE launcher (like a shell loop); one ChildRun each.

    Stops at the first failure (the list is then shorter than ``commands``).
    """
    return _launch(cleanup, commands, env=env, timeout=timeout)


def _launch(
    cleanup: Cleanup, commands: list[list[str]], *, env: dict[str, str] | None, timeout: float
) -> list[ChildRun]:
    fd, usage_path = tempfile.mkstemp(prefix="ecr-mirror-bench-usage-", suffix=".json")
    os.close(fd)
    batch_path = None
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            if len(commands) == 1:
                launcher = [PYTHON, "-S", str(LAUNCHER), usage_path, *commands[0]]
            else:
                fd, batch_path = tempfile.mkstemp(prefix="ecr-mirror-bench-batch-", suffix=".json")
                with os.fdopen(fd, "w") as f:
                    json.dump(commands, f)
                launcher = [PYTHON, "-S", str(LAUNCHER), "--batch", usage_path, batch_path]
            proc = subprocess.Popen(
                launcher, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
            )
            with cleanup._lock:
                cleanup.children.add(proc)
            try:
                proc.wait(timeout=timeout)
            except BaseException:  # timeout, Ctrl-C: end the launcher and the command
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                with cleanup._lock:
                    cleanup.children.discard(proc)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        try:
            usages = json.loads(Path(usage_path).read_text())
        except (OSError, ValueError):
            usages = [{"wall": 0.0, "returncode": proc.returncode, "maxrss_kib": 0, "utime": 0.0, "stime": 0.0}]
        return [
            ChildRun(
                argv=list(argv),
                wall=u["wall"],
                returncode=u["returncode"],
                maxrss_kib=u["maxrss_kib"],
                cpu_user=u["utime"],
                cpu_sys=u["stime"],
                stdout=stdout,
                stderr=stderr,
            )
            for argv, u in zip(commands, usages, strict=False)  # shorter after a failure
        ]
    finally:
        for path in (usage_path, batch_path):
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def skopeo_copy_argv(src: str, dst: str) -> list[str]:
    return [
        "skopeo",
        "copy",
        "--all",
        "--quiet",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{src}",
        f"docker://{dst}",
    ]


def ecr_mirror_env() -> dict[str, str]:
    """The CLI's environment: no AWS profile or docker config of this machine leaks in."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ECR_MIRROR_"):
            del env[k]
    return env
