"""The retry rules and sleep times, unit by unit (in the manner of stripe-python's tests).

What may be repeated is each rail's decision; how long to sleep, how often, and never past
the tool call's deadline is `retry.py`'s. These pin both down without any network.
"""

from __future__ import annotations

import math
import time
from email.utils import formatdate

import pytest

from conftest import scaled
from nonecap_mcp.credits_api import CreditsAPI
from nonecap_mcp.errors import APIError, api_error_class
from nonecap_mcp.guidance import for_api_error
from nonecap_mcp.deadline import call_deadline
from nonecap_mcp.retry import RETRY_AFTER_CAP, RetryPolicy, call_with_retries, parse_retry_after

SAMPLES = 200  # jitter is random: check its range over many draws


def api_error(status: int, code: str, retry_after: float | None = None) -> APIError:
    return api_error_class(status)(code, "test", http_status=status, retry_after=retry_after)


# -- sleep times ---------------------------------------------------------------------


def test_sleep_time_grows_exponentially_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=0.5, max_delay=100.0)
    for attempt, backoff in enumerate([0.5, 1.0, 2.0, 4.0, 8.0]):
        delays = [policy.delay(attempt) for _ in range(SAMPLES)]
        assert all(d is not None and scaled(backoff / 2) <= d <= scaled(backoff) for d in delays), (attempt, min(delays), max(delays))  # type: ignore[operator]
        assert len(set(delays)) > 1  # jittered, so many clients do not retry in step


def test_sleep_time_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(max_retries=20, base_delay=0.5, max_delay=2.0)
    assert all(policy.delay(attempt) <= scaled(2.0) for attempt in range(3, 20) for _ in range(20))  # type: ignore[operator]


def test_no_sleep_after_the_last_retry() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.delay(0) is not None and policy.delay(1) is not None
    assert policy.delay(2) is None and policy.delay(5) is None
    assert RetryPolicy(max_retries=0).delay(0) is None


def test_retry_after_is_a_floor_over_the_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_retry_after=20.0)
    assert all(policy.delay(0, retry_after=3.0) == scaled(3.0) for _ in range(SAMPLES))
    assert all(scaled(0.25) <= policy.delay(0, retry_after=0.1) <= scaled(0.5) for _ in range(SAMPLES))  # type: ignore[operator]


def test_a_retry_after_longer_than_we_hold_a_call_means_no_retry() -> None:
    policy = RetryPolicy(max_retry_after=20.0)
    assert policy.delay(0, retry_after=20.0) == scaled(20.0)  # the policy speaks real seconds; it sleeps scaled ones
    assert policy.delay(0, retry_after=21.0) is None
    assert policy.delay(0, retry_after=RETRY_AFTER_CAP) is None


def test_no_sleep_that_would_end_past_the_deadline() -> None:
    policy = RetryPolicy(base_delay=0.5)
    assert policy.delay(0, deadline=time.monotonic() + scaled(0.1)) is None  # the backoff alone is ≥ 0.25 s
    assert policy.delay(0, retry_after=5.0, deadline=time.monotonic() + scaled(4.0)) is None
    assert policy.delay(0, retry_after=5.0, deadline=time.monotonic() + scaled(6.0)) == scaled(5.0)


# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 7 ", 7.0),
        ("3600", 3600.0),
        ("3601", RETRY_AFTER_CAP),
        ("9" * 400, RETRY_AFTER_CAP),  # float("9" * 400) is inf: never reaches guidance JSON
        ("99999999999999999999", RETRY_AFTER_CAP),
    ],
)
def test_retry_after_delta_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "٣", "inf", "NaN", "1e9"])
def test_retry_after_junk_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header) is None


def test_retry_after_http_date_in_whole_seconds_within_the_cap() -> None:
    assert parse_retry_after(formatdate(time.time() + 30, usegmt=True)) in (30.0, 31.0)
    assert parse_retry_after(formatdate(time.time() - 600, usegmt=True)) == 0.0  # already past
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == RETRY_AFTER_CAP


def test_a_huge_retry_after_gives_finite_guidance() -> None:
    guidance = for_api_error("rate_limited", 429, parse_retry_after("9" * 400))
    assert guidance.retry_after_seconds == RETRY_AFTER_CAP and math.isfinite(guidance.retry_after_seconds)
    assert "Infinity" not in guidance.model_dump_json()


# -- which failures the credits rail repeats -----------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "code", "retryable"),
    [
        ("GET", 500, "internal_error", True),
        ("GET", 502, "http_502", True),
        ("GET", 503, "pool_exhausted", True),
        ("GET", 429, "rate_limited", True),
        ("GET", 404, "not_found", False),
        ("GET", 401, "unauthorized", False),
        ("DELETE", 500, "internal_error", True),
        ("DELETE", 409, "conflict", False),
        # A create is repeated only when the API says nothing was created.
        ("POST", 429, "rate_limited", True),
        ("POST", 429, "concurrency_limit_exceeded", True),
        ("POST", 503, "pool_exhausted", True),
        ("POST", 500, "internal_error", False),
        ("POST", 502, "http_502", False),
        ("POST", 504, "http_504", False),
        ("POST", 422, "validation_error", False),
    ],
)
def test_credits_retry_rules(method: str, status: int, code: str, retryable: bool) -> None:
    assert CreditsAPI._retryable(method == "POST", api_error(status, code)) is retryable


# -- the loop --------------------------------------------------------------------------


class Flaky:
    """An attempt that fails with each given exception in turn, then returns "ok"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def retry_all(exc: Exception) -> float | None:
    return getattr(exc, "retry_after", None) or 0.0


FAST = RetryPolicy(max_retries=2, base_delay=0.02, max_delay=0.05)


@pytest.mark.anyio
async def test_retries_until_success_within_max_retries() -> None:
    attempt = Flaky(api_error(500, "internal_error"), api_error(500, "internal_error"))
    assert await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all) == "ok"
    assert len(attempt.calls) == 3


@pytest.mark.anyio
async def test_gives_up_after_max_retries_and_marks_the_error_retried() -> None:
    attempt = Flaky(*[api_error(500, "internal_error") for _ in range(5)])
    with pytest.raises(APIError) as caught:
        await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all)
    assert len(attempt.calls) == 3 and caught.value.retried is True


@pytest.mark.anyio
async def test_a_failure_the_rail_refuses_to_repeat_is_raised_at_once() -> None:
    attempt = Flaky(api_error(400, "invalid_request"))
    with pytest.raises(APIError) as caught:
        await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=lambda exc: None)
    assert len(attempt.calls) == 1 and caught.value.retried is False


@pytest.mark.anyio
async def test_sleeps_at_least_retry_after_between_attempts() -> None:
    attempt = Flaky(api_error(429, "rate_limited", retry_after=0.3))
    await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all)
    assert attempt.calls[1] - attempt.calls[0] >= scaled(0.3)


@pytest.mark.anyio
async def test_no_retry_past_the_tool_calls_deadline() -> None:
    attempt = Flaky(api_error(429, "rate_limited", retry_after=1.0))
    with call_deadline(scaled(0.5)), pytest.raises(APIError):
        await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all)
    assert len(attempt.calls) == 1
    # The same failure outside any call's deadline is retried after its Retry-After.
    attempt = Flaky(api_error(429, "rate_limited", retry_after=0.1))
    assert await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all) == "ok"


@pytest.mark.anyio
async def test_the_earlier_of_the_two_deadlines_wins() -> None:
    attempt = Flaky(api_error(429, "rate_limited", retry_after=1.0))
    with call_deadline(30), pytest.raises(APIError):
        await call_with_retries(attempt, policy=FAST, retry_after_if_retryable=retry_all, deadline=time.monotonic() + scaled(0.5))
    assert len(attempt.calls) == 1
