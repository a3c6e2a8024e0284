"""Arrows point inward: the pure core and the copy and sync engines import without httpx, boto3 or botocore.

Each module is imported in a fresh interpreter whose import system refuses those packages (and
anything under them), as go-containerregistry's dependency test does for its packages. A module that
reached for HTTP or AWS, directly or through another module, fails to import and the test names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ecr_mirror

BLOCKED = ("httpx", "httpcore", "boto3", "botocore", "aws_lambda_powertools")
#: the pure modules (design.md) and the engines that must stay free of HTTP and AWS libraries
NO_IO_MODULES = (
    "ecr_mirror.errors",
    "ecr_mirror.config",
    "ecr_mirror.reference",
    "ecr_mirror.manifest",
    "ecr_mirror.drift",
    "ecr_mirror.rows",
    "ecr_mirror.tags",
    "ecr_mirror.tagpattern",
    "ecr_mirror.status",
    "ecr_mirror.metrics",
    "ecr_mirror.copy",
    "ecr_mirror.referrers",
    "ecr_mirror.referrer_copy",
    "ecr_mirror.sync",
)

SCRIPT = """
import importlib, importlib.abc, json, sys

BLOCKED = tuple(json.loads(sys.argv[1]))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Refuse())
failed = {}
for module in json.loads(sys.argv[2]):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed[module] = str(exc)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"failed": failed, "leaked": leaked}))
"""


def _import_blocked(modules: tuple[str, ...], blocked: tuple[str, ...] = BLOCKED) -> dict:
    package_dir = str(Path(ecr_mirror.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_dir, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(blocked), json.dumps(list(modules))],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_pure_modules_and_engines_import_without_http_or_aws_libraries():
    outcome = _import_blocked(NO_IO_MODULES)
    assert outcome == {"failed": {}, "leaked": []}


def test_the_registry_client_knows_no_aws_library():
    """registry/ speaks HTTP only; ECR's token comes in through a credential provider (ecr_mirror.ecr)."""
    outcome = _import_blocked(("ecr_mirror.registry", "ecr_mirror.registry.client"), blocked=("boto3", "botocore"))
    assert outcome == {"failed": {}, "leaked": []}


@pytest.mark.parametrize("module", ["ecr_mirror.registry.client", "ecr_mirror.store", "ecr_mirror.aws"])
def test_the_blocker_does_block_the_adapters(module):
    """The check is real: the adapters, which do need those libraries, fail under it."""
    outcome = _import_blocked((module,))
    assert module in outcome["failed"] and "blocked in this test" in outcome["failed"][module]
