"""``llmagentos gateway --workers 2``: real worker processes behind one port, a real Redis.

A keep-alive connection stays with the worker that accepted it, and
``GET /gateway/services`` names that worker (``worker.pid``): the tests hold one
connection to each worker and send through it what must land there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos._processes import free_port, start_server, stop_processes
from tests.redis_server import REDIS_SERVER, _answers, running_redis

pytest.importorskip("redis", reason="the 'redis' package is not installed (extra: gateway)")
pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds a shared change may take to show, at most (two busy cores)


def _config(tmp_path: Path, redis_url: str | None, upstream: str, extra: str = "") -> Path:
    config = tmp_path / "gateway.toml"
    shared = f'redis_url = "{redis_url}"\n' if redis_url else ""
    config.write_text(
        f"[gateway]\nhealth_interval = 0\nbreaker_failures = 3\nbreaker_open_seconds = 120\n"
        f"{shared}{extra}\n"
        f'[[services]]\nname = "up"\nreplicas = ["{upstream}"]\n\n'
        f'[[services]]\nname = "failing"\nreplicas = ["{upstream}"]\n'
    )
    return config


@contextlib.contextmanager
def _gateway(config: Path, workers: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    log = config.with_suffix(".log")
    with log.open("wb") as output:  # the workers' warnings, shown if the test fails
        process, url = start_server(
            ["llmagentos", "gateway", str(config), "--workers", str(workers),
             "--access-log", "off"],
            output=output,
        )  # fmt: skip
        try:
            yield process, url
        finally:
            try:
                stop_processes(process, timeout=30)  # a worker that hangs fails the test
            finally:
                if process.poll() is None:  # and leaves no orphan behind
                    for child in _children(process.pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child, signal.SIGKILL)
                    process.kill()
                sys.stderr.write(log.read_text())


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true (at most DEADLINE seconds)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"never: {what}")


def _view(client: httpx.Client) -> dict[str, Any]:
    reply = client.get("/gateway/services")
    assert reply.status_code == 200, reply.text
    view: dict[str, Any] = reply.json()
    return view


def _pid(client: httpx.Client) -> int:
    return int(_view(client)["worker"]["pid"])


def _pinned(url: str, other_than: int | None = None) -> tuple[httpx.Client, int]:
    """A keep-alive client held by one worker (another than ``other_than``), its pid."""

    def connect() -> tuple[httpx.Client, int] | None:
        client = httpx.Client(base_url=url, timeout=15)
        pid = _pid(client)
        if pid != other_than:
            return client, pid
        client.close()
        return None

    found: tuple[httpx.Client, int] = _until(connect, f"a connection to a worker but {other_than}")
    return found


def _two_workers(url: str) -> tuple[httpx.Client, httpx.Client]:
    one, pid = _pinned(url)
    two, _ = _pinned(url, other_than=pid)
    return one, two


def _service(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in view["services"] if s["name"] == name), None)


def _on(client: httpx.Client, pid: int) -> httpx.Client:
    assert _pid(client) == pid, "the connection moved to another worker"
    return client


def test_a_replica_registered_on_one_worker_is_routed_to_by_both(
    redis_url: str, echo: str, tmp_path: Path
) -> None:
    second, second_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    try:
        with _gateway(_config(tmp_path, redis_url, echo)) as (_, url):
            one, two = _two_workers(url)
            pids = _pid(one), _pid(two)
            added = one.post("/gateway/services/extra/replicas", json={"url": second_url})
            assert added.status_code == 201, added.text
            _until(lambda: _service(_view(two), "extra"), "the other worker lists it")
            for client in (one, two):
                replies = [client.get("/extra/echo") for _ in range(5)]
                assert [r.status_code for r in replies] == [200] * 5
            for client, pid in zip((one, two), pids, strict=True):
                extra = _service(_view(_on(client, pid)), "extra")
                assert extra is not None
                assert [r["calls"] for r in extra["state"]["replicas"]] == [5]  # each served 5
            assert httpx.get(f"{second_url}/calls").json()["calls"] == 10
            # Removed through the other worker: gone from the first too.
            gone = two.request("DELETE", "/gateway/services/extra/replicas",
                               json={"url": second_url})  # fmt: skip
            assert gone.status_code == 200, gone.text
            _until(lambda: _service(_view(one), "extra") is None, "the first worker drops it")
            assert one.get("/extra/echo").status_code == 404
            assert _view(one)["worker"]["shared"] == {"breakers": "up", "registry": "up"}
    finally:
        stop_processes(second)


def test_a_breaker_opened_through_one_worker_rejects_on_the_other(
    redis_url: str, echo: str, tmp_path: Path
) -> None:
    with _gateway(_config(tmp_path, redis_url, echo)) as (_, url):
        one, two = _two_workers(url)
        pid_two = _pid(two)
        assert two.get("/failing/status/200").status_code == 200  # closed on the other
        failures = [one.post("/failing/status/500").status_code for _ in range(3)]
        assert failures == [500] * 3
        assert one.post("/failing/status/500").status_code == 503  # open on the first
        before = httpx.get(f"{echo}/calls").json()["calls"]

        def open_on_two() -> bool:
            failing = _service(_view(_on(two, pid_two)), "failing")
            return failing is not None and failing["state"]["breaker"] == "open"

        _until(open_on_two, "the other worker's breaker opens")
        rejected = two.get("/failing/status/200")  # a call that would succeed
        assert rejected.status_code == 503 and "circuit open" in rejected.json()["detail"]
        assert int(rejected.headers["retry-after"]) > 60  # the shared open time
        assert httpx.get(f"{echo}/calls").json()["calls"] == before  # never reached it
        assert two.get("/up/echo").status_code == 200  # other services are not affected


def test_the_rate_limit_is_one_limit_across_workers(echo: str, tmp_path: Path) -> None:
    with running_redis() as (_, redis_url):  # a Redis of its own: no other test's buckets
        limits = "rate_per_second = 0.01\nburst = 20\n"
        with _gateway(_config(tmp_path, redis_url, echo, limits)) as (_, url):
            one, two = _two_workers(url)
            pids = _pid(one), _pid(two)
            statuses = [(one, two)[i % 2].get("/up/echo").status_code for i in range(40)]
            assert statuses.count(200) == 20  # one burst in all, not one per worker
            assert statuses[20:] == [429] * 20
            assert (_pid(one), _pid(two)) == pids  # each half landed on its own worker


def _restart_redis(port: int) -> subprocess.Popen[bytes]:
    assert REDIS_SERVER is not None
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _until(lambda: _answers(port), "Redis answers again")
    return process


def test_redis_stopped_mid_run(echo: str, tmp_path: Path) -> None:
    """Served on: limits as rate_limit_failure says (open), breakers and the registry as
    last known, changes refused; Redis back (empty), sharing resumes from that state."""
    with running_redis() as (redis, redis_url):
        port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        limits = 'rate_per_second = 1000\nburst = 1000\nrate_limit_failure = "open"\n'
        with _gateway(_config(tmp_path, redis_url, echo, limits)) as (_, url):
            one, two = _two_workers(url)
            pids = _pid(one), _pid(two)
            assert one.post("/gateway/services/extra/replicas", json={"url": echo}).status_code
            _until(lambda: _service(_view(two), "extra"), "the other worker lists it")
            redis.kill()
            redis.wait(timeout=10)
            for client in (one, two):
                _until(lambda c=client: _view(c)["worker"]["shared"]["registry"] == "down",
                       "a worker sees Redis down")  # fmt: skip
                assert [client.get("/up/echo").status_code for _ in range(3)] == [200] * 3
                assert client.get("/extra/echo").status_code == 200  # the last known registry
            refused = two.post("/gateway/services/more/replicas", json={"url": echo})
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
            assert _service(_view(one), "more") is None and _service(_view(two), "more") is None
            # Breakers are each worker's own meanwhile.
            assert [one.post("/failing/status/500").status_code for _ in range(3)] == [500] * 3
            assert one.get("/failing/status/200").status_code == 503
            assert two.get("/failing/status/200").status_code == 200
            again = _restart_redis(port)  # empty: no persistence
            try:
                for client in (one, two):
                    _until(lambda c=client: _view(c)["worker"]["shared"]
                           == {"breakers": "up", "registry": "up"}, "sharing resumes")  # fmt: skip
                # The breaker still open on the first worker opens the shared one.
                _until(lambda: _service(_view(two), "failing")["state"]["breaker"] == "open",
                       "the other worker's breaker opens")  # fmt: skip
                # The registry as the workers knew it, and changes shared again.
                assert _service(_view(two), "extra") is not None
                added = two.post("/gateway/services/more/replicas", json={"url": echo})
                assert added.status_code == 201, added.text
                _until(lambda: _service(_view(one), "more"), "the first worker lists it")
                assert (_pid(one), _pid(two)) == pids
            finally:
                again.terminate()
                again.wait(timeout=10)


def test_sigterm_drains_every_worker(redis_url: str, echo: str, tmp_path: Path) -> None:
    with _gateway(_config(tmp_path, redis_url, echo)) as (process, url):
        one, two = _two_workers(url)
        results: list[httpx.Response] = []
        slow = [
            threading.Thread(target=lambda c=c: results.append(c.get("/up/slow?s=3", timeout=30)))
            for c in (one, two)
        ]  # one slow call in flight on each worker
        for thread in slow:
            thread.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx.get(f"{url}/up/echo", timeout=2)
            except httpx.ConnectError:
                return True
            except httpx.HTTPError:
                pass  # reset while closing: not served either
            return False

        _until(refused, "the port refuses new connections")
        for thread in slow:
            thread.join(timeout=30)
        assert [(r.status_code, r.text) for r in results] == [(200, "slow done")] * 2
        assert process.wait(timeout=30) == 0


def _refused_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "llmagentos", "gateway", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_a_bad_worker_count_is_refused(count: str, echo: str, tmp_path: Path) -> None:
    done = _refused_run(str(_config(tmp_path, None, echo)), "--workers", count)
    assert done.returncode == 2
    assert "--workers" in done.stderr and "Invalid value" in done.stderr


def test_several_workers_need_redis_and_nothing_listens(echo: str, tmp_path: Path) -> None:
    port = str(free_port())
    done = _refused_run(str(_config(tmp_path, None, echo)), "--workers", "2", "--port", port)
    assert done.returncode == 2
    assert "error: gateway.redis_url: --workers 2 runs 2 processes" in done.stderr
    # A broken config fails in the parent, before any worker starts.
    broken = tmp_path / "broken.toml"
    broken.write_text('[gateway]\nredis_url = "redis://127.0.0.1:9"\ncolour = 1\n')
    done = _refused_run(str(broken), "--workers", "2", "--port", port)
    assert done.returncode == 2 and "gateway.colour: unknown field" in done.stderr  # not 3:
    # uvicorn's exit when a started worker fails


def test_each_worker_leaves_its_excess_unread(redis_url: str, echo: str, tmp_path: Path) -> None:
    # Each worker builds its own gateway, so its HTTP protocol must find that gateway's
    # unread queue: a worker without one would refuse "1 requests in flight" at once.
    limits = "max_in_flight = 1\nqueue_timeout = 0.3\n"
    with _gateway(_config(tmp_path, redis_url, echo, limits)) as (_, url):
        one, two = _two_workers(url)
        busy = [
            threading.Thread(target=client.get, args=("/up/slow?s=2",)) for client in (one, two)
        ]
        for thread in busy:
            thread.start()
        time.sleep(0.5)  # both workers' one slot taken
        refusals: list[str] = []

        def fresh_connection() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                refusals.append(client.get("/up/echo").text)

        flood = [threading.Thread(target=fresh_connection) for _ in range(10)]
        for thread in flood:
            thread.start()
        for thread in flood + busy:
            thread.join()
        assert len(refusals) == 10
        assert all("could read within 300 ms" in text for text in refusals), refusals
