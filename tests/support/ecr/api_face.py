"""The ECR API face: AWS JSON 1.1 (``POST /``, ``X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>``).

boto3's ``ecr`` client talks to it when ``AWS_ENDPOINT_URL_ECR`` (or ``endpoint_url``) points here.
Requests must be SigV4-signed for service ``ecr`` (the signature itself is not checked). Errors are
``{"__type": <code>, "message": ...}`` with HTTP 400 (500 for ``ServerException``), which botocore
turns into ``ClientError`` with ``Error.Code`` = ``<code>``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..proxy import Fault, RegistryProxy, RequestRecord, _Handler
from .model import EcrError
from .operations import Operations
from .store import Account

__all__ = ["ApiCall", "ApiFault", "EcrApi", "TARGET_PREFIX"]

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
_SIGV4_SCOPE = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


@dataclass
class ApiCall:
    """One ECR API request: the action, the decoded request, the HTTP status, the error code (None if it
    succeeded) and the JSON answer as sent (so tests can hold it to the service model's output shape)."""

    op: str
    request: dict[str, Any]
    status: int
    error: str | None = None
    region: str | None = None  # from the SigV4 credential scope
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApiFault:
    """Answer the next ``times`` calls of ``op`` (None: any) with this error instead of serving them."""

    op: str | None
    code: str
    message: str
    status: int = 400
    times: int | None = 1
    fired: int = field(default=0)


class EcrApi(RegistryProxy):
    """The JSON API server. ``upstream`` is unused (the operations reach distribution through ``account``)."""

    def __init__(self, upstream: object, account: Account) -> None:
        super().__init__(upstream)
        self.account = account
        self.operations = Operations(account)
        self._calls: list[ApiCall] = []
        self._api_faults: list[ApiFault] = []
        self._calls_lock = threading.Lock()

    @property
    def calls(self) -> list[ApiCall]:
        with self._calls_lock:
            return list(self._calls)

    def reset(self) -> None:
        super().reset()
        with self._calls_lock:
            self._calls.clear()

    def add_api_fault(
        self,
        op: str | None,
        code: str = "ThrottlingException",
        message: str = "Rate exceeded",
        *,
        status: int = 400,
        times: int | None = 1,
    ) -> ApiFault:
        fault = ApiFault(op, code, message, status, times)
        with self._calls_lock:
            self._api_faults.append(fault)
        return fault

    def _take_api_fault(self, op: str) -> ApiFault | None:
        with self._calls_lock:
            for fault in self._api_faults:
                if (fault.op is None or fault.op == op) and (fault.times is None or fault.fired < fault.times):
                    fault.fired += 1
                    return fault
        return None

    def _note_call(self, call: ApiCall) -> None:
        with self._calls_lock:
            self._calls.append(call)


class _ApiHandler(_Handler):
    def _serve(self, record: RequestRecord, fault: Fault | None) -> None:
        api: EcrApi = self.server.proxy  # type: ignore[attr-defined]
        body = b"".join(self._body_pieces())
        target = self.headers.get("X-Amz-Target", "")
        prefix, _, op = target.partition(".")
        scope = _SIGV4_SCOPE.match(self.headers.get("Authorization", ""))
        request: dict[str, Any] = {}
        try:
            if record.method != "POST" or prefix != TARGET_PREFIX or op not in api.operations.by_name:
                raise EcrError("UnknownOperationException", f"Unknown operation {target or record.method}")
            if scope is None or scope["service"] != "ecr":
                raise EcrError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise EcrError("SerializationException", "Start of structure or map found where not expected") from None
            if not isinstance(request, dict):
                raise EcrError("SerializationException", "Start of structure or map found where not expected")
            injected = api._take_api_fault(op)
            if injected is not None:
                raise EcrError(injected.code, injected.message, injected.status)
            status, payload, error = 200, api.operations.by_name[op](request), None
        except EcrError as exc:
            status, payload, error = exc.status, {"__type": exc.code, "message": exc.message}, exc.code
        except Exception as exc:  # a bug in the stand-in: tell the client and the test (EcrStandIn.errors)
            api._note_error(exc)
            status, payload, error = (
                500,
                {"__type": "ServerException", "message": f"stand-in bug: {exc!r}"},
                "ServerException",
            )
        api._note_call(ApiCall(op or target, request, status, error, scope["region"] if scope else None, payload))
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))]
        self._respond(record, status, headers, json.dumps(payload).encode())


EcrApi.handler_class = _ApiHandler
