"""tests/infra: ONE CDK synthesis per test session, shared by every test here (and every xdist worker).

The session app holds three stacks built from the ``cdk.json`` context (feature flags and
defaults), with cdk-nag's AwsSolutions checks registered exactly as ``app.py`` does:

- ``EcrMirror``: the defaults, i.e. what ``cdk deploy`` builds from an unchanged ``cdk.json``;
- ``EcrMirrorCustom``: every option changed, alarm e-mail, a secret the stack creates;
- ``EcrMirrorExistingSecret``: an existing secret by name, another account's registry, a cron schedule.

One ``app.synth()`` writes all three templates and runs cdk-nag once; bundling runs once for all
of them (one asset; pip's output is also cached on disk across sessions).

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) the first worker that needs the
synthesis does it, under a file lock in the session's shared temporary directory, and the others
read its cloud assembly. (Test modules also carry ``xdist_group("infra")``; with pytest 9.2 and
xdist 3.8 that grouping is not applied, xdist sets a node id attribute pytest no longer reads, so
the lock is what keeps it to one synthesis.)
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from infra_support import VARIANTS, cdk_json  # noqa: E402

from infra.node import quiet_node_warnings  # noqa: E402  (imports aws_cdk: quiets jsii first)

quiet_node_warnings()  # for subprocesses too (test_infra_cli's cdk synth)


@dataclass
class Synthesized:
    outdir: Path
    props: dict[str, Any]
    templates: dict[str, dict[str, Any]]
    report: dict[str, Any]
    #: (construct path, rule id, reason) of every cdk-nag acknowledgement in the construct tree
    acknowledgements: list[tuple[str, str, str]]
    seconds: float

    def template(self, stack: str) -> Any:
        """An ``aws_cdk.assertions.Template`` over the synthesized JSON (no second synthesis)."""
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[stack])


def variant_props() -> dict[str, Any]:
    """The props of each session stack (as :func:`synthesize` built them from cdk.json)."""
    from infra import EcrMirrorProps
    from infra.config import CONTEXT_KEYS

    context = cdk_json()["context"]
    base = EcrMirrorProps.from_mapping({k: v for k, v in context.items() if k in CONTEXT_KEYS})
    return {name: base.replace(**changes) for name, changes in VARIANTS.items()}


def synthesize(outdir: Path) -> None:
    """The session's one synthesis: three stacks, cdk-nag, into ``outdir`` (plus what tests need later)."""
    import aws_cdk as cdk

    from infra import EcrMirrorProps, EcrMirrorStack, add_checks
    from infra.nag import acknowledgements

    started = time.monotonic()
    app = cdk.App(outdir=str(outdir), context=cdk_json()["context"])
    base = EcrMirrorProps.from_context(app.node)  # the path app.py takes
    for name, changes in VARIANTS.items():
        EcrMirrorStack(app, name, props=base.replace(**changes))
    add_checks(app)
    app.synth()
    seconds = time.monotonic() - started
    (outdir / "infra-tests.json").write_text(
        json.dumps({"seconds": seconds, "acknowledgements": acknowledgements(app)}, indent=1)
    )
    print(f"\ntests/infra: synthesized {len(VARIANTS)} stacks with cdk-nag in {seconds:.1f} s", file=sys.stderr)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one dir for all workers
    outdir = shared / "infra-cdk.out"
    with open(shared / "infra-cdk.out.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker synthesizes; the others wait, then read
        try:
            if not (outdir / "infra-tests.json").is_file():
                outdir.mkdir(exist_ok=True)
                synthesize(outdir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    extra = json.loads((outdir / "infra-tests.json").read_text())
    return Synthesized(
        outdir=outdir,
        props=variant_props(),
        templates={name: json.loads((outdir / f"{name}.template.json").read_text()) for name in VARIANTS},
        report=json.loads((outdir / "validation-report.json").read_text()),
        acknowledgements=[tuple(a) for a in extra["acknowledgements"]],
        seconds=extra["seconds"],
    )
