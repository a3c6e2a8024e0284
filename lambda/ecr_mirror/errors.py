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
    │   └── RowsFileError            a rows file (``ecr-mirror apply -f``) that does not load or validate
    ├── Deadline                     too little time left to start more work (the row goes back to the queue)
    ├── Interrupted                  the operator stopped the work (Ctrl-C): requests refused, transfers aborted
    ├── AwsError                     an AWS API call failed (one mapping from botocore: ecr_mirror.aws)
    └── RegistryError                an OCI registry answered with an error or could not be reached
        ├── AuthError                401/403 after authenticating, or the token endpoint failed
        ├── NotFoundError            404 / NAME_UNKNOWN / MANIFEST_UNKNOWN / BLOB_UNKNOWN
        ├── TagImmutableError        the destination refuses to overwrite an immutable tag
        ├── UnsafeRedirectError      a redirect to a scheme or address we will not follow
        ├── TransportError           connection reset, timeout, truncated body (always temporary)
        └── PullLimitReached         an upstream's pull budget cannot cover a pull, or it answered 429 (never retried)

``RegistryError.temporary`` says whether retrying may help (like go-containerregistry's
``transport.Error.Temporary()``); it carries the HTTP status, the OCI error codes
(distribution-spec, "Error Codes") and the server's ``Retry-After`` hint in seconds.
``AwsError.temporary`` says the same for AWS calls (botocore has retried those already).

Errors are raised ``... from exc``: the cause stays attached for ``--debug`` tracebacks;
secrets are redacted where text leaves the process (the CLI's and the handlers' redactors).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
    """Content whose digest or size differs from what its descriptor promised.

    ``expected`` is the digest asked for, ``actual`` what the bytes hash to (``""`` when unknown,
    e.g. a body cut short).
    """

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CopyError(MirrorError):
    """A copy that cannot be done as asked."""


class RowError(MirrorError):
    """A mirror-table row that does not validate; ``attribute`` names the culprit (``""`` for the row itself);
    ``detail`` is what is wrong with it, without the row and attribute (for callers that name those themselves)."""

    def __init__(self, message: str, *, attribute: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.attribute = attribute
        self.detail = " ".join((detail or message).split())


class ConfigError(MirrorError):
    """Bad configuration: environment variables, flags, credential files."""


class RowsFileError(ConfigError):
    """A rows file that does not load or validate. ``problems``: one line per problem (file, line, entry,
    attribute); ``str()`` is the first, with how many more there are."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = [" ".join(p.split()) for p in problems] or ["invalid rows file"]
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""))


class ApplyError(MirrorError):
    """Applying a rows file stopped at a failed write: ``written`` of ``total`` changes were made (applying
    again finishes: what is written already is unchanged then). The message names the failure and the counts."""

    def __init__(self, cause: MirrorError, *, written: int, total: int) -> None:
        super().__init__(f"{cause} ({written} of {total} changes written; apply again to finish)")
        self.written = written
        self.total = total


class Deadline(MirrorError):
    """The time left is too short to start more work; the row goes back to the queue. ``progress``: how many
    tags the interrupted sync copied before it stopped (0: it made none)."""

    def __init__(self, message: str, *, progress: int = 0) -> None:
        super().__init__(message)
        self.progress = progress


class Interrupted(MirrorError):
    """The work was stopped on purpose (Ctrl-C in the CLI): no new request starts, transfers in flight
    are cut off, and nothing is retried. Never temporary."""

    temporary = False


class AwsError(MirrorError):
    """An AWS API call failed. ``code`` is the AWS error code (or the exception's class name)."""

    def __init__(self, message: str, *, code: str = "", temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = temporary


class RegistryError(MirrorError):
    """An OCI registry answered with an error, or could not be reached.

    ``status``: the HTTP status (``None`` when no answer came); ``codes``: OCI error codes from the
    body; ``url``: the request URL without its query; ``retry_after``: seconds the server asked us to
    wait (``Retry-After``), if it did. ``temporary`` defaults to true for 429 and 5xx.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: Iterable[str] = (),
        temporary: bool | None = None,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = tuple(codes)
        self.url = url
        self.retry_after = retry_after
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
    """A redirect to a scheme or address that is never followed. Never temporary."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("temporary", False)
        super().__init__(message, **kwargs)


class TransportError(RegistryError):
    """Connection reset, timeout, or a body cut short. Retrying may help."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("temporary", True)
        super().__init__(message, **kwargs)


class PullLimitReached(RegistryError):
    """An upstream's pull budget cannot cover another pull (``ratelimit-remaining`` minus the reserve), or
    the upstream answered 429. Never temporary: retrying spends pulls the window no longer has; the tag is
    ``deferred`` until ``retry_at`` (Unix seconds: when the window is expected to give pulls back; ``None``
    when not known). ``host``: the upstream registry host; ``remaining``/``reserve``: pulls left in the
    service's view and kept back, when known. Source: Docker Hub's pull limits (ecr-facts.md section 8)."""

    def __init__(self, message: str, *, host: str = "", retry_at: float | None = None, remaining: int | None = None,
                 reserve: int | None = None, **kwargs: Any) -> None:
        kwargs["temporary"] = False
        super().__init__(message, **kwargs)
        self.host = host
        self.retry_at = retry_at
        self.remaining = remaining
        self.reserve = reserve


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting data inside a one-line error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
