"""Quiet jsii's Node.js version banners, the supported way (its ``JSII_SILENCE_WARNING_*`` variables).

aws-cdk-lib runs on jsii, which starts a Node.js process and prints a framed banner on stderr when that
Node.js is end-of-life (Debian 12's Node 18, Node 20 since 2026-10-30), deprecated, or newer than jsii was
tested with. The CDK app, the tests and ``cdk synth`` work on each of these; the banner says nothing a
user of ecr-mirror can act on, so it is silenced before ``aws_cdk`` is imported (the variables are read
when the Node.js process starts). jsii reads ``JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION`` as a
comma-separated list of major versions (what a user set is kept, and added to); the other two as set or not.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: end-of-life Node.js majors silenced: Debian 12's 18 and 20 (jsii-runtime's checkNode)
END_OF_LIFE_MAJORS = ("18", "20")
END_OF_LIFE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
DEPRECATED = "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"
UNTESTED = "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION"


def quiet_node_warnings(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the jsii silencing variables in ``environ`` (default ``os.environ``), keeping what is there."""
    env = os.environ if environ is None else environ
    majors = [v.strip() for v in env.get(END_OF_LIFE, "").split(",") if v.strip()]
    env[END_OF_LIFE] = ",".join(dict.fromkeys([*majors, *END_OF_LIFE_MAJORS]))
    env.setdefault(DEPRECATED, "1")
    env.setdefault(UNTESTED, "1")
