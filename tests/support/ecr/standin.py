""":class:`EcrStandIn`: one private ECR registry on loopback, both faces over one store."""

from __future__ import annotations

import base64
import time
from typing import Any

from ..proxy import Fault, RequestRecord
from ..registry import RegistryProcess
from .api_face import ApiCall, ApiFault, EcrApi
from .bucket import LayerBucket
from .model import ACCOUNT, REGION, TOKEN_TTL, EcrError, Image, Repository, check_repository_name
from .registry_face import RateLimiter, RegistryFront, ecr_action
from .store import Account

__all__ = ["EcrStandIn"]

#: foreign-layer ``urls`` ECR accepts in a manifest (any http or https URL)
FOREIGN_URLS_ALLOW = ("^https?://",)


class EcrStandIn:
    """A real ``docker-registry`` behind ECR's registry API rules, plus ECR's JSON API, over one store.

        with EcrStandIn() as ecr:
            client = ecr.client()                              # boto3 "ecr", pointed at ecr.api_url
            client.create_repository(repositoryName="team/app")
            push_image(ecr.url, "team/app", image, tag="v1", auth=ecr.auth)
            client.describe_images(repositoryName="team/app")  # the image just pushed
            assert ecr.count(op="PutImage") == 1

    Addresses: :attr:`host`/:attr:`url` (registry face, what ``proxyEndpoint`` names), :attr:`api_url`
    (the ECR API; :attr:`env` sets ``AWS_ENDPOINT_URL_ECR``), :attr:`layer_url` (where blob GETs redirect).
    Credentials: :attr:`credentials` (``("AWS", password)`` from its own GetAuthorizationToken),
    :attr:`auth` (an ``httpx.BasicAuth``). Like :class:`RegistryProcess`, so it replaces the old
    "registry behind htpasswd" stand-in.

    Options: ``put_image_rate`` (manifest PUTs per second before ``429``; None: unlimited),
    ``token_ttl`` (seconds a registry password lasts), ``blob_redirect`` (blob GETs answer ``307`` to
    :attr:`layer_url`, as ECR redirects to S3), ``storage`` (``memory`` or ``filesystem``),
    ``repositories`` (names to create at start, with the defaults of CreateRepository).
    """

    def __init__(
        self,
        *,
        registry_id: str = ACCOUNT,
        region: str = REGION,
        token_ttl: float = TOKEN_TTL,
        put_image_rate: float | None = 10.0,
        blob_redirect: bool = True,
        storage: str = "memory",
        repositories: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.registry_id = registry_id
        self.region = region
        self._options = {"token_ttl": token_ttl, "put_image_rate": put_image_rate, "blob_redirect": blob_redirect}
        # ECR takes Windows images whose foreign base layers were never pushed (docker skips them by default;
        # their bytes live at the layer's urls), as distribution does only with urls validation configured
        self.registry = RegistryProcess(storage=storage, manifest_urls_allow=FOREIGN_URLS_ALLOW)
        self.account: Account | None = None
        self.front: RegistryFront | None = None
        self.api: EcrApi | None = None
        self.bucket: LayerBucket | None = None
        self._password: tuple[str, float] | None = None
        self._repositories = tuple(repositories)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EcrStandIn:
        try:
            self.registry.start()
            self.account = Account(
                self.registry.url,
                registry_id=self.registry_id,
                region=self.region,
                token_ttl=self._options["token_ttl"],
            )
            if self._options["blob_redirect"]:
                self.bucket = LayerBucket(self.registry, region=self.region).start()
            self.front = RegistryFront(
                self.registry, self.account, put_image_rate=self._options["put_image_rate"], layer_bucket=self.bucket
            ).start()
            self.account.registry_host = self.front.host
            self.api = EcrApi(self.registry, self.account).start()
            for name in self._repositories:
                self.create_repository(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (self.api, self.front, self.bucket):
            if part is not None:
                part.stop()
        if self.account is not None:
            self.account.close()
        self.registry.stop()

    def __enter__(self) -> EcrStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.url} api={self.api_url}" if self.front is not None and self.api is not None else "not started"
        return f"<EcrStandIn {where} account={self.registry_id}>"

    def _started(self) -> tuple[Account, RegistryFront, EcrApi]:
        if self.account is None or self.front is None or self.api is None:
            raise RuntimeError("the ECR stand-in is not started")
        return self.account, self.front, self.api

    # ------------------------------------------------------------------ addresses and credentials

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` of the registry face, as in image references and ``proxyEndpoint``."""
        return self._started()[1].host

    @property
    def url(self) -> str:
        return self._started()[1].url

    @property
    def api_url(self) -> str:
        return self._started()[2].url

    @property
    def layer_url(self) -> str | None:
        return self.bucket.url if self.bucket is not None else None

    @property
    def env(self) -> dict[str, str]:
        """Environment that points boto3's ``ecr`` client (only it) at this stand-in."""
        return {"AWS_ENDPOINT_URL_ECR": self.api_url}

    def client(self, **kwargs: Any) -> Any:
        """A boto3 ``ecr`` client for this stand-in (dummy credentials; ``kwargs`` go to ``boto3.client``)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.api_url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        options.update(kwargs)
        return boto3.client("ecr", **options)

    @property
    def credentials(self) -> tuple[str, str]:
        """``("AWS", password)`` valid now (a new token once the last one expired); not counted as a call."""
        account = self._started()[0]
        if self._password is None or time.time() >= self._password[1] or account.token_state(self._basic()) != "valid":
            self._password = account.issue_token()
        return "AWS", self._password[0]

    def _basic(self) -> str:
        assert self._password is not None
        return "Basic " + base64.b64encode(f"AWS:{self._password[0]}".encode()).decode()

    @property
    def auth(self) -> Any:
        """An ``httpx.BasicAuth`` with :attr:`credentials`."""
        import httpx

        return httpx.BasicAuth(*self.credentials)

    def http(self, **kwargs: Any) -> Any:
        """An ``httpx.Client`` with :attr:`auth` that follows redirects (blob GETs redirect to the layer bucket)."""
        import httpx

        options: dict[str, Any] = {"auth": self.auth, "follow_redirects": True, "timeout": 60.0}
        options.update(kwargs)
        return httpx.Client(**options)

    def expire_tokens(self) -> None:
        """Every password issued so far stops working now (the registry face answers ``403 DENIED``).
        ``add_fault(..., action="expire_tokens")`` does the same when a chosen request arrives."""
        self._started()[0].expire_tokens()

    @property
    def passwords(self) -> list[str]:
        """Every registry password issued so far, expired ones included (secrets a test checks for leaks)."""
        return self._started()[0].passwords()

    # ------------------------------------------------------------------ state, without going through the API

    def create_repository(
        self,
        name: str,
        *,
        mutability: str = "MUTABLE",
        exclusions: list[str] | tuple[str, ...] = (),
        encryption: dict[str, Any] | None = None,
    ) -> str:
        """Create a repository as CreateRepository would (``exclusions``: WILDCARD filters). Not counted."""
        filters = [{"filterType": "WILDCARD", "filter": f} for f in exclusions]
        self._started()[0].create_repository(name, mutability=mutability, filters=filters, encryption=encryption)
        return name

    def set_account_setting(self, name: str, value: str) -> None:
        """PutAccountSetting without a call (e.g. ``("BLOB_MOUNTING", "ENABLED")``)."""
        self._started()[2].operations.PutAccountSetting({"name": name, "value": value})

    def repository(self, name: str) -> Repository:
        """The live record of a repository (hold ``standin.account.lock`` while iterating it)."""
        return self._started()[0].repository(check_repository_name(name))

    def tags(self, name: str) -> dict[str, str]:
        """``{tag: digest}`` of a repository, as both faces see it."""
        account = self._started()[0]
        with account.lock:
            return dict(self.repository(name).tags)

    def images(self, name: str) -> dict[str, Image]:
        """``{digest: Image}`` of a repository, tagged and untagged, in push order."""
        account = self._started()[0]
        with account.lock:
            return dict(self.repository(name).images)

    def lifecycle_expire(self, name: str, digests: list[str] | tuple[str, ...]) -> None:
        """Delete images the way a lifecycle rule does: index children too, which leaves the index broken
        (lifecycle rules do not protect index children: aws/containers-roadmap#1466, #2613)."""
        account = self._started()[0]
        with account.lock:
            repo = self.repository(name)
            unknown = [d for d in digests if d not in repo.images]
            if unknown:
                raise EcrError("ImageNotFoundException", f"not in {name}: {unknown}")
            account.delete_images(repo, list(digests))

    @property
    def put_image_rate(self) -> float | None:
        return self._started()[1].limiter.rate

    @put_image_rate.setter
    def put_image_rate(self, rate: float | None) -> None:
        self._started()[1].limiter.rate = rate

    @property
    def limiter(self) -> RateLimiter:
        """The manifest-PUT rate limiter (``rate``, ``refused``, and a replaceable ``clock``)."""
        return self._started()[1].limiter

    @property
    def throttled(self) -> int:
        """Manifest PUTs refused with ``429`` so far."""
        return self._started()[1].limiter.refused

    # ------------------------------------------------------------------ faults and counts

    def add_fault(self, *args: Any, **kwargs: Any) -> Fault:
        """A fault on the registry face (same arguments as :meth:`RegistryProxy.add_fault`)."""
        return self._started()[1].add_fault(*args, **kwargs)

    def clear_faults(self) -> None:
        """Drop every fault still armed on the registry face and the layer bucket (API faults stay)."""
        self._started()[1].clear_faults()
        if self.bucket is not None:
            self.bucket.clear_faults()

    def add_layer_fault(self, *args: Any, **kwargs: Any) -> Fault:
        """A fault on the layer bucket blob GETs redirect to."""
        if self.bucket is None:
            raise RuntimeError("blob_redirect is off: there is no layer bucket")
        return self.bucket.add_fault(*args, **kwargs)

    def add_api_fault(
        self, op: str | None, code: str = "ThrottlingException", message: str = "Rate exceeded", **kwargs: Any
    ) -> ApiFault:
        """Answer the next call(s) of ECR API action ``op`` with an error (default: ``ThrottlingException``)."""
        return self._started()[2].add_api_fault(op, code, message, **kwargs)

    @property
    def api_calls(self) -> list[ApiCall]:
        return self._started()[2].calls

    @property
    def records(self) -> list[RequestRecord]:
        """Registry-face requests, in arrival order."""
        return self._started()[1].records

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path-with-query)`` of every registry-face request."""
        return self._started()[1].requests

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        op: str | None = None,
        face: str | None = None,
        path_regex: str | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> int:
        """Count requests.

        - ``op="DescribeImages"``: ECR API calls of that action, plus registry-face requests that count
          as it (``op="PutImage"`` counts manifest PUTs; see :func:`ecr_action`); ``face="api"`` or
          ``face="registry"`` keeps one face; ``error`` keeps API calls that failed with that code.
        - otherwise registry-face requests, filtered like :meth:`RegistryProxy.count`
          (``face="layer"``: the layer bucket; ``face="api"``: every API call).
        """
        _, front, api = self._started()
        if op is None and face == "api":
            return sum(
                1 for c in api.calls if (status is None or c.status == status) and (error is None or c.error == error)
            )
        if op is None:
            target = self.bucket if face == "layer" else front
            if target is None:
                return 0
            return target.count(method, path_contains, path_regex=path_regex, status=status)
        total = 0
        if face in (None, "api"):
            total += sum(
                1
                for c in api.calls
                if c.op == op and (status is None or c.status == status) and (error is None or c.error == error)
            )
        if face in (None, "registry") and error is None:
            total += sum(
                1
                for r in front.records
                if ecr_action(r.method, r.target) == op
                and (status is None or r.status == status)
                and (method is None or r.method == method.upper())
                and (path_contains is None or path_contains in r.target)
            )
        return total

    def reset_counts(self) -> None:
        """Forget recorded requests and calls on every face (state, faults and tokens stay)."""
        _, front, api = self._started()
        front.reset()
        api.reset()
        if self.bucket is not None:
            self.bucket.reset()

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the stand-in (bugs, not the errors it answers on purpose)."""
        found: list[BaseException] = []
        for part in (self.front, self.api, self.bucket):
            if part is not None:
                found.extend(part.errors)
        return found
