"""The one exception tree of ecr-mirror.

Every error that crosses a module boundary is one of these; the CLI and the
handlers turn them into one clear line (``str(exc)``) without a traceback.

::

    MirrorError                      base; ``str()`` is a complete one-line message
    ├── ReferenceError_              an image reference that does not parse
    ├── PlatformError                a platform string that does not parse
    ├── ManifestError                a manifest/index that is malformed, too big, or of an unknown type
    ├── DigestMismatchError          bytes whose sha256 (or size) differs from the descriptor
    ├── CopyError                    a copy that cannot be done as asked (no such platform, duplicate platforms, ...)
    ├── RowError                     a mirror-table row that does not validate (names the attribute)
    ├── ConfigError                  bad configuration (environment, CLI flags, credentials file)
    ├── AwsError                     an AWS API call failed (wraps botocore errors, secrets redacted)
    └── RegistryError                an OCI registry answered with an error or could not be reached
        ├── AuthError                401/403 after authenticating, or the token endpoint failed
        ├── NotFoundError            404 / NAME_UNKNOWN / MANIFEST_UNKNOWN / BLOB_UNKNOWN
        ├── TagImmutableError        the destination refuses to overwrite an immutable tag
        ├── UnsafeRedirectError      a redirect to a scheme or address we will not follow
        └── TransportError           connection reset, timeout, truncated body (always temporary)

``RegistryError.temporary`` says whether retrying may help (like go-containerregistry's
``transport.Error.Temporary()``); it carries the HTTP status and the OCI error codes.
"""

from __future__ import annotations

from collections.abc import Iterable


class MirrorError(Exception):
    """Base of every ecr-mirror error. ``str(exc)`` is one line, fit for users."""

    def __str__(self) -> str:  # never let a newline through to a one-line error
        return " ".join(super().__str__().split())


class ReferenceError_(MirrorError):  # noqa: N801 - the builtin ReferenceError is something else
    """An image reference that does not parse."""


class PlatformError(MirrorError):
    """A platform string such as ``linux/arm64/v8`` that does not parse."""


class ManifestError(MirrorError):
    """A manifest or index that is malformed, too large or of an unsupported type."""


class DigestMismatchError(MirrorError):
    """Content whose digest or size differs from what its descriptor promised."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CopyError(MirrorError):
    """A copy that cannot be done as asked."""


class RowError(MirrorError):
    """A mirror-table row that does not validate; ``attribute`` names the culprit."""

    def __init__(self, message: str, *, attribute: str = "") -> None:
        super().__init__(message)
        self.attribute = attribute


class ConfigError(MirrorError):
    """Bad configuration: environment variables, flags, credential files."""


class AwsError(MirrorError):
    """An AWS API call failed."""

    def __init__(self, message: str, *, code: str = "", temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = temporary


class RegistryError(MirrorError):
    """An OCI registry answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: Iterable[str] = (),
        temporary: bool | None = None,
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = tuple(codes)
        self.url = url
        if temporary is None:
            temporary = status is not None and (status == 429 or status >= 500)
        self.temporary = temporary


class AuthError(RegistryError):
    """Authentication failed (401/403 after credentials were offered, or token endpoint failure)."""


class NotFoundError(RegistryError):
    """The repository, manifest or blob does not exist."""


class TagImmutableError(RegistryError):
    """The destination refuses to overwrite an immutable tag."""


class UnsafeRedirectError(RegistryError):
    """A redirect to a scheme or address that is never followed."""

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("temporary", False)
        super().__init__(message, **kwargs)


class TransportError(RegistryError):
    """Connection reset, timeout, or a body cut short. Retrying may help."""

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("temporary", True)
        super().__init__(message, **kwargs)
