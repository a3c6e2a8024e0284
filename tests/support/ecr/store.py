"""The stand-in's one store: ECR metadata (repositories, images, tags, tokens, account settings)
kept beside a real ``docker-registry`` that holds the bytes.

Both faces go through :class:`Account`: the registry face records what it let through, the ECR
API face reads it and, for deletions, removes the manifests from distribution too.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import Any

import httpx

from .model import (
    ACCOUNT,
    REGION,
    TOKEN_TTL,
    EcrError,
    Repository,
    check_mutability,
    check_repository_name,
    invalid,
    repository_not_found,
)

#: PutAccountSetting names and values (botocore service model docs for ``name``/``value``)
ACCOUNT_SETTINGS = {
    "BLOB_MOUNTING": ("DISABLED", ("ENABLED", "DISABLED")),
    "BASIC_SCAN_TYPE_VERSION": ("AWS_NATIVE", ("AWS_NATIVE", "CLAIR")),
    "REGISTRY_POLICY_SCOPE": ("V2", ("V1", "V2")),
}
_TAGS_MAX = 50  # resource tags per repository (AWS tagging limit)


class Account:
    """One account's private registry in one region. Hold :attr:`lock` while reading or changing state."""

    def __init__(
        self,
        registry_url: str,
        *,
        registry_id: str = ACCOUNT,
        region: str = REGION,
        token_ttl: float = TOKEN_TTL,
    ) -> None:
        self.lock = threading.RLock()
        self.registry_id = registry_id
        self.region = region
        self.token_ttl = token_ttl
        self.registry_host = ""  # the registry face's host:port, set once it listens
        self.repositories: dict[str, Repository] = {}
        self.settings = {name: default for name, (default, _) in ACCOUNT_SETTINGS.items()}
        self._tokens: dict[str, float] = {}  # password -> expiry (epoch seconds)
        self.backend = httpx.Client(base_url=registry_url, timeout=httpx.Timeout(60.0, connect=10.0))

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ tokens

    def issue_token(self) -> tuple[str, float]:
        """A new registry password and its expiry (epoch seconds)."""
        password = secrets.token_urlsafe(48)
        expires_at = time.time() + self.token_ttl
        with self.lock:
            self._tokens[password] = expires_at
        return password, expires_at

    def token_state(self, authorization: str | None) -> str:
        """``valid``, ``expired`` or ``missing`` (no Basic ``AWS:<password>`` this account issued)."""
        if not authorization or not authorization[:6].lower() == "basic ":
            return "missing"
        try:
            user, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "missing"
        with self.lock:
            expires_at = self._tokens.get(password) if user == "AWS" else None
        if expires_at is None:
            return "missing"
        return "valid" if time.time() < expires_at else "expired"

    def passwords(self) -> list[str]:
        with self.lock:
            return list(self._tokens)

    def expire_tokens(self) -> None:
        with self.lock:
            for password in self._tokens:
                self._tokens[password] = 0.0

    # ------------------------------------------------------------------ repositories

    def arn(self, name: str) -> str:
        return f"arn:aws:ecr:{self.region}:{self.registry_id}:repository/{name}"

    def repository(self, name: str, registry_id: str | None = None) -> Repository:
        """The repository, or RepositoryNotFoundException (also for another registry id)."""
        registry_id = registry_id or self.registry_id
        with self.lock:
            repo = self.repositories.get(name) if registry_id == self.registry_id else None
        if repo is None:
            raise repository_not_found(name, registry_id)
        return repo

    def create_repository(
        self,
        name: str,
        *,
        mutability: str = "MUTABLE",
        filters: list[dict[str, str]] | None = None,
        scanning: dict[str, Any] | None = None,
        encryption: dict[str, Any] | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> Repository:
        check_repository_name(name)
        mutability, filters = check_mutability(mutability, filters)
        encryption = dict(encryption or {"encryptionType": "AES256"})
        if encryption.get("encryptionType") not in ("AES256", "KMS", "KMS_DSSE"):
            raise invalid(
                "encryptionConfiguration.encryptionType", "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]"
            )
        if encryption["encryptionType"] == "AES256" and encryption.get("kmsKey"):
            raise invalid("encryptionConfiguration.kmsKey", "Member must be absent when encryptionType is AES256")
        repo = Repository(
            name=name,
            created_at=time.time(),
            mutability=mutability,
            filters=filters,
            scanning={"scanOnPush": bool((scanning or {}).get("scanOnPush", False))},
            encryption=encryption,
            resource_tags=check_tags(tags or []),
        )
        with self.lock:
            if name in self.repositories:
                raise EcrError(
                    "RepositoryAlreadyExistsException",
                    f"The repository with name '{name}' already exists in the registry with id '{self.registry_id}'",
                )
            self.repositories[name] = repo
        return repo

    def delete_repository(self, name: str, *, force: bool = False, registry_id: str | None = None) -> Repository:
        """Delete a repository; with ``force`` its images (and blob links) go from distribution too."""
        with self.lock:
            repo = self.repository(name, registry_id)
            if repo.images and not force:
                raise EcrError(
                    "RepositoryNotEmptyException",
                    f"The repository with name '{name}' in registry with id '{self.registry_id}' "
                    "cannot be deleted because it still contains images",
                )
            self.delete_images(repo, list(repo.images))
            for digest in sorted(repo.blobs):
                self._backend_delete(f"/v2/{name}/blobs/{digest}")
            del self.repositories[name]
        return repo

    # ------------------------------------------------------------------ images (bytes live in distribution)

    def delete_images(self, repo: Repository, digests: list[str]) -> None:
        """Remove manifests from distribution (indexes first, so no index outlives a child there) and forget them."""
        with self.lock:
            ordered = sorted(set(digests), key=lambda d: not (d in repo.images and repo.images[d].is_index))
            for digest in ordered:
                self._backend_delete(f"/v2/{repo.name}/manifests/{digest}")
            repo.forget(ordered)

    def manifest_bytes(self, repo: Repository, digest: str) -> bytes:
        """The stored bytes of a manifest, read back from distribution by digest."""
        image = repo.images[digest]
        response = self.backend.get(f"/v2/{repo.name}/manifests/{digest}", headers={"Accept": image.media_type})
        if response.status_code != 200:
            raise EcrError(
                "ServerException", f"stand-in: distribution answered {response.status_code} for {digest}", 500
            )
        return response.content

    def blob_status(self, name: str, digest: str) -> int:
        return self.backend.head(f"/v2/{name}/blobs/{digest}").status_code

    def _backend_delete(self, path: str) -> None:
        response = self.backend.delete(path)
        if response.status_code not in (202, 404):
            raise EcrError(
                "ServerException", f"stand-in: distribution answered {response.status_code} to DELETE {path}", 500
            )


def check_tags(tags: Any) -> dict[str, str]:
    """Resource tags (``[{"Key", "Value"}]``) as a dict; keys up to 128, values up to 256 characters."""
    result: dict[str, str] = {}
    for tag in tags:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.startswith("aws:"):
            raise EcrError("InvalidTagParameterException", f"Invalid tag key: {key!r}")
        if not isinstance(value, str) or len(value) > 256:
            raise EcrError("InvalidTagParameterException", f"Invalid tag value for key {key!r}")
        result[key] = value
    if len(result) > _TAGS_MAX:
        raise EcrError("TooManyTagsException", f"A resource can have at most {_TAGS_MAX} tags")
    return result
