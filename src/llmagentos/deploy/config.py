"""A one-machine deployment: the gateway and the module services it fronts.

Example (TOML)::

    name = "maze"

    [gateway]
    port = 8080                       # 0: any free port

    [[services]]
    name = "planning"
    config = "../configs/text_maze_llm.toml"   # the run config whose module is served
    modules = "planning"              # or "all", or "planning,learning"
    replicas = 2
    balancing = "session"             # optional: keep each session on one replica

Paths are relative to the deployment file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.balancer import BALANCING
from llmagentos.gateway.registry import check_service_name

__all__ = ["DeployConfig", "ServiceSpec", "load_deploy_config"]

_KINDS = ("perception", "planning", "execution", "learning")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    config: Path
    modules: str
    replicas: int
    balancing: str | None = None  # None: the gateway's default


@dataclass(frozen=True, slots=True)
class DeployConfig:
    name: str
    gateway_port: int
    services: tuple[ServiceSpec, ...]
    source: Path


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"must be an integer in [{low}, {high}] (got {value!r})")
    return value


def load_deploy_config(path: str | Path) -> DeployConfig:
    """Read and check a deployment; run configs are checked too, before anything starts."""
    from llmagentos.build import build_agent
    from llmagentos.config import load_config

    source = Path(path).resolve()
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("", f"{path}: no such file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{path}: invalid TOML: {err}") from err
    unknown = sorted(set(data) - {"name", "gateway", "services"})
    if unknown:
        raise ConfigError(unknown[0], "unknown field")
    name = str(data.get("name", source.stem))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError("name", f"use letters, digits, '_', '.', '-' (got {name!r})")
    gateway = data.get("gateway", {})
    for key in sorted(set(gateway) - {"port"}):
        raise ConfigError(f"gateway.{key}", "unknown field")
    port = _int(gateway.get("port", 8080), "gateway.port", 0, 65535)
    services: list[ServiceSpec] = []
    built: set[Path] = set()
    for index, spec in enumerate(data.get("services", [])):
        where = f"services[{index}]"
        for key in sorted(set(spec) - {"name", "config", "modules", "replicas", "balancing"}):
            raise ConfigError(f"{where}.{key}", "unknown field")
        service = check_service_name(str(spec.get("name", "")), field_name=f"{where}.name")
        if "config" not in spec:
            raise ConfigError(f"{where}.config", "required field is missing")
        config = (source.parent / str(spec["config"])).resolve()
        if config not in built:
            try:  # built once here, so a module the config names but nobody registered
                build_agent(load_config(config)).agent.close()  # fails before anything starts
            except ConfigError as err:
                raise ConfigError(f"{where}.config", str(err)) from err
            built.add(config)
        modules = str(spec.get("modules", "all"))
        kinds = [k.strip() for k in modules.split(",")] if modules != "all" else list(_KINDS)
        bad = [k for k in kinds if k not in _KINDS]
        if bad:
            raise ConfigError(f"{where}.modules", f"unknown module kinds {bad}; one of {_KINDS}")
        replicas = _int(spec.get("replicas", 1), f"{where}.replicas", 1, 32)
        balancing = spec.get("balancing")
        if balancing is not None and balancing not in BALANCING:
            raise ConfigError(
                f"{where}.balancing", f"one of {', '.join(BALANCING)} (got {balancing!r})"
            )
        services.append(ServiceSpec(service, config, modules, replicas, balancing))
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ConfigError("services", f"service names must be distinct (got {names})")
    if not services:
        raise ConfigError("services", "a deployment needs at least one [[services]] table")
    return DeployConfig(name, port, tuple(services), source)
