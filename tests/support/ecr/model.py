"""What the ECR stand-in knows, and ECR's rules over it. No HTTP here.

- :class:`Image` -- one manifest in a repository, as ECR describes it (digest, media type, sizes,
  push time, children, subject, artifact type), parsed from the bytes that were pushed;
- :class:`Repository` -- an ECR repository: settings, images, the tag -> digest map, blobs uploaded
  into it, and the rules that depend on them (tag immutability, index children, referrers, mount);
- :class:`EcrError` -- an ECR API error (``__type`` code, message, HTTP status);
- validators shared by the API face and the test helpers (repository names, mutability settings).

Sources are named where each rule lives; ``ecr-facts.md`` (project docs) collects them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..images import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

ACCOUNT = "123456789012"  # moto's default account, so ARNs look alike across the two
REGION = "us-east-1"
#: PutImage ``imageManifest`` max length (botocore service model, ``ImageManifest``); ECR quotas page
MANIFEST_LIMIT = 4_194_304
#: "All layer parts except the last part should be at least 5MB" (dotnet/sdk-container-builds#424)
PART_MINIMUM = 5 * 1024 * 1024
#: GetAuthorizationToken: "The authorization token is valid for 12 hours" (API reference)
TOKEN_TTL = 12 * 3600.0
#: ImageIdentifierList / MediaTypeList / RepositoryNameList max (botocore service model)
BATCH_LIMIT = 100
#: MaxResults max (botocore service model); the default page when maxResults is absent is 100 (API reference)
PAGE_LIMIT = 1000
PAGE_DEFAULT = 100

DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
#: BatchGetImage ``acceptedMediaTypes`` "Valid values" in the API reference, used when the caller sends none
DEFAULT_ACCEPTED = (DOCKER_V1, DOCKER_MANIFEST, OCI_MANIFEST)
# filesystem layers: the only layers ECR counts in imageSizeInBytes (an attestation manifest, whose one
# layer is in-toto JSON, is listed with size 0: aws/aws-cdk#30258, aws/containers-roadmap#1596)
_FS_LAYER = re.compile(
    r"^application/vnd\.(?:oci\.image\.layer(?:\.nondistributable)?\.v1\.tar|docker\.image\.rootfs\.(?:foreign\.)?diff\.tar)"
)

# botocore service model, shape RepositoryName (2 to 256 characters)
REPOSITORY_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}")  # OCI image-spec descriptor digest
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,299}")  # ImageTag: 1 to 300 characters
MUTABILITIES = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
# API_ImageTagMutabilityExclusionFilter: filterType WILDCARD, filter ^[0-9a-zA-Z._*-]{1,128}$, 1 to 5 filters
FILTER_VALUE = re.compile(r"[0-9a-zA-Z._*-]{1,128}")
FILTERS_MAX = 5


class EcrError(Exception):
    """An ECR API error: ``code`` is the ``__type`` botocore turns into ``Error.Code``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid(parameter: str, constraint: str) -> EcrError:
    """ECR's wording for a request that breaks a constraint (trek10inc/ecr-cleaner#8)."""
    return EcrError(
        "InvalidParameterException", f"Invalid parameter at '{parameter}' failed to satisfy constraint: '{constraint}'"
    )


def repository_not_found(name: str, registry_id: str) -> EcrError:
    return EcrError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'",
    )


def check_repository_name(name: Any, parameter: str = "repositoryName") -> str:
    if not isinstance(name, str) or not 2 <= len(name) <= 256 or not REPOSITORY_NAME.fullmatch(name):
        raise invalid(parameter, f"must satisfy regular expression '{REPOSITORY_NAME.pattern}'")
    return name


def check_mutability(mutability: Any, filters: Any) -> tuple[str, list[dict[str, str]]]:
    """Validate ``imageTagMutability`` and ``imageTagMutabilityExclusionFilters``; return them normalised.

    Filters are required by, and only allowed with, the ``*_WITH_EXCLUSION`` settings
    (userguide image-tag-mutability.html; API_ImageTagMutabilityExclusionFilter).
    """
    if mutability not in MUTABILITIES:
        raise invalid("imageTagMutability", f"Member must satisfy enum value set: [{', '.join(MUTABILITIES)}]")
    filters = list(filters or [])
    if mutability.endswith("_WITH_EXCLUSION") and not filters:
        raise invalid(
            "imageTagMutabilityExclusionFilters", f"Member must not be empty when imageTagMutability is {mutability}"
        )
    if not mutability.endswith("_WITH_EXCLUSION") and filters:
        raise invalid(
            "imageTagMutabilityExclusionFilters", f"Member must be empty when imageTagMutability is {mutability}"
        )
    if len(filters) > FILTERS_MAX:
        raise invalid(
            "imageTagMutabilityExclusionFilters", f"Member must have length less than or equal to {FILTERS_MAX}"
        )
    normalised = []
    for item in filters:
        if not isinstance(item, Mapping) or item.get("filterType") != "WILDCARD":
            raise invalid(
                "imageTagMutabilityExclusionFilters.filterType", "Member must satisfy enum value set: [WILDCARD]"
            )
        value = item.get("filter")
        if not isinstance(value, str) or not FILTER_VALUE.fullmatch(value):
            raise invalid(
                "imageTagMutabilityExclusionFilters.filter",
                f"Member must satisfy regular expression pattern: ^{FILTER_VALUE.pattern}$",
            )
        normalised.append({"filterType": "WILDCARD", "filter": value})
    return mutability, normalised


def wildcard_match(pattern: str, tag: str) -> bool:
    """``*`` matches any run of characters; everything else matches itself."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), tag) is not None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- images


@dataclass
class Image:
    """One manifest stored in a repository (an "image" in ECR's API, index or not)."""

    digest: str
    media_type: str
    size: int  # bytes of the manifest itself
    pushed_at: float  # epoch seconds
    children: tuple[str, ...] = ()  # index entries' digests
    blobs: tuple[str, ...] = ()  # config + layers of an image manifest
    layers_size: int = 0  # sum of filesystem layer sizes (imageSizeInBytes of an image manifest)
    config_media_type: str | None = None
    artifact_type: str | None = None  # the manifest's artifactType, else config mediaType (referrers rule)
    subject: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self) -> dict[str, Any]:
        """This manifest as an entry of a referrers answer (distribution-spec "Listing Referrers")."""
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


def parse_manifest(body: bytes, media_type: str | None, pushed_at: float) -> Image | None:
    """An :class:`Image` from manifest bytes, or None when they are not a JSON object.

    ``media_type`` is the Content-Type the client sent; the manifest's own ``mediaType`` is the fallback.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    media = (media_type or "").split(";")[0].strip() or str(doc.get("mediaType") or "")
    entries = doc.get("manifests") if isinstance(doc.get("manifests"), list) else []
    children = tuple(str(d["digest"]) for d in entries if isinstance(d, dict) and "digest" in d)
    config = doc.get("config") if isinstance(doc.get("config"), dict) else None
    layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    blobs = tuple(str(d["digest"]) for d in ([config] if config else []) + layers if "digest" in d)
    layers_size = sum(int(d.get("size") or 0) for d in layers if _FS_LAYER.match(str(d.get("mediaType", ""))))
    subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else None
    config_type = str(config["mediaType"]) if config and config.get("mediaType") else None
    artifact_type = doc.get("artifactType") or (None if media in INDEX_TYPES else config_type)
    annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
    return Image(
        digest=sha256_digest(body),
        media_type=media,
        size=len(body),
        pushed_at=pushed_at,
        children=children,
        blobs=blobs,
        layers_size=layers_size,
        config_media_type=config_type,
        artifact_type=str(artifact_type) if artifact_type else None,
        subject=str(subject["digest"]) if subject and subject.get("digest") else None,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


# ---------------------------------------------------------------------- repositories


@dataclass
class Repository:
    """An ECR repository and what it holds. Callers hold the account lock."""

    name: str
    created_at: float
    mutability: str = "MUTABLE"
    filters: list[dict[str, str]] = field(default_factory=list)
    scanning: dict[str, Any] = field(default_factory=lambda: {"scanOnPush": False})
    encryption: dict[str, Any] = field(default_factory=lambda: {"encryptionType": "AES256"})
    resource_tags: dict[str, str] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)  # digest -> image, in push order
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    blobs: set[str] = field(default_factory=set)  # blobs uploaded or mounted into this repository

    def tags_of(self, digest: str) -> list[str]:
        return sorted(tag for tag, target in self.tags.items() if target == digest)

    def tag_immutable(self, tag: str) -> bool:
        """Whether pushing ``tag`` again is refused (userguide image-tag-mutability.html):

        ``IMMUTABLE`` every tag; ``IMMUTABLE_WITH_EXCLUSION`` every tag but those matching a filter;
        ``MUTABLE_WITH_EXCLUSION`` only tags matching a filter; ``MUTABLE`` none.
        """
        matched = any(wildcard_match(f["filter"], tag) for f in self.filters)
        return {
            "MUTABLE": False,
            "IMMUTABLE": True,
            "IMMUTABLE_WITH_EXCLUSION": not matched,
            "MUTABLE_WITH_EXCLUSION": matched,
        }[self.mutability]

    def find(self, tag: str | None = None, digest: str | None = None) -> Image | None:
        """The image named by a tag and/or digest (both must agree), or None."""
        if tag is not None:
            target = self.tags.get(tag)
            if target is None or (digest is not None and digest != target):
                return None
            digest = target
        return self.images.get(digest) if digest is not None else None

    def parents_of(self, digest: str) -> list[str]:
        """Indexes in this repository that list ``digest`` (ECR refuses to delete those children)."""
        return [image.digest for image in self.images.values() if digest in image.children]

    def size_of(self, image: Image, _depth: int = 0) -> int:
        """``imageSizeInBytes``: filesystem layers of a manifest; of an index, the largest child present
        ("If the image is a manifest list, this will be the max size of all manifests in the list",
        botocore service model ``ImageDetail``)."""
        if not image.is_index:
            return image.layers_size
        if _depth > 8:
            return 0
        sizes = [self.size_of(self.images[c], _depth + 1) for c in image.children if c in self.images]
        return max(sizes, default=0)

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[Image]:
        """Manifests whose ``subject`` is ``digest``, optionally only those of one artifact type."""
        return [
            image
            for image in self.images.values()
            if image.subject == digest and (artifact_type is None or image.artifact_type == artifact_type)
        ]

    def mountable(self, digest: str) -> bool:
        """ECR mounts only blobs a committed manifest here references (aws/containers-roadmap#2860)."""
        return any(digest in image.blobs for image in self.images.values())

    def add_image(self, image: Image, tag: str | None) -> Image:
        """Record a pushed manifest (keeping the first push time of a digest seen before) and move ``tag``."""
        known = self.images.get(image.digest)
        if known is None:
            self.images[image.digest] = known = image
        if tag is not None:
            self.tags[tag] = image.digest
        return known

    def forget(self, digests: Iterable[str]) -> None:
        """Drop images and every tag that points at them."""
        gone = set(digests)
        for digest in gone:
            self.images.pop(digest, None)
        for tag in [t for t, d in self.tags.items() if d in gone]:
            del self.tags[tag]
