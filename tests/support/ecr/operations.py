"""ECR API operations over the stand-in's store, with ECR's request and response shapes.

Shapes follow botocore's service model (``ecr/2015-09-21/service-2.json``); limits and error codes
are those the model and the API reference give each operation. Every operation takes the decoded
JSON request and returns the JSON response, or raises :class:`~.model.EcrError`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from .model import (
    BATCH_LIMIT,
    DEFAULT_ACCEPTED,
    DIGEST,
    PAGE_DEFAULT,
    PAGE_LIMIT,
    EcrError,
    Image,
    Repository,
    check_mutability,
    check_repository_name,
    invalid,
    repository_not_found,
)
from .store import ACCOUNT_SETTINGS, Account, check_tags

_REGISTRY_ID = re.compile(r"[0-9]{12}")
_ARN = re.compile(r"arn:aws:ecr:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):repository/(?P<name>.+)")
_TAG_STATUS = ("TAGGED", "UNTAGGED", "ANY")

Operation = Callable[[dict[str, Any]], dict[str, Any]]


class Operations:
    """The ECR API actions the stand-in serves, by name (``operations["DescribeImages"](request)``)."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.by_name: dict[str, Operation] = {
            name: getattr(self, name)
            for name in (
                "GetAuthorizationToken",
                "CreateRepository",
                "DescribeRepositories",
                "DeleteRepository",
                "PutImageTagMutability",
                "PutAccountSetting",
                "GetAccountSetting",
                "DescribeImages",
                "BatchGetImage",
                "ListImages",
                "BatchDeleteImage",
                "TagResource",
                "UntagResource",
                "ListTagsForResource",
            )
        }

    # ------------------------------------------------------------------ helpers

    def _registry_id(self, request: dict[str, Any]) -> str:
        registry_id = request.get("registryId") or self.account.registry_id
        if not isinstance(registry_id, str) or not _REGISTRY_ID.fullmatch(registry_id):
            raise invalid("registryId", "Member must satisfy regular expression pattern: [0-9]{12}")
        return registry_id

    def _repository(self, request: dict[str, Any]) -> Repository:
        name = check_repository_name(request.get("repositoryName"))
        return self.account.repository(name, self._registry_id(request))

    def repository_json(self, repo: Repository) -> dict[str, Any]:
        account = self.account
        answer: dict[str, Any] = {
            "repositoryArn": account.arn(repo.name),
            "registryId": account.registry_id,
            "repositoryName": repo.name,
            # the host of proxyEndpoint, as on ECR: here the stand-in's registry face
            "repositoryUri": f"{account.registry_host}/{repo.name}",
            "createdAt": repo.created_at,
            "imageTagMutability": repo.mutability,
            "imageScanningConfiguration": dict(repo.scanning),
            "encryptionConfiguration": dict(repo.encryption),
        }
        if repo.filters:
            answer["imageTagMutabilityExclusionFilters"] = [dict(f) for f in repo.filters]
        return answer

    def image_detail(self, repo: Repository, image: Image) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "registryId": self.account.registry_id,
            "repositoryName": repo.name,
            "imageDigest": image.digest,
            "imageSizeInBytes": repo.size_of(image),
            "imagePushedAt": image.pushed_at,
            "imageManifestMediaType": image.media_type,
            "imageStatus": "ACTIVE",
        }
        tags = repo.tags_of(image.digest)
        if tags:  # ECR leaves imageTags out for an untagged image
            detail["imageTags"] = tags
        if image.config_media_type:
            detail["artifactMediaType"] = image.config_media_type
        if image.subject:
            detail["subjectManifestDigest"] = image.subject
        return detail

    @staticmethod
    def _page_size(request: dict[str, Any]) -> int:
        size = request.get("maxResults")
        if size is None:
            return PAGE_DEFAULT
        if not isinstance(size, int) or size < 1:
            raise invalid("maxResults", "Member must have value greater than or equal to 1")
        if size > PAGE_LIMIT:
            raise invalid("maxResults", f"Member must have value less than or equal to {PAGE_LIMIT}")
        return size

    def _paged(self, key: str, items: list[Any], request: dict[str, Any], scope: str) -> dict[str, Any]:
        """``{key: one page of items}``, plus the opaque ``nextToken`` of the next page unless it is the last."""
        size = self._page_size(request)
        start = 0
        token = request.get("nextToken")
        if token is not None:
            try:
                state = json.loads(base64.urlsafe_b64decode(str(token).encode()))
                assert state["scope"] == scope
                start = int(state["offset"])
            except (ValueError, KeyError, TypeError, AssertionError):
                raise invalid("nextToken", "Invalid NextToken") from None
        end = start + size
        answer: dict[str, Any] = {key: items[start:end]}
        if end < len(items):
            answer["nextToken"] = base64.urlsafe_b64encode(
                json.dumps({"scope": scope, "offset": end}).encode()
            ).decode()
        return answer

    @staticmethod
    def _no_paging_with(request: dict[str, Any], what: str) -> None:
        """maxResults and nextToken "cannot be used when you specify" ``what`` (API reference)."""
        for key in ("maxResults", "nextToken"):
            if request.get(key) is not None:
                raise invalid(key, f"Member cannot be used together with {what}")

    @staticmethod
    def _image_ids(request: dict[str, Any]) -> list[dict[str, Any]]:
        ids = request.get("imageIds")
        if not isinstance(ids, list) or not ids:
            raise invalid("imageIds", "Member must have length greater than or equal to 1")
        if len(ids) > BATCH_LIMIT:  # trek10inc/ecr-cleaner#8
            raise invalid("imageIds", f"Member must have length less than or equal to {BATCH_LIMIT}")
        return ids

    @staticmethod
    def _failure(image_id: dict[str, Any], code: str, reason: str) -> dict[str, Any]:
        return {"imageId": dict(image_id), "failureCode": code, "failureReason": reason}

    def _each_image(
        self, repo: Repository, request: dict[str, Any], failures: list[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], Image]]:
        """Each requested ``imageIds`` entry with its image; entries that name none go to ``failures``."""
        for image_id in self._image_ids(request):
            image, failure = self._resolve(repo, image_id)
            if failure is not None:
                failures.append(failure)
            else:
                yield image_id, image  # type: ignore[misc]

    def _resolve(self, repo: Repository, image_id: dict[str, Any]) -> tuple[Image | None, dict[str, Any] | None]:
        """The image an ``ImageIdentifier`` names, or a per-id failure with ECR's ``ImageFailureCode``."""
        tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
        if not tag and not digest:
            return None, self._failure(
                image_id, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null"
            )
        if digest and not DIGEST.fullmatch(str(digest)):
            return None, self._failure(
                image_id,
                "InvalidImageDigest",
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
            )
        if tag and digest and tag in repo.tags and repo.tags[tag] != digest:
            return None, self._failure(
                image_id, "ImageTagDoesNotMatchDigest", "Invalid request parameters: image tag does not match digest"
            )
        image = repo.find(tag=tag or None, digest=digest or None)
        if image is None:
            return None, self._failure(image_id, "ImageNotFound", "Requested image not found")
        return image, None

    @staticmethod
    def _tag_status(request: dict[str, Any]) -> str:
        status = (request.get("filter") or {}).get("tagStatus", "ANY")
        if status not in _TAG_STATUS:
            raise invalid("filter.tagStatus", f"Member must satisfy enum value set: [{', '.join(_TAG_STATUS)}]")
        return str(status)

    def _arn(self, request: dict[str, Any]) -> Repository:
        match = _ARN.fullmatch(str(request.get("resourceArn") or ""))
        if match is None:
            raise invalid("resourceArn", "Invalid ARN")
        if match["account"] != self.account.registry_id or match["region"] != self.account.region:
            raise repository_not_found(match["name"], match["account"])
        return self.account.repository(match["name"])

    # ------------------------------------------------------------------ auth, account settings

    def GetAuthorizationToken(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - ECR's name
        ids = request.get("registryIds") or [self.account.registry_id]
        for registry_id in ids:
            if not _REGISTRY_ID.fullmatch(str(registry_id)):
                # aws-actions/amazon-ecr-login#225: ECR's wording
                raise invalid(
                    "registryIds",
                    "Member must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]{12}]",
                )
        password, expires_at = self.account.issue_token()
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        endpoint = f"http://{self.account.registry_host}"
        return {
            "authorizationData": [
                {"authorizationToken": token, "expiresAt": expires_at, "proxyEndpoint": endpoint} for _ in ids
            ]
        }

    def PutAccountSetting(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name, value = request.get("name"), request.get("value")
        if name not in ACCOUNT_SETTINGS:
            raise EcrError("ValidationException", f"Invalid account setting name: {name}")
        if value not in ACCOUNT_SETTINGS[name][1]:
            raise EcrError("ValidationException", f"Invalid value {value} for account setting {name}")
        with self.account.lock:
            self.account.settings[name] = value
        return {"name": name, "value": value}

    def GetAccountSetting(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = request.get("name")
        if name not in ACCOUNT_SETTINGS:
            raise EcrError("ValidationException", f"Invalid account setting name: {name}")
        with self.account.lock:
            return {"name": name, "value": self.account.settings[name]}

    # ------------------------------------------------------------------ repositories

    def CreateRepository(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if self._registry_id(request) != self.account.registry_id:
            raise invalid("registryId", "Member must be the caller's account")
        repo = self.account.create_repository(
            request.get("repositoryName"),  # type: ignore[arg-type] - validated inside
            mutability=request.get("imageTagMutability", "MUTABLE"),
            filters=request.get("imageTagMutabilityExclusionFilters"),
            scanning=request.get("imageScanningConfiguration"),
            encryption=request.get("encryptionConfiguration"),
            tags=request.get("tags"),
        )
        return {"repository": self.repository_json(repo)}

    def DescribeRepositories(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        registry_id = self._registry_id(request)
        names = request.get("repositoryNames")
        with self.account.lock:
            if names is not None:
                self._no_paging_with(request, "repositoryNames")
                if not isinstance(names, list) or not names or len(names) > BATCH_LIMIT:
                    raise invalid("repositoryNames", f"Member must have length between 1 and {BATCH_LIMIT}")
                repos = [
                    self.account.repository(check_repository_name(n, "repositoryNames"), registry_id) for n in names
                ]
                return {"repositories": [self.repository_json(r) for r in repos]}
            everything = list(self.account.repositories.values()) if registry_id == self.account.registry_id else []
            return self._paged(
                "repositories", [self.repository_json(r) for r in everything], request, "DescribeRepositories"
            )

    def DeleteRepository(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = check_repository_name(request.get("repositoryName"))
        repo = self.account.delete_repository(
            name, force=bool(request.get("force")), registry_id=self._registry_id(request)
        )
        return {"repository": self.repository_json(repo)}

    def PutImageTagMutability(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self.account.lock:
            repo = self._repository(request)
            mutability, filters = check_mutability(
                request.get("imageTagMutability"), request.get("imageTagMutabilityExclusionFilters")
            )
            repo.mutability, repo.filters = mutability, filters
        answer: dict[str, Any] = {
            "registryId": self.account.registry_id,
            "repositoryName": repo.name,
            "imageTagMutability": mutability,
        }
        if filters:
            answer["imageTagMutabilityExclusionFilters"] = [dict(f) for f in filters]
        return answer

    def TagResource(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self.account.lock:
            repo = self._arn(request)
            merged = {**repo.resource_tags, **check_tags(request.get("tags") or [])}
            repo.resource_tags = check_tags([{"Key": k, "Value": v} for k, v in merged.items()])
        return {}

    def UntagResource(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self.account.lock:
            repo = self._arn(request)
            for key in request.get("tagKeys") or []:
                repo.resource_tags.pop(key, None)
        return {}

    def ListTagsForResource(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self.account.lock:
            repo = self._arn(request)
            return {"tags": [{"Key": k, "Value": v} for k, v in repo.resource_tags.items()]}

    # ------------------------------------------------------------------ images

    def DescribeImages(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        status = self._tag_status(request)
        with self.account.lock:
            repo = self._repository(request)
            if request.get("imageIds") is not None:
                self._no_paging_with(request, "imageIds")
                found: list[Image] = []
                for image_id in self._image_ids(request):
                    image, failure = self._resolve(repo, image_id)
                    if failure is not None:
                        if failure["failureCode"] != "ImageNotFound":
                            raise EcrError("InvalidParameterException", failure["failureReason"])
                        raise EcrError(
                            "ImageNotFoundException",
                            f"The image with imageId {{imageDigest:'{image_id.get('imageDigest') or 'null'}', "
                            f"imageTag:'{image_id.get('imageTag') or 'null'}'}} does not exist within the repository "
                            f"with name '{repo.name}' in the registry with id '{self.account.registry_id}'",
                        )
                    if image not in found:
                        found.append(image)  # type: ignore[arg-type]
                return {"imageDetails": [self.image_detail(repo, image) for image in found]}
            images = [
                image
                for image in repo.images.values()
                if status == "ANY" or (status == "TAGGED") == bool(repo.tags_of(image.digest))
            ]
            details = [self.image_detail(repo, image) for image in images]
            return self._paged("imageDetails", details, request, f"DescribeImages:{repo.name}")

    def ListImages(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        status = self._tag_status(request)
        with self.account.lock:
            repo = self._repository(request)
            entries: list[dict[str, str]] = []
            for image in repo.images.values():
                tags = repo.tags_of(image.digest)
                if tags and status != "UNTAGGED":  # one entry per tag
                    entries.extend({"imageDigest": image.digest, "imageTag": tag} for tag in tags)
                elif not tags and status != "TAGGED":
                    entries.append({"imageDigest": image.digest})
            return self._paged("imageIds", entries, request, f"ListImages:{repo.name}")

    def BatchGetImage(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        accepted = request.get("acceptedMediaTypes")
        if accepted is not None and (not isinstance(accepted, list) or not 1 <= len(accepted) <= BATCH_LIMIT):
            raise invalid("acceptedMediaTypes", f"Member must have length less than or equal to {BATCH_LIMIT}")
        accepted = accepted or list(DEFAULT_ACCEPTED)
        wanted: list[tuple[dict[str, Any], Image]] = []
        failures: list[dict[str, Any]] = []
        with self.account.lock:
            repo = self._repository(request)
            for image_id, image in self._each_image(repo, request, failures):
                if image.media_type not in accepted:
                    failures.append(
                        self._failure(
                            image_id,
                            "UnsupportedImageType",
                            f"The image's media type {image.media_type} is not among the acceptedMediaTypes",
                        )
                    )
                else:
                    wanted.append((image_id, image))
        images = []
        for image_id, image in wanted:  # bytes from distribution, outside the lock
            try:
                manifest = self.account.manifest_bytes(repo, image.digest)
            except (EcrError, KeyError):  # deleted meanwhile
                failures.append(self._failure(image_id, "ImageNotFound", "Requested image not found"))
                continue
            identifier = {"imageDigest": image.digest}
            if image_id.get("imageTag"):
                identifier["imageTag"] = image_id["imageTag"]
            images.append(
                {
                    "registryId": self.account.registry_id,
                    "repositoryName": repo.name,
                    "imageId": identifier,
                    "imageManifest": manifest.decode("utf-8"),
                    "imageManifestMediaType": image.media_type,
                }
            )
        return {"images": images, "failures": failures}

    def BatchDeleteImage(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        """Delete by digest (the image and its tags) or by tag (the tag; the image with its last tag).

        An image an index in the repository lists is not deleted: failure ``ImageReferencedByManifestList``
        (``ImageFailureCode`` in the service model; oras-project/oras#1228). Lifecycle rules do delete such
        children: :meth:`EcrStandIn.lifecycle_expire` does that.
        """
        deleted: list[dict[str, str]] = []
        failures: list[dict[str, Any]] = []
        with self.account.lock:
            repo = self._repository(request)
            for image_id, image in self._each_image(repo, request, failures):
                tag = image_id.get("imageTag")
                tags = repo.tags_of(image.digest)
                if tag and len(tags) > 1:
                    del repo.tags[tag]
                    deleted.append({"imageDigest": image.digest, "imageTag": tag})
                    continue
                parents = repo.parents_of(image.digest)
                if parents:
                    failures.append(
                        self._failure(
                            image_id,
                            "ImageReferencedByManifestList",
                            f"Requested image referenced by manifest list: [{', '.join(parents)}]",
                        )
                    )
                    continue
                self.account.delete_images(repo, [image.digest])
                deleted.extend(
                    [{"imageDigest": image.digest, "imageTag": t} for t in tags] or [{"imageDigest": image.digest}]
                )
        return {"imageIds": deleted, "failures": failures}
