"""One-machine deployments: the gateway plus module services, started and stopped together."""

from llmagentos.deploy.config import DeployConfig, ServiceSpec, load_deploy_config
from llmagentos.deploy.supervisor import Deployment, read_state, stop_deployment

__all__ = [
    "DeployConfig",
    "Deployment",
    "ServiceSpec",
    "load_deploy_config",
    "read_state",
    "stop_deployment",
]
