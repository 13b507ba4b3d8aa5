"""A one-machine deployment: the gateway and the module services it fronts.

Example (TOML)::

    name = "maze"

    [gateway]
    port = 8080                       # 0: any free port
    keys = "keys.db"                  # optional: any [gateway] setting of the gateway's
    rate_per_second = 50              # own config passes through (paths made absolute)

    [[services]]
    name = "planning"
    config = "../configs/text_maze_llm.toml"   # the run config whose module is served
    modules = "planning"              # or "all", or "planning,learning"
    replicas = 2
    balancing = "session"             # optional: keep each session on one replica
    memory = "memory.db"              # optional: also serve /v1/memory (a SQLite file
                                      # or a postgresql:// URL shared by the replicas)
    embedder = "local:minilm"         # optional: the embedder of new memory namespaces

Paths are relative to the deployment file.

``placement = "ray"`` runs the services on Ray Serve instead of as local processes
(docs/distributed.md)::

    placement = "ray"

    [ray]
    address = "127.0.0.1:6379"        # optional: a running cluster (default: a new
                                      # local instance, stopped with the deployment)
    serve_port = 8000                 # Serve's HTTP proxy on 127.0.0.1 (0: any free)

    [[services]]
    name = "planning"
    config = "../configs/taxi.toml"
    modules = "planning"
    replicas = 2                      # Serve replicas (or autoscaling = {...})
    cpus = 0.5                        # each replica's CPUs
    max_ongoing_requests = 32
    state_store = "sessions.db"       # needed past one replica (or a redis:// URL)

The gateway stays a local process in front of Serve's proxy, with the same routes,
auth and limits.

With auth (``keys`` or ``[gateway.jwt]``), ``llmagentos up`` makes a random principal
secret for the deployment, gives it to the gateway and every service in their
environment only, and starts the services with ``--require-principal``: they then
answer nothing that did not come through the gateway. The deployment owns that secret,
so ``principal_secret_env`` and ``forward_unsigned`` are not settings here.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError, LLMAgentOSError
from llmagentos.gateway.balancer import BALANCING
from llmagentos.gateway.registry import check_service_name

__all__ = [
    "PLACEMENTS",
    "DeployConfig",
    "RaySpec",
    "ServiceSpec",
    "gateway_table",
    "load_deploy_config",
]

_KINDS = ("perception", "planning", "execution", "learning")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    config: Path
    modules: str
    replicas: int
    balancing: str | None = None  # None: the gateway's default
    memory: str | None = None  # a SQLite path (absolute) or a postgresql:// URL
    embedder: str | None = None
    # placement = "ray" only: Serve's settings of the service's deployment
    cpus: float = 1.0
    max_ongoing_requests: int = 100
    autoscaling: dict[str, Any] | None = None
    state_store: str | None = None  # a SQLite path (absolute) or a redis:// URL


PLACEMENTS = ("processes", "ray")


@dataclass(frozen=True, slots=True)
class RaySpec:
    """Where ``placement = "ray"`` runs: a cluster's head, or a new local instance."""

    address: str | None = None
    serve_port: int = 8000


@dataclass(frozen=True, slots=True)
class DeployConfig:
    name: str
    gateway_port: int
    services: tuple[ServiceSpec, ...]
    source: Path
    #: the gateway's own ``[gateway]`` settings, paths absolute
    gateway_settings: dict[str, Any] = field(default_factory=dict)
    placement: str = "processes"
    ray: RaySpec | None = None  # set with placement = "ray"

    @property
    def has_auth(self) -> bool:
        """Does the gateway authenticate callers (so services must require principals)?"""
        return "keys" in self.gateway_settings or "jwt" in self.gateway_settings


# The deployment makes and hands out the principal secret itself.
_OWNED = ("principal_secret_env", "forward_unsigned")
_PATHS = ("keys", "upstream_ca_file")
# A secret of the right length, only to check the settings before anything starts.
_CHECK_SECRET = "0" * 32


def _toml(value: Any, where: str) -> str:
    """A setting as TOML (strings, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ConfigError(where, "a setting has no control characters")
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise ConfigError(where, f"not a value a gateway setting takes: {value!r}")


def gateway_table(settings: dict[str, Any]) -> str:
    """The ``[gateway]`` table (and ``[gateway.jwt]``) of the generated gateway config."""
    lines = ["[gateway]"]
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    for key, value in settings.items():
        if key not in tables:
            lines.append(f"{key} = {_toml(value, f'gateway.{key}')}")
    for key, table in tables.items():
        lines += ["", f"[gateway.{key}]"]
        lines += [f"{k} = {_toml(v, f'gateway.{key}.{k}')}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _gateway_settings(gateway: dict[str, Any], base: Path) -> dict[str, Any]:
    """The gateway's own settings, with paths made absolute and checked by the gateway's
    config loader, before anything starts."""
    from llmagentos.gateway.config import load_gateway_config
    from llmagentos.principal import SECRET_ENV

    settings = {k: v for k, v in gateway.items() if k != "port"}
    for key in _OWNED:
        if key in settings:
            raise ConfigError(f"gateway.{key}", "the deployment makes the principal secret itself")
    for key in _PATHS:
        if isinstance(settings.get(key), str):
            settings[key] = str((base / settings[key]).resolve())
    jwt = settings.get("jwt")
    if isinstance(jwt, dict) and isinstance(jwt.get("public_key"), str):
        settings["jwt"] = {**jwt, "public_key": str((base / jwt["public_key"]).resolve())}
    with tempfile.TemporaryDirectory() as folder:
        check = Path(folder) / "gateway.toml"
        check.write_text(gateway_table(settings), encoding="utf-8")
        load_gateway_config(check, environ={**os.environ, SECRET_ENV: _CHECK_SECRET})
    return settings


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"must be an integer in [{low}, {high}] (got {value!r})")
    return value


_RAY_FIELDS = ("cpus", "max_ongoing_requests", "autoscaling", "state_store")


def _ray_settings(spec: dict[str, Any], where: str, base: Path, replicas: int) -> dict[str, Any]:
    """A service's Serve settings, checked as Serve will take them."""
    from llmagentos.distributed.serve import ServeSettings

    cpus = spec.get("cpus", 1.0)
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or not 0 <= cpus <= 1024:
        raise ConfigError(f"{where}.cpus", f"must be a number in [0, 1024] (got {cpus!r})")
    ongoing = _int(
        spec.get("max_ongoing_requests", 100), f"{where}.max_ongoing_requests", 1, 100_000
    )
    autoscaling = spec.get("autoscaling")
    if autoscaling is not None and not isinstance(autoscaling, dict):
        raise ConfigError(f"{where}.autoscaling", "must be a table of Serve's autoscaling_config")
    store = spec.get("state_store")
    if store is not None:
        if not isinstance(store, str) or not store:
            raise ConfigError(
                f"{where}.state_store", f"a SQLite path or redis:// URL (got {store!r})"
            )
        if not store.startswith(("redis://", "rediss://", "unix://")):
            store = str((base / store).resolve())
    settings = ServeSettings(
        num_replicas=replicas, max_ongoing_requests=ongoing, autoscaling=autoscaling,
        cpus=float(cpus), state_store=store,
    )  # fmt: skip
    try:
        settings.check()
    except ConfigError as err:
        raise ConfigError(f"{where}.{err.field}", err.problem) from err
    return {"cpus": float(cpus), "max_ongoing_requests": ongoing, "autoscaling": autoscaling,
            "state_store": store}  # fmt: skip


def _service(
    spec: dict[str, Any], where: str, base: Path, built: set[Path], placement: str
) -> ServiceSpec:
    """One ``[[services]]`` table, its run config built once to fail before anything starts."""
    from llmagentos.build import build_agent
    from llmagentos.config import load_config

    if not isinstance(spec, dict):
        raise ConfigError(where, "must be a [[services]] table")
    fields = {"name", "config", "modules", "replicas", "balancing", "memory", "embedder"}
    for key in sorted(set(spec) - fields - set(_RAY_FIELDS)):
        raise ConfigError(f"{where}.{key}", "unknown field")
    if placement != "ray":
        for key in _RAY_FIELDS:
            if key in spec:
                raise ConfigError(f"{where}.{key}", 'a Serve setting: needs placement = "ray"')
    elif "memory" in spec:
        raise ConfigError(
            f"{where}.memory", 'memory is served with placement = "processes" (not on Ray yet)'
        )
    service = check_service_name(str(spec.get("name", "")), field_name=f"{where}.name")
    if "config" not in spec:
        raise ConfigError(f"{where}.config", "required field is missing")
    config = (base / str(spec["config"])).resolve()
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
    memory = spec.get("memory")
    if memory is not None:
        if not isinstance(memory, str) or not memory:
            raise ConfigError(
                f"{where}.memory", f"a SQLite path or a postgresql:// URL (got {memory!r})"
            )
        if not memory.startswith(("postgresql://", "postgres://")):
            memory = str((base / memory).resolve())
    embedder = spec.get("embedder")
    if embedder is not None:
        if memory is None:
            raise ConfigError(f"{where}.embedder", "needs a memory store (memory = ...)")
        from llmagentos.embeddings import make_embedder

        if embedder != "none":
            try:
                make_embedder(str(embedder)).close()
            except LLMAgentOSError as err:
                raise ConfigError(f"{where}.embedder", str(err)) from err
    ray = _ray_settings(spec, where, base, replicas) if placement == "ray" else {}
    return ServiceSpec(service, config, modules, replicas, balancing, memory, embedder, **ray)


def _ray_spec(table: Any) -> RaySpec:
    from llmagentos.distributed.cluster import parse_address

    if not isinstance(table, dict):
        raise ConfigError("ray", "must be a table ([ray])")
    for key in sorted(set(table) - {"address", "serve_port"}):
        raise ConfigError(f"ray.{key}", "unknown field")
    address = table.get("address")
    if address is not None:
        if not isinstance(address, str):
            raise ConfigError("ray.address", f"host:port of a Ray head (got {address!r})")
        try:
            parse_address(address)
        except ConfigError as err:
            raise ConfigError("ray.address", err.problem) from err
    port = _int(table.get("serve_port", 8000), "ray.serve_port", 0, 65535)
    return RaySpec(address, port)


def load_deploy_config(path: str | Path) -> DeployConfig:
    """Read and check a deployment; run configs and the gateway's settings are checked
    too, before anything starts."""
    source = Path(path).resolve()
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("", f"{path}: no such file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{path}: invalid TOML: {err}") from err
    unknown = sorted(set(data) - {"name", "gateway", "services", "placement", "ray"})
    if unknown:
        raise ConfigError(unknown[0], "unknown field")
    name = str(data.get("name", source.stem))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError("name", f"use letters, digits, '_', '.', '-' (got {name!r})")
    gateway = data.get("gateway", {})
    if not isinstance(gateway, dict):
        raise ConfigError("gateway", "must be a table ([gateway])")
    port = _int(gateway.get("port", 8080), "gateway.port", 0, 65535)
    settings = _gateway_settings(gateway, source.parent)
    placement = data.get("placement", "processes")
    if placement not in PLACEMENTS:
        raise ConfigError("placement", f"one of {', '.join(PLACEMENTS)} (got {placement!r})")
    if "ray" in data and placement != "ray":
        raise ConfigError("ray", 'settings of placement = "ray"')
    ray = _ray_spec(data.get("ray", {})) if placement == "ray" else None
    built: set[Path] = set()
    services = [
        _service(spec, f"services[{index}]", source.parent, built, placement)
        for index, spec in enumerate(data.get("services", []))
    ]
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ConfigError("services", f"service names must be distinct (got {names})")
    if not services:
        raise ConfigError("services", "a deployment needs at least one [[services]] table")
    return DeployConfig(name, port, tuple(services), source, settings, placement, ray)
