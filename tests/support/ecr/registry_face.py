"""The registry API face: a :class:`~tests.support.proxy.RegistryProxy` whose handler adds ECR's rules.

:class:`RegistryFront` with ``ecr=True`` (the stand-in's registry host) answers as ECR does
(sources in ``ecr-facts.md``; each rule names its own):

- every ``/v2`` request needs Basic ``AWS:<password>`` from the stand-in's GetAuthorizationToken;
- a repository the ECR API did not create answers ``404 NAME_UNKNOWN``;
- manifest PUTs (ECR's ``PutImage``) are throttled, size-capped, checked for tag immutability and
  for index children; their answer carries ``OCI-Subject`` and no ``Location``;
- uploads follow ECR's part rules; blob GETs redirect to a layer bucket (:class:`LayerBucket`);
- cross-repository mounts happen only when the account setting ``BLOB_MOUNTING`` is ``ENABLED``;
- tags and manifest existence come from the stand-in's records, the bytes from distribution;
- ``GET /v2/<name>/referrers/<digest>`` is answered from what was pushed.

With ``ecr=False`` (:class:`ReferrersProxy`, for upstream registries) it only records manifests
pushed through it and answers the referrers API; everything else passes through untouched.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

from ..proxy import _HOP_BY_HOP, _LOCAL_ACTIONS, Fault, RegistryProxy, RequestRecord, _Handler
from .bucket import LayerBucket
from .model import DIGEST, MANIFEST_LIMIT, OCI_INDEX, PART_MINIMUM, Image, Repository, parse_manifest
from .store import Account

__all__ = ["RateLimiter", "ReferrersProxy", "RegistryFront", "ecr_action", "route"]

_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs/uploads|blobs|tags|referrers)(?:/(?P<ref>[^/]*))?$")
# registry API -> the ECR API action it is billed and throttled as (what's-new 2020-02: docker push and
# pull "translate to ECR APIs"; quotas per action on the ECR service-quotas page)
_ACTIONS = {
    ("manifests", "GET"): "BatchGetImage",
    ("manifests", "HEAD"): "BatchGetImage",
    ("manifests", "PUT"): "PutImage",
    ("manifests", "DELETE"): "BatchDeleteImage",
    ("blobs", "HEAD"): "BatchCheckLayerAvailability",
    ("blobs", "GET"): "GetDownloadUrlForLayer",
    ("blobs/uploads", "POST"): "InitiateLayerUpload",
    ("blobs/uploads", "PATCH"): "UploadLayerPart",
    ("blobs/uploads", "PUT"): "CompleteLayerUpload",
    ("tags", "GET"): "ListImages",
    ("referrers", "GET"): "ListImageReferrers",
}


def route(path: str) -> tuple[str, str, str] | None:
    """``(repository, kind, reference)`` of a ``/v2/<name>/<kind>/<ref>`` path, or None."""
    match = _ROUTE.match(path)
    return (match["name"], match["kind"], match["ref"] or "") if match else None


def ecr_action(method: str, target: str) -> str | None:
    """The ECR API action a registry API request counts as (``PutImage`` for a manifest PUT...)."""
    parts = route(urlsplit(target).path)
    return _ACTIONS.get((parts[1], method)) if parts else None


class RateLimiter:
    """At most ``rate`` grants in any one-second window; ``rate`` None or 0 means unlimited.

    ``clock`` (seconds, monotonic) can be replaced by a test to make the window deterministic.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.refused = 0
        self._granted: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        if not self.rate:
            return True
        now = self.clock()
        with self._lock:
            while self._granted and now - self._granted[0] >= 1.0:
                self._granted.popleft()
            if len(self._granted) >= self.rate:
                self.refused += 1
                return False
            self._granted.append(now)
            return True


@dataclass
class Upload:
    """An upload session as ECR sees it: the parts received so far (bytes each)."""

    name: str
    parts: list[int] = field(default_factory=list)

    @property
    def received(self) -> int:
        return sum(self.parts)


class RegistryFront(RegistryProxy):
    """The registry face in front of a ``docker-registry`` (``upstream``), over ``account``'s records."""

    def __init__(
        self,
        upstream: object,
        account: Account,
        *,
        ecr: bool = True,
        put_image_rate: float | None = 10.0,
        layer_bucket: LayerBucket | None = None,
        **proxy_kwargs: object,
    ) -> None:
        super().__init__(upstream, **proxy_kwargs)  # type: ignore[arg-type]
        self.account = account
        self.ecr = ecr
        self.limiter = RateLimiter(put_image_rate)
        self.layer_bucket = layer_bucket
        self.uploads: dict[str, Upload] = {}

    def expire_tokens(self) -> None:
        """Expire every bearer token and (ECR mode) every registry password issued so far: the fault
        action ``expire_tokens`` then plays an ECR token running out mid-copy (next request: ``403 DENIED``)."""
        super().expire_tokens()
        if self.ecr:
            self.account.expire_tokens()

    def repository_for_push(self, name: str) -> Repository | None:
        """ECR mode: the repository if the ECR API created it. Upstream mode: created on first use."""
        with self.account.lock:
            if self.ecr:
                return self.account.repositories.get(name)
            return self.account.repositories.setdefault(name, Repository(name=name, created_at=time.time()))

    def record_manifest(self, name: str, body: bytes, media_type: str, tag: str | None = None) -> Image | None:
        """Record manifest bytes as pushed to ``name`` (returns None when they are not a manifest)."""
        image = parse_manifest(body, media_type, time.time())
        repo = self.repository_for_push(name)
        if image is None or repo is None:
            return None
        with self.account.lock:
            return repo.add_image(image, tag)


class ReferrersProxy(RegistryFront):
    """A :class:`RegistryProxy` (same options: ``bearer``, faults, counts) over a plain registry that
    also answers ``GET /v2/<name>/referrers/<digest>`` (OCI distribution-spec 1.1) from the manifests
    pushed through it, or recorded with :meth:`record_manifest`, and sends ``OCI-Subject`` on their PUT.
    No ECR rules."""

    def __init__(self, upstream: object, **proxy_kwargs: object) -> None:
        url = upstream if isinstance(upstream, str) else upstream.url  # type: ignore[attr-defined]
        super().__init__(upstream, Account(url), ecr=False, put_image_rate=None, **proxy_kwargs)

    def stop(self) -> None:
        super().stop()
        self.account.close()


# ---------------------------------------------------------------------- handlers


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _range_start(value: str | None) -> int | None:
    """Start of a ``Content-Range: <start>-<end>`` (distribution-spec: inclusive, no ``bytes`` prefix)."""
    if not value:
        return None
    try:
        return int(value.removeprefix("bytes").strip().split("-", 1)[0])
    except ValueError:
        return None


class _FrontHandler(_Handler):
    server: object  # _Server whose .proxy is a RegistryFront

    _replay: Iterator[bytes] | None = None  # body pieces already read from the socket (peeked)
    _counted = 0  # request body bytes passed on so far
    _body_consumed = False

    def _dispatch(self) -> None:
        self._replay, self._counted, self._body_consumed = None, 0, False
        super()._dispatch()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    @property
    def front(self) -> RegistryFront:
        return self.server.proxy  # type: ignore[attr-defined,no-any-return]

    # ------------------------------------------------------------------ body plumbing

    def _body_pieces(self) -> Iterator[bytes]:
        self._body_consumed = True
        source, self._replay = (self._replay if self._replay is not None else super()._body_pieces()), None
        for piece in source:
            self._counted += len(piece)
            yield piece

    def _drain_body(self) -> None:
        if not self._body_consumed:
            super()._drain_body()

    def _body_nonempty(self) -> bool:
        """Whether the request has a body (a chunked body is peeked and replayed)."""
        length = self.headers.get("Content-Length")
        if length is not None:
            return int(length) > 0
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return False
        pieces = super()._body_pieces()
        first = next(pieces, None)
        self._replay = iter(()) if first is None else itertools.chain([first], pieces)
        return first is not None

    def _exchange(
        self, record: RequestRecord, *, target: str | None = None, body: bytes | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request upstream (the client's body, or ``body``); read the whole (small) answer."""
        front = self.front
        upstream = http.client.HTTPConnection(front.upstream_host, front.upstream_port, timeout=front.upstream_timeout)
        try:
            if body is None:
                response = self._send_upstream(upstream, record, target)
            else:
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                    and name.lower() != "content-length"
                    and not (name.lower() == "authorization" and front.bearer)
                }
                headers["Host"] = front.upstream_netloc
                upstream.request(record.method, target or record.target, body=body, headers=headers)
                response = upstream.getresponse()
            data = response.read()
            headers_out = [
                (name, front._rewrite_location(value) if name.lower() == "location" else value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
            ]
            return response.status, headers_out, data
        finally:
            upstream.close()

    def _error(self, record: RequestRecord, status: int, code: str, message: str) -> None:
        """An ECR-style registry error (``{"errors": [{"code", "message"}]}``); the body is drained first."""
        self._drain_body()
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._respond(record, status, [("Content-Type", "application/json; charset=utf-8")], body)

    # ------------------------------------------------------------------ dispatch

    def _serve(self, record: RequestRecord, fault: Fault | None) -> None:
        front = self.front
        path = urlsplit(record.target).path
        if front.ecr and path.startswith("/v2") and not self._authorized(record):
            return
        parts = route(path)
        if parts is None:
            self._forward(record, fault)
            return
        name, kind, ref = parts
        if front.ecr and front.repository_for_push(name) is None:
            self._name_unknown(record, name)
            return
        serve = {
            "manifests": self._manifests,
            "blobs": self._blobs,
            "blobs/uploads": self._uploads,
            "tags": self._tags,
            "referrers": self._referrers,
        }[kind]
        try:
            serve(record, fault, name, ref)
        except KeyError:
            if not front.ecr or front.repository_for_push(name) is not None:
                raise
            self._name_unknown(record, name)  # deleted by the ECR API while this request was on its way

    def _name_unknown(self, record: RequestRecord, name: str) -> None:
        # docker/cli#5275, aws-actions/amazon-ecr-login#166: ECR's wording
        account = self.front.account
        message = f"The repository with name '{name}' does not exist in the registry with id '{account.registry_id}'"
        self._error(record, 404, "NAME_UNKNOWN", message)

    def _authorized(self, record: RequestRecord) -> bool:
        """Basic ``AWS:<password>`` (ecr-facts.md 1; registry_auth.md "Using HTTP API authentication")."""
        state = self.front.account.token_state(record.authorization)
        if state == "valid":
            return True
        if state == "expired":  # aws/aws-cli#6580: "denied: Your authorization token has expired..."
            self._error(record, 403, "DENIED", "Your authorization token has expired. Reauthenticate and try again.")
            return False
        self._drain_body()  # NVIDIA/enroot#59: ECR's challenge and body
        challenge = f'Basic realm="{self.front.url}/",service="ecr.amazonaws.com"'
        headers = [("Www-Authenticate", challenge), ("Content-Type", "text/plain; charset=utf-8")]
        self._respond(record, 401, headers, b"Not Authorized\n")
        return False

    # ------------------------------------------------------------------ manifests

    def _manifests(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        front = self.front
        if record.method == "PUT":
            self._manifest_put(record, fault, name, ref)
            return
        if record.method == "DELETE":
            self._manifest_delete(record, fault, name, ref)
            return
        if front.ecr and record.method in ("GET", "HEAD"):
            with front.account.lock:
                repo = front.account.repositories[name]
                known = repo.find(digest=ref) if ":" in ref else repo.find(tag=ref)
            if known is None:
                self._error(record, 404, "MANIFEST_UNKNOWN", "Requested image not found")
                return
        self._forward(record, fault)

    def _manifest_put(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        """PutImage. A ``forward=True`` fault (``status``/``reset``) is applied after the manifest was stored:
        the push took effect, the client sees an error (an answer lost on the way back)."""
        front = self.front
        if front.ecr and not front.limiter.take():
            # PutImage quota 10/s (service-quotas page); google/go-containerregistry#750
            self._error(record, 429, "TOOMANYREQUESTS", "Rate exceeded")
            return
        length = self.headers.get("Content-Length")
        if length is not None and int(length) > MANIFEST_LIMIT:
            self._manifest_too_big(record)
            return
        body = bytearray()
        for piece in self._body_pieces():
            if len(body) <= MANIFEST_LIMIT:
                body += piece
        if len(body) > MANIFEST_LIMIT:
            self._manifest_too_big(record)
            return
        data = bytes(body)
        image = parse_manifest(data, self.headers.get("Content-Type"), time.time())
        tag = None if ":" in ref else ref
        repo = front.repository_for_push(name)
        with front.account.lock:
            if front.ecr and image is not None and repo is not None:
                refusal = self._manifest_refusal(repo, image, tag)
                if refusal is not None:
                    self._error(record, 400, *refusal)
                    return
            status, headers, answer = self._exchange(record, body=data)
            if status == 201 and image is not None and repo is not None:
                repo.add_image(image, tag)
        if fault is not None and fault.action in _LOCAL_ACTIONS:
            self._local_fault(fault, record, drain=False)
            return
        if status != 201 or image is None:
            self._respond(record, status, headers, answer)
            return
        # ECR: a successful manifest PUT may carry no Location (rust-oci-client#33)
        out = [(n, v) for n, v in headers if not (front.ecr and n.lower() == "location")]
        if image.subject:  # distribution-spec 1.1 "Pushing Manifests with Subject"
            out.append(("OCI-Subject", image.subject))
        self._respond(record, 201, out, answer)

    def _manifest_too_big(self, record: RequestRecord) -> None:
        """PutImage ``imageManifest`` is at most 4,194,304 bytes (service model); distribution caps at 4 MiB too."""
        self._error(record, 400, "MANIFEST_INVALID", f"manifest invalid: larger than {MANIFEST_LIMIT} bytes")

    def _manifest_refusal(self, repo: Repository, image: Image, tag: str | None) -> tuple[str, str] | None:
        if tag is not None and tag in repo.tags and repo.tag_immutable(tag):
            # userguide image-tag-mutability.html; refused even for the same digest (aws/containers-roadmap#2179)
            why = "the repository is immutable" if repo.mutability == "IMMUTABLE" else "the tag is immutable"
            return (
                "TAG_INVALID",
                f"The image tag '{tag}' already exists in the '{repo.name}' repository and cannot be overwritten "
                f"because {why}.",
            )
        missing = [child for child in image.children if child not in repo.images]
        if missing:  # int128/docker-manifest-create-action#63
            return (
                "MANIFEST_BLOB_UNKNOWN",
                f"Images with digests '[{', '.join(missing)}]' required for pushing image into repository with name "
                f"'{repo.name}' in the registry with id '{self.front.account.registry_id}' do not exist",
            )
        return None

    def _manifest_delete(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        front = self.front
        if not front.ecr or ":" not in ref:
            status, headers, answer = self._exchange(record)
            if status == 202 and not front.ecr:
                with front.account.lock:
                    repo = front.account.repositories.get(name)
                    if repo is not None:
                        repo.forget([ref])
            self._respond(record, status, headers, answer)
            return
        with front.account.lock:
            repo = front.account.repositories[name]
            if ref not in repo.images:
                self._error(record, 404, "MANIFEST_UNKNOWN", "Requested image not found")
                return
            parents = repo.parents_of(ref)
            if parents:  # ECR protects index children from deletion (oras-project/oras#1228)
                self._error(
                    record, 405, "UNSUPPORTED", f"Requested image referenced by manifest list: [{', '.join(parents)}]"
                )
                return
            front.account.delete_images(repo, [ref])
        self._drain_body()
        self._respond(record, 202, [], b"")

    # ------------------------------------------------------------------ blobs and uploads

    def _blobs(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        front = self.front
        if front.ecr and record.method == "DELETE":  # ECR has no way to delete a layer
            self._error(record, 405, "UNSUPPORTED", "The operation is unsupported.")
            return
        bucket = front.layer_bucket
        if front.ecr and bucket is not None and record.method == "GET" and front.account.blob_status(name, ref) == 200:
            # ECR answers blob GETs with a redirect to its S3 layer bucket (vpc-endpoints.md)
            self._drain_body()
            self._respond(record, 307, [("Location", bucket.presign(name, ref))], b"")
            return
        self._forward(record, fault)

    def _uploads(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        front = self.front
        if not front.ecr:
            self._forward(record, fault)
        elif record.method == "POST":
            self._upload_start(record, name)
        elif record.method == "PATCH":
            self._upload_part(record, name, ref)
        elif record.method == "PUT":
            self._upload_finish(record, name, ref)
        else:
            if record.method == "DELETE":
                with front.account.lock:
                    front.uploads.pop(ref, None)
            self._forward(record, fault)

    def _upload_start(self, record: RequestRecord, name: str) -> None:
        front = self.front
        query = parse_qs(urlsplit(record.target).query)
        mount, source = _first(query, "mount"), _first(query, "from")
        target = f"/v2/{name}/blobs/uploads/"  # a single-request POST ?digest= is not offered: 202 + session
        if mount and source and self._may_mount(name, source, mount):
            target += "?" + urlencode({"mount": mount, "from": source})
        status, headers, answer = self._exchange(record, target=target)
        with front.account.lock:
            if status == 201 and mount:
                front.account.repositories[name].blobs.add(mount)
            uuid = dict((n.lower(), v) for n, v in headers).get("docker-upload-uuid")
            if status == 202 and uuid:
                front.uploads[uuid] = Upload(name)
        self._respond(record, status, headers, answer)

    def _may_mount(self, name: str, source: str, digest: str) -> bool:
        """Mount only with BLOB_MOUNTING ENABLED, from a repository with the same encryption, of a blob a
        committed manifest there references (blob-mounting.html; aws/containers-roadmap#2860)."""
        account = self.front.account
        with account.lock:
            origin = account.repositories.get(source)
            return (
                account.settings["BLOB_MOUNTING"] == "ENABLED"
                and origin is not None
                and origin.mountable(digest)
                and origin.encryption == account.repositories[name].encryption
            )

    def _upload_refusal(self, upload: Upload) -> tuple[int, str, str] | None:
        """ECR's part rules for the part about to arrive (a PATCH, or a PUT with a body)."""
        start = _range_start(self.headers.get("Content-Range"))
        if start is not None and start != upload.received:  # apple/container#1895
            return 416, "BLOB_UPLOAD_INVALID", f"First byte of the layer part is {start} instead of {upload.received}"
        if upload.parts and upload.parts[-1] < PART_MINIMUM:  # dotnet/sdk-container-builds#424
            return 400, "BLOB_UPLOAD_INVALID", "All layer parts except the last part should be at least 5MB"
        return None

    def _upload_part(self, record: RequestRecord, name: str, ref: str) -> None:
        front = self.front
        with front.account.lock:
            upload = front.uploads.setdefault(ref, Upload(name))
        refusal = self._upload_refusal(upload)
        if refusal is not None:
            self._error(record, *refusal)
            return
        status, headers, answer = self._exchange(record)
        if status != 202:
            self._respond(record, status, headers, answer)
            return
        with front.account.lock:
            upload.parts.append(self._counted)
            first_end = upload.parts[0] - 1
        # 201 per chunk (regclient#81); Range stuck at the first chunk (aws/containers-roadmap#2831)
        out = [(n, v) for n, v in headers if n.lower() != "range"] + [("Range", f"0-{first_end}")]
        self._respond(record, 201, out, answer)

    def _upload_finish(self, record: RequestRecord, name: str, ref: str) -> None:
        front = self.front
        account = front.account
        with account.lock:
            upload = front.uploads.get(ref) or Upload(name)
        has_body = self._body_nonempty()
        if not has_body and upload.received == 0:  # radius-project/radius#7855
            self._error(
                record,
                400,
                "BLOB_UPLOAD_INVALID",
                f"The upload with id '{ref}' in the repository with name '{name}' in registry with id "
                f"'{account.registry_id}' cannot be completed because it does not have any parts.",
            )
            return
        refusal = self._upload_refusal(upload) if has_body else None
        if refusal is not None:
            self._error(record, *refusal)
            return
        status, headers, answer = self._exchange(record)
        if status == 201:
            digest = _first(parse_qs(urlsplit(record.target).query), "digest")
            with account.lock:
                front.uploads.pop(ref, None)
                if digest:
                    account.repositories[name].blobs.add(digest)
        elif status == 400 and b"DIGEST_INVALID" in answer:  # dotnet/sdk-container-builds#424
            self._error(
                record,
                400,
                "BLOB_UPLOAD_INVALID",
                "None of the provided layer digests match the calculated layer digest.",
            )
            return
        self._respond(record, status, headers, answer)

    # ------------------------------------------------------------------ tags and referrers

    def _tags(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        front = self.front
        if not front.ecr or record.method not in ("GET", "HEAD") or ref != "list":
            self._forward(record, fault)
            return
        query = parse_qs(urlsplit(record.target).query)
        last, count = _first(query, "last"), _first(query, "n")
        with front.account.lock:
            tags = sorted(t for t in front.account.repositories[name].tags if last is None or t > last)
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if count is not None and count.isdigit() and len(tags) > int(count):  # distribution-spec "Listing Tags"
            tags = tags[: int(count)]
            headers.append(("Link", f'</v2/{name}/tags/list?{urlencode({"n": count, "last": tags[-1]})}>; rel="next"'))
        self._respond(record, 200, headers, json.dumps({"name": name, "tags": tags}).encode())

    def _referrers(self, record: RequestRecord, fault: Fault | None, name: str, ref: str) -> None:
        """distribution-spec 1.1 "Listing Referrers": an OCI index of the manifests whose subject is ``ref``."""
        front = self.front
        if record.method not in ("GET", "HEAD"):
            self._error(record, 405, "UNSUPPORTED", "The operation is unsupported.")
            return
        if not DIGEST.fullmatch(ref):
            self._error(record, 400, "DIGEST_INVALID", "provided digest is invalid")
            return
        artifact_type = _first(parse_qs(urlsplit(record.target).query), "artifactType")
        with front.account.lock:
            repo = front.account.repositories.get(name)
            found = repo.referrers(ref, artifact_type) if repo is not None else []
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [i.descriptor() for i in found]}
        headers = [("Content-Type", OCI_INDEX)]
        if artifact_type is not None:
            headers.append(("OCI-Filters-Applied", "artifactType"))
        self._respond(record, 200, headers, json.dumps(index, indent=2).encode())


RegistryFront.handler_class = _FrontHandler
