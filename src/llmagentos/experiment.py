"""Run a config end to end: build the agent, train, evaluate, and write the results.

``llmagentos run`` is a thin layer over this module::

    from llmagentos.config import load_config
    from llmagentos.experiment import run_experiment

    result = run_experiment(load_config("examples/configs/taxi.toml"))
    print(result.eval.mean_return, result.output_dir)

A run writes into ``config.output_dir()``:

- ``results.json``: the effective config, per-episode returns and lengths, summary
  statistics, counters, the files written, and whether the run was interrupted;
- ``status.json``: the run's progress while it goes (finished episodes, state, the
  kernel's counters), then the state it ended in (see :mod:`llmagentos.run_status`);
- ``trace.jsonl``: step records of the traced episodes (see ``[output]``);
- ``qtable.json``: the learned Q-table, with the counters a resumed run continues from;
- ``learning_curve.png``: training return per episode and the eval mean (needs
  ``llmagentos[plot]``).

Everything that can be checked (the config, the environment, every module, the
resume file, the output folder) is checked by :class:`Experiment` before the output
folder is created, so a bad config leaves nothing behind. Files are written
atomically (temporary file, then ``os.replace``). Ctrl-C during training or
evaluation stops the run and still writes the results of the finished episodes,
marked ``"interrupted": true``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from llmagentos._files import write_atomic
from llmagentos._json import jsonable
from llmagentos._version import __version__
from llmagentos.agent import Agent
from llmagentos.build import BuiltAgent, build_agent
from llmagentos.config import PhaseConfig, RunConfig, parse_config
from llmagentos.durable.runner import DurableRunner
from llmagentos.exceptions import (
    ApprovalPending,
    BudgetExceeded,
    ConfigError,
    LLMAgentOSError,
)
from llmagentos.experiment_results import (
    RESULTS_FORMAT,
    ExperimentResult,
    PhaseResult,
    RunCallbacks,
)
from llmagentos.plotting import PLOT_EXTRA_HINT, matplotlib_available, save_learning_curve
from llmagentos.run_status import RunProgress
from llmagentos.safety.budget import Budget
from llmagentos.telemetry.runs import close_run_telemetry, open_run_telemetry
from llmagentos.trace import TraceWriter
from llmagentos.types import EpisodeResult, StepRecord

__all__ = [
    "EVAL_SEED_OFFSET",
    "FILE_NAMES",
    "RESULTS_FORMAT",
    "Experiment",
    "ExperimentResult",
    "PhaseResult",
    "RunCallbacks",
    "run_experiment",
    "with_overrides",
]

#: ``--seed N`` seeds training with N and evaluation with N + this offset, so the two
#: phases never replay the same episode starts.
EVAL_SEED_OFFSET = 10_000
FILE_NAMES = {
    "results": "results.json",
    "journal": "run.db",
    "trace": "trace.jsonl",
    "qtable": "qtable.json",
    "plot": "learning_curve.png",
    "spans": "spans.jsonl",
    "status": "status.json",
}
_TRACE_PARTIAL = ".trace.jsonl.partial"

_perf = time.perf_counter


# -- config helpers -----------------------------------------------------------------------


def with_overrides(
    config: RunConfig,
    *,
    output_dir: Path | None = None,
    train_episodes: int | None = None,
    eval_episodes: int | None = None,
    seed: int | None = None,
    resume: Path | None = None,
) -> RunConfig:
    """A copy of ``config`` with the command-line overrides applied and validated again.

    ``seed`` seeds training with ``seed`` and evaluation with ``seed +``
    :data:`EVAL_SEED_OFFSET`. A phase that the config lacks is added when its episode
    count is given.

    Raises:
        ConfigError: an override makes the config invalid (naming the field).
    """
    data = config.model_dump()
    if output_dir is not None:
        data["output"]["dir"] = output_dir
    if resume is not None:
        data["resume"] = resume
    if train_episodes is not None:
        if data["train"] is None:
            data["train"] = {"seed": 0}
        data["train"]["episodes"] = train_episodes
    if eval_episodes is not None:
        if data["eval"] is None:
            base = data["train"]["seed"] if data["train"] and data["train"]["seed"] else 0
            data["eval"] = {"seed": base + EVAL_SEED_OFFSET}
        data["eval"]["episodes"] = eval_episodes
    if seed is not None:
        if data["train"] is not None:
            data["train"]["seed"] = seed
        if data["eval"] is not None:
            data["eval"]["seed"] = seed + EVAL_SEED_OFFSET
    return parse_config(data)


def _check_config(config: RunConfig) -> None:
    """The checks pydantic cannot make alone; raise before anything is built or written."""
    phases: list[tuple[str, PhaseConfig | None]] = [("train", config.train), ("eval", config.eval)]
    for name, phase in phases:
        if phase is not None and phase.seed is not None and phase.seed < 0:
            raise ConfigError(f"{name}.seed", f"must be >= 0 (got {phase.seed})")
    if not any(phase is not None and phase.episodes > 0 for _, phase in phases):
        raise ConfigError("train", "nothing to run: set train.episodes or eval.episodes above 0")
    out = config.output_dir()
    if out.exists() and not out.is_dir():
        raise ConfigError("output.dir", f"{out} exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("output.dir", f"cannot create {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("output.dir", f"cannot create {out}: {existing} is not writable")


# -- files --------------------------------------------------------------------------------


def _write_json(target: Path, data: Any) -> Path:
    def write(path: Path) -> None:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    return write_atomic(target, write)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends, so saving is never cut in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class _Tracer:
    """An ``on_step`` listener that passes the chosen episodes of each phase to a trace.

    The choice is made before each episode starts, and the listener is attached only
    for traced episodes: the agent builds a step record only when someone listens,
    so untraced episodes run at full speed.
    """

    def __init__(self, agent: Agent, writer: TraceWriter, *, train_every: int, eval_first: int):
        self.agent = agent
        self.writer = writer
        self.train_every = train_every
        self.eval_first = eval_first
        self.active = False
        self._record_timings = agent.record_timings

    def select(self, phase: str, index: int) -> None:
        """Decide whether episode ``index`` (counted within ``phase``) is traced."""
        if phase == "train":
            self._set(self.train_every > 0 and index % self.train_every == 0)
        else:
            self._set(index < self.eval_first)

    def pause(self) -> None:
        """Stop tracing (between phases, and for good at the end)."""
        self._set(False)

    def _set(self, active: bool) -> None:
        if active != self.active:
            if active:
                self.agent.listeners.append(self)
            else:
                self.agent.listeners.remove(self)
            self.active = active
        self.agent.record_timings = active or self._record_timings

    def __call__(self, record: StepRecord) -> None:
        self.writer(record)


# -- the run ------------------------------------------------------------------------------


class Experiment:
    """A validated, built run, ready to write into its output folder.

    Construction checks the config and builds the agent (environment, Q-table,
    modules, resume file) without touching the disk; :meth:`run` then trains,
    evaluates and writes. An experiment runs once.

    Raises:
        ConfigError: the first problem, naming its field.
    """

    def __init__(self, config: RunConfig) -> None:
        _check_config(config)
        self.config = config
        self.built: BuiltAgent = build_agent(config)
        # The comparison agent: the same config with the other agent section (fresh table).
        self.baseline: BuiltAgent | None = None
        if config.baseline is not None:
            try:
                self.baseline = build_agent(
                    config.model_copy(update={"agent": config.baseline, "resume": None})
                )
            except ConfigError as err:
                raise ConfigError(err.field.replace("agent.", "baseline.", 1), err.problem) from err
        self.notes: list[str] = []
        self._ran = False
        self.runner: DurableRunner | None = None
        q_table = self.built.q_table
        if q_table is not None and config.resume is not None:
            trained_on = q_table.meta.get("env")
            if trained_on and trained_on != config.env.id:
                self.notes.append(
                    f"the resumed Q-table was trained on {trained_on}, not {config.env.id}"
                )
        if config.output.plot and not matplotlib_available():
            self.notes.append(PLOT_EXTRA_HINT)

    @property
    def output_dir(self) -> Path:
        return self.config.output_dir()

    @property
    def algorithm(self) -> str:
        """The learning optimizer's name (``q_learning``, ``sarsa``...), else the config type."""
        optimizer = getattr(self.built.agent.learning_module, "optimizer", None)
        name = getattr(optimizer, "algorithm", None)
        return name if isinstance(name, str) else self.config.agent.learning.type

    def counters(self) -> dict[str, Any]:
        """The learning optimizer's counters (``steps``, ``episodes``): what resume continues."""
        optimizer = getattr(self.built.agent.learning_module, "optimizer", None)
        state_dict = getattr(optimizer, "state_dict", None)
        if not callable(state_dict):
            return {}
        state = state_dict()
        return dict(jsonable(state)) if isinstance(state, dict) else {}

    def run(self, callbacks: RunCallbacks | None = None) -> ExperimentResult:
        """Train, evaluate and write the output files; return what happened.

        Ctrl-C stops the run early: the finished episodes are written and the result
        has ``interrupted`` set. Any other error also writes what was done (with
        ``error`` set in ``results.json``) and is then raised again.
        """
        if self._ran:
            raise RuntimeError("an Experiment runs once; make a new one to run again")
        self._ran = True
        config = self.config
        out = self.output_dir
        result = ExperimentResult(
            config=config,
            output_dir=out,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            notes=list(self.notes),
        )
        started = _perf()
        out.mkdir(parents=True, exist_ok=True)
        status = RunProgress(out, result, callbacks or RunCallbacks())
        self.runner = self._open_runner(out)
        tracer = self._open_trace(out)
        telemetry = open_run_telemetry(
            config.telemetry, out, config.name, keep=config.output.durable
        )
        failure: Exception | None = None
        try:
            runs = [("train", config.train, self.built), ("eval", config.eval, self.built)]
            if self.baseline is not None:
                runs += [("baseline train", config.train, self.baseline),
                         ("baseline eval", config.eval, self.baseline)]  # fmt: skip
            for name, phase, built in runs:
                if phase is not None and phase.episodes > 0:
                    self._run_phase(result, name, phase, built.agent, tracer=tracer, hooks=status)
        except (ApprovalPending, BudgetExceeded) as err:
            state = "paused" if isinstance(err, ApprovalPending) else "budget_exceeded"
            result.stopped = f"{state}: {err}"
        except KeyboardInterrupt:
            result.interrupted = True
        except Exception as err:
            failure = err
            result.error = str(err) if isinstance(err, LLMAgentOSError) else repr(err)
        finally:
            if tracer is not None:
                tracer.pause()
            self._close_runner(result)
            spans = close_run_telemetry(telemetry)
            if spans is not None:
                result.notes.append(
                    f"telemetry: {spans['spans_ended']} spans, {spans['spans_dropped']} dropped, "
                    f"{spans['export_failures']} refused by the exporter"
                )
                if config.telemetry.exporter == "file":
                    result.files["spans"] = out / FILE_NAMES["spans"]
            if self.config.output.durable:
                result.files["journal"] = out / FILE_NAMES["journal"]
        result.wall_seconds = _perf() - started
        with _sigint_deferred():
            self._save(result, tracer)
            status.finish()
        self.built.agent.close()
        if self.baseline is not None:
            self.baseline.agent.close()
        if failure is not None:
            raise failure
        return result

    def _open_runner(self, out: Path) -> DurableRunner | None:
        """The journal of a durable run, or a run with a budget (kept in memory then)."""
        config = self.config
        if not config.output.durable and config.budget is None:
            return None
        path = out / FILE_NAMES["journal"] if config.output.durable else ":memory:"
        data = config.model_dump(mode="json")
        budget = None if config.budget is None else Budget(**config.budget.model_dump())
        # What is written and traced does not change what the run does.
        fingerprint = {k: v for k, v in data.items() if k not in ("output", "telemetry")}
        runner = DurableRunner(
            path, agent=config.name, budget=budget, fingerprint=fingerprint,
            durability=config.output.durability,
        )  # fmt: skip
        runner.journal.set_meta("config", data)
        return runner

    def _close_runner(self, result: ExperimentResult) -> None:
        runner = self.runner
        if runner is None:
            return
        if result.stopped is None:
            state = "interrupted" if result.interrupted else "failed" if result.error else None
            runner.finish(state or "completed", result.error)
        runner.close()

    def _open_trace(self, out: Path) -> _Tracer | None:
        output = self.config.output
        if output.trace_train_every == 0 and output.trace_eval_episodes == 0:
            return None
        agent = self.built.agent
        writer = TraceWriter(out / _TRACE_PARTIAL, agent=self.config.name)
        tracer = _Tracer(
            agent,
            writer,
            train_every=output.trace_train_every,
            eval_first=output.trace_eval_episodes,
        )
        return tracer

    def _run_phase(
        self,
        result: ExperimentResult,
        name: str,
        config: PhaseConfig,
        agent: Agent,
        *,
        tracer: _Tracer | None,
        hooks: RunCallbacks,
    ) -> None:
        phase = PhaseResult(name, planned=config.episodes, seed=config.seed)
        setattr(result, name.replace(" ", "_"), phase)
        if agent is not self.built.agent:
            tracer = None  # the trace follows the main agent only
        started = _perf()

        def on_episode(episode: EpisodeResult) -> None:
            # Record first: if a hook raises (Ctrl-C), this episode still counts as done.
            phase.episodes.append(episode)
            phase.seconds = _perf() - started
            if tracer is not None:
                tracer.select(name, len(phase.episodes))
            hooks.episode_finished(phase, episode)

        hooks.phase_started(phase)
        if tracer is not None:
            tracer.select(name, 0)
        run = agent.run if self.runner is None else partial(self.runner.run, agent, segment=name)
        try:
            run(
                config.episodes,
                seed=config.seed,
                max_steps=config.max_steps,
                train=name.endswith("train"),
                on_episode=on_episode,
            )
        finally:
            phase.seconds = _perf() - started
            if tracer is not None:
                tracer.pause()
            hooks.phase_finished(phase)

    def _save(self, result: ExperimentResult, tracer: _Tracer | None) -> None:
        """Write every output file; the results last, so their presence means done."""
        out = result.output_dir
        if tracer is not None:
            tracer.writer.close()
            target = out / FILE_NAMES["trace"]
            os.replace(tracer.writer.path, target)
            result.files["trace"] = target
        result.counters = self.counters()
        q_table = self.built.q_table
        if q_table is not None:
            q_table.meta = {
                **q_table.meta,
                "env": self.config.env.id,
                "algorithm": self.algorithm,
                "counters": result.counters,
                "llmagentos_version": __version__,
            }
            result.files["qtable"] = q_table.save(out / FILE_NAMES["qtable"])
        if self.config.output.plot and PLOT_EXTRA_HINT not in result.notes:
            self._plot(result)
        target = out / FILE_NAMES["results"]
        result.files["results"] = target
        _write_json(target, result.to_dict())

    def _labels(self) -> tuple[str, str]:
        """Legend names of the agent and its baseline: their planning and learning types."""
        config = self.config

        def label(agent: Any) -> str:
            return f"{agent.planning.type} + {agent.learning.type}"

        return label(config.agent), label(config.baseline) if config.baseline else "baseline"

    def _plot(self, result: ExperimentResult) -> None:
        train = result.train.returns if result.train else []
        evaluation = result.eval.returns if result.eval else []
        if not train and not evaluation:
            return
        target = result.output_dir / FILE_NAMES["plot"]
        title = f"{self.config.name}: {self.algorithm} on {self.config.env.id}"
        baseline = {
            "train": result.baseline_train.returns if result.baseline_train else [],
            "eval": result.baseline_eval.returns if result.baseline_eval else [],
        }
        try:
            write_atomic(
                target,
                lambda path: save_learning_curve(
                    path,
                    train,
                    evaluation,
                    title=title,
                    baseline=baseline,
                    labels=self._labels(),
                ),
            )
        except ModuleNotFoundError:
            result.notes.append(PLOT_EXTRA_HINT)
            return
        except Exception as err:  # a broken plot must not lose the results
            result.notes.append(f"learning curve not drawn: {err!r}")
            return
        result.files["plot"] = target


def run_experiment(config: RunConfig, callbacks: RunCallbacks | None = None) -> ExperimentResult:
    """Validate, build and run ``config``; see :class:`Experiment`.

    Raises:
        ConfigError: the config is invalid (nothing was written).
    """
    return Experiment(config).run(callbacks)
