"""Property-based tests for the parsers that read what an upstream sends in headers.

``tests/unit/test_properties.py`` covers references, platforms, manifests and index rewriting;
this adds the header and token parsers a hostile registry feeds: ``WWW-Authenticate`` challenges,
``Retry-After`` and token endpoint answers. Whatever the input, they raise nothing but the
project's own errors (or nothing at all), and well-formed input round-trips.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import AuthError
from ecr_mirror.registry.auth import parse_challenge, token_from_response
from ecr_mirror.registry.retry import RetryPolicy, parse_retry_after

BOUNDED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

header_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(['Bearer ', 'Basic ', 'realm', '=', '"', '\\', ',', ' ', 'service', 'scope', 'a', ':', '/',
                              'https://auth.example.com/token', '\t', '=,', '""']), max_size=40).map("".join),
)


@BOUNDED
@given(header_text)
def test_parse_challenge_never_raises(text):
    challenge = parse_challenge(text)
    if challenge is not None:
        assert challenge.scheme == challenge.scheme.lower() and "=" not in challenge.scheme
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in challenge.params.items())


param_name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_-]{0,10}", fullmatch=True)
param_value = st.text(st.sampled_from(list("aZ09 -_./:,=;\"\\\u00e9")), max_size=30)


@BOUNDED
@given(st.sampled_from(["Bearer", "Basic", "bearer", "BASIC"]),
       st.dictionaries(param_name.map(str.lower), param_value, min_size=1, max_size=5))
def test_challenge_round_trip(scheme, params):
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = f"{scheme} " + ",".join(f"{k}={quoted(v)}" for k, v in params.items())
    challenge = parse_challenge(header)
    assert challenge is not None and challenge.scheme == scheme.lower()
    assert challenge.params == params


@BOUNDED
@given(st.one_of(st.none(), st.text(max_size=60), st.floats(allow_nan=True).map(str), st.integers(-10**12, 10**12).map(str),
                 st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))))
def test_retry_after_is_never_negative_and_always_capped(value):
    seconds = parse_retry_after(value)
    assert seconds is None or (seconds >= 0 and not math.isnan(seconds)) or math.isinf(seconds)
    policy = RetryPolicy(max_retry_after=7.0)
    delay = policy.delay(1, value)
    assert 0 <= delay <= max(policy.max_retry_after, policy.max_delay)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["token", "access_token", "expires_in", "issued_at", "x"]), children, max_size=4),
    max_leaves=8,
)


@BOUNDED
@given(json_values)
@example({"token": "t", "expires_in": float("nan")})  # Python's json reads NaN
@example({"token": "t", "expires_in": float("inf")})  # ... and 1e999
@example({"token": "t", "expires_in": 10**400})  # too large for a float: OverflowError once
@example({"token": "a\r\nX-Injected: 1"})  # would go into an Authorization header
@example({"token": "t", "expires_in": True})
def test_token_answers_give_a_token_or_an_auth_error(doc):
    try:
        token, expires_in = token_from_response(doc)
    except AuthError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(token, str) and token and all(0x21 <= ord(c) <= 0x7E for c in token)
    assert 0 < expires_in < math.inf
