"""Module services: modules (or whole agents) behind HTTP, and remote modules to call them."""

from llmagentos.service.app import KINDS, SessionPool, service_app
from llmagentos.service.remote import (
    RemoteExecution,
    RemoteLearning,
    RemotePerception,
    RemotePlanning,
    ServiceClient,
    remote_modules,
)

__all__ = [
    "KINDS",
    "RemoteExecution",
    "RemoteLearning",
    "RemotePerception",
    "RemotePlanning",
    "ServiceClient",
    "SessionPool",
    "remote_modules",
    "service_app",
]
