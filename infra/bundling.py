"""Bundling of the Lambda package without Docker.

:class:`LocalPipBundling` is the ``ILocalBundling`` CDK calls before it would start a Docker
container: it pip-installs ``lambda/requirements.txt`` for the Lambda platform
(``--platform manylinux2014_aarch64 --implementation cp --python-version <runtime>
--only-binary=:all:``) into the asset directory and copies ``lambda/ecr_mirror`` next to it.
The Docker image path (the runtime's SAM build image) stays only as the fallback that
``BundlingOptions`` requires; it is used only where local bundling cannot run at all (no pip).

The pip step downloads wheels and takes a while, so its result is cached on disk, keyed by a
hash of ``requirements.txt`` and the pip arguments, under the system temporary directory
(``<tmp>/ecr-mirror-bundle-cache/<key>``), so every synth on a machine after the first one
(test sessions, ``cdk synth``, ``cdk deploy``) skips pip. Unpinned transitive dependencies are
resolved when a key is first built; delete that directory to resolve them again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from .contract import LAMBDA_DIR, PACKAGE_NAME

#: the Lambda runtime and architecture of every function
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
#: pip's platform tag for Lambda's arm64 Amazon Linux 2023 (glibc 2.34, so manylinux2014 wheels fit)
PIP_PLATFORM = "manylinux2014_aarch64"

_CACHE_DIRNAME = "ecr-mirror-bundle-cache"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "*.egg-info", ".complete")


def python_version(runtime: lambda_.Runtime = RUNTIME) -> str:
    """'3.14' for ``python3.14``."""
    name = runtime.name
    if not name.startswith("python"):
        raise ValueError(f"not a Python runtime: {name}")
    return name.removeprefix("python")


def pip_arguments(target: Path, requirements: Path, runtime: lambda_.Runtime = RUNTIME) -> list[str]:
    """The ``pip install`` arguments that fetch the runtime dependencies for the Lambda platform."""
    return [
        "install",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version(runtime),
        "--only-binary=:all:",
        "--no-compile",  # .pyc files of the build machine's Python are useless on the runtime's
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
    ]


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """``try_bundle`` = pip install for the Lambda platform + copy of the package; no Docker."""

    def __init__(
        self,
        source_dir: Path = LAMBDA_DIR,
        package: str = PACKAGE_NAME,
        runtime: lambda_.Runtime = RUNTIME,
        cache_root: Path | None = None,
    ) -> None:
        self.source_dir = Path(source_dir)
        self.package = package
        self.runtime = runtime
        self.cache_root = cache_root

    # jsii passes the BundlingOptions struct as the second argument; nothing in it is needed here
    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        dependencies = self._dependencies()
        if dependencies is None:
            return False  # no pip here: CDK falls back to the Docker image
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(dependencies, out, dirs_exist_ok=True, ignore=_IGNORE, symlinks=False)
        shutil.copytree(self.source_dir / self.package, out / self.package, dirs_exist_ok=True, ignore=_IGNORE)
        return True

    # -- the pip step, cached -----------------------------------------------------------------

    @property
    def requirements(self) -> Path:
        return self.source_dir / "requirements.txt"

    def cache_key(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.requirements.read_bytes())
        digest.update("\0".join(pip_arguments(Path("T"), Path("R"), self.runtime)).encode())
        return digest.hexdigest()[:32]

    def _cache_root(self) -> Path:
        if self.cache_root is not None:
            return self.cache_root
        return Path(tempfile.gettempdir()) / _CACHE_DIRNAME

    def _dependencies(self) -> Path | None:
        """The directory holding the pip-installed dependencies; None when pip cannot run here."""
        root = self._cache_root()
        entry = root / self.cache_key()
        if (entry / ".complete").is_file():
            return entry
        if not _pip_available():
            return None
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            self._pip_install(staging)
            (staging / ".complete").write_text(self.requirements.read_text())
            try:
                staging.rename(entry)  # atomic; another process may have won the race
            except OSError:
                if not (entry / ".complete").is_file():
                    shutil.rmtree(entry, ignore_errors=True)
                    staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return entry

    def _pip_install(self, target: Path) -> None:
        command = [sys.executable, "-m", "pip", *pip_arguments(target, self.requirements, self.runtime)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"bundling the Lambda dependencies failed (pip exit {result.returncode}):\n"
                f"{' '.join(command)}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: no use in Lambda


def _pip_available() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def source_hash(runtime: lambda_.Runtime = RUNTIME, source_dir: Path = LAMBDA_DIR) -> str:
    """sha256 over what determines the bundle: requirements, every package file, the pip arguments.

    (CDK's own source hash includes the bundling options, whose local bundler object is not
    the same from one process to the next, so the hash and the asset would change every synth.)
    """
    digest = hashlib.sha256()
    digest.update("\0".join(pip_arguments(Path("T"), Path("R"), runtime)).encode())
    digest.update(b"\0requirements.txt\0" + (source_dir / "requirements.txt").read_bytes())
    package = source_dir / PACKAGE_NAME
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(b"\0" + path.relative_to(source_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def lambda_code(runtime: lambda_.Runtime = RUNTIME, local: LocalPipBundling | None = None) -> lambda_.Code:
    """One asset for all functions: the package plus its runtime dependencies.

    Share the returned object across the functions of a stack: CDK stages it once.
    The asset hash is :func:`source_hash` (requirements, package files, pip arguments), so it is
    the same in every process and an unchanged package is not re-bundled into an existing ``cdk.out``.
    """
    docker_fallback = (
        f"pip install --no-compile -r requirements.txt -t /asset-output && cp -r {PACKAGE_NAME} /asset-output/"
    )
    return lambda_.Code.from_asset(
        str(LAMBDA_DIR),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=source_hash(runtime),
        bundling=cdk.BundlingOptions(
            image=runtime.bundling_image,
            platform="linux/arm64",
            command=["bash", "-c", docker_fallback],
            local=local or LocalPipBundling(runtime=runtime),
        ),
    )
