"""Model calls in durable runs are journaled, bound to their request, and replayed on resume.

The planner of a config run gets its model from the kernel, which hands out
:class:`DurableModel` handles: ``llmagentos run --durable`` (and ``runs resume``)
journal every model call with no other setting. The model here is a real
OpenAI-compatible HTTP server on loopback that answers every call at random, so
only the journal can reproduce a reply; a resumed run must replay them all without
asking again, and go on live after.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmagentos import Agent
from llmagentos.cli.main import main
from llmagentos.durable import DurableModel, Journal, run_durable
from llmagentos.exceptions import ResumeMismatch
from llmagentos.kernel.default import reset_kernel
from llmagentos.llm.testing import FunctionModel, allow_network_models
from llmagentos.llm.types import ModelRequest, ModelResponse, Usage
from llmagentos.modules import ExecutionModule, PlanningModule
from llmagentos.types import Decision

ROOT = Path(__file__).resolve().parents[2]
_RNG = random.SystemRandom()  # no seed anywhere could reproduce these answers


class RandomLLM(ThreadingHTTPServer):
    """``/v1/chat/completions`` answering a random action of the request's schema."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.delay = delay
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1#fake"


class _Answer(BaseHTTPRequestHandler):
    server: RandomLLM

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            n = len(self.server.bodies)
        time.sleep(self.server.delay)
        schema = body["response_format"]["json_schema"]["schema"]
        action = _RNG.choice(schema["properties"]["action"]["enum"])
        reply = json.dumps({"reason": f"draw {n} {_RNG.random():.6f}", "action": action})
        data = json.dumps({
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }).encode()  # fmt: skip
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def llm() -> Iterator[RandomLLM]:
    server = RandomLLM(delay=0.05)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        reset_kernel()


def _config(
    tmp: Path, model: str, *, temperature: float = 0.9, steps: int = 10, episodes: int = 3
) -> Path:
    path = tmp / "maze.toml"
    path.write_text(f"""
name = "maze"
[env]
id = "TextMaze-v0"
[agent.planning]
type = "llm"
model = "{model}"
temperature = {temperature}
[train]
episodes = {episodes}
seed = 0
max_steps = {steps}
[output]
trace_train_every = 0
trace_eval_episodes = 0
plot = false
""")
    return path


def _steps(path: Path) -> list[tuple[Any, str]]:
    with Journal(path, create=False) as journal:
        return [(record["action"], record["reason"]) for record in journal.steps()]


def _model_rows(path: Path) -> dict[str, tuple[str, str, str | None]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("select key, digest, status, result from effects where kind = 'model'")
        return {key: (digest, status, result) for key, digest, status, result in rows}
    finally:
        db.close()


def _kill_after(command: list[str], journal: Path, steps: int, timeout: float = 120) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        if journal.exists() and Journal(journal).step_count() >= steps:
            break
        time.sleep(0.02)
    assert worker.poll() is None, f"the run ended before the kill: {worker.stderr.read()!r}"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)


def test_a_killed_config_run_replays_every_recorded_reply_without_asking_again(tmp_path, llm):
    config = _config(tmp_path, llm.url)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "llmagentos", "run", str(config), "-o", str(out),
               "--durable", "-q"]  # fmt: skip
    _kill_after(command, out / "run.db", steps=5)
    before_steps = _steps(out / "run.db")
    before_calls = _model_rows(out / "run.db")
    asked_before = len(llm.bodies)
    done_before = {key for key, (_, status, _) in before_calls.items() if status == "done"}
    assert len(done_before) >= 5 and asked_before >= len(done_before)

    with allow_network_models():
        assert main(["runs", "resume", str(out), "-q"]) == 0
    after_steps = _steps(out / "run.db")
    after_calls = _model_rows(out / "run.db")
    # The steps of before the kill are replayed exactly: their random replies came from
    # the journal (asked again, the server would have answered something else).
    assert after_steps[: len(before_steps)] == before_steps
    assert len(after_steps) > len(before_steps)  # and the run went on live
    for key in done_before:
        assert after_calls[key] == before_calls[key]
    # One request per recorded call; at most the one in flight at the kill was asked twice.
    assert all(status == "done" for _, status, _ in after_calls.values())
    assert len(llm.bodies) - len(after_calls) <= 1
    assert len(after_calls) == len(after_steps)  # one model call per step
    # Sampled calls carry a seed derived from their position: stable across processes.
    assert all(isinstance(body.get("seed"), int) for body in llm.bodies)
    with Journal(out / "run.db") as journal:
        assert journal.status().state == "completed"


class _Asking(PlanningModule):
    def __init__(self, model: DurableModel, prefix: str) -> None:
        super().__init__()
        self.model, self.prefix = model, prefix

    def decide(self, features: object) -> Decision:
        request = ModelRequest.model_validate({
            "messages": [{"role": "user", "content": f"{self.prefix} {features}"}],
            "settings": {"temperature": 0.7},
        })  # fmt: skip
        reply = self.model.request(request)
        return Decision(int(reply.text or 0) % 4, f"model said {reply.text}")


def test_a_reply_is_replayed_only_for_the_request_it_answered(tmp_path):
    seen: list[ModelRequest] = []

    def answer(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return ModelResponse(text=str(_RNG.randrange(1000)), usage=Usage(prompt_tokens=1))

    def agent(prefix: str) -> Agent:
        planner = _Asking(DurableModel(FunctionModel(answer)), prefix)
        return Agent(planning_module=planner, execution_module=ExecutionModule("FrozenLake-v1"))

    first = run_durable(agent("state"), tmp_path / "run.db", 2, seed=0)
    asked = len(seen)
    assert first.completed and asked > 0
    # Another request at the same position: not the old reply, a ResumeMismatch.
    with pytest.raises(ResumeMismatch, match=r"step 0: model call .*'other 0'"):
        run_durable(agent("other"), tmp_path / "run.db", 2, seed=0)
    assert len(seen) == asked
    # The sampled requests were given seeds from their position: a second run of the
    # same config (its fault-free twin) sends the same ones, whatever the run id.
    seeds = [r.settings.seed for r in seen]
    assert all(isinstance(seed, int) for seed in seeds) and len(set(seeds)) == len(seeds)
    twin = run_durable(agent("state"), tmp_path / "twin.db", 2, seed=0)
    assert twin.completed
    twin_seeds = [r.settings.seed for r in seen[asked:]]  # one call per step: by position
    common = min(len(twin_seeds), len(seeds))
    assert common and twin_seeds[:common] == seeds[:common]


def _cli(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.timeout(600)
def test_the_embedded_model_sampled_resumes_like_its_fault_free_twin(tmp_path):
    pytest.importorskip("llama_cpp", reason="needs llmagentos[local]")
    config = _config(tmp_path, "local:smollm2", temperature=0.9, steps=3, episodes=2)
    twin, out = tmp_path / "twin", tmp_path / "run"
    cli = [sys.executable, "-m", "llmagentos"]
    _cli([*cli, "run", str(config), "-o", str(twin), "--durable", "-q"])
    _kill_after([*cli, "run", str(config), "-o", str(out), "--durable", "-q"], out / "run.db", 2)
    before = _model_rows(out / "run.db")
    assert any(status == "done" for _, status, _ in before.values())
    _cli([*cli, "runs", "resume", str(out), "-q"])
    # Sampled at T = 0.9, the resumed run's actions and the model's reasons are the twin's:
    # replayed from the journal before the kill, sampled with the same seeds after it.
    assert _steps(out / "run.db") == _steps(twin / "run.db")
    after = _model_rows(out / "run.db")
    done_before = {key: row for key, row in before.items() if row[1] == "done"}
    assert {key: after[key] for key in done_before} == done_before  # none asked again
    with Journal(out / "run.db") as journal:
        assert journal.status().state == "completed"


def test_a_durable_model_wrapped_again_records_each_call_once(tmp_path):
    calls: list[int] = []

    def answer(request: ModelRequest) -> ModelResponse:
        calls.append(1)
        return ModelResponse(text=str(_RNG.randrange(1000)))

    def agent(inner: FunctionModel) -> Agent:
        # A kernel handle (a DurableModel) wrapped by hand once more.
        planner = _Asking(DurableModel(DurableModel(inner)), "state")
        return Agent(planning_module=planner, execution_module=ExecutionModule("FrozenLake-v1"))

    first = run_durable(agent(FunctionModel(answer)), tmp_path / "run.db", 3, seed=0)
    asked = len(calls)
    again = run_durable(agent(FunctionModel(answer)), tmp_path / "run.db", 3, seed=0)
    assert again.completed and len(calls) == asked
    assert [e.total_reward for e in again.run.episodes] == [
        e.total_reward for e in first.run.episodes
    ]
    with Journal(tmp_path / "run.db") as journal:
        model_calls = [key for key in journal.effect_keys() if ".model." in key]
    assert len(model_calls) == asked  # one key per call, not one per layer
