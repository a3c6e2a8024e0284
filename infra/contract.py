"""The contract between the stack and the Lambda package: names imported, never retyped.

The Lambda package (``lambda/ecr_mirror``) defines every environment variable it reads
(``ecr_mirror.config.ENV_*``, ``ALL_ENV``), every metric it emits (``ecr_mirror.metrics.*``,
``ALL_METRICS``), the tables' keys (``ecr_mirror.rows.PARTITION_KEY``, ``ecr_mirror.status.KEY_*``) and the ECR
repository-name rule (``ecr_mirror.reference``). The stack imports them from the very directory it
bundles, so the deployed code and the stack cannot disagree, and ``tests/infra`` fails if a name
the stack uses is not one the package defines.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: the repository root (parent of ``infra/``)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the directory holding the Lambda package and its runtime ``requirements.txt``; this is what is bundled
LAMBDA_DIR = REPO_ROOT / "lambda"
#: the Lambda package itself
PACKAGE_NAME = "ecr_mirror"

# Import the names from the directory that is bundled, not from whatever happens to be installed.
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))

from ecr_mirror import budget as lambda_budget  # noqa: E402
from ecr_mirror import config as lambda_config  # noqa: E402
from ecr_mirror import errors as lambda_errors  # noqa: E402
from ecr_mirror import metrics as lambda_metrics  # noqa: E402
from ecr_mirror import reference as lambda_reference  # noqa: E402
from ecr_mirror import rows as lambda_rows  # noqa: E402
from ecr_mirror import rowsfile as lambda_rowsfile  # noqa: E402
from ecr_mirror import status as lambda_status  # noqa: E402

_imported_from = Path(lambda_config.__file__).resolve().parent
if _imported_from != LAMBDA_DIR / PACKAGE_NAME:
    raise ImportError(
        f"ecr_mirror was imported from {_imported_from}, not from the bundled directory "
        f"{LAMBDA_DIR / PACKAGE_NAME}; the stack and the deployed code could disagree"
    )

#: Powertools for AWS Lambda settings the stack sets on every function (not ECR_MIRROR_* names:
#: Powertools reads them itself)
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
POWERTOOLS_ENV = (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL)

#: the Powertools ``service`` name (``ecr_mirror.metrics.SERVICE``); Powertools Metrics adds it to every
#: metric as the default dimension ``service``, so alarms must carry the same dimension
SERVICE_NAME: str = lambda_metrics.SERVICE
#: the dimension every EMF metric carries (Powertools' default dimension)
METRIC_DIMENSIONS = {"service": SERVICE_NAME}

#: handler entry points inside the bundle
HANDLER_SCHEDULE = f"{PACKAGE_NAME}.handlers.schedule.handler"
HANDLER_WORKER = f"{PACKAGE_NAME}.handlers.worker.handler"
HANDLER_STREAM = f"{PACKAGE_NAME}.handlers.stream.handler"
#: the rows custom resource's onEvent handler (only with context rowsFile)
HANDLER_ROWS = f"{PACKAGE_NAME}.handlers.rows.handler"
HANDLERS = (HANDLER_SCHEDULE, HANDLER_WORKER, HANDLER_STREAM, HANDLER_ROWS)

__all__ = [
    "HANDLERS",
    "HANDLER_ROWS",
    "HANDLER_SCHEDULE",
    "HANDLER_STREAM",
    "HANDLER_WORKER",
    "LAMBDA_DIR",
    "METRIC_DIMENSIONS",
    "PACKAGE_NAME",
    "POWERTOOLS_ENV",
    "REPO_ROOT",
    "SERVICE_NAME",
    "lambda_budget",
    "lambda_config",
    "lambda_errors",
    "lambda_metrics",
    "lambda_reference",
    "lambda_rows",
    "lambda_rowsfile",
    "lambda_status",
]
