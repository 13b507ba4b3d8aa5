"""``llmagentos up / down / status``: run a deployment (gateway + module services)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich import box
from rich.table import Table

from llmagentos.cli._common import fail, stdout
from llmagentos.exceptions import LLMAgentOSError

__all__ = ["down_command", "status_command", "up_command"]

StateDir = Annotated[
    Path, typer.Option("--state-dir", metavar="DIR", help="Where deployments keep state and logs.")
]
DEFAULT_STATE_DIR = Path("runs/deploy")


def up_command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The deployment (TOML).")],
    *,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    ready_timeout: Annotated[
        float, typer.Option(min=1.0, metavar="S", help="Seconds each process may take to start.")
    ] = 120.0,
) -> None:
    """Start the module services (N replicas each) and the gateway; stop on Ctrl-C.

    Waits until every process answers /readyz. Ctrl-C, SIGTERM or 'llmagentos down NAME'
    stops the gateway first (in-flight requests finish), then the services.
    """
    from llmagentos.deploy import Deployment, load_deploy_config

    try:
        deploy = load_deploy_config(config)
    except LLMAgentOSError as err:
        fail(err)
    console = stdout()
    deployment = Deployment(
        deploy, state_dir, log=lambda line: console.print(line, highlight=False)
    )
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        deployment.up(ready_timeout=ready_timeout)
        console.print(
            f"[bold]{deploy.name}[/] is up: gateway {deployment.gateway_url} "
            f"({len(deployment.processes) - 1} service processes). Ctrl-C or "
            f"'llmagentos down {deploy.name}' stops it.",
            highlight=False,
        )
        deployment.watch(lambda: bool(stopping))
    except KeyboardInterrupt:
        console.print("stopping (Ctrl-C)", highlight=False)
    except LLMAgentOSError as err:
        fail(err, 1)
    finally:
        deployment.down()
        signal.signal(signal.SIGTERM, previous)
    console.print(f"{deploy.name} stopped", highlight=False)


def down_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The deployment's name.")],
    *,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Stop a running deployment: the gateway first, then the services."""
    from llmagentos.deploy import stop_deployment

    try:
        roles = stop_deployment(name, state_dir)
    except LLMAgentOSError as err:
        fail(err)
    stdout().print(f"stopped {name}: {', '.join(roles)}", highlight=False)


def status_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The deployment's name.")],
    *,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Show a deployment's services, replicas and their health."""
    from llmagentos.deploy import read_state
    from llmagentos.deploy.supervisor import process_alive

    try:
        state = read_state(name, state_dir)
    except LLMAgentOSError as err:
        fail(err)
    table = Table(box=box.SIMPLE_HEAD, title=f"{name}: gateway {state['gateway']}")
    for column in ("process", "url", "pid", "running", "ready"):
        table.add_column(column)
    for process in state["processes"]:
        running = process_alive(int(process["pid"]))
        table.add_row(
            process["role"], process["url"], str(process["pid"]),
            "yes" if running else "[red]no[/]", _ready(process["url"]),
        )  # fmt: skip
    ray_state = state.get("ray")
    if isinstance(ray_state, dict):
        for service, url in ray_state.get("urls", {}).items():
            table.add_row(f"{service} (Ray Serve)", url, "-", "-", _ready(url))
    stdout().print(table)
    if isinstance(ray_state, dict):
        _print_cluster(ray_state)


def _ready(url: str) -> str:
    try:
        ready = httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        ready = False
    return "yes" if ready else "[red]no[/]"


def _print_cluster(ray_state: dict[str, object]) -> None:
    """The cluster's nodes and resources, and where each module runs."""
    from llmagentos.deploy.ray_placement import cluster_report

    apps = ray_state.get("apps")
    try:
        report = cluster_report(str(ray_state["address"]), apps if isinstance(apps, dict) else {})
    except LLMAgentOSError as err:
        stdout().print(f"[red]Ray cluster at {ray_state.get('address')}: {err}[/]")
        return
    resources, available = report["resources"], report["available"]
    nodes = Table(box=box.SIMPLE_HEAD, title=f"Ray cluster {report['address']}")
    for column in ("node", "address", "alive", "CPU", "memory GiB"):
        nodes.add_column(column)
    for node in report["nodes"]:
        res = node["resources"]
        nodes.add_row(
            node["id"][:12], str(node["address"]), "yes" if node["alive"] else "[red]no[/]",
            f"{res.get('CPU', 0):g}", f"{res.get('memory', 0) / 2**30:.1f}",
        )  # fmt: skip
    stdout().print(nodes)
    stdout().print(
        f"CPU {available.get('CPU', 0):g} of {resources.get('CPU', 0):g} free; "
        f"memory {available.get('memory', 0) / 2**30:.1f} of "
        f"{resources.get('memory', 0) / 2**30:.1f} GiB free",
        highlight=False,
    )
    placed = Table(box=box.SIMPLE_HEAD, title="where each module runs")
    for column in ("what", "actor", "node", "address", "pid"):
        placed.add_column(column)
    for item in report["placed"]:
        placed.add_row(
            item["what"], item["actor"], (item.get("node") or "?")[:12],
            str(item.get("node_address")), str(item.get("pid")),
        )  # fmt: skip
    stdout().print(placed)
