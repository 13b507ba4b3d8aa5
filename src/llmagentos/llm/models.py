"""Make a model from its id: ``local:smollm2``, ``openai:<model>``, or a base URL.

=============================  ===============================================================
id                             model
=============================  ===============================================================
``local:smollm2``              the embedded SmolLM2-135M-Instruct (``llmagentos[local]``)
``local:/path/to/file.gguf``   any GGUF file, run by llama.cpp
``openai:<model>``             OpenAI's API (``OPENAI_API_KEY``)
``http(s)://host/v1#<model>``  any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LiteLLM)
=============================  ===============================================================

Other providers register a prefix with ``registry.register("model", "prefix", factory)``;
the factory gets the rest of the id and the keyword arguments.
"""

from __future__ import annotations

from typing import Any

from llmagentos.exceptions import UnknownModelError
from llmagentos.llm.base import Model
from llmagentos.registration import registry

__all__ = ["DEFAULT_MODEL", "available_models", "make_model"]

DEFAULT_MODEL = "local:smollm2"
OPENAI_BASE_URL = "https://api.openai.com/v1"


def _local(rest: str, **kwargs: Any) -> Model:
    from llmagentos.llm.local import LocalModel

    model: Model = LocalModel(rest, **kwargs)
    return model


def _openai(rest: str, **kwargs: Any) -> Model:
    from llmagentos.llm.openai_compat import OpenAICompatModel

    kwargs.setdefault("base_url", OPENAI_BASE_URL)
    model: Model = OpenAICompatModel(model=rest, model_id=f"openai:{rest}", **kwargs)
    return model


def _base_url(url: str, **kwargs: Any) -> Model:
    from llmagentos.llm.openai_compat import OpenAICompatModel

    base, _, name = url.partition("#")
    model: Model = OpenAICompatModel(
        model=name or kwargs.pop("model", "default"), base_url=base, model_id=url, **kwargs
    )
    return model


registry.register("model", "local", _local, description="embedded llama.cpp model (GGUF)")
registry.register("model", "openai", _openai, description="OpenAI's API")
registry.register("model", "http", _base_url, description="OpenAI-compatible server URL")
registry.register("model", "https", _base_url, description="OpenAI-compatible server URL")


def available_models() -> list[str]:
    """The id forms :func:`make_model` accepts."""
    forms = {
        "local": ["local:smollm2", "local:<path.gguf>"],
        "openai": ["openai:<model>"],
        "http": ["http://host:port/v1#<model>"],
        "https": ["https://host/v1#<model>"],
    }
    names = registry.names("model")
    return [form for name in names for form in forms.get(name, [f"{name}:<name>"])]


def make_model(model_id: str = DEFAULT_MODEL, **kwargs: Any) -> Model:
    """The model for ``model_id`` (see the table above).

    Raises:
        UnknownModelError: no provider for the id; lists the forms that work.
        MissingExtraError: the provider's optional dependency is not installed.
    """
    prefix, sep, rest = model_id.partition(":")
    if not sep or prefix not in registry.names("model") or not rest:
        raise UnknownModelError(model_id, available_models())
    factory = registry.get("model", prefix)
    if prefix in ("http", "https"):
        rest = model_id
    model: Model = factory(rest, **kwargs)
    return model
