"""Quotas and stores of a real ``llmagentos serve`` process, over raw HTTP with signed
principals: one tenant floods, another's learned session survives; with a store an
evicted session comes back with its visits; a shared store without a secret is refused
before listening unless the operator opts in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmagentos._processes import free_port, start_server
from llmagentos.principal import SECRET_ENV, Principal, PrincipalSigner
from tests.service.raw_http import call, visits

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
SECRET = "the secret the gateway and its services share"
SIGNER = PrincipalSigner(SECRET)
ACME = Principal("key-acme", "acme", ("taxi:*",))
EVIL = Principal("key-evil", "evil", ("taxi:*",))


def _serve(*flags: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, SECRET_ENV: SECRET}
    return start_server(["llmagentos", "serve", str(TAXI), *flags], env=env)


def _episode(url: str, who: Principal, session: str, steps: int) -> int:
    body = {"session": session, "seed": 0, "max_steps": steps}
    return call(url, "POST", "/v1/agent/episode", body, principal=who, signer=SIGNER).status


def _visits(url: str, who: Principal, session: str) -> int:
    return visits(call(url, "GET", f"/v1/sessions/{session}/qtable", principal=who, signer=SIGNER))


def test_a_flood_is_refused_and_the_other_tenants_session_survives() -> None:
    process, url = _serve("--max-sessions-per-tenant", "3")
    try:
        assert _episode(url, ACME, "learned", 50) == 200
        flood = [_episode(url, EVIL, f"flood{i}", 2) for i in range(12)]
        assert flood == [200] * 3 + [429] * 9
        refused = call(url, "POST", "/v1/agent/episode", {"session": "x", "seed": 0},
                       principal=EVIL, signer=SIGNER)  # fmt: skip
        assert refused.body["field"] == "max_sessions_per_tenant" and refused.body["limit"] == 3
        assert _visits(url, ACME, "learned") == 50
        assert _episode(url, ACME, "learned", 10) == 200
        assert _visits(url, ACME, "learned") == 60
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_with_a_store_an_evicted_session_comes_back_with_its_visits(tmp_path: Path) -> None:
    store = str(tmp_path / "sessions.db")
    process, url = _serve("--max-sessions-per-tenant", "2", "--state-store", store,
                          "--state-secret", "sealed by the replicas of taxi")  # fmt: skip
    try:
        assert _episode(url, ACME, "learned", 50) == 200
        for i in range(6):  # evil floods: only its own idle sessions make room
            assert _episode(url, EVIL, f"flood{i}", 2) == 200
        for i in range(3):  # acme's own: "learned" is evicted, saved
            assert _episode(url, ACME, f"more{i}", 2) == 200
        metrics = call(url, "GET", "/metrics").body
        evicted = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("llmagentos_service_sessions_evicted_total")
        )
        assert evicted == 6  # evil: 4 of its own; acme: 2 of its own
        assert _visits(url, ACME, "learned") == 50
        assert _episode(url, ACME, "learned", 10) == 200
        assert _visits(url, ACME, "learned") == 60
        listed = call(url, "GET", "/v1/sessions", principal=ACME, signer=SIGNER).body
        assert listed["sessions"] == ["learned", "more0", "more1", "more2"]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_shared_store_without_a_secret_is_refused_before_listening(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LLMAGENTOS_STATE_SECRET"}
    env["PYTHONPATH"] = str(ROOT / "src")
    store = str(tmp_path / "sessions.db")
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "serve", str(TAXI), "--port", str(free_port()),
         "--state-store", store],
        check=False, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "--insecure-unsigned-state" in done.stderr
    process, url = start_server(
        ["llmagentos", "serve", str(TAXI), "--state-store", store, "--insecure-unsigned-state"],
        env=env,
    )
    try:
        reply = call(url, "POST", "/v1/agent/episode", {"session": "u", "seed": 0, "max_steps": 4})
        assert reply.status == 200
        assert visits(call(url, "GET", "/v1/sessions/u/qtable")) == 4
    finally:
        process.terminate()
        process.wait(timeout=15)
