"""The coder's prompts: the first attempt and the repair, in a few measured variants.

A variant is a system prompt plus two templates. ``{prompt}`` is the task's signature
and docstring, ``{entry_point}`` the function name, ``{code}`` the previous attempt and
``{feedback}`` the sandbox's failure text. Only these names are substituted (with
``str.replace``), so braces in code and feedback are safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmagentos.exceptions import ConfigError

__all__ = ["DEFAULT_VARIANT", "PROMPT_VARIANTS", "PromptVariant", "prompt_variant"]


@dataclass(frozen=True, slots=True)
class PromptVariant:
    """One way of asking for code and for a repair."""

    name: str
    system: str
    first: str
    repair: str

    def first_prompt(self, *, prompt: str, entry_point: str) -> str:
        return _fill(self.first, prompt=prompt, entry_point=entry_point)

    def repair_prompt(self, *, prompt: str, entry_point: str, code: str, feedback: str) -> str:
        return _fill(
            self.repair, prompt=prompt, entry_point=entry_point, code=code, feedback=feedback
        )


def _fill(template: str, **values: str) -> str:
    text = template
    for name, value in values.items():
        text = text.replace("{" + name + "}", value.strip("\n"))
    return text


_REPAIR_BODY = (
    "This is my attempt:\n```python\n{code}\n```\n\n"
    "The tests failed:\n{feedback}\n\n"
    "Fix the function `{entry_point}`. Reply with the complete corrected function in one "
    "```python code block."
)

# A worked example: small models otherwise often echo the docstring and stop.
_EXAMPLE = (
    "Write this Python function.\n\n```python\n"
    "def count_positive(numbers: list[int]) -> int:\n"
    '    """Return how many numbers are greater than zero.\n\n'
    "    >>> count_positive([3, -1, 0, 5])\n    2\n"
    '    """\n```\n\n'
    "Answer:\n```python\n"
    "def count_positive(numbers: list[int]) -> int:\n"
    "    count = 0\n    for n in numbers:\n        if n > 0:\n            count += 1\n"
    "    return count\n```\n\n"
)

PROMPT_VARIANTS: dict[str, PromptVariant] = {
    "plain": PromptVariant(
        name="plain",
        system="You are a helpful Python programmer.",
        first=(
            "Write a Python function.\n\n{prompt}\n"
            "Reply with the complete function in a ```python code block."
        ),
        repair="Write a Python function.\n\n{prompt}\n" + _REPAIR_BODY,
    ),
    "implement": PromptVariant(
        name="implement",
        system=(
            "You are an expert Python programmer. You write correct, simple code and "
            "reply with code only."
        ),
        first=(
            "Implement this Python function. Keep the signature, write the body.\n\n"
            "```python\n{prompt}\n```\n"
            "Reply with only the complete function in a ```python code block, no explanation."
        ),
        repair=(
            "Implement this Python function. Keep the signature, write the body.\n\n"
            "```python\n{prompt}\n```\n" + _REPAIR_BODY
        ),
    ),
    "complete": PromptVariant(
        name="complete",
        system="You complete Python code. Reply with code only.",
        first=(
            "Complete the code of `{entry_point}` so that it does what its docstring "
            "says:\n\n```python\n{prompt}\n```"
        ),
        repair=(
            "Complete the code of `{entry_point}` so that it does what its docstring "
            "says:\n\n```python\n{prompt}\n```\n\n" + _REPAIR_BODY
        ),
    ),
    "fresh": PromptVariant(
        name="fresh",
        system="You complete Python code. Reply with code only.",
        first=(
            "Complete the code of `{entry_point}` so that it does what its docstring "
            "says:\n\n```python\n{prompt}\n```"
        ),
        # The failing code is left out: a small model shown it tends to hand it back.
        repair=(
            "Complete the code of `{entry_point}` so that it does what its docstring "
            "says:\n\n```python\n{prompt}\n```\n\n"
            "An earlier version failed these tests:\n{feedback}\n\n"
            "Write a correct version of `{entry_point}` that passes them, in one "
            "```python code block."
        ),
    ),
    "example": PromptVariant(
        name="example",
        system="You are a Python programmer. You always write the whole function body.",
        first=_EXAMPLE + "Write this Python function.\n\n```python\n{prompt}\n```\n\nAnswer:",
        repair=_EXAMPLE
        + "Write this Python function.\n\n```python\n{prompt}\n```\n\n"
        + _REPAIR_BODY,
    ),
}
"""The variants tried with SmolLM2-135M on the 26 bundled tasks (greedy, see
docs/codegen.md): tasks solved at the first attempt: plain 4, implement 2, complete 5,
example 1; after two repairs (with resampling): complete 6, fresh 7 (fresh solves its
7th after one repair). ``fresh`` is the default."""

DEFAULT_VARIANT = "fresh"


def prompt_variant(name: str) -> PromptVariant:
    """The variant called ``name``.

    Raises:
        ConfigError: no such variant.
    """
    try:
        return PROMPT_VARIANTS[name]
    except KeyError:
        known = ", ".join(PROMPT_VARIANTS)
        raise ConfigError("prompt", f"unknown prompt variant {name!r} (known: {known})") from None
