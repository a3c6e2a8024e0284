"""Secrets are redacted at the edge: the CLI's output and the handlers' logs, tracebacks included.

Errors inside the package keep their causes (``raise ... from exc``); what leaves the process goes
through a :class:`Redactor` that knows the secrets the registry client holds.
"""

from __future__ import annotations

import io
import logging

from ecr_mirror.errors import AuthError
from ecr_mirror.runtime import RedactingFilter, Redactor, redact_logs

SECRET = "s3cr3t-token-value-0042"


def test_watched_secrets_and_authorization_headers_are_redacted():
    held: list[str] = []
    redactor = Redactor()
    redactor.watch(lambda: held)
    held.append(SECRET)  # a token fetched after the redactor was set up
    text = redactor(f"token {SECRET} sent as Authorization: Bearer abc.def.ghi")
    assert SECRET not in text and "abc.def.ghi" not in text
    assert text == "token <redacted> sent as Authorization: Bearer <redacted>"


def test_a_logged_traceback_is_redacted_causes_included():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_redaction.traceback")
    log.propagate = False
    log.addHandler(handler)
    handler.addFilter(RedactingFilter(Redactor([SECRET])))
    try:
        try:
            raise ValueError(f"upstream said: bad password {SECRET}")
        except ValueError as exc:
            raise AuthError("registry.example.com refused our credentials (HTTP 401)") from exc
    except AuthError:
        log.exception("row %s failed with %s", "app", SECRET)
    out = stream.getvalue()
    assert SECRET not in out
    assert "row app failed with <redacted>" in out
    assert "ValueError: upstream said: bad password <redacted>" in out  # the cause is still shown
    assert "The above exception was the direct cause" in out


def test_redact_logs_covers_root_handlers_once():
    redactor = Redactor([SECRET])
    extra = logging.StreamHandler(io.StringIO())
    root_handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(root_handler)
    try:
        redact_logs(redactor, [extra])
        redact_logs(redactor, [extra])
        for handler in (extra, root_handler):
            assert [f.redactor for f in handler.filters if isinstance(f, RedactingFilter)] == [redactor]
    finally:
        root.removeHandler(root_handler)
