"""CDK infrastructure of ecr-mirror.

- :mod:`infra.config`: the ``cdk.json`` context options (table of keys and defaults) -> :class:`EcrMirrorProps`
- :mod:`infra.table`: the mirror table
- :mod:`infra.service`: functions, work queue + DLQ, schedule, stream trigger, IAM
- :mod:`infra.monitoring`: alarms, SNS topic, dashboard
- :mod:`infra.mirror`: :class:`EcrMirror`, all of the above as one construct
- :mod:`infra.stack`: :class:`EcrMirrorStack`, the deployable stack with outputs
- :mod:`infra.bundling`: bundling of ``lambda/`` without Docker
- :mod:`infra.contract`: names imported from the Lambda package (env vars, metrics, handlers)
- :mod:`infra.nag`: cdk-nag checks and acknowledgements
- :mod:`infra.rows`: the rows file (context ``rowsFile``), applied at deploy by a custom resource
- :mod:`infra.node`: jsii's Node.js version banners, silenced
"""

from .node import quiet_node_warnings

quiet_node_warnings()  # before aws_cdk starts jsii's Node.js process (infra.node)

from .config import CONTEXT_KEYS, ConfigurationError, EcrMirrorProps  # noqa: E402
from .mirror import EcrMirror  # noqa: E402
from .nag import add_checks  # noqa: E402
from .stack import DEFAULT_STACK_NAME, EcrMirrorStack  # noqa: E402

__all__ = [
    "CONTEXT_KEYS",
    "DEFAULT_STACK_NAME",
    "ConfigurationError",
    "EcrMirror",
    "EcrMirrorProps",
    "EcrMirrorStack",
    "add_checks",
]
