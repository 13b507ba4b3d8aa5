"""Tools: schema from hints and docstrings, validation, calling, and the registry."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

import pytest
from pydantic import BaseModel

from llmagentos.exceptions import LLMAgentOSError, RegistryError
from llmagentos.llm.types import Message, Tool, ToolCall
from llmagentos.tools import (
    FunctionTool,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    ToolResult,
    tool,
)


@tool
def forecast(city: str, days: int = 3, units: Literal["C", "F"] = "C") -> dict[str, object]:
    """Forecast the weather for a city.

    Uses a made-up model; this second paragraph is not part of the description.

    Args:
        city: the city name,
            e.g. Paris.
        days (int): how many days ahead.
        units: temperature units.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days, "units": units}


@tool(name="fetch", namespace="web", timeout=5)
async def fetch_page(url: str, tags: list[str] | None = None) -> str:
    """Fetch a page."""
    await asyncio.sleep(0)
    return f"<html>{url}</html>"


class Point(BaseModel):
    x: int
    y: int


@tool
def norm(p: Point) -> Point:
    """Mirror a point."""
    return Point(x=p.y, y=p.x)


# -- schema ---------------------------------------------------------------------------


def test_schema_from_hints_and_docstring() -> None:
    spec = forecast.spec
    assert isinstance(spec, Tool)
    assert spec.name == "forecast"
    assert spec.description == "Forecast the weather for a city."
    params = spec.parameters
    assert params["type"] == "object"
    assert params["required"] == ["city"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["city"] == {"type": "string", "description": "the city name, e.g. Paris."}
    assert props["days"] == {"type": "integer", "default": 3, "description": "how many days ahead."}
    assert props["units"]["enum"] == ["C", "F"]
    assert props["units"]["default"] == "C"
    assert "title" not in params and "title" not in props["city"]


def test_decorator_options_and_optional_types() -> None:
    assert isinstance(fetch_page, FunctionTool)
    assert fetch_page.name == "fetch"
    assert fetch_page.qualified_name == "web.fetch"
    assert fetch_page.timeout == 5
    spec = fetch_page.spec
    assert spec.name == "web.fetch"
    assert spec.parameters["required"] == ["url"]
    tags = spec.parameters["properties"]["tags"]
    assert {"type": "array", "items": {"type": "string"}} in tags["anyOf"]
    assert tags["default"] is None


def test_nested_model_parameter_and_result() -> None:
    assert "$defs" in norm.spec.parameters
    result = norm.call({"p": {"x": 1, "y": 2}})
    assert result.ok and result.value == {"x": 2, "y": 1}


def test_decorated_function_still_callable_directly() -> None:
    assert forecast("Oslo", 1) == {"city": "Oslo", "days": 1, "units": "C"}


def test_bad_definitions_raise() -> None:
    def star(*args: int) -> None:
        """Varargs."""

    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        tool(star)
    with pytest.raises(ToolDefinitionError, match="must match"):
        tool(name="has space")(forecast.func)
    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=0)(forecast.func)
    assert issubclass(ToolDefinitionError, ToolError)
    assert issubclass(ToolError, LLMAgentOSError)


# -- calling --------------------------------------------------------------------------


async def test_sync_tool_valid_call() -> None:
    result = await forecast.acall({"city": "Paris", "days": "2"})  # lax: "2" -> 2
    assert result == ToolResult(
        ok=True,
        value={"city": "Paris", "days": 2, "units": "C"},
        seconds=result.seconds,
        name="forecast",
    )
    assert result.seconds >= 0


async def test_json_text_arguments_and_async_tool() -> None:
    result = await fetch_page.acall('{"url": "http://x"}')
    assert result.ok and result.value == "<html>http://x</html>"
    assert result.name == "web.fetch"
    bad = await fetch_page.acall("{not json")
    assert not bad.ok and "malformed arguments" in (bad.error or "")


async def test_validation_errors_name_fields() -> None:
    result = await forecast.acall({"days": "x", "units": "K", "extra": 1})
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("arguments invalid: ")
    assert "city: field required" in result.error
    assert "days: Input should be a valid integer" in result.error
    assert "(got 'x')" in result.error
    assert "units:" in result.error and "(got 'K')" in result.error
    assert "extra: Extra inputs are not permitted" in result.error


def test_sync_call_api() -> None:
    assert forecast.call({"city": "Rome"}).value == {"city": "Rome", "days": 3, "units": "C"}
    assert fetch_page.call({"url": "u"}).ok


async def test_sync_call_works_inside_running_loop() -> None:
    assert forecast.call({"city": "Rome"}).ok


async def test_sync_tool_runs_in_a_thread() -> None:
    @tool
    def slow() -> int:
        """Block for a while."""
        time.sleep(0.2)
        return 1

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            await asyncio.sleep(0.02)
            ticks += 1

    result, _ = await asyncio.gather(slow.acall({}), ticker())
    assert result.ok and ticks == 5  # the loop kept running while the tool blocked


async def test_timeout_becomes_result() -> None:
    @tool(timeout=0.05)
    async def sleepy() -> str:
        """Sleep too long."""
        await asyncio.sleep(1)
        return "late"

    result = await sleepy.acall()
    assert result == ToolResult(
        ok=False, error="timed out after 0.05 s", seconds=result.seconds, name="sleepy"
    )
    assert result.seconds < 0.5
    override = await forecast.acall({"city": "A"}, timeout=1)
    assert override.ok


async def test_exception_becomes_result() -> None:
    @tool
    def broken(n: int) -> int:
        """Always fails."""
        raise ValueError(f"bad n {n}")

    @tool
    def unjsonable() -> object:
        """Returns an object with no JSON form."""
        return object()

    result = await broken.acall({"n": 4})
    assert not result.ok and result.error == "ValueError: bad n 4"
    other = await unjsonable.acall({})
    assert not other.ok and (other.error or "").startswith("TypeError: ")


def test_to_message_round_trip() -> None:
    ok = ToolResult(ok=True, value={"a": [1, "é"]}, name="web.fetch")
    message = ok.to_message("call_1")
    assert isinstance(message, Message)
    assert message.role == "tool" and message.tool_call_id == "call_1"
    assert message.name == "web.fetch"
    assert json.loads(message.content or "") == {"ok": True, "value": {"a": [1, "é"]}}
    again = Message.model_validate_json(message.model_dump_json())
    assert again == message
    failed = ToolResult(ok=False, error="boom").to_message("c2")
    assert json.loads(failed.content or "") == {"ok": False, "error": "boom"}
    assert failed.name is None


# -- registry -------------------------------------------------------------------------


def make_registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.add(forecast, namespace="weather")
    registry.add(fetch_page)  # its own namespace: web
    return registry


def test_registry_namespaces_and_specs() -> None:
    registry = make_registry()
    assert registry.names() == ["weather.forecast", "web.fetch"]
    assert "web.fetch" in registry and len(registry) == 2
    assert [s.name for s in registry.specs()] == ["weather.forecast", "web.fetch"]
    assert [s.name for s in registry.specs(["web"])] == ["web.fetch"]
    assert registry.specs([]) == []

    def plain(x: int) -> int:
        """Double x."""
        return 2 * x

    registry.add(plain)
    assert [s.name for s in registry.specs([""])] == ["plain"]
    assert registry.get("plain").description == "Double x."


def test_registry_duplicates_and_bad_names() -> None:
    registry = make_registry()
    with pytest.raises(ToolDefinitionError, match=r"'weather\.forecast' is already registered"):
        registry.add(forecast, namespace="weather")
    registry.add(forecast, namespace="other")  # same tool, other namespace: fine
    with pytest.raises(ToolDefinitionError, match="must match"):
        registry.add(forecast, namespace="x" * 64)


def test_registry_unknown_name_suggests() -> None:
    registry = make_registry()
    with pytest.raises(RegistryError) as info:
        registry.get("forecast")
    assert info.value.suggestions == ["weather.forecast"]
    assert "did you mean 'weather.forecast'" in str(info.value)
    with pytest.raises(RegistryError) as info:
        registry.get("web.fetc")
    assert info.value.suggestions == ["web.fetch"]


async def test_run_calls_in_parallel_and_in_order() -> None:
    registry = ToolRegistry()
    for i in range(3):

        async def sleeper(i: int = i) -> int:
            """Sleep then return."""
            await asyncio.sleep(0.2)
            return i

        registry.add(tool(name=f"s{i}")(sleeper))
    calls = [ToolCall(id=f"c{i}", name=f"s{i}") for i in (2, 0, 1)]
    start = time.perf_counter()
    results = await registry.run_calls(calls)
    assert time.perf_counter() - start < 0.5
    assert [r.value for r in results] == [2, 0, 1]
    assert [r.name for r in results] == ["s2", "s0", "s1"]


async def test_run_calls_sync_tools_in_parallel() -> None:
    registry = ToolRegistry()

    @tool
    def block(n: int) -> int:
        """Block the thread."""
        time.sleep(0.2)
        return n

    registry.add(block)
    calls = [ToolCall(id=str(n), name="block", arguments=json.dumps({"n": n})) for n in range(3)]
    start = time.perf_counter()
    results = await registry.run_calls(calls)
    assert time.perf_counter() - start < 0.5
    assert [r.value for r in results] == [0, 1, 2]


async def test_run_calls_errors_become_results() -> None:
    registry = make_registry()

    @tool(timeout=0.05)
    async def stuck() -> None:
        """Never finishes in time."""
        await asyncio.sleep(1)

    @tool
    async def slow() -> str:
        """Slower than the turn's timeout."""
        await asyncio.sleep(1)
        return "late"

    registry.add(stuck)
    registry.add(slow)
    calls = [
        ToolCall(id="1", name="forecast", arguments='{"city": "Oslo"}'),
        ToolCall(id="2", name="weather.forecast", arguments="{oops"),
        ToolCall(id="3", name="weather.forecast", arguments="[1]"),
        ToolCall(id="4", name="weather.forecast", arguments='{"city": "Oslo"}'),
        ToolCall(id="5", name="stuck"),
        ToolCall(id="6", name="slow"),
        ToolCall(id="7", name="weather.forecast", arguments='{"days": 1}'),
    ]
    start = time.perf_counter()
    results = await registry.run_calls(calls, timeout=0.1)
    assert time.perf_counter() - start < 0.5
    unknown, malformed, not_object, good, stuck_r, slow_r, invalid = results
    assert unknown.error == "unknown tool 'forecast'; did you mean 'weather.forecast'?"
    assert "malformed arguments" in (malformed.error or "")
    assert "must be a JSON object" in (not_object.error or "")
    assert good.ok and good.value["city"] == "Oslo"
    assert stuck_r.error == "timed out after 0.05 s"  # the tool's own, tighter limit
    assert slow_r.error == "timed out after 0.1 s"  # the turn's limit
    assert invalid.error == "arguments invalid: city: field required"
    assert all(r.name == c.name for r, c in zip(results, calls, strict=True))


async def test_hostile_argument_text_is_an_error_result_not_a_crash() -> None:
    registry = make_registry()
    fn_tool = registry.get("weather.forecast")
    for text in [
        "[" * 100_000,  # deeper than the JSON parser's recursion limit
        '{"city": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"city": "Oslo", "days": ' + "9" * 5000 + "}",  # past the int digit limit
    ]:
        result = await registry.run_call(ToolCall(id="x", name="weather.forecast", arguments=text))
        assert not result.ok and "malformed arguments" in (result.error or "")
        direct = await fn_tool.acall(text)
        assert not direct.ok and "malformed arguments" in (direct.error or "")


async def test_run_to_messages() -> None:
    registry = make_registry()
    calls = [ToolCall(id="a", name="web.fetch", arguments='{"url": "u"}')]
    (message,) = await registry.run_to_messages(calls)
    assert message.tool_call_id == "a" and message.name == "web.fetch"
    assert json.loads(message.content or "") == {"ok": True, "value": "<html>u</html>"}
