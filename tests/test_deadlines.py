"""Coarse deadlines (llmagentos/_deadlines.py) on a real event loop: they fire after
their time and at most a sweep late, cancelled ones never, the sweep stops when idle,
and ``coarse_timeout`` behaves as ``asyncio.timeout_at`` does."""

from __future__ import annotations

import asyncio

import pytest

from llmagentos._deadlines import TICK, coarse_timeout, deadlines


async def test_a_deadline_fires_after_its_time_and_at_most_a_sweep_late() -> None:
    loop = asyncio.get_running_loop()
    fired: dict[str, float] = {}
    timers = deadlines()
    start = loop.time()
    timers.add(start + 0.12, lambda: fired.setdefault("late", loop.time()))
    timers.add(start + 0.03, lambda: fired.setdefault("soon", loop.time()))
    cancelled = timers.add(start + 0.03, lambda: fired.setdefault("cancelled", loop.time()))
    timers.cancel(cancelled)
    await asyncio.sleep(0.12 + 3 * TICK)
    assert set(fired) == {"soon", "late"}
    assert start + 0.03 <= fired["soon"] <= start + 0.03 + TICK + 0.05  # slack for a busy CI
    assert start + 0.12 <= fired["late"] <= start + 0.12 + TICK + 0.05
    assert len(timers) == 0 and timers._timer is None  # no sweep while nothing waits


async def test_call_later_gives_a_handle_that_cancels_as_a_timer_handle_does() -> None:
    fired: list[str] = []
    timers = deadlines()
    timers.call_later(0.02, lambda: fired.append("kept"))
    timers.call_later(0.02, lambda: fired.append("cancelled")).cancel()
    await asyncio.sleep(0.02 + 3 * TICK)
    assert fired == ["kept"] and len(timers) == 0


async def test_each_loop_has_its_own() -> None:
    here = deadlines()
    assert deadlines() is here

    async def other() -> object:
        return deadlines()

    assert await asyncio.to_thread(asyncio.run, other()) is not here


async def test_coarse_timeout_raises_timeout_error_inside_the_block() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), coarse_timeout(started + 0.05):
        await asyncio.sleep(5)
    assert loop.time() - started < 0.05 + TICK + 0.5
    await asyncio.sleep(0)  # the task is not left cancelled


async def test_coarse_timeout_in_time_changes_nothing() -> None:
    loop = asyncio.get_running_loop()
    with coarse_timeout(loop.time() + 5) as limit:
        await asyncio.sleep(0.01)
    assert not limit.expired
    assert len(deadlines()) == 0


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()

    async def waits() -> None:
        with coarse_timeout(loop.time() + 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_says_so() -> None:
    def outside() -> None:
        with coarse_timeout(0):
            pass

    loop = asyncio.get_running_loop()
    with pytest.raises(RuntimeError, match="inside a task"):
        await loop.run_in_executor(None, outside)
