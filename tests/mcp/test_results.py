"""Translating MCP results and names, without a server."""

from __future__ import annotations

from typing import Any

from mcp_types import CallToolResult, ImageContent, TextContent

from llmagentos.mcp.results import RESULT_SCHEMA, from_call_result, to_call_result
from llmagentos.mcp.tool import local_name
from llmagentos.tools.base import ToolResult


def result(**fields: Any) -> ToolResult:
    return from_call_result(CallToolResult(**fields), name="t", seconds=0.0)


def test_text_is_decoded_when_it_is_json() -> None:
    assert result(content=[TextContent(text='{"a": 1}')]).value == {"a": 1}
    assert result(content=[TextContent(text="plain words")]).value == "plain words"
    assert result(content=[]).value is None
    many = result(content=[TextContent(text="1"), TextContent(text="two")])
    assert many.value == [1, "two"]


def test_structured_content_wins_and_unwraps_only_under_a_result_schema() -> None:
    wrapped = CallToolResult(content=[TextContent(text="7")], structured_content={"result": 7})
    assert from_call_result(wrapped, name="t", seconds=0, output_schema=RESULT_SCHEMA).value == 7
    assert from_call_result(wrapped, name="t", seconds=0).value == {"result": 7}


def test_errors_keep_the_text_and_describe_other_blocks() -> None:
    failed = result(content=[TextContent(text="bad")], is_error=True)
    assert not failed.ok and failed.error == "bad"
    image = ImageContent(data="AAAA", mime_type="image/png")
    assert result(content=[image], is_error=True).error == "[image image/png]"
    assert "without a message" in (result(content=[], is_error=True).error or "")


def test_our_results_round_trip() -> None:
    for value in [3, "3", "text", {"k": [1, None]}, None, [1, 2]]:
        sent = to_call_result(ToolResult(ok=True, value=value))
        back = from_call_result(sent, name="t", seconds=0, output_schema=RESULT_SCHEMA)
        assert back.ok and back.value == value
    failed = to_call_result(ToolResult(ok=False, error="ValueError: x"))
    assert failed.is_error and from_call_result(failed, name="t", seconds=0).error == (
        "ValueError: x"
    )


def test_local_names() -> None:
    assert local_name("get-sum") == "get-sum"
    assert local_name("files/read file.v2") == "files_read_file_v2"
    long = local_name("x" * 100)
    assert len(long) == 64 and long != local_name("x" * 99)
    assert local_name("") == "tool"
