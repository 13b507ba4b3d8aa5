"""A deployment whose gateway authenticates: one random principal secret per ``up``,
given to the gateway and every service in their environment only, services started
with ``--require-principal``, and the gateway's settings checked before anything starts.

The last test runs ``llmagentos up`` for real once ``llmagentos serve`` has
``--require-principal`` (the service's side of issue 10); until then it skips, and the
rest checks what ``up`` would start.
"""

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
from llmagentos.gateway import ApiKeyStore
from llmagentos.gateway.config import load_gateway_config
from llmagentos.principal import SECRET_ENV

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _deployment(tmp: Path, gateway: str = "") -> Path:
    path = tmp / "deploy.toml"
    path.write_text(
        f'name = "auth-test"\n\n[gateway]\nport = 0\n{gateway}\n'
        f'[[services]]\nname = "taxi"\nconfig = {json.dumps(str(TAXI))}\nreplicas = 2\n'
    )
    return path


def test_auth_means_a_secret_of_its_own_and_services_that_require_principals(
    tmp_path: Path,
) -> None:
    ApiKeyStore(tmp_path / "keys.db").close()
    config = load_deploy_config(_deployment(tmp_path, 'keys = "keys.db"\nrate_per_second = 5'))
    assert config.has_auth
    assert config.gateway_settings["keys"] == str((tmp_path / "keys.db").resolve())
    first, second = Deployment(config, tmp_path / "a"), Deployment(config, tmp_path / "b")
    first.prepare()
    second.prepare()
    secret = first.environment()[SECRET_ENV]
    assert len(secret) >= 32 and secret != second.environment()[SECRET_ENV]  # per deployment
    args = first.service_args(config.services[0], 8123)
    assert args[-1] == "--require-principal" and secret not in " ".join(args)
    text = first.gateway_config({"taxi": ["http://127.0.0.1:8123"]})
    assert secret not in text  # the secret is in no file
    generated = tmp_path / "generated.toml"
    generated.write_text(text)
    loaded = load_gateway_config(generated, environ=first.environment())
    assert loaded.options["principal_secret"] == secret.encode()
    assert loaded.registry.names() == ["taxi"]


def test_without_auth_nothing_changes(tmp_path: Path) -> None:
    config = load_deploy_config(_deployment(tmp_path))
    deployment = Deployment(config, tmp_path / "state")
    deployment.prepare()
    assert not config.has_auth and SECRET_ENV not in deployment.environment().keys() - os.environ
    assert "--require-principal" not in deployment.service_args(config.services[0], 1)


@pytest.mark.parametrize(
    ("gateway", "field"),
    [
        ('principal_secret_env = "MINE"', "gateway.principal_secret_env"),
        ("forward_unsigned = true", "gateway.forward_unsigned"),
        ('keys = "missing.db"', "gateway.keys"),
        ("colour = 1", "gateway.colour"),
        ('rate_limit_failure = "maybe"', "gateway.rate_limit_failure"),
        ('replica_networks = ["nowhere"]', "gateway.replica_networks[0]"),
    ],
)
def test_the_gateways_settings_are_checked_before_anything_starts(
    tmp_path: Path, gateway: str, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_deploy_config(_deployment(tmp_path, gateway))
    assert caught.value.field == field


def test_up_with_keys_answers_only_through_the_gateway(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    key = keys.create_key("acme", ["taxi:*"])
    keys.close()
    state_dir = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "llmagentos", "up", str(_deployment(tmp_path, 'keys = "keys.db"')),
         "--state-dir", str(state_dir)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        state_file = state_dir / "auth-test.json"
        deadline = time.monotonic() + 120
        while not state_file.exists():
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            assert time.monotonic() < deadline, "the deployment never came up"
            time.sleep(0.1)
        state = json.loads(state_file.read_text())
        assert SECRET_ENV not in state_file.read_text()
        gateway = state["gateway"]
        episode = {"session": "s1", "seed": 0, "max_steps": 3}
        headers = {"authorization": f"Bearer {key}"}
        ran = httpx.post(f"{gateway}/taxi/v1/agent/episode", json=episode, headers=headers)
        assert ran.status_code == 200
        service = next(p["url"] for p in state["processes"] if p["role"] != "gateway")
        around = httpx.post(f"{service}/v1/agent/episode", json=episode)
        assert around.status_code == 401  # nothing answers that did not come through it
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
