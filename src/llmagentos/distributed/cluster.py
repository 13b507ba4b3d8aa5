"""Connecting to Ray: a local instance on 127.0.0.1, or a cluster by address.

A local instance is started with the node's address pinned to 127.0.0.1 and no
dashboard, so nothing listens beyond loopback. Ray looks up its own address by
probing a public DNS server even then; where no route exists (a network namespace
with only loopback, as the tests use) it falls back to the hostname and goes on.

An address is checked with a plain TCP connection first, under a deadline, so an
unreachable head fails in seconds with :class:`ClusterUnreachable` instead of Ray's
own retry loop.
"""

from __future__ import annotations

import os
import socket
import time
from types import ModuleType
from typing import Any

from llmagentos.exceptions import ConfigError, LLMAgentOSError, MissingExtraError

__all__ = ["ClusterUnreachable", "connect", "import_ray", "parse_address"]

DEFAULT_CONNECT_TIMEOUT = 10.0


class ClusterUnreachable(LLMAgentOSError, ConnectionError):
    """No Ray head answered at ``address`` within ``timeout`` seconds."""

    def __init__(self, address: str, timeout: float, reason: str) -> None:
        self.address, self.timeout, self.reason = address, timeout, reason
        super().__init__(f"no Ray cluster at {address} within {timeout:g} s: {reason}")


def import_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`MissingExtraError` naming ``llmagentos[ray]``."""
    try:
        import ray
    except ImportError as err:
        raise MissingExtraError("running on Ray", "ray", "ray") from err
    return ray


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``ray://`` prefix allowed) as a pair; a typed error otherwise."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("address", f"expected host:port of a Ray head, got {address!r}")
    return host.strip("[]"), int(port)


def _probe(address: str, timeout: float) -> None:
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, timeout)):
                return
        except OSError as err:
            last = err.strerror or type(err).__name__
            time.sleep(0.2)
    raise ClusterUnreachable(address, timeout, last)


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    **init: Any,
) -> ModuleType:
    """Make sure this process is connected to Ray; return the ``ray`` module.

    Args:
        address: a running cluster's head (``host:port``, as ``ray start --head``
            prints); ``None``: the cluster this process is already connected to, else
            ``RAY_ADDRESS``, else a new local instance on 127.0.0.1.
        num_cpus: CPUs of a new local instance (default: the machine's).
        timeout: seconds to wait for the head to answer.
        **init: more ``ray.init`` settings.

    Raises:
        MissingExtraError: Ray is not installed.
        ClusterUnreachable: nothing answered at ``address`` in time.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False} | init
    if address is None or address == "local":
        # "local": a new instance even where `ray start` left one running, which
        # ray.init() would otherwise join.
        settings["address"] = "local"
        settings.setdefault("_node_ip_address", "127.0.0.1")
        if num_cpus is not None:
            settings["num_cpus"] = num_cpus
        ray.init(**settings)
        return ray
    _probe(address, timeout)
    try:
        ray.init(address=address, **settings)
    except (ConnectionError, TimeoutError) as err:
        reason = str(err)
        if not os.environ.get("RAY_AUTH_TOKEN"):
            reason += (
                " (a head with token authentication, on by default in recent Ray, "
                "needs its token here too: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)"
            )
        raise ClusterUnreachable(address, timeout, reason) from err
    return ray
