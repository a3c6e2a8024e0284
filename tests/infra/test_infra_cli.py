"""`cdk synth` through the real CDK CLI (npm aws-cdk, pinned in package.json), with no Docker on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infra_support import DEFAULT_STACK, REPO, resources

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")

CDK = REPO / "node_modules" / ".bin" / "cdk"


def path_without_docker(scratch: Path) -> str:
    """The current PATH minus every directory that holds a `docker`; node linked in if it was there."""
    node = shutil.which("node")
    assert node, "node is not installed; the CDK CLI needs it"
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "docker").exists()]
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    (bin_dir / "node").symlink_to(node)
    return os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), *keep])


def test_cdk_synth_with_the_real_cli_and_no_docker(tmp_path):
    assert CDK.exists(), (
        f"the CDK CLI is missing at {CDK.relative_to(REPO)}: install it with `npm ci` (make setup does)"
    )
    path = path_without_docker(tmp_path)
    assert shutil.which("docker", path=path) is None
    env = {
        **os.environ,
        "PATH": path,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    env.pop("CDK_OUTDIR", None)
    env.pop("CDK_CONTEXT_JSON", None)
    outdir = tmp_path / "cdk.out"
    started = time.monotonic()
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(outdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    seconds = time.monotonic() - started
    print(f"\ncdk synth (CLI) took {seconds:.1f} s", file=sys.stderr)
    cli_package = Path(os.path.realpath(CDK)).parent.parent / "package.json"  # node_modules/aws-cdk
    installed = json.loads(cli_package.read_text())["version"]
    assert result.returncode == 0, (
        f"cdk synth (CLI {installed}) failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    )

    template = json.loads((outdir / f"{DEFAULT_STACK}.template.json").read_text())
    functions = resources(template, "AWS::Lambda::Function")
    assert len(functions) == 3
    assert {f["Properties"]["Architectures"][0] for f in functions.values()} == {"arm64"}
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [p["conclusion"] for p in report["pluginReports"]] == ["success"], "app.py runs cdk-nag"
    (asset,) = [p for p in outdir.iterdir() if p.name.startswith("asset.")]
    assert (asset / "ecr_mirror" / "handlers" / "worker.py").is_file()
