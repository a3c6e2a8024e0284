"""What to do about an error: the CLI's one-line messages, with the next step added where one is known.

The errors themselves (:mod:`ecr_mirror.errors`) say what failed; this adds what the person at the
keyboard can do about it, from what the CLI knows (the table name, the region). Pure: no I/O.

AWS error codes: DynamoDB ``ResourceNotFoundException`` (table missing, or in another region), IAM
``AccessDenied``/``AccessDeniedException``, STS/SigV4 ``UnrecognizedClientException``,
``InvalidClientTokenId``, ``ExpiredToken``/``ExpiredTokenException``, ``InvalidSignatureException``
(https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/CommonErrors.html); botocore's
``NoCredentialsError`` and ``EndpointConnectionError`` (class names, :func:`ecr_mirror.aws.aws_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AwsError, MirrorError, TransportError

_CREDENTIAL_CODES = frozenset({
    "NoCredentialsError", "PartialCredentialsError", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException", "SignatureDoesNotMatch",
    "TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError",
})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})


@dataclass(frozen=True)
class Where:
    """What the CLI knows about the command's setting: the mirror table and the AWS region in use."""

    table: str = ""
    region: str = ""
    state_table: str = ""


def explain(exc: MirrorError, where: Where = Where()) -> str:
    """``str(exc)``, with what to do next when the error is one the user can act on."""
    text = str(exc)
    if isinstance(exc, AwsError):
        region = f" in region {where.region}" if where.region else ""
        if (exc.code == "ResourceNotFoundException" and where.state_table and text.startswith("DynamoDB")
                and f"on table {where.state_table!r}" in text):
            return (f"state table {where.state_table!r} (beside mirror table {where.table!r}) not found{region} ({text}): "
                    f"create it with `ecr-mirror table create --table {where.table} --state-table {where.state_table}`, "
                    f"or give the state table of a deployed stack (its StateTableName output) with --state-table or "
                    f"ECR_MIRROR_STATE_TABLE")
        if exc.code == "ResourceNotFoundException" and where.table and text.startswith("DynamoDB"):
            return (f"mirror table {where.table!r} not found{region} ({text}): create it with "
                    f"`ecr-mirror table create --table {where.table}`, or give the table of a deployed stack "
                    f"(its TableName output) with --table or ECR_MIRROR_TABLE, and check AWS_REGION")
        if exc.code in _CREDENTIAL_CODES:
            return (f"{text}: AWS credentials are missing, invalid or expired; sign in again (`aws sso login`, "
                    f"`aws configure`) or set AWS_PROFILE")
        if exc.code in _DENIED_CODES:
            return f"{text}: the AWS identity in use is not allowed this call; grant it, or use a profile or role that is"
        if exc.code == "EndpointConnectionError":
            region = f" ({where.region})" if where.region else ""
            return f"{text}: the AWS endpoint{region} is unreachable; check AWS_REGION, AWS_ENDPOINT_URL and the network"
    if isinstance(exc, TransportError) and "CERTIFICATE_VERIFY_FAILED" in text:
        return f"{text}: if the registry uses a private CA, pass its certificate with --ca-file (or set SSL_CERT_FILE)"
    return text


__all__ = ["Where", "explain"]
