"""The API gateway: routing to module services, and its building blocks."""

from llmagentos.gateway.app import Gateway, gateway_app
from llmagentos.gateway.registry import ServiceEntry, ServiceRegistry

__all__ = ["Gateway", "ServiceEntry", "ServiceRegistry", "gateway_app"]
