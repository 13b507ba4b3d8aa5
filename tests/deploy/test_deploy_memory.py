"""A deployment whose services serve memory: the store is shared by the replicas, so a
write through one replica is found through the other (each process's vector index
reloads when another process wrote)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmagentos.deploy import Deployment, load_deploy_config
from llmagentos.exceptions import ConfigError

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _deployment(tmp: Path, extra: str) -> Path:
    path = tmp / "deploy.toml"
    path.write_text(
        'name = "memory-test"\n\n[gateway]\nport = 0\nhealth_interval = 0\n\n'
        f'[[services]]\nname = "mem"\nconfig = {json.dumps(str(TAXI))}\nreplicas = 2\n'
        f'balancing = "round_robin"\n{extra}'
    )
    return path


def test_memory_settings_reach_every_replica(tmp_path: Path) -> None:
    config = load_deploy_config(_deployment(tmp_path, 'memory = "m.db"\nembedder = "hash:64"\n'))
    spec = config.services[0]
    assert spec.memory == str((tmp_path / "m.db").resolve())
    args = Deployment(config, tmp_path / "state").service_args(spec, 8123)
    assert args[args.index("--memory") + 1] == spec.memory
    assert args[args.index("--embedder") + 1] == "hash:64"


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ('embedder = "hash:64"\n', "services[0].embedder"),  # no store to embed for
        ('memory = "m.db"\nembedder = "nope:x"\n', "services[0].embedder"),
        ("memory = 3\n", "services[0].memory"),
    ],
)
def test_bad_memory_settings_are_refused_before_anything_starts(
    tmp_path: Path, extra: str, names: str
) -> None:
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        load_deploy_config(_deployment(tmp_path, extra))


def test_replicas_share_one_memory(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    deployment = _deployment(tmp_path, 'memory = "m.db"\nembedder = "hash:64"\n')
    up = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "up", str(deployment), "--state-dir", str(state_dir)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        state_file = state_dir / "memory-test.json"
        deadline = time.monotonic() + 120
        while not state_file.exists():
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            assert time.monotonic() < deadline, "the deployment never came up"
            time.sleep(0.1)
        state = json.loads(state_file.read_text())
        replicas = [p["url"] for p in state["processes"] if p["role"] != "gateway"]
        assert len(replicas) == 2
        first, second = replicas
        put = httpx.post(
            f"{first}/v1/memory/notes/semantic/items",
            json={"items": ["The spare key is under the blue pot."]},
        )
        assert put.status_code == 201, put.text
        for url in (second, first, second):  # the other process finds it, by every mode
            for mode in ("lexical", "vector", "hybrid"):
                found = httpx.post(
                    f"{url}/v1/memory/notes/semantic/search",
                    json={"query": "where is the spare key", "mode": mode},
                )
                assert found.status_code == 200, found.text
                assert found.json()["hits"][0]["item"]["id"] == put.json()["ids"][0]
        via = httpx.post(
            f"{state['gateway']}/mem/v1/memory/notes/semantic/search", json={"query": "spare key"}
        )
        assert via.status_code == 200 and via.json()["hits"]
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
