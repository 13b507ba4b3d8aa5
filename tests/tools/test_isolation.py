"""Process-isolated tools: real worker processes, killed on timeout, crashes as results."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmagentos.exceptions import ToolDefinitionError
from llmagentos.tools import ToolRegistry, tool
from llmagentos.tools.pool import ToolPool
from tests.tools import isolated_tools as iso


def moved(x: int) -> int:
    """A module-level function whose module cannot be imported (it claims another)."""
    return x


moved.__module__ = "no_such_module_here"


@pytest.fixture
async def pool() -> AsyncIterator[ToolPool]:
    own = ToolPool(max_workers=2, max_processes=2)
    yield own
    own.close()


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` exists, a zombie counting as gone (nothing runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def _until_gone(pid: int) -> bool:
    for _ in range(500):  # init reaps orphans on its own time
        if _gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_hung_tool_is_killed_at_its_timeout(pool: ToolPool, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    warm = await iso.hang.acall({"pid_file": str(pids), "seconds": 0}, pool=pool)
    assert warm.ok, warm.error  # the worker is up: the timeout below is the call's alone
    pids.unlink()
    result = await iso.hang.acall({"pid_file": str(pids), "child": True}, timeout=3.0, pool=pool)
    assert not result.ok and result.error is not None
    assert result.error == "timed out after 3 s (its worker process was killed)"
    worker, child = map(int, pids.read_text().split())  # written well within the 3 s
    assert warm.value == worker  # the same worker served both calls
    with pytest.raises(ProcessLookupError):  # killed and reaped before the answer
        os.kill(worker, 0)
    assert await _until_gone(child), "the tool's own child outlived the kill"
    stats = pool.stats()["processes"]
    assert stats["killed"] == 1 and stats["processes"] == 0 and stats["busy"] == 0


async def test_a_worker_that_exits_is_an_error_result(pool: ToolPool) -> None:
    result = await iso.exit_now.acall({"code": 3}, pool=pool)
    assert not result.ok and result.error is not None
    assert result.error.startswith("ToolProcessError:")
    assert "died during the call (exit code 3)" in result.error
    assert "tests.tools.isolated_tools:exit_now" in result.error
    assert pool.stats()["processes"]["crashed"] == 1
    assert (await iso.add.acall({"a": 1, "b": 2}, pool=pool)).value["sum"] == 3


async def test_values_and_errors_cross_as_in_a_thread(pool: ToolPool) -> None:
    first = await iso.add.acall({"a": 2, "b": 3}, pool=pool)
    again = await iso.add.acall('{"a": "4", "b": 5}', pool=pool)  # JSON text, coerced
    assert first.ok and first.value["sum"] == 5 and again.value["sum"] == 9
    assert first.value["pid"] == again.value["pid"] != os.getpid()
    assert (await iso.add_async.acall({"a": 1, "b": 1}, pool=pool)).value == 2
    failed = await iso.fail.acall({"message": "bad input"}, pool=pool)
    assert failed.error == "ValueError: bad input"
    invalid = await iso.add.acall({"a": "x", "b": 1}, pool=pool)  # refused before any worker
    assert invalid.error is not None and invalid.error.startswith("arguments invalid: a:")
    odd = await iso.unjsonable.acall(pool=pool)
    assert odd.error is not None and "TypeError" in odd.error and "not JSON" in odd.error


async def test_a_reply_too_large_or_forged_kills_the_worker() -> None:
    small = ToolPool(max_processes=1)
    small.processes.max_reply_bytes = 1000
    try:
        fine = await iso.big.acall({"size": 10}, pool=small)
        assert fine.value == "x" * 10
        huge = await iso.big.acall({"size": 5000}, pool=small)
        assert huge.error is not None and "its reply has" in huge.error
        forged = await iso.forge.acall(pool=small)
        assert forged.error is not None and "answered another call" in forged.error
        stats = small.stats()["processes"]
        assert stats["killed"] == 2 and stats["processes"] == 0
    finally:
        small.close()


async def test_workers_are_capped_and_shared_in_turn(pool: ToolPool) -> None:
    results = await asyncio.gather(
        *(iso.add.acall({"a": n, "b": 0}, pool=pool) for n in range(3)),
        *(iso.add_async.acall({"a": n, "b": 1}, pool=pool) for n in range(3)),
    )
    assert [r.value["sum"] for r in results[:3]] == [0, 1, 2]
    assert [r.value for r in results[3:]] == [1, 2, 3]
    stats = pool.stats()["processes"]
    assert stats["processes"] <= 2 and stats["busy"] == 0 and stats["waiting"] == 0


async def test_a_registry_runs_isolated_tools_on_its_pool(pool: ToolPool) -> None:
    registry = ToolRegistry([iso.add], pool=pool)
    from llmagentos.llm.types import ToolCall

    result = await registry.run_call(ToolCall(id="c", name="add", arguments='{"a": 1, "b": 1}'))
    assert result.value["sum"] == 2
    assert registry.executor_stats()["processes"]["calls"] == 1


async def test_a_tool_the_worker_cannot_import_is_an_error(pool: ToolPool) -> None:
    result = await tool(isolation="process")(moved).acall({"x": 1}, pool=pool)
    assert result.error is not None and result.error.startswith("ToolProcessError:")
    assert "cannot import the tool no_such_module_here:moved" in result.error
    assert "ModuleNotFoundError" in result.error
    assert pool.stats()["processes"]["processes"] == 0


def test_only_module_level_functions_can_be_isolated() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="defined at module level"):
        tool(isolation="process")(local)
    with pytest.raises(ToolDefinitionError, match="defined at module level"):
        tool(isolation="process", name="anon")(lambda: 1)
    with pytest.raises(ToolDefinitionError, match="isolation must be"):
        tool(isolation="fork")(local)  # type: ignore[call-overload]


async def test_timeouts_while_starting_or_waiting_kill_nothing(tmp_path: Path) -> None:
    own = ToolPool(max_processes=1)
    try:
        early = await iso.add.acall({"a": 1, "b": 1}, timeout=0.01, pool=own)
        assert early.error == (
            "timed out after 0.01 s (its worker process was still starting; "
            "it is kept for the next call)"
        )
        for _ in range(3000):  # the start goes on without the caller
            if own.stats()["processes"]["idle"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (await iso.add.acall({"a": 1, "b": 1}, pool=own)).value["sum"] == 2
        assert own.stats()["processes"]["started"] == 1

        # The only worker slot busy with a hung call: another tool's call waits, then
        # times out without a worker of its own; cancelling the hung call kills it.
        pids = tmp_path / "pids"
        hung = asyncio.ensure_future(iso.hang.acall({"pid_file": str(pids)}, pool=own))
        for _ in range(3000):
            if pids.exists() and pids.read_text().strip():
                break
            await asyncio.sleep(0.01)
        waited = await iso.add.acall({"a": 1, "b": 1}, timeout=0.2, pool=own)
        assert waited.error == (
            "timed out after 0.2 s (still waiting for a worker process: all 1 busy)"
        )
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
        with pytest.raises(ProcessLookupError):
            os.kill(int(pids.read_text().split()[0]), 0)
        stats = own.stats()["processes"]
        assert stats["killed"] == 1 and stats["busy"] == 0 and stats["waiting"] == 0
    finally:
        own.close()
