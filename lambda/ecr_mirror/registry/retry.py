"""Retry policy: exponential backoff with full jitter, honouring ``Retry-After``, bounded in attempts and time."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_total: float = 120.0  # give up once this much time has gone by
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def should_retry(self, attempt: int, started: float, next_delay: float) -> bool:
        if attempt >= self.attempts:
            return False
        return (time.monotonic() - started) + next_delay <= self.max_total


#: for tests: retries without waiting long
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_total=20.0, max_retry_after=0.2)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
