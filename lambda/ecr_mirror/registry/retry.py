"""Retries: one policy and one helper, used for every registry operation that may be repeated.

:func:`retry` calls an operation until it succeeds, its error is not temporary, or the policy's
budget is spent: ``attempts`` calls in all (the first included) within ``max_total`` seconds.
Waits are exponential with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"),
or what the server asked for with ``Retry-After`` (RFC 9110, section 10.2.3), capped.

Retries never nest. A :func:`retry` inside another (a manifest GET inside a blob restarted as a
whole, a token fetch inside a request) calls its operation once and lets the error through: the
outermost :func:`retry` owns the budget, so an operation is tried at most ``attempts`` times,
never ``attempts`` squared. The scope is per thread (a :class:`~contextvars.ContextVar`; worker
threads start outside any scope).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from ..errors import RegistryError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth another try: request timeout, too many requests, and server errors short of 501
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_inside_retry: ContextVar[bool] = ContextVar("ecr_mirror_inside_retry", default=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Times are in seconds.

    ``attempts``: calls in all, the first included (the budget, stated once); ``base_delay``: the wait
    ceiling before the second call, doubled for each later one up to ``max_delay``; ``max_total``: no
    further call once this much time has gone by since the first; ``max_retry_after``: the longest
    ``Retry-After`` honoured (a server asking for an hour gets this instead).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_total: float = 120.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | float | None = None) -> float:
        """Seconds to wait before call ``attempt + 1`` (``attempt`` counts from 1).

        ``retry_after`` is the server's hint: seconds, or a ``Retry-After`` header value (seconds or
        an HTTP date); it is honoured up to ``max_retry_after``. Without it: a random wait between
        half and all of ``min(max_delay, base_delay * 2 ** (attempt - 1))``.
        """
        hinted = parse_retry_after(retry_after) if isinstance(retry_after, str) else retry_after
        if hinted is not None:
            return min(max(0.0, hinted), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def should_retry(self, attempt: int, started: float, next_delay: float) -> bool:
        """Whether call ``attempt + 1`` fits the budget: fewer than ``attempts`` calls so far, and
        ``max_total`` not exceeded by the time the wait of ``next_delay`` seconds is over
        (``started`` is a :func:`time.monotonic` reading taken before the first call)."""
        if attempt >= self.attempts:
            return False
        return (time.monotonic() - started) + next_delay <= self.max_total


#: for tests: retries without waiting long
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_total=20.0, max_retry_after=0.2)


def is_temporary(exc: BaseException) -> bool:
    """Whether another try may help: a :class:`RegistryError` marked ``temporary``.

    AWS errors are not retried here: botocore has retried them already.
    """
    return isinstance(exc, RegistryError) and exc.temporary


def retry(
    policy: RetryPolicy,
    operation: Callable[[], T],
    *,
    what: str = "",
    sleep: Callable[[float], None] = time.sleep,
    temporary: Callable[[BaseException], bool] = is_temporary,
) -> T:
    """``operation()``, called again after a wait while it raises a temporary error, within ``policy``.

    Returns what ``operation`` returns. Raises its last error: at once when it is not temporary,
    else once the budget is spent. Inside another :func:`retry` on this thread, calls ``operation``
    once (see the module docstring). ``what`` names the operation in log lines; ``sleep`` is
    injectable for tests.
    """
    if _inside_retry.get():
        return operation()
    scope = _inside_retry.set(True)
    try:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except Exception as exc:
                if not temporary(exc):
                    raise
                wait = policy.delay(attempt, getattr(exc, "retry_after", None))
                if not policy.should_retry(attempt, started, wait):
                    raise
                log.info("%s: %s; try %d of %d in %.2fs", what or "retrying", exc, attempt + 1, policy.attempts, wait)
                sleep(wait)
    finally:
        _inside_retry.reset(scope)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or an HTTP date; RFC 9110, 10.2.3); ``None``
    when absent or unreadable. Never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
