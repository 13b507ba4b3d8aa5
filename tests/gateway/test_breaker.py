"""The circuit breaker: closed -> open -> half-open -> closed or open again."""

from __future__ import annotations

import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.gateway import BreakerState, CircuitBreaker, ManualClock


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        permit.failure()


def test_opens_after_consecutive_failures_and_rejects_fast() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=clock)
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is None
    assert breaker.acquire() is None
    snap = breaker.snapshot()
    assert snap["rejected"] == 2 and snap["opened"] == 1 and snap["failures"] == 3
    assert breaker.retry_after() == pytest.approx(10.0)
    clock.advance(4)
    assert breaker.retry_after() == pytest.approx(6.0)


def test_a_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=ManualClock())
    for _ in range(5):
        fail(breaker, 2)
        permit = breaker.acquire()
        assert permit is not None
        permit.success()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_limited_trials_and_closes_on_success() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, half_open_trials=2, clock=clock)
    fail(breaker, 1)
    clock.advance(4.999)
    assert breaker.acquire() is None
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None and first.trial and second.trial
    assert breaker.acquire() is None  # only two trials at a time
    first.success()
    assert breaker.state is BreakerState.HALF_OPEN  # needs both trials to pass
    second.success()
    assert breaker.state is BreakerState.CLOSED
    permit = breaker.acquire()
    assert permit is not None and not permit.trial


def test_a_failed_trial_reopens_for_another_full_period() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    fail(breaker, 1)
    clock.advance(5)
    trial = breaker.acquire()
    assert trial is not None and trial.trial
    clock.advance(1)
    trial.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot()["opened"] == 2
    clock.advance(4.9)
    assert breaker.acquire() is None  # the new period counts from the trial's failure
    clock.advance(0.1)
    assert breaker.acquire() is not None


def test_a_released_trial_frees_its_slot() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=1, clock=clock)
    fail(breaker, 1)
    clock.advance(1)
    trial = breaker.acquire()
    assert trial is not None
    assert breaker.acquire() is None
    trial.release()
    assert breaker.state is BreakerState.HALF_OPEN
    again = breaker.acquire()
    assert again is not None and again.trial


def test_stale_outcomes_do_not_move_the_breaker() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=5, clock=clock)
    slow = breaker.acquire()  # admitted while closed, finishes much later
    assert slow is not None
    fail(breaker, 2)
    clock.advance(5)
    assert breaker.state is BreakerState.HALF_OPEN
    slow.success()  # not a trial: must not close the breaker
    assert breaker.state is BreakerState.HALF_OPEN
    trial = breaker.acquire()
    assert trial is not None
    trial.success()
    assert breaker.state is BreakerState.CLOSED
    late = breaker.acquire()
    assert late is not None
    # An outcome reported twice counts once.
    late.failure()
    late.failure()
    assert breaker.snapshot()["consecutive_failures"] == 1


def test_failure_rate_window_opens_without_a_streak() -> None:
    breaker = CircuitBreaker(
        failure_threshold=100, failure_rate=0.5, window=10, min_calls=10, clock=ManualClock()
    )
    outcomes = [True, False] * 4 + [True]  # 9 calls: under min_calls
    for ok in outcomes:
        permit = breaker.acquire()
        assert permit is not None
        permit.record(ok)
    assert breaker.state is BreakerState.CLOSED
    permit = breaker.acquire()
    assert permit is not None
    permit.failure()  # 10 calls, 5 failures: 50%
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"open_seconds": 0},
        {"half_open_trials": 0},
        {"window": 5, "min_calls": 6},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_outcomes_from_an_earlier_period_are_ignored() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, half_open_trials=2, clock=clock)
    slow = breaker.acquire()  # admitted in the first closed period
    assert slow is not None
    fail(breaker, 1)
    clock.advance(5)
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None
    first.failure()  # re-opens; `second` now belongs to a finished half-open period
    clock.advance(5)
    assert breaker.state is BreakerState.HALF_OPEN
    second.success()
    assert breaker.state is BreakerState.HALF_OPEN  # a stale trial cannot close it
    trials = [breaker.acquire(), breaker.acquire()]  # both slots are still free
    assert all(t is not None and t.trial for t in trials)
    for t in trials:
        assert t is not None
        t.success()
    assert breaker.state is BreakerState.CLOSED
    slow.failure()  # a failure from the first closed period cannot open the new one
    assert breaker.state is BreakerState.CLOSED
