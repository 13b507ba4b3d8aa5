"""The coder: a planner that asks a language model for code, then for repairs.

It reads :class:`~llmagentos.codegen.env.CodeTaskEnv`'s observation. On the first
attempt it sends the task's signature and docstring; after a failed attempt it sends
the previous code and the sandbox's failure text and asks for a fix. The action is the
code pulled out of the reply (:func:`~llmagentos.codegen.extract.extract_code`), with
the prompt's imports and helpers it dropped put back
(:func:`~llmagentos.codegen.extract.with_prompt_context`); the
decision's reason says which it was (``first attempt`` or ``repair after 2/5 tests
failed: ...``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from llmagentos.codegen.extract import extract_code, with_prompt_context
from llmagentos.codegen.prompts import DEFAULT_VARIANT, PromptVariant, prompt_variant
from llmagentos.exceptions import ConfigError, ModelError
from llmagentos.modules.planning import PlanningModule
from llmagentos.types import Decision, Features

if TYPE_CHECKING:
    from llmagentos.llm.base import Model

__all__ = ["CoderPlanningModule", "failure_summary"]

OnError = Literal["fallback", "raise"]


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failure_summary(observation: Mapping[str, Any]) -> str:
    """``2/5 tests failed: <first failure>`` (or the error) for the last attempt."""
    lines = [line.strip() for line in str(observation.get("feedback") or "").splitlines()]
    # The sandbox's feedback opens with a count ("1/4 tests passed."), then "Error: ..."
    # and one "- test_name: message" line per failure: show the first of those.
    first = next((line for line in lines if line.startswith(("Error:", "- "))), "")
    first = first.removeprefix("- ") or next((line for line in lines if line), "")
    failed, total = observation.get("failed"), observation.get("total")
    if isinstance(failed, int) and isinstance(total, int) and total > 0:
        head = f"{failed}/{total} tests failed"
    else:
        head = "the tests did not run"
    return f"{head}: {_one_line(first)}" if first else head


class CoderPlanningModule(PlanningModule):
    """Writes and repairs code with a language model (the action is the code text).

    Args:
        model: the model to ask.
        variant: the prompt variant (a name from
            :data:`~llmagentos.codegen.prompts.PROMPT_VARIANTS` or a PromptVariant).
        temperature: sampling temperature (0 for greedy, reproducible answers).
        max_tokens: the reply's token budget.
        seed: the sampling seed; ``reset(seed=s)`` adds ``s`` so each episode of a
            sampled run draws a different, reproducible answer.
        on_error: on a model error, ``"fallback"`` submits no code (the attempt fails and
            the reason says why) or ``"raise"`` re-raises.
        resample: when a repair's code repeats an earlier attempt of the episode, ask
            again up to this many times at ``resample_temperature`` (seeded, so still
            reproducible). Small models often hand the failing code back unchanged,
            and resubmitting it cannot pass.
        resample_temperature: the temperature of those retries.
    """

    def __init__(
        self,
        model: Model,
        *,
        variant: str | PromptVariant = DEFAULT_VARIANT,
        temperature: float = 0.0,
        max_tokens: int = 384,
        seed: int | None = None,
        on_error: OnError = "fallback",
        resample: int = 2,
        resample_temperature: float = 0.8,
    ) -> None:
        super().__init__()
        if on_error not in ("fallback", "raise"):
            raise ConfigError("on_error", f"must be 'fallback' or 'raise' (got {on_error!r})")
        self.model = model
        self.variant = prompt_variant(variant) if isinstance(variant, str) else variant
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.on_error: OnError = on_error
        if resample < 0:
            raise ConfigError("resample", f"must be >= 0 (got {resample})")
        self.resample = resample
        self.resample_temperature = resample_temperature
        self._tried: set[str] = set()
        self._episode_seed: int | None = seed
        self.last_prompt: str | None = None
        self.last_reply: str | None = None
        self.calls = 0
        self.failures = 0

    def reset(self, *, seed: int | None = None) -> Any:
        self._tried.clear()
        if seed is not None:
            self._episode_seed = seed if self.seed is None else self.seed + seed
        return super().reset(seed=seed)

    def prompt(self, observation: Mapping[str, Any]) -> tuple[str, str]:
        """The user prompt for ``observation`` and the reason it is asked for."""
        task_prompt = str(observation["prompt"])
        entry_point = str(observation.get("entry_point") or "")
        code = observation.get("code")
        if code is None:
            return self.variant.first_prompt(prompt=task_prompt, entry_point=entry_point), (
                "first attempt"
            )
        text = self.variant.repair_prompt(
            prompt=task_prompt,
            entry_point=entry_point,
            code=str(code) or "# (no code)",
            feedback=str(observation.get("feedback") or "(no details)"),
        )
        return text, f"repair after {failure_summary(observation)}"

    async def _ask(self, user: str, temperature: float, seed: int | None) -> str:
        settings: dict[str, Any] = {"temperature": temperature, "max_tokens": self.max_tokens}
        if seed is not None:
            settings["seed"] = seed
        self.calls += 1
        response = await self.model.achat(user, system=self.variant.system, **settings)
        return response.text or ""

    async def adecide(self, features: Features) -> Decision:
        observation = json.loads(features) if isinstance(features, str) else features
        if not isinstance(observation, Mapping) or "prompt" not in observation:
            raise ConfigError(
                "features", "the coder reads CodeTaskEnv observations (a dict with 'prompt')"
            )
        user, reason = self.prompt(observation)
        entry_point = str(observation.get("entry_point") or "")
        task_prompt = str(observation["prompt"])

        def submission(reply: str) -> str:
            # The reply's code, plus the prompt's imports and helpers it dropped.
            return with_prompt_context(extract_code(reply, entry_point), task_prompt, entry_point)

        self.last_prompt = user
        seed = self._episode_seed
        try:
            reply = await self._ask(user, self.temperature, seed)
            code = submission(reply)
            retries = 0
            while code in self._tried and retries < self.resample:
                retries += 1
                # A distinct, reproducible seed per (episode, attempt, retry).
                attempt = int(observation.get("attempt") or 0)
                retry_seed = (seed or 0) * 1000 + attempt * 10 + retries
                reply = await self._ask(user, self.resample_temperature, retry_seed)
                code = submission(reply)
            if retries:
                repeated = code in self._tried
                reason += f"; resampled {retries}x (the reply repeated an earlier attempt"
                reason += ", still the same)" if repeated else ")"
        except ModelError as err:
            self.failures += 1
            if self.on_error == "raise":
                raise
            self.last_reply = None
            return Decision("", f"{reason}; model error, no code: {_one_line(str(err), 120)}")
        self.last_reply = reply
        self._tried.add(code)
        return Decision(code, reason)
