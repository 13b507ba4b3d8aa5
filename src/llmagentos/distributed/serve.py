"""Module services as Ray Serve deployments: the same service, placed by Ray.

A deployment runs :func:`~llmagentos.service.app.service_app` (the routes, sessions,
tenancy and limits of ``llmagentos serve``) in each of its replicas, built there from
the run config, behind Serve's HTTP proxy. Agents reach it exactly as they reach an
HTTP module service: :func:`~llmagentos.service.remote.remote_modules` on its URL, so
an agent with its planner on Serve is the agent with a remote planner, and a seeded run
returns what the in-process run returns.

Serve sends a request to any replica. A session lives in one replica's memory unless
the replicas share a session store, so more than one replica (or autoscaling past one)
needs ``state_store`` (a Redis URL, or a SQLite file on one machine): each call then
loads and saves its session there, as replicas behind the gateway do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmagentos.config import RunConfig
from llmagentos.distributed.cluster import connect
from llmagentos.distributed.pickling import check_serializable
from llmagentos.exceptions import ConfigError, MissingExtraError

STATE_SECRET_ENV = "LLMAGENTOS_STATE_SECRET"

__all__ = ["ServeSettings", "module_deployment", "serve_modules", "stop_serving"]

DEFAULT_PORT = 8000


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How Serve runs a module service's replicas.

    Args:
        num_replicas: fixed replicas (ignored when ``autoscaling`` is given).
        max_ongoing_requests: requests one replica works on at once; more wait in
            Serve's queue (Serve's own setting of the same name).
        autoscaling: Serve's ``autoscaling_config`` (``min_replicas``, ``max_replicas``,
            ``target_ongoing_requests``, ...), passed as it is.
        cpus: CPUs each replica reserves.
        state_store: a session store shared by the replicas (``redis://...`` or a SQLite
            path); needed past one replica.
        state_secret: the store's sealing secret (``LLMAGENTOS_STATE_SECRET`` if unset).
    """

    num_replicas: int = 1
    max_ongoing_requests: int = 100
    autoscaling: Mapping[str, Any] | None = None
    cpus: float = 1.0
    state_store: str | None = None
    state_secret: str | None = None
    service: Mapping[str, Any] = field(default_factory=dict)
    """More :func:`service_app` settings (``max_sessions``, ``require_principal``...)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Environment variables of each replica (a deployment's principal secret)."""

    def check(self) -> None:
        if self.num_replicas < 1:
            raise ConfigError("num_replicas", f"must be >= 1 (got {self.num_replicas})")
        if self.max_ongoing_requests < 1:
            raise ConfigError(
                "max_ongoing_requests", f"must be >= 1 (got {self.max_ongoing_requests})"
            )
        if self.cpus < 0:
            raise ConfigError("cpus", f"must be >= 0 (got {self.cpus})")
        most = self.num_replicas
        if self.autoscaling is not None:
            most = int(self.autoscaling.get("max_replicas", 1))
        if most > 1 and self.state_store is None:
            raise ConfigError(
                "state_store",
                f"{most} replicas need a shared session store (Serve sends a session's "
                "calls to any replica): give a redis:// URL or a SQLite path",
            )


def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError as err:
        raise MissingExtraError("Ray Serve deployments", "ray", "ray[serve]") from err
    return serve


def _builder(config: RunConfig, kinds: tuple[str, ...], settings: ServeSettings) -> Any:
    """What each replica runs to build its ASGI app (evaluated there, not here)."""

    def build() -> Any:
        from llmagentos.build import build_agent
        from llmagentos.distributed.cluster_kernel import route_here
        from llmagentos.service.app import service_app
        from llmagentos.service.store import open_session_store

        route_here()  # model-backed modules share the cluster's kernel
        store = None
        if settings.state_store is not None:
            store = open_session_store(
                settings.state_store,
                # Read on the replica: a secret in its environment stays out of the config.
                secret=settings.state_secret or os.environ.get(STATE_SECRET_ENV),
                namespace=f"llmagentos:sessions:{config.name}:{'+'.join(kinds)}",
            )
        return service_app(
            lambda: build_agent(config), name=config.name, kinds=kinds, store=store,
            **dict(settings.service),
        )  # fmt: skip

    return build


def module_deployment(
    config: RunConfig | str | Path,
    *,
    kinds: Sequence[str] | None = None,
    name: str | None = None,
    settings: ServeSettings | None = None,
) -> Any:
    """A Serve application serving ``kinds`` of ``config``'s agent (all by default).

    Raises:
        ConfigError: an unknown kind, or settings Serve cannot honour (see
            :class:`ServeSettings`).
        NotSerializable: the config cannot be sent to the replicas.
        MissingExtraError: Ray Serve is not installed (``llmagentos[ray]``).
    """
    from llmagentos.config import load_config
    from llmagentos.service.app import KINDS

    run_config = config if isinstance(config, RunConfig) else load_config(config)
    chosen = tuple(kinds or KINDS)
    unknown = [kind for kind in chosen if kind not in KINDS]
    if unknown:
        raise ConfigError("kinds", f"unknown module kinds {unknown}; one of {list(KINDS)}")
    chosen_settings = settings or ServeSettings()
    chosen_settings.check()
    check_serializable(run_config, f"the config of {run_config.name!r}")
    serve = _import_serve()
    options: dict[str, Any] = {
        "name": name or f"{run_config.name}-{'-'.join(chosen)}",
        "max_ongoing_requests": chosen_settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": chosen_settings.cpus},
    }
    if chosen_settings.env:
        options["ray_actor_options"]["runtime_env"] = {"env_vars": dict(chosen_settings.env)}
    if chosen_settings.autoscaling is not None:
        options["autoscaling_config"] = dict(chosen_settings.autoscaling)
    else:
        options["num_replicas"] = chosen_settings.num_replicas
    ingress = serve.ingress(_builder(run_config, chosen, chosen_settings))
    deployment = serve.deployment(ingress(type("ModuleService", (), {})), **options)
    return deployment.bind()


def serve_modules(
    config: RunConfig | str | Path,
    *,
    kinds: Sequence[str] | None = None,
    name: str | None = None,
    route_prefix: str | None = None,
    port: int = DEFAULT_PORT,
    address: str | None = None,
    settings: ServeSettings | None = None,
) -> str:
    """Deploy ``kinds`` of ``config`` on Serve and return the service's base URL.

    Serve's HTTP proxy listens on 127.0.0.1:``port`` (started if it is not running).
    The URL works wherever an HTTP module service's does (``remote_modules(url, ...)``,
    a gateway route).
    """
    application = module_deployment(config, kinds=kinds, name=name, settings=settings)
    connect(address)
    serve = _import_serve()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    name = application._bound_deployment.name
    prefix = route_prefix or f"/{name}"
    if not prefix.startswith("/"):
        raise ConfigError("route_prefix", f"must start with '/' (got {prefix!r})")
    serve.run(application, name=name, route_prefix=prefix, blocking=False)
    return f"http://127.0.0.1:{port}{prefix}"


def stop_serving(name: str | None = None) -> None:
    """Remove one Serve application (by name), or shut Serve down."""
    serve = _import_serve()
    if name is None:
        serve.shutdown()
    else:
        serve.delete(name)
