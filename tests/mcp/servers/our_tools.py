"""The registry the tests serve with ``llmagentos mcp serve --tools <this file>:registry``."""

from __future__ import annotations

import asyncio
import os

from llmagentos.tools.base import ToolRegistry, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


@tool
async def greet(name: str, excited: bool = False) -> str:
    """Greet someone (an async tool)."""
    await asyncio.sleep(0.01)
    return f"Hello, {name}{'!' if excited else '.'}"


@tool
def stats(values: list[float]) -> dict[str, float]:
    """Count, total and mean of some numbers."""
    return {"count": len(values), "total": sum(values), "mean": sum(values) / len(values)}


@tool
def explode(message: str) -> str:
    """Always raises ValueError(message)."""
    raise ValueError(message)


@tool(namespace="text")
def upper(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@tool
def pid() -> int:
    """The server's process id (the tests use it to kill the server mid-session)."""
    return os.getpid()


@tool
async def nap(seconds: float) -> float:
    """Sleep for a while."""
    await asyncio.sleep(seconds)
    return seconds


registry = ToolRegistry([add, greet, stats, explode, upper, pid, nap])
