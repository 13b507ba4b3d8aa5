"""The retry budget and the idempotency rule."""

from __future__ import annotations

import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.gateway import ManualClock, RetryBudget, is_idempotent


def drain(budget: RetryBudget) -> int:
    allowed = 0
    while budget.can_retry():
        allowed += 1
        assert allowed < 10_000
    return allowed


def test_retries_are_capped_at_the_ratio_of_requests() -> None:
    budget = RetryBudget(0.2, min_per_second=0, window_seconds=10, clock=ManualClock())
    for _ in range(100):
        budget.record_request()
    assert drain(budget) == 20
    assert budget.snapshot() == {"requests": 100, "retries": 20, "rejected": 1}
    for _ in range(5):
        budget.record_request()
    assert drain(budget) == 1  # 105 requests earn 21 retries


def test_the_floor_allows_a_few_retries_on_a_quiet_service() -> None:
    budget = RetryBudget(0.2, min_per_second=0.5, window_seconds=10, clock=ManualClock())
    assert drain(budget) == 5  # 0.5/s over 10 s, with no requests at all
    for _ in range(10):
        budget.record_request()
    assert drain(budget) == 2


def test_under_steady_load_retries_stay_within_twenty_percent() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.2, min_per_second=0, window_seconds=10, clock=clock)
    requests = retries = 0
    for _ in range(600):  # one minute, 10 requests per second, every one wants a retry
        for _ in range(10):
            budget.record_request()
            requests += 1
            if budget.can_retry():
                retries += 1
        clock.advance(1)
    assert retries <= 0.2 * requests
    assert retries >= 0.19 * requests  # and the budget is actually used


def test_old_requests_leave_the_window() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.5, min_per_second=0, window_seconds=10, clock=clock)
    for _ in range(10):
        budget.record_request()
    clock.advance(10)
    assert not budget.can_retry()  # the 10 requests are out of the window
    for _ in range(4):
        budget.record_request()
    assert drain(budget) == 2


def test_spent_retries_stay_counted_within_the_window() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.2, min_per_second=0, window_seconds=10, clock=clock)
    for _ in range(50):
        budget.record_request()
    assert drain(budget) == 10
    clock.advance(5)  # same window: neither the requests nor the retries expired
    assert not budget.can_retry()
    clock.advance(5.01)
    assert not budget.can_retry()


@pytest.mark.parametrize("kwargs", [{"ratio": -0.1}, {"ratio": 1.1}, {"window_seconds": 0}])
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryBudget(**kwargs)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "get"])
def test_idempotent_methods(method: str) -> None:
    assert is_idempotent(method)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_need_the_route_or_a_key(method: str) -> None:
    assert not is_idempotent(method)
    assert not is_idempotent(method, headers={"content-type": "application/json"})
    assert not is_idempotent(method, headers={"Idempotency-Key": "  "})
    assert is_idempotent(method, route_idempotent=True)
    assert is_idempotent(method, headers={"Idempotency-Key": "abc"})
    assert is_idempotent(method, headers={"idempotency-key": "abc"})
