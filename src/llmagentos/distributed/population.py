"""Independent runs side by side: an experiment's seeds, or a population of settings.

Each member is a whole :class:`~llmagentos.experiment.Experiment` (train, evaluate,
baseline, files). Members share nothing, so a member run as a Ray task is the same run
as in this process: the same seeds give the same returns, episode for episode
(``llmagentos run CONFIG --seeds 5`` and ``... --seeds 5 --ray local`` write the same
results). On Ray each member runs in one task with one CPU; its output files come
back to this process and are written under the member's output folder here, so a
cluster of several machines needs no shared disk.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmagentos.config import RunConfig
from llmagentos.exceptions import ConfigError
from llmagentos.experiment import Experiment, ExperimentResult, with_overrides

__all__ = ["MemberResult", "run_population", "seed_population"]


@dataclass(slots=True)
class MemberResult:
    """One member's run and where it ran."""

    result: ExperimentResult
    node: str
    """The Ray node's address, or ``"local"``."""


def seed_population(config: RunConfig, seeds: int, *, out: Path | None = None) -> list[RunConfig]:
    """``seeds`` copies of ``config``, seeded ``s, s + 1, ...`` (``s``: its training seed),
    writing to ``<out>/seed-<n>`` (``out``: the config's output folder)."""
    if seeds < 1:
        raise ConfigError("seeds", f"must be >= 1 (got {seeds})")
    base = config.train.seed if config.train is not None and config.train.seed else 0
    folder = out or config.output_dir()
    return [
        with_overrides(config, seed=base + n, output_dir=folder / f"seed-{base + n}")
        for n in range(seeds)
    ]


def _run_member(config: RunConfig) -> tuple[ExperimentResult, dict[str, bytes], str]:
    """Run one member; its files' bytes by name; the node it ran on."""
    result = Experiment(config).run()
    files = {path.name: path.read_bytes() for path in result.files.values() if path.is_file()}
    try:
        import ray

        initialized = ray.is_initialized()
        node = ray.util.get_node_ip_address() if initialized else "local"  # type: ignore[no-untyped-call]
    except ImportError:
        node = "local"
    return result, files, node


def _run_member_on_ray(config: RunConfig) -> tuple[ExperimentResult, dict[str, bytes], str]:
    """:func:`_run_member` on a Ray worker, whose agents share the cluster's kernel."""
    from llmagentos.distributed.cluster_kernel import route_here

    route_here()
    return _run_member(config)


def _absolute(config: RunConfig) -> RunConfig:
    """The config with its output folder absolute: a worker's working folder differs."""
    folder = config.output_dir().resolve()
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": folder})})


def run_population(
    configs: Sequence[RunConfig],
    *,
    backend: str = "local",
    address: str | None = None,
    on_member: Callable[[int, MemberResult], None] | None = None,
) -> list[MemberResult]:
    """Run every config; return their results in the configs' order.

    Args:
        backend: ``"local"`` (one after another, here) or ``"ray"`` (one task each).
        address: the Ray cluster (see :func:`~llmagentos.distributed.cluster.connect`).
        on_member: called with each member's index and result as it finishes.
    """
    if backend not in ("local", "ray"):
        raise ConfigError("backend", f"must be 'local' or 'ray' (got {backend!r})")
    members = [_absolute(config) for config in configs]
    folders = [config.output_dir() for config in members]
    if len(set(folders)) != len(folders):
        raise ConfigError("output.dir", "two members would write to the same folder")
    for config in members:
        if config.output.durable:
            raise ConfigError("output.durable", "a population's members are not journaled")
    results: list[MemberResult | None] = [None] * len(members)

    def finished(index: int, result: ExperimentResult, node: str) -> None:
        member = results[index] = MemberResult(result, node)
        if on_member is not None:
            on_member(index, member)

    if backend == "local":
        for index, config in enumerate(members):
            result, _, node = _run_member(config)
            finished(index, result, node)
        return [member for member in results if member is not None]
    _run_on_ray(members, address, finished)
    return [member for member in results if member is not None]


def _run_on_ray(
    members: Sequence[RunConfig],
    address: str | None,
    finished: Callable[[int, ExperimentResult, str], None],
) -> None:
    from llmagentos.distributed.cluster import connect
    from llmagentos.distributed.pickling import check_serializable

    ray = connect(address)
    for config in members:
        check_serializable(config, f"the config of {config.name!r}")
    task = ray.remote(num_cpus=1, max_retries=1)(_run_member_on_ray)
    pending = {task.remote(config): index for index, config in enumerate(members)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            index = pending.pop(ref)
            result, files, node = ray.get(ref)
            folder = members[index].output_dir()
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                _write(folder / name, data)
            result.output_dir = folder
            result.files = {kind: folder / path.name for kind, path in result.files.items()}
            finished(index, result, node)


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


# Student-t 97.5% quantiles for 1..30 degrees of freedom (no scipy in the core).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # beyond 30: the first terms of the Cornish-Fisher expansion
    return z + (z**3 + z) / (4 * df)


def spread(values: Sequence[float]) -> tuple[float, float] | None:
    """Mean and 95% Student-t half-width of ``values`` (half-width 0 for one value)."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, half


def summary_rows(members: Sequence[MemberResult]) -> list[dict[str, Any]]:
    """Per member: seed, node, train and eval means, success, seconds."""
    rows = []
    for member in members:
        result = member.result
        train, evaluation = result.train, result.eval
        rows.append(
            {
                "seed": result.config.train.seed if result.config.train else None,
                "node": member.node,
                "train_recent_mean": train.recent_mean(100) if train else None,
                "eval_mean": evaluation.mean_return if evaluation else None,
                "eval_success": evaluation.success_rate if evaluation else None,
                "seconds": result.wall_seconds,
            }
        )
    return rows
