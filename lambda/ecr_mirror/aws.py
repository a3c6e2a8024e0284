"""The one mapping from botocore errors to :class:`~ecr_mirror.errors.AwsError`.

Every AWS call of the package (DynamoDB store, ECR target, ECR tokens, Secrets Manager) catches
:data:`BOTO_ERRORS` (or, where a malformed answer is possible, any exception) and raises
``aws_error(exc, what) from exc``. The result is one line: what was being done, the AWS error
code, the service's message cut to one line, secret-looking values removed.

``temporary`` marks throttling, server-side and connection errors: the ones botocore's own
retry handler treats as transient (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html,
"Transient errors" and "Throttling errors"). botocore has already retried them (the clients are
built with ``retries={"mode": "standard"}``), so nothing in ecr-mirror retries them again; the
flag tells a caller whether a later attempt (the next scheduled run, an SQS redrive) may succeed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from .errors import AwsError

#: what to catch around a boto3 call
BOTO_ERRORS = (ClientError, BotoCoreError)

#: error codes botocore's standard retry mode treats as throttling or transient (``LimitExceededException``
#: left out: on ECR it means a quota, such as the number of repositories, not throttling)
TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
    }
)
#: HTTP statuses botocore treats as transient
TEMPORARY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_MESSAGE_LENGTH = 300

_SECRET_RE = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}|(?i:(?:secret|token|signature|credential)[=:]\s*)\S+")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            return str(error.get("Code") or "")
    return ""


def _one_line(text: Any) -> str:
    line = " ".join(str(text).split())
    return _SECRET_RE.sub("[redacted]", line)[:MAX_MESSAGE_LENGTH]


def aws_error(exc: BaseException, what: str) -> AwsError:
    """A one-line :class:`AwsError` for ``exc`` raised while doing ``what`` (e.g. ``"DynamoDB GetItem"``).

    ``code`` is the AWS error code, else the exception's class name (``EndpointConnectionError``,
    ``KeyError`` for a malformed answer). Request ids and secret-looking values are left out.
    """
    if isinstance(exc, ClientError):
        code = error_code(exc)
        error = exc.response.get("Error", {})
        message = _one_line(error.get("Message", "") if isinstance(error, Mapping) else "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        temporary = code in TEMPORARY_CODES or status in TEMPORARY_STATUSES
        code = code or type(exc).__name__
    else:
        code = type(exc).__name__
        message = _one_line(exc)
        temporary = isinstance(exc, (ConnectionError, HTTPClientError))
    text = f"{what} failed: {code}" + (f": {message}" if message and message != code else "")
    return AwsError(text, code=code, temporary=temporary)


__all__ = ["BOTO_ERRORS", "TEMPORARY_CODES", "aws_error", "error_code"]
