"""One mapping from botocore errors to AwsError: one line, the AWS code, temporary for what botocore
itself treats as throttling or transient, no secret-looking values."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from ecr_mirror.aws import aws_error, error_code


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(("exc", "code", "temporary"), [
    (client_error("ThrottlingException", "Rate exceeded"), "ThrottlingException", True),
    (client_error("ProvisionedThroughputExceededException"), "ProvisionedThroughputExceededException", True),
    (client_error("TransactionConflictException"), "TransactionConflictException", True),
    (client_error("TooManyRequestsException"), "TooManyRequestsException", True),
    (client_error("SomethingNew", status=503), "SomethingNew", True),
    (client_error("InternalServerError", status=500), "InternalServerError", True),
    (client_error("ResourceNotFoundException", "Requested resource not found"), "ResourceNotFoundException", False),
    (client_error("RepositoryNotFoundException"), "RepositoryNotFoundException", False),
    (client_error("LimitExceededException", "repository quota"), "LimitExceededException", False),
    (EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"), "EndpointConnectionError", True),
    (ReadTimeoutError(endpoint_url="https://api.ecr.us-east-1.amazonaws.com"), "ReadTimeoutError", True),
    (NoCredentialsError(), "NoCredentialsError", False),
    (KeyError("authorizationData"), "KeyError", False),
])
def test_codes_and_what_counts_as_temporary(exc, code, temporary):
    err = aws_error(exc, "DynamoDB GetItem")
    assert (err.code, err.temporary) == (code, temporary)
    assert str(err).startswith(f"DynamoDB GetItem failed: {code}")


def test_one_line_without_secrets():
    exc = client_error("AccessDenied", "User AKIAABCDEFGHIJKLMNOP is not allowed\nSignature=abc123 token: s3cr3t")
    text = str(aws_error(exc, "ecr:CreateRepository mirror/x"))
    assert "\n" not in text and "AKIAABCDEFGHIJKLMNOP" not in text and "abc123" not in text and "s3cr3t" not in text
    assert text.startswith("ecr:CreateRepository mirror/x failed: AccessDenied: User [redacted]")


def test_error_code():
    assert error_code(client_error("RepositoryAlreadyExistsException")) == "RepositoryAlreadyExistsException"
    assert error_code(KeyError("x")) == ""
