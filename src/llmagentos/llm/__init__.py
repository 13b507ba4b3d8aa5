"""The LLM layer: the Model interface, providers, test doubles and wrappers."""

from llmagentos.llm.base import Model, WrapperModel, collect_stream, to_messages
from llmagentos.llm.models import DEFAULT_MODEL, available_models, make_model
from llmagentos.llm.testing import FunctionModel, ScriptedModel
from llmagentos.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Tool,
    ToolCall,
    Usage,
)

__all__ = [
    "DEFAULT_MODEL",
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ScriptedModel",
    "StreamEvent",
    "Tool",
    "ToolCall",
    "Usage",
    "WrapperModel",
    "available_models",
    "collect_stream",
    "make_model",
    "to_messages",
]
