"""Where replicas may be: the address ranges a service's traffic may be sent to.

A registry call names a URL and the gateway sends a service's traffic (its callers'
bodies, its principals) there. So a replica must be an ``http(s)`` URL without userinfo,
query or fragment whose host resolves, every address of it, inside ``[gateway]
replica_networks`` (loopback by default: ``127.0.0.0/8`` and ``::1/128``). IPv4-mapped
IPv6 addresses are judged by their IPv4 address.

The check runs when a replica is registered at run time, when the config's own
``[[services]]`` are loaded (the same rule: widen ``replica_networks`` for remote
replicas), and again on every connection the gateway opens (:func:`guarded_resolver`),
so a host name that later resolves elsewhere (DNS rebinding) is refused then too.
Host names are resolved on the runtime's own pool, never on the event loop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import ConfigError, GatewayError

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

__all__ = ["DEFAULT_REPLICA_NETWORKS", "guarded_resolver", "ReplicaNetworks"]

DEFAULT_REPLICA_NETWORKS = ("127.0.0.0/8", "::1/128")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone id is not the address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ReplicaNetworks:
    """The address ranges replicas must resolve into.

    Raises:
        ConfigError: a range is not CIDR notation (``field`` names the setting).
    """

    def __init__(
        self,
        networks: Iterable[str] = DEFAULT_REPLICA_NETWORKS,
        *,
        field: str = "gateway.replica_networks",
    ) -> None:
        parsed: list[_Network] = []
        for index, text in enumerate(networks):
            try:
                parsed.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError as err:
                raise ConfigError(f"{field}[{index}]", f"not a CIDR range: {text!r}") from err
        if not parsed:
            raise ConfigError(field, "name at least one range (loopback: 127.0.0.0/8, ::1/128)")
        self.networks: tuple[_Network, ...] = tuple(parsed)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)

    def allows(self, address: str) -> bool:
        """Is this IP address inside the ranges?"""
        try:
            ip = _address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.networks)

    def check_url(self, url: str, *, field: str = "url") -> str:
        """``url`` if it may be a replica; resolves a host name (blocking).

        Raises:
            GatewayError: 422 (``field``) for a URL that is not a plain http(s) URL,
                403 when its host resolves (in part) outside the ranges or not at all.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise GatewayError(422, f"{field}: {url!r} is not a URL: {err}", field=field) from err
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayError(422, f"{field}: expected an http(s) URL, got {url!r}", field=field)
        if "@" in parts.netloc:
            detail = f"{field}: a replica URL has no user info ({url!r})"
            raise GatewayError(422, detail, field=field)
        addresses = resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
        if not addresses:
            raise GatewayError(403, f"{field}: {parts.hostname!r} does not resolve", field=field)
        outside = sorted({a for a in addresses if not self.allows(a)})
        if outside:
            raise GatewayError(
                403,
                f"{field}: {url!r} resolves to {', '.join(outside)}, outside the replica "
                f"networks ({self}); widen [gateway] replica_networks to allow it",
                field=field,
            )
        return url

    async def check_url_async(self, url: str, *, field: str = "url") -> str:
        """:meth:`check_url` with the lookup on the runtime's own pool."""
        return await run_blocking(self.check_url, url, field=field)

    def check_urls(self, urls: Sequence[tuple[str, str]]) -> None:
        """Check ``(field, url)`` pairs (a config's static replicas).

        Raises:
            ConfigError: naming the first replica refused.
        """
        for field, url in urls:
            try:
                self.check_url(url, field=field)
            except GatewayError as err:
                raise ConfigError(field, str(err).removeprefix(f"{field}: ")) from err


def resolve(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[str]:
    """Every address ``host`` resolves to (an IP literal is its own); none when it does not."""
    with contextlib.suppress(ValueError):  # not an IP literal: a name to look up
        return [str(_address(host.strip("[]")))]
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def guarded_resolver(networks: ReplicaNetworks) -> AbstractResolver:
    """aiohttp's DNS step for the hop: lookups on the runtime's pool, answers outside the
    replica networks dropped (a name that points elsewhere since it was checked), and a
    name with no address left refused."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class GuardedResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            try:
                infos = await run_blocking(
                    socket.getaddrinfo, host, port, family, socket.SOCK_STREAM
                )
            except UnicodeError as err:
                raise OSError(f"{host!r} is not a host name") from err
            found: list[ResolveResult] = []
            for info_family, _, proto, _, address in infos:
                if networks.allows(str(address[0])):
                    found.append(ResolveResult(
                        hostname=host, host=str(address[0]), port=int(address[1]),
                        family=info_family, proto=proto,
                        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                    ))  # fmt: skip
            if not found:
                raise OSError(f"{host} resolves outside the replica networks ({networks})")
            return found

        async def close(self) -> None:
            return None

    return GuardedResolver()
