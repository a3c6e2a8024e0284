"""Where ECR's blob GETs redirect: :class:`LayerBucket`, an S3-like origin serving presigned URLs.

ECR keeps layers in S3 (``prod-<region>-starport-layer-bucket``, vpc-endpoints.md) and answers a blob
GET with a redirect there. Like S3 with a presigned URL, the bucket refuses a request that also carries
an ``Authorization`` header, so a client that forwards registry credentials across origins fails here
as it would against ECR.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from ..proxy import Fault, RegistryProxy, RequestRecord, _Handler
from .model import REGION

__all__ = ["LayerBucket"]


class LayerBucket(RegistryProxy):
    """Where ECR's blob GETs redirect: another origin serving presigned URLs, like the S3 layer bucket
    (``prod-<region>-starport-layer-bucket``, vpc-endpoints.md). Like S3 with a presigned URL, it refuses
    a request that also carries an ``Authorization`` header."""

    def __init__(
        self, upstream: object, *, region: str = REGION, url_ttl: float = 3600.0, **proxy_kwargs: object
    ) -> None:
        super().__init__(upstream, **proxy_kwargs)  # type: ignore[arg-type]
        self.region = region
        self.url_ttl = url_ttl
        self._signed: dict[str, tuple[str, str, float]] = {}  # signature -> (repository, digest, expiry)

    def presign(self, name: str, digest: str) -> str:
        signature = secrets.token_hex(16)
        with self._lock:
            self._signed[signature] = (name, digest, time.monotonic() + self.url_ttl)
        query = urlencode(
            {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Expires": int(self.url_ttl), "X-Amz-Signature": signature}
        )
        return f"{self.url}/prod-{self.region}-starport-layer-bucket/{digest.partition(':')[2]}?{query}"

    def lookup(self, signature: str) -> tuple[str, str] | None:
        with self._lock:
            entry = self._signed.get(signature)
        if entry is None or time.monotonic() >= entry[2]:
            return None
        return entry[0], entry[1]


def _s3_error(code: str, message: str) -> bytes:
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}'.encode()


class _BucketHandler(_Handler):
    def _serve(self, record: RequestRecord, fault: Fault | None) -> None:
        bucket: LayerBucket = self.server.proxy  # type: ignore[attr-defined]
        self._drain_body()
        xml = [("Content-Type", "application/xml")]
        if record.authorization:  # S3: a presigned URL plus an Authorization header is refused
            message = (
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string "
                "parameter or the Authorization header should be specified"
            )
            self._respond(record, 400, xml, _s3_error("InvalidArgument", message))
            return
        if record.method not in ("GET", "HEAD"):
            self._respond(
                record,
                405,
                xml,
                _s3_error("MethodNotAllowed", "The specified method is not allowed against this resource."),
            )
            return
        signature = (parse_qs(urlsplit(record.target).query).get("X-Amz-Signature") or [""])[0]
        found = bucket.lookup(signature)
        if found is None:
            self._respond(record, 403, xml, _s3_error("AccessDenied", "Request has expired"))
            return
        name, digest = found
        self._forward(record, fault, target=f"/v2/{name}/blobs/{digest}")


LayerBucket.handler_class = _BucketHandler
