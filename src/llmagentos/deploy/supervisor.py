"""Start, watch and stop a one-machine deployment (``llmagentos up / down / status``).

``up`` starts every replica of every service (``llmagentos serve``), waits until each
answers ``/readyz``, writes the gateway's config, starts the gateway, waits for it, and
records everything in a state file (``<state dir>/<name>.json``: pids, ports, URLs).
It then stays in the foreground; Ctrl-C, SIGTERM or ``llmagentos down NAME`` stops
the gateway first (in-flight requests finish, new ones are refused), then the services.
If any process fails to start, everything already started is stopped again.

With ``placement = "ray"`` the services run on Ray Serve instead
(:mod:`llmagentos.deploy.ray_placement`); the gateway is still a local process, in
front of Serve's proxy, and the state file records the cluster's address.

A deployment whose gateway authenticates callers gets a random principal secret of its
own, made at ``up``: it reaches the gateway and every service in their environment
only (never a command line, a file or the state file), and the services run with
``--require-principal``, so a caller who goes around the gateway gets a 401.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos._processes import free_port, process_alive, wait_ready
from llmagentos.deploy.config import DeployConfig, ServiceSpec, gateway_table
from llmagentos.deploy.ray_placement import RayServices
from llmagentos.exceptions import DeployError
from llmagentos.principal import SECRET_ENV

__all__ = ["Deployment", "Process", "process_alive", "read_state", "state_path", "stop_deployment"]

STOP_SECONDS = 15.0


def state_path(name: str, state_dir: Path) -> Path:
    return state_dir / f"{name}.json"


@dataclass(slots=True)
class Process:
    """One started process: a service replica or the gateway."""

    role: str
    url: str
    args: list[str]
    popen: subprocess.Popen[bytes] | None = None
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "url": self.url, "pid": self.pid, "args": self.args}


@dataclass(slots=True)
class Deployment:
    """A deployment being started or running."""

    config: DeployConfig
    state_dir: Path
    log: Callable[[str], None] = print
    processes: list[Process] = field(default_factory=list)
    gateway_url: str = ""
    ray: RayServices | None = None
    _secret: str | None = field(default=None, repr=False)

    def prepare(self) -> None:
        """Make the state directory and, with auth on, this deployment's secret."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # One secret per deployment, only when the gateway vouches for callers.
        self._secret = secrets.token_urlsafe(32) if self.config.has_auth else None

    def up(self, *, ready_timeout: float = 120.0) -> None:
        """Start everything and wait until it is ready; on failure stop what started."""
        self.prepare()
        try:
            if self.config.placement == "ray":
                services = self._start_on_ray(ready_timeout)
            else:
                services = self._start_services(ready_timeout)
            self._start_gateway(services, ready_timeout)
        except BaseException:
            self.down()
            raise
        self._write_state()

    def _log_path(self, role: str) -> Path:
        return self.state_dir / f"{self.config.name}.{role.replace('/', '-')}.log"

    def environment(self) -> dict[str, str]:
        """The environment of every process: this one's, with the deployment's secret."""
        env = dict(os.environ)
        if self._secret is not None:
            env[SECRET_ENV] = self._secret
        return env

    def service_args(self, spec: ServiceSpec, port: int) -> list[str]:
        """``llmagentos serve`` for one replica (requiring principals with auth on)."""
        args = ["serve", str(spec.config), "--modules", spec.modules, "--port", str(port)]
        if self.config.has_auth:
            args.append("--require-principal")
        if spec.memory is not None:
            args += ["--memory", spec.memory]
        if spec.embedder is not None:
            args += ["--embedder", spec.embedder]
        return args

    def gateway_config(self, services: dict[str, list[str]]) -> str:
        """The generated gateway config: the deployment's settings and its services."""
        balancing = {spec.name: spec.balancing for spec in self.config.services}
        lines = [gateway_table(self.config.gateway_settings)]
        for name, urls in services.items():
            lines += ["[[services]]", f"name = {json.dumps(name)}"]
            lines.append(f"replicas = {json.dumps(urls)}")
            if balancing.get(name):
                lines.append(f"balancing = {json.dumps(balancing[name])}")
            lines.append("")
        return "\n".join(lines)

    def _spawn(self, role: str, args: list[str], url: str) -> Process:
        log = self._log_path(role).open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "llmagentos", *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=self.environment(),
        )  # fmt: skip
        process = Process(role, url, args, popen, popen.pid)
        self.processes.append(process)
        return process

    def _start_services(self, timeout: float) -> dict[str, list[str]]:
        started: dict[str, list[str]] = {}
        for spec in self.config.services:
            for replica in range(spec.replicas):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                self._spawn(f"{spec.name}/{replica}", self.service_args(spec, port), url)
                started.setdefault(spec.name, []).append(url)
        for process in self.processes:
            self._wait_ready(process, timeout)
            self.log(f"ready: {process.role} at {process.url}")
        return started

    def _start_on_ray(self, timeout: float) -> dict[str, list[str]]:
        from llmagentos.distributed.serve import STATE_SECRET_ENV

        self.ray = RayServices(self.config, log=self.log)
        env = {SECRET_ENV: self._secret} if self._secret is not None else {}
        if any(spec.state_store is not None for spec in self.config.services):
            # Sessions are sealed: with the operator's secret they outlive the deployment,
            # else with one of the deployment's own (reaching the replicas' environment only).
            env[STATE_SECRET_ENV] = os.environ.get(STATE_SECRET_ENV) or secrets.token_urlsafe(32)
        services = self.ray.start(env, require_principal=self.config.has_auth)
        for name, urls in services.items():
            try:
                wait_ready(urls[0], timeout=timeout)
            except DeployError as err:
                raise DeployError(f"{name} on Ray Serve: {err}") from err
            self.log(f"ready: {name} at {urls[0]} (Ray Serve)")
        return services

    def _start_gateway(self, services: dict[str, list[str]], timeout: float) -> None:
        config = self.state_dir / f"{self.config.name}.gateway.toml"
        config.write_text(self.gateway_config(services), encoding="utf-8")
        port = self.config.gateway_port or free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        process = self._spawn(
            "gateway", ["gateway", str(config), "--port", str(port)], self.gateway_url
        )
        self._wait_ready(process, timeout)
        self.log(f"ready: gateway at {self.gateway_url}")

    def _wait_ready(self, process: Process, timeout: float) -> None:
        try:
            wait_ready(process.url, process=process.popen, timeout=timeout)
        except DeployError as err:
            raise DeployError(f"{process.role}: {err}; see {self._log_path(process.role)}") from err

    def _write_state(self) -> None:
        state = {
            "name": self.config.name,
            "source": str(self.config.source),
            "gateway": self.gateway_url,
            "supervisor": os.getpid(),
            "placement": self.config.placement,
            "processes": [p.to_dict() for p in self.processes],
        }
        if self.ray is not None:
            state["ray"] = self.ray.state()
        target = state_path(self.config.name, self.state_dir)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(temporary, target)

    def watch(self, stop: Callable[[], bool]) -> None:
        """Block until ``stop()`` says so or a process dies (which is logged)."""
        while not stop():
            for process in self.processes:
                if process.popen is not None and process.popen.poll() is not None:
                    self.log(f"warning: {process.role} exited with code {process.popen.returncode}")
                    process.popen = None
            time.sleep(0.2)

    def down(self) -> None:
        """Stop the gateway first, then the services; remove the state file."""
        ordered = sorted(self.processes, key=lambda p: p.role != "gateway")
        _stop_pids([p.pid for p in ordered if p.pid])
        if self.ray is not None:
            self.ray.stop()
        state_path(self.config.name, self.state_dir).unlink(missing_ok=True)
        self.processes.clear()


def _stop_pids(pids: list[int]) -> None:
    """SIGTERM each (graceful: in-flight requests finish), then SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + STOP_SECONDS
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def read_state(name: str, state_dir: Path) -> dict[str, Any]:
    path = state_path(name, state_dir)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DeployError(f"no running deployment {name!r} (no {path})") from err
    return data


def stop_deployment(name: str, state_dir: Path) -> list[str]:
    """Stop a deployment started by ``up`` in another process; returns the roles stopped."""
    state = read_state(name, state_dir)
    processes = state["processes"]
    ordered = sorted(processes, key=lambda p: p["role"] != "gateway")
    supervisor = int(state.get("supervisor", 0))
    if supervisor and supervisor != os.getpid() and process_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)  # it stops its children itself
        deadline = time.monotonic() + STOP_SECONDS * 2
        while process_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.05)
    _stop_pids([int(p["pid"]) for p in ordered])
    state_path(name, state_dir).unlink(missing_ok=True)
    return [str(p["role"]) for p in ordered]
