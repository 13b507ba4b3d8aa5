"""Load balancing over replicas, and outlier ejection."""

from __future__ import annotations

from collections import Counter

import pytest

from llmagentos.exceptions import ConfigError
from llmagentos.gateway import LeastOutstanding, ManualClock, OutlierDetector, Replica, RoundRobin


def pool(n: int) -> list[Replica]:
    return [Replica(f"http://127.0.0.1:{9000 + i}") for i in range(n)]


def test_round_robin_takes_turns_and_skips_unavailable_replicas() -> None:
    clock = ManualClock()
    replicas = pool(3)
    rr = RoundRobin(clock=clock)
    assert [rr.pick(replicas) for _ in range(6)] == replicas * 2
    replicas[1].healthy = False
    replicas[2].ejected_until = clock() + 5
    assert [rr.pick(replicas) for _ in range(3)] == [replicas[0]] * 3
    clock.advance(5)  # the ejection ends by itself
    picks = Counter(r.url for r in (rr.pick(replicas) for _ in range(4)) if r)
    assert picks == {replicas[0].url: 2, replicas[2].url: 2}


def test_nothing_available_picks_none() -> None:
    replicas = pool(2)
    for r in replicas:
        r.healthy = False
    assert RoundRobin().pick(replicas) is None
    assert LeastOutstanding().pick(replicas) is None
    assert RoundRobin().pick([]) is None
    assert LeastOutstanding().pick([]) is None


def test_least_outstanding_prefers_the_least_busy() -> None:
    replicas = pool(3)
    lo = LeastOutstanding(clock=ManualClock())
    replicas[0].outstanding = 3
    replicas[1].outstanding = 1
    replicas[2].outstanding = 2
    assert lo.pick(replicas) is replicas[1]
    replicas[1].healthy = False
    assert lo.pick(replicas) is replicas[2]


def test_least_outstanding_breaks_ties_round_robin() -> None:
    replicas = pool(3)
    lo = LeastOutstanding(clock=ManualClock())
    assert [lo.pick(replicas) for _ in range(6)] == replicas * 2


def test_least_outstanding_spreads_calls_in_flight_evenly() -> None:
    replicas = pool(4)
    lo = LeastOutstanding(clock=ManualClock())
    for _ in range(40):  # calls that never finish: each pick begins one
        chosen = lo.pick(replicas)
        assert chosen is not None
        chosen.begin()
    assert [r.outstanding for r in replicas] == [10, 10, 10, 10]
    replicas[2].end()
    assert lo.pick(replicas) is replicas[2]
    for _ in range(20):
        replicas[0].end()
    assert replicas[0].outstanding == 0


def test_outlier_ejection_after_consecutive_failures_grows_exponentially() -> None:
    clock = ManualClock()
    replicas = pool(4)
    detector = OutlierDetector(
        consecutive_failures=3, base_ejection_seconds=10, max_ejection_seconds=35, clock=clock
    )
    bad = replicas[0]
    assert not detector.record(bad, False, replicas)
    assert not detector.record(bad, True, replicas)  # a success resets the count
    assert not detector.record(bad, False, replicas)
    assert not detector.record(bad, False, replicas)
    assert detector.record(bad, False, replicas)
    assert bad.ejected_until == clock() + 10
    assert not bad.available(clock())
    for expected in (20, 35, 35):  # doubles, then the cap
        clock.advance(bad.ejected_until - clock())
        assert bad.available(clock())
        for _ in range(2):
            assert not detector.record(bad, False, replicas)
        assert detector.record(bad, False, replicas)
        assert bad.ejected_until - clock() == expected
    assert bad.ejections == 4


def test_a_replica_that_behaves_long_enough_starts_over() -> None:
    clock = ManualClock()
    replicas = pool(2)
    detector = OutlierDetector(
        consecutive_failures=1, base_ejection_seconds=10, max_ejection_seconds=40, clock=clock
    )
    detector.record(replicas[0], False, replicas)
    clock.advance(10)
    detector.record(replicas[0], False, replicas)
    assert replicas[0].ejected_until - clock() == 20
    clock.advance(20 + 40)
    detector.record(replicas[0], True, replicas)
    detector.record(replicas[0], False, replicas)
    assert replicas[0].ejected_until - clock() == 10


def test_ejection_never_takes_more_than_the_allowed_share() -> None:
    clock = ManualClock()
    replicas = pool(4)
    detector = OutlierDetector(consecutive_failures=1, max_ejected_fraction=0.5, clock=clock)
    ejected = [detector.record(r, False, replicas) for r in replicas]
    assert ejected == [True, True, False, False]
    rr = RoundRobin(clock=clock)
    assert {rr.pick(replicas) for _ in range(4)} == {replicas[2], replicas[3]}


def test_a_single_replica_is_never_ejected() -> None:
    replicas = pool(1)
    detector = OutlierDetector(consecutive_failures=1, clock=ManualClock())
    assert not any(detector.record(replicas[0], False, replicas) for _ in range(10))
    assert replicas[0].available(ManualClock()())


def test_outlier_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        OutlierDetector(consecutive_failures=0)
    with pytest.raises(ConfigError):
        OutlierDetector(base_ejection_seconds=10, max_ejection_seconds=5)
    with pytest.raises(ConfigError):
        OutlierDetector(max_ejected_fraction=2)
