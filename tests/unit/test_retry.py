"""The one retry helper: what it repeats, how often, how long it waits, and that retries never nest."""

from __future__ import annotations

import threading

import pytest

from ecr_mirror.errors import AwsError, DigestMismatchError, RegistryError, TransportError
from ecr_mirror.registry.retry import RetryPolicy, retry

POLICY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.04, max_total=60, max_retry_after=5)


class Failing:
    """An operation that raises ``errors`` one per call, then returns ``"done"``; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def temporary(n: int = 1) -> list[RegistryError]:
    return [RegistryError("HTTP 503", status=503) for _ in range(n)]


def test_temporary_errors_are_retried_until_success():
    sleeps: list[float] = []
    op = Failing(*temporary(3))
    assert retry(POLICY, op, sleep=sleeps.append) == "done"
    assert op.calls == 4 and len(sleeps) == 3 and all(0 < s <= 0.04 for s in sleeps)


def test_the_budget_is_attempts_calls_in_all():
    op = Failing(*temporary(10))
    with pytest.raises(RegistryError):
        retry(POLICY, op, sleep=lambda s: None)
    assert op.calls == POLICY.attempts


@pytest.mark.parametrize("error", [
    RegistryError("HTTP 400", status=400),
    DigestMismatchError("bad bytes"),
    AwsError("throttled", code="ThrottlingException", temporary=True),  # botocore retried it already
    ValueError("a bug"),
], ids=["400", "digest-mismatch", "aws", "bug"])
def test_errors_that_a_retry_cannot_help_are_raised_at_once(error):
    op = Failing(error)
    with pytest.raises(type(error)):
        retry(POLICY, op, sleep=lambda s: None)
    assert op.calls == 1


def test_retry_after_is_honoured_up_to_the_policy_ceiling():
    sleeps: list[float] = []
    op = Failing(RegistryError("429", status=429, retry_after=1.5), RegistryError("429", status=429, retry_after=3600))
    assert retry(POLICY, op, sleep=sleeps.append) == "done"
    assert sleeps == [1.5, 5]


def test_no_further_call_once_max_total_would_be_exceeded():
    policy = RetryPolicy(attempts=10, max_total=1.0, max_retry_after=30)
    op = Failing(RegistryError("429", status=429, retry_after=2.0))
    with pytest.raises(RegistryError):
        retry(policy, op, sleep=lambda s: None)
    assert op.calls == 1


def test_retries_never_nest_the_outermost_owns_the_budget():
    inner = Failing(*[TransportError("reset") for _ in range(100)])
    outer_calls = 0

    def outer() -> str:
        nonlocal outer_calls
        outer_calls += 1
        return retry(POLICY, inner, sleep=lambda s: None)  # inside the outer one: called once

    with pytest.raises(TransportError):
        retry(POLICY, outer, sleep=lambda s: None)
    assert outer_calls == POLICY.attempts and inner.calls == POLICY.attempts
    # once the outer retry is over, a retry has its own budget again
    again = Failing(*temporary(10))
    with pytest.raises(RegistryError):
        retry(POLICY, again, sleep=lambda s: None)
    assert again.calls == POLICY.attempts


def test_another_thread_starts_outside_any_retry():
    seen: list[int] = []

    def in_thread() -> None:
        op = Failing(*temporary(2))
        retry(POLICY, op, sleep=lambda s: None)
        seen.append(op.calls)

    def outer() -> None:
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()

    retry(POLICY, outer, sleep=lambda s: None)
    assert seen == [3]  # the thread's retry had its own budget
