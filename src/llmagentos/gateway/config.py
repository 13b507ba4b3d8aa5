"""The gateway's config file: its limits and the services it starts with.

Example (TOML)::

    [gateway]
    max_body_bytes = 1000000
    retries = 1

    [[services]]
    name = "taxi"
    replicas = ["http://127.0.0.1:8101", "http://127.0.0.1:8102"]
    timeout = 10
    idempotent_routes = ["/v1/perception/perceive"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmagentos.exceptions import ConfigError
from llmagentos.gateway.registry import ServiceRegistry

__all__ = ["GatewayConfig", "load_gateway_config"]

_GATEWAY_FIELDS = {"max_body_bytes", "retries"}


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    registry: ServiceRegistry
    options: dict[str, Any]


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and check a gateway config; every error names its field."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("", f"{source}: no such file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{source}: invalid TOML: {err}") from err
    unknown = sorted(set(data) - {"gateway", "services"})
    if unknown:
        raise ConfigError(unknown[0], "unknown section")
    options = dict(data.get("gateway", {}))
    for key in sorted(set(options) - _GATEWAY_FIELDS):
        raise ConfigError(f"gateway.{key}", "unknown field")
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"gateway.{key}", f"must be an integer (got {value!r})")
    services = data.get("services", [])
    if not isinstance(services, list):
        raise ConfigError("services", "must be a list of [[services]] tables")
    return GatewayConfig(ServiceRegistry(services), options)
