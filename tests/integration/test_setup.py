"""`make setup` checks what it needs (.ci/check-tools) before it marks itself done, and recovers.

Each test runs the real Makefile and script with a PATH built for it: a directory of links to this
machine's programs minus the ones the case takes away (node, npm, apt-get), plus small fakes
(an old node, an apt-get or npm that only record what they were asked). Nothing is installed for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
HIDDEN = {"node", "nodejs", "npm", "npx", "corepack", "apt-get", "apt", "sudo"}


def _path_without(tmp_path: Path, hide: set[str]) -> Path:
    """A bin directory linking every program on this PATH except ``hide``."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name in hide or (farm / entry.name).exists():
                continue
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                (farm / entry.name).symlink_to(os.path.realpath(entry.path))
    return farm


def _fake(farm: Path, name: str, script: str) -> Path:
    path = farm / name
    if path.is_symlink():
        path.unlink()
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(0o755)
    return path


def _run(args: list[str], farm: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": str(farm), "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **env}
    return subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)


def _lines(result: subprocess.CompletedProcess) -> list[str]:
    return (result.stdout + result.stderr).strip().splitlines()


def test_missing_node_is_one_line(tmp_path):
    farm = _path_without(tmp_path, HIDDEN)
    result = _run(["bash", str(ROOT / ".ci/check-tools")], farm, ROOT)
    assert result.returncode == 1
    assert _lines(result) == [
        "make: missing Node.js >= 18 (no node on PATH), npm; install it and run make again "
        "(Node.js: https://nodejs.org/en/download)"
    ]


def test_old_node_and_old_python_are_named(tmp_path):
    farm = _path_without(tmp_path, HIDDEN)
    _fake(farm, "node", 'echo "16.20.2"\n')
    _fake(farm, "npm", "exit 0\n")
    _fake(farm, "python3.9", 'case "$2" in *version_info*) exit 1;; *) echo 3.9.18;; esac\n')
    result = _run(["bash", str(ROOT / ".ci/check-tools")], farm, ROOT, PYTHON3="python3.9")
    assert result.returncode == 1
    (line,) = _lines(result)
    assert line.startswith("make: missing Node.js >= 18 (found 16.20.2), Python >= 3.11 (found 3.9.18);")


def test_apt_get_installs_what_is_missing(tmp_path):
    farm = _path_without(tmp_path, HIDDEN)
    log = tmp_path / "apt.log"
    real_node = shutil.which("node")
    assert real_node, "node is needed on this machine for this test"
    # a fake apt-get that records its arguments and "installs" node and npm into the PATH directory
    _fake(farm, "apt-get", f'echo "$@" >> {log}\n'
          f'if [ "$1" = install ]; then ln -sf {real_node} {farm}/node; printf "#!/bin/sh\\n" > {farm}/npm; '
          f'chmod +x {farm}/npm; fi\n')
    result = _run(["bash", str(ROOT / ".ci/check-tools")], farm, ROOT, SUDO="")
    assert result.returncode == 0, result.stderr
    assert _lines(result) == ["installing with apt-get: nodejs npm"]
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq nodejs npm"]


def test_apt_get_that_cannot_help_ends_in_the_one_line(tmp_path):
    farm = _path_without(tmp_path, HIDDEN)
    _fake(farm, "apt-get", "exit 100\n")
    result = _run(["bash", str(ROOT / ".ci/check-tools")], farm, ROOT, SUDO="")
    assert result.returncode == 1
    assert _lines(result)[0] == "installing with apt-get: nodejs npm"
    assert _lines(result)[1:] == [
        "make: missing Node.js >= 18 (no node on PATH), npm; install it and run make again "
        "(Node.js: https://nodejs.org/en/download)"
    ]


def _project_copy(tmp_path: Path) -> Path:
    """The files the set-up reads, in a fresh directory (no node_modules, no venv)."""
    project = tmp_path / "project"
    for name in ("Makefile", ".ci/check-tools", "requirements.txt", "lambda/requirements.txt", "pyproject.toml",
                 "package.json", "package-lock.json"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    return project


def test_setup_without_node_never_marks_itself_done_and_recovers(tmp_path):
    project = _project_copy(tmp_path)
    farm = _path_without(tmp_path, HIDDEN)
    # a venv whose pip only records: the Python half of the set-up is not what is tested here
    venv_bin = project / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    pip_log, npm_log = tmp_path / "pip.log", tmp_path / "npm.log"
    _fake(venv_bin, "pip", f'echo "$@" >> {pip_log}\n')
    stamp = project / ".venv" / ".installed"

    failed = _run([MAKE, "-s", "setup"], farm, project)
    assert failed.returncode != 0
    assert _lines(failed)[0].startswith("make: missing Node.js >= 18 (no node on PATH), npm;")
    assert not stamp.exists() and not pip_log.exists()  # stopped before installing anything

    # Node arrives (a real node; an npm that records and writes what `npm ci` leaves behind)
    (farm / "node").symlink_to(shutil.which("node"))
    _fake(farm, "npm", f'echo "$@" >> {npm_log}\n'
          "mkdir -p node_modules && cp package-lock.json node_modules/.package-lock.json\n")
    recovered = _run([MAKE, "-s", "setup"], farm, project)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert stamp.exists()
    assert npm_log.read_text().splitlines() == ["ci --no-audit --no-fund --loglevel=error"]
    assert pip_log.read_text().splitlines() == ["install -q --upgrade pip", "install -q -r requirements.txt"]

    again = _run([MAKE, "-s", "setup"], farm, project)
    assert again.returncode == 0 and len(npm_log.read_text().splitlines()) == 1  # done means done


def test_pyproject_license_is_an_spdx_string_for_a_setuptools_that_reads_it():
    """setuptools >= 77 reads `license = "<SPDX expression>"`; the TOML-table form prints a deprecation banner
    on every install (seen on a fresh venv: `project.license` as a TOML table is deprecated)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    (requirement,) = pyproject["build-system"]["requires"]
    assert requirement == "setuptools>=77"


def test_check_tools_passes_on_this_machine():
    result = subprocess.run(["bash", str(ROOT / ".ci/check-tools")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == result.stderr == ""
