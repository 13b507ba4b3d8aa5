"""Episodes on Ray workers against the serial loop in this process, in the same run.

The workload: greedy evaluation of an untrained Taxi-v4 Q-learning agent (every
Q-value equal, so ties are broken at random and each episode walks until Gymnasium's
200-step limit: CPU-bound, about 2.5 ms per episode in the Agent). The serial run is
``agent.run(N, seed=0, train=False, reseed="each")``; the Ray runs are the same call
with ``backend="ray", workers=W`` (W = 1, 2, 4 on a local cluster of as many CPUs as
the machine has), timed end to end: pickling and sending the agent are part of every
run, as they are for a user. The episodes are checked equal to the
serial ones. Repeats are interleaved (the order rotates); each ratio is the median of
the per-repeat ratios.

Also measured in the same run: an agent step with its planner and learner in-process,
in a Ray actor reached by handle (``actor_modules``), behind our HTTP module service
(``llmagentos serve``) and behind a Ray Serve deployment of the same service
(``serve_modules``); Ray's own cost of a trivial task (sync: one at a time; async: 1000
submitted, then gathered), to set beside Ray's published microbenchmarks (about 1 ms
and 0.12 ms per task on their machines); the cost of one chunk of
``agent.run(..., backend="ray")`` (one-step episodes); and the memory (RSS) of the local
cluster's processes, idle and with two workers holding an agent.

Ray runs inside a network namespace with only loopback (``unshare -rn``) when it can,
as in the tests, so nothing it starts reaches beyond this machine.

    python bench/bench_ray.py [--quick]
    python bench/run.py --only ray
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import ROOT, BenchResult, Check, console, environment, print_table, write_json

NAME = "ray"
TARGET = 1.7  # 2 workers against the serial loop, on 2 cores
WORKERS = (1, 2, 4)
RAY_DOCS = {"sync": 1.0, "async": 0.12}  # ms per task, Ray's microbenchmarks


def _rss_mb(patterns: tuple[str, ...]) -> float:
    """Resident memory of the processes whose command line starts with one of ``patterns``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if any(pattern in command for pattern in patterns):
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


RAY_PROCESSES = ("ray::", "raylet", "gcs_server", "ray/dashboard", "ray/_private", "log_monitor")


def measure(episodes: int, repeats: int) -> dict[str, Any]:
    """The child's work (inside the namespace): every timing, as JSON."""
    from llmagentos.build import build_agent
    from llmagentos.config import load_config
    from llmagentos.distributed import connect

    agent = build_agent(load_config(ROOT / "examples" / "configs" / "taxi.toml")).agent
    ray = connect(num_cpus=os.cpu_count() or 2)
    idle_mb = _rss_mb(RAY_PROCESSES)

    def timed(backend: str, workers: int | None) -> tuple[float, list[tuple[float, int]]]:
        agent.episode = -1
        kwargs: dict[str, Any] = (
            {} if backend == "local" else {"backend": "ray", "workers": workers}
        )
        started = time.perf_counter()
        result = agent.run(episodes, seed=0, train=False, reseed="each", **kwargs)
        seconds = time.perf_counter() - started
        return seconds, [(e.total_reward, e.length) for e in result.episodes]

    cases = ["serial", *(f"ray-{w}" for w in WORKERS)]
    seconds: dict[str, list[float]] = {case: [] for case in cases}
    reference: list[tuple[float, int]] | None = None
    equal = True
    timed("ray", 2)  # warm-up: the cluster's worker processes, imports
    for repeat in range(repeats):
        order = cases[repeat % len(cases) :] + cases[: repeat % len(cases)]
        for case in order:
            backend, workers = ("local", None) if case == "serial" else ("ray", int(case[4:]))
            took, episodes_seen = timed(backend, workers)
            seconds[case].append(took)
            if reference is None:
                reference = episodes_seen
            equal = equal and episodes_seen == reference

    sync_ms, async_ms = _task_overhead(ray)

    # One chunk of the rollout: 16 chunks of one one-step episode on 2 workers.
    started = time.perf_counter()
    agent.run(16, seed=0, train=False, backend="ray", workers=2, max_steps=1)
    run_overhead = time.perf_counter() - started

    module_calls = _module_calls(ray, repeats)
    kernel_calls = _kernel_calls(repeats)

    peak = [0.0]

    def watch() -> None:
        while not done:
            peak[0] = max(peak[0], _rss_mb(RAY_PROCESSES))
            time.sleep(0.2)

    import threading

    done = False
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    agent.run(episodes // 2, seed=0, train=False, backend="ray", workers=2)
    done = True
    watcher.join()
    ray.shutdown()
    return {
        "episodes": episodes,
        "repeats": repeats,
        "seconds": seconds,
        "equal_to_serial": equal,
        "ray_sync_task_ms": sync_ms,
        "ray_async_task_ms": async_ms,
        "small_run_seconds": run_overhead,
        "cluster_idle_mb": idle_mb,
        "cluster_two_workers_mb": peak[0],
        "module_step_us": module_calls,
        "kernel_call_us": kernel_calls,
        "cpus": os.cpu_count(),
    }


def _module_calls(ray: Any, repeats: int) -> dict[str, float]:
    """Microseconds per agent step with the planner and learner in-process, in a Ray
    actor reached by handle, behind our HTTP module service (``llmagentos serve``) and
    behind a Ray Serve deployment of the same service: Taxi-v4, 3 episodes of at most
    100 steps, seed 0."""
    from llmagentos import Agent
    from llmagentos._processes import free_port, start_server
    from llmagentos.build import build_agent
    from llmagentos.config import load_config
    from llmagentos.distributed.actor_modules import actor_modules
    from llmagentos.distributed.serve import ServeSettings, serve_modules, stop_serving
    from llmagentos.service import remote_modules

    config_path = ROOT / "examples" / "configs" / "taxi.toml"
    config = load_config(config_path)
    process, http_url = start_server(["llmagentos", "serve", str(config_path)])
    serve_url = serve_modules(config, kinds=["planning", "learning"], port=free_port(),
                              settings=ServeSettings(cpus=0.5))  # fmt: skip

    def with_remote(url: str) -> Agent:
        built = build_agent(config)
        planning, learning = remote_modules(url, "planning", "learning")
        return Agent(built.agent.perception_module, planning, built.agent.execution_module,
                     learning)  # fmt: skip

    host = actor_modules(config, "planning", cpus=0.5)[0].client.actor

    def in_actor() -> Agent:
        built = build_agent(config)
        planning, learning = actor_modules(config, "planning", "learning", actor=host)
        return Agent(built.agent.perception_module, planning, built.agent.execution_module,
                     learning)  # fmt: skip

    makers = {
        "in-process": lambda: build_agent(config).agent,
        "Ray actor (handle)": in_actor,
        "HTTP service": lambda: with_remote(http_url),
        "Ray Serve": lambda: with_remote(serve_url),
    }
    per_step: dict[str, list[float]] = {name: [] for name in makers}
    try:
        for make in makers.values():  # warm-up: connections, replicas
            make().run(1, seed=0, max_steps=20)
        for repeat in range(max(3, repeats)):
            names = list(makers)
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                agent = makers[name]()
                started = time.perf_counter()
                result = agent.run(3, seed=0, max_steps=100)
                took = time.perf_counter() - started
                agent.close()
                per_step[name].append(took / result.total_steps * 1e6)
    finally:
        ray.kill(host)
        stop_serving()
        process.terminate()
        process.wait(timeout=15)
    return {name: statistics.median(values) for name, values in per_step.items()}


def _task_overhead(ray: Any) -> tuple[float, float]:
    """Milliseconds per trivial Ray task: one at a time, and 1,000 at once."""

    @ray.remote
    def noop() -> None:
        return None

    ray.get(noop.remote())
    started = time.perf_counter()
    for _ in range(200):
        ray.get(noop.remote())
    sync_ms = (time.perf_counter() - started) / 200 * 1000
    started = time.perf_counter()
    ray.get([noop.remote() for _ in range(1000)])
    return sync_ms, (time.perf_counter() - started) / 1000 * 1000


def _ok(request: Any) -> str:
    return "ok"


def _echo_model() -> Any:
    from llmagentos.llm.testing import FunctionModel

    return FunctionModel(_ok, model_id="bench:echo")


def _kernel_calls(repeats: int) -> dict[str, float]:
    """Microseconds per model call on a trivial backend: through this process's
    scheduler, and through the cluster's kernel (actor hop, then a host actor's), one at
    a time and 32 at once."""
    import asyncio

    from llmagentos.distributed.cluster_kernel import (
        ClusterModel,
        start_cluster_kernel,
        stop_cluster_kernel,
    )
    from llmagentos.kernel.scheduler import Scheduler
    from llmagentos.llm import Message, ModelRequest

    kernel = start_cluster_kernel(route_driver=False)
    kernel.add_backend("bench:echo", _echo_model, max_in_flight=32)
    local = Scheduler({"bench:echo": _echo_model()}, max_in_flight=32).model_for("bench")
    remote = ClusterModel("bench:echo", agent="bench")

    def request(i: int) -> ModelRequest:
        return ModelRequest(messages=(Message.user(f"call {i}"),))

    async def serial(model: Any, n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            await model.arequest(request(i))
        return (time.perf_counter() - started) / n * 1e6

    async def concurrent(model: Any, n: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(model.arequest(request(i)) for i in range(n)))
        return (time.perf_counter() - started) / n * 1e6

    found: dict[str, list[float]] = {k: [] for k in ("local", "cluster", "local_32", "cluster_32")}
    asyncio.run(serial(remote, 50))  # warm-up: the kernel's backend and host start
    for _ in range(max(3, repeats)):
        found["local"].append(asyncio.run(serial(local, 2000)))
        found["cluster"].append(asyncio.run(serial(remote, 300)))
        found["local_32"].append(asyncio.run(concurrent(local, 3200)))
        found["cluster_32"].append(asyncio.run(concurrent(remote, 960)))
    stop_cluster_kernel()
    return {name: statistics.median(values) for name, values in found.items()}


def _in_namespace(command: list[str]) -> list[str]:
    if shutil.which("unshare") and shutil.which("ip"):
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    return command


def run(quick: bool) -> BenchResult:
    """``bench/run.py``'s entry: the measurement in a child process, then the table."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return BenchResult(
            NAME, "Ray not installed (pip install 'llmagentos[ray]')", ["case"], [], [
                Check("ray_two_workers", "-", "-", None, TARGET, ">=", note="no ray")
            ], {}, {},
        )  # fmt: skip
    episodes, repeats = (600, 1) if quick else (6000, 3)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ray.json"
        command = [sys.executable, __file__, "--child", str(out), "--episodes", str(episodes),
                   "--repeats", str(repeats)]  # fmt: skip
        env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
        done = subprocess.run(_in_namespace(command), capture_output=True, text=True, env=env,
                              timeout=3600, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the measurement failed:\n{done.stderr[-3000:]}")
        data = json.loads(out.read_text())
    return _result(data)


def _kernel_rows(calls: dict[str, float] | None) -> list[list[str]]:
    if not calls:
        return []
    return [
        ["model call, this process's scheduler (us)", f"{calls['local']:,.0f}", "-",
         "trivial backend, one at a time"],
        ["model call, the cluster's kernel (us)", f"{calls['cluster']:,.0f}",
         f"{calls['cluster'] / calls['local']:.0f}x local", "driver -> kernel -> host actor"],
        ["model call, 32 at once, this process (us/call)", f"{calls['local_32']:,.1f}", "-", "-"],
        ["model call, 32 at once, cluster kernel (us/call)", f"{calls['cluster_32']:,.0f}",
         f"{calls['cluster_32'] / calls['local_32']:.0f}x local", "-"],
    ]  # fmt: skip


def _result(data: dict[str, Any]) -> BenchResult:
    seconds = data["seconds"]
    serial = seconds["serial"]
    n = data["episodes"]
    rows = [["serial, this process", f"{n / statistics.median(serial):,.0f}", "1.00", "-"]]
    ratios: dict[int, float] = {}
    for workers in WORKERS:
        mine = seconds[f"ray-{workers}"]
        ratios[workers] = statistics.median(s / m for s, m in zip(serial, mine, strict=True))
        rows.append(
            [f"Ray, {workers} worker{'s' if workers > 1 else ''}",
             f"{n / statistics.median(mine):,.0f}", f"{ratios[workers]:.2f}",
             "episodes equal to serial" if data["equal_to_serial"] else "EPISODES DIFFER"]
        )  # fmt: skip
    sync, asynchronous = data["ray_sync_task_ms"], data["ray_async_task_ms"]
    local_step = data["module_step_us"]["in-process"]
    rows += [
        ["Ray task, sync (ms)", f"{sync:.2f}", "-", f"Ray docs ~{RAY_DOCS['sync']} ms"],
        ["Ray task, async (ms)", f"{asynchronous:.3f}", "-", f"Ray docs ~{RAY_DOCS['async']} ms"],
        ["agent.run, 16 one-step episodes, 2 workers (s)", f"{data['small_run_seconds']:.2f}", "-",
         "16 tasks of one episode"],
        *[
            [f"agent step, planner + learner: {name} (us)", f"{value:,.0f}",
             f"{value / local_step:.0f}x local", "Taxi-v4, 3 x 100 steps"]
            for name, value in data["module_step_us"].items()
        ],
        *_kernel_rows(data.get("kernel_call_us")),
        ["local cluster RSS, idle (MB)", f"{data['cluster_idle_mb']:,.0f}", "-", "-"],
        ["local cluster RSS, 2 workers (MB)", f"{data['cluster_two_workers_mb']:,.0f}", "-", "-"],
    ]  # fmt: skip
    two = ratios[2] if data["equal_to_serial"] else None
    checks = [
        Check(
            "ray_two_workers",
            f"{n / statistics.median(seconds['ray-2']):,.0f} episodes/s on 2 workers",
            f"{n / statistics.median(serial):,.0f} episodes/s serial",
            two,
            TARGET,
            ">=",
            note=f"{data['cpus']} CPUs; actor start-up included",
        )
    ]
    return BenchResult(
        name=NAME,
        title=f"Taxi-v4 episodes on Ray against the serial loop ({n} episodes, median of "
        f"{data['repeats']})",
        columns=["case", "episodes/s (or value)", "x serial", "note"],
        rows=rows,
        checks=checks,
        params={"episodes": n, "repeats": data["repeats"], "workers": list(WORKERS)},
        data=data,
        notes=[
            "Every Ray run pickles the agent and sends it; evaluation chunks are tasks on "
            "Ray's warm worker processes. That fixed cost (the 16-episode row) is in every "
            "ratio. Memory: RSS summed over the local cluster's processes.",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--episodes", type=int, default=6000, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.child is not None:
        args.child.write_text(json.dumps(measure(args.episodes, args.repeats)))
        return 0
    started = time.perf_counter()
    result = run(args.quick)
    print_table(result)
    path = args.out / f"{NAME}.json"
    write_json(path, {"quick": args.quick, "seconds": time.perf_counter() - started,
                      "environment": environment()} | result.to_dict())  # fmt: skip
    console.print(f"{NAME}: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
