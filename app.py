#!/usr/bin/env python3
"""The CDK app: one ecr-mirror stack, configured from cdk.json context (-c key=value overrides).

Options and defaults: see infra/config.py. Stack name: context ``stackName`` (default EcrMirror).
cdk-nag's AWS Solutions checks run at every synth; an unacknowledged finding fails it. A bad option
(a rows file that does not validate, too) is one line on stderr and exit status 1.
"""

import sys

import infra.node  # noqa: F401  (first: quiets jsii's Node.js version banners before aws_cdk starts it)
import aws_cdk as cdk

from infra import DEFAULT_STACK_NAME, ConfigurationError, EcrMirrorProps, EcrMirrorStack, add_checks

app = cdk.App()
try:
    props = EcrMirrorProps.from_context(app.node)
except ConfigurationError as exc:
    print(f"ecr-mirror: error: {exc}", file=sys.stderr)
    sys.exit(1)
EcrMirrorStack(app, app.node.try_get_context("stackName") or DEFAULT_STACK_NAME, props=props)
add_checks(app)
app.synth()
