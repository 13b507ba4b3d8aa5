"""``placement = "ray"``: a deployment's services on Ray Serve, and where they run.

``llmagentos up`` connects to the cluster (``[ray] address``) or starts a local
instance on 127.0.0.1, deploys each service as a Serve application (its replicas,
CPUs, ``max_ongoing_requests``, autoscaling and session store from the deployment)
under route ``/<service>`` of Serve's proxy, and puts the gateway in front of the
proxy as it does in front of processes. ``down`` deletes the applications (and stops
a local instance it started). :func:`cluster_report` is what ``llmagentos status``
shows: the cluster's nodes and resources, and the node and process of every replica
and kernel actor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmagentos.deploy.config import DeployConfig, ServiceSpec

__all__ = ["RayServices", "cluster_report"]

_SERVE_NAMESPACE = "serve"


@dataclass(slots=True)
class RayServices:
    """The Serve applications of one deployment."""

    config: DeployConfig
    log: Callable[[str], None] = print
    address: str = ""  # the cluster's GCS address, for `status` to join
    started_cluster: bool = False
    urls: dict[str, str] = field(default_factory=dict)

    def start(self, env: dict[str, str], require_principal: bool) -> dict[str, list[str]]:
        """Deploy every service; name -> [its URL behind Serve's proxy]."""
        from llmagentos._processes import free_port
        from llmagentos.distributed.cluster import connect

        assert self.config.ray is not None
        ray_mod = __import__("ray") if _ray_running() else None
        self.started_cluster = ray_mod is None and self.config.ray.address is None
        ray = connect(self.config.ray.address)
        self.address = str(ray.get_runtime_context().gcs_address)
        port = self.config.ray.serve_port or free_port()
        for spec in self.config.services:
            self.urls[spec.name] = self._deploy(spec, port, env, require_principal)
            self.log(f"deployed on Ray Serve: {spec.name} at {self.urls[spec.name]}")
        return {name: [url] for name, url in self.urls.items()}

    def _deploy(
        self, spec: ServiceSpec, port: int, env: dict[str, str], require_principal: bool
    ) -> str:
        from llmagentos.distributed.serve import ServeSettings, serve_modules

        service: dict[str, Any] = {"require_principal": True} if require_principal else {}
        settings = ServeSettings(
            num_replicas=spec.replicas,
            max_ongoing_requests=spec.max_ongoing_requests,
            autoscaling=spec.autoscaling,
            cpus=spec.cpus,
            state_store=spec.state_store,
            service=service,
            env=env,
        )
        kinds = None if spec.modules == "all" else [k.strip() for k in spec.modules.split(",")]
        return serve_modules(
            spec.config,
            kinds=kinds,
            name=self.app_name(spec.name),
            route_prefix=f"/{spec.name}",
            port=port,
            settings=settings,
        )

    def app_name(self, service: str) -> str:
        return f"{self.config.name}-{service}"

    def stop(self) -> None:
        """Delete the applications; stop the local instance if this deployment started it."""
        if not self.urls or not _ray_running():
            return
        from llmagentos.distributed.serve import stop_serving

        for name in list(self.urls):
            try:
                stop_serving(self.app_name(name))
            except Exception as err:  # the cluster may be gone already
                self.log(f"warning: could not delete {name} from Serve: {err}")
        self.urls.clear()
        if self.started_cluster:
            import ray

            ray.shutdown()

    def state(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "apps": {name: self.app_name(name) for name in self.urls},
            "urls": dict(self.urls),
        }


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _where(ray: Any, namespace: str, name: str) -> dict[str, Any]:
    """The node and process of a named actor (asked of the actor itself)."""

    def locate(_: Any) -> dict[str, Any]:
        import os

        import ray as worker_ray

        return {"node": worker_ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    try:
        actor = ray.get_actor(name, namespace=namespace)
        found: dict[str, Any] = ray.get(actor.__ray_call__.remote(locate), timeout=10)
    except Exception as err:
        return {"node": None, "pid": None, "error": f"{type(err).__name__}: {err}"}
    return found


def cluster_report(address: str, apps: dict[str, str]) -> dict[str, Any]:
    """The cluster's nodes and resources, and where each service's replicas and the
    cluster kernel's actors run (``apps``: service -> Serve application name).

    Joins the cluster for the report and leaves it again (a process already connected
    to Ray reports on its own cluster)."""
    # A local instance of Ray 2.60 has token auth on, its token in ~/.ray/auth_token:
    # joining it needs the mode said (an operator's own RAY_AUTH_MODE wins).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    joined = not _ray_running()
    try:
        return _report(address, apps)
    finally:
        if joined:  # leave the cluster: a driver whose cluster stops is stopped with it
            import ray

            ray.shutdown()


def _report(address: str, apps: dict[str, str]) -> dict[str, Any]:
    from llmagentos.distributed.cluster import connect
    from llmagentos.distributed.cluster_kernel import KERNEL_NAME
    from llmagentos.distributed.node_models import NAMESPACE

    ray = connect(address)
    nodes = {
        node["NodeID"]: {
            "id": node["NodeID"],
            "address": node.get("NodeManagerAddress"),
            "alive": bool(node.get("Alive")),
            "resources": {
                key: value
                for key, value in node.get("Resources", {}).items()
                if not key.startswith("node:")
            },
        }
        for node in ray.nodes()
    }
    named = ray.util.list_named_actors(all_namespaces=True)
    placed: list[dict[str, Any]] = []
    for service, app in apps.items():
        prefix = f"SERVE_REPLICA::{app}#"
        for entry in named:
            if entry["namespace"] == _SERVE_NAMESPACE and entry["name"].startswith(prefix):
                where = _where(ray, _SERVE_NAMESPACE, entry["name"])
                placed.append({"what": f"{service} replica", "actor": entry["name"]} | where)
    for entry in named:
        if entry["namespace"] == NAMESPACE:
            kind = "kernel" if entry["name"] == KERNEL_NAME else "model host"
            placed.append(
                {"what": kind, "actor": entry["name"]} | _where(ray, NAMESPACE, entry["name"])
            )
    for item in placed:
        node = nodes.get(item.get("node") or "")
        item["node_address"] = node["address"] if node else None
    return {
        "address": address,
        "resources": ray.cluster_resources(),
        "available": ray.available_resources(),
        "nodes": list(nodes.values()),
        "placed": placed,
    }
