#!/usr/bin/env python3
"""The CDK app: one ecr-mirror stack, configured from cdk.json context (-c key=value overrides).

Options and defaults: see infra/config.py. Stack name: context ``stackName`` (default EcrMirror).
cdk-nag's AWS Solutions checks run at every synth; an unacknowledged finding fails it.
"""

import aws_cdk as cdk

from infra import DEFAULT_STACK_NAME, EcrMirrorProps, EcrMirrorStack, add_checks

app = cdk.App()
EcrMirrorStack(
    app,
    app.node.try_get_context("stackName") or DEFAULT_STACK_NAME,
    props=EcrMirrorProps.from_context(app.node),
)
add_checks(app)
app.synth()
