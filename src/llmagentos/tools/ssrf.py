"""SSRF guard: decide whether a URL may be fetched, and pin the address to connect to.

:func:`check_url` accepts only ``http``/``https`` URLs whose host resolves exclusively
to public addresses, and returns a :class:`ResolvedURL` carrying the IP to connect to.
Callers must connect to that IP (not re-resolve the name) so that a DNS answer that
changes between the check and the connection (DNS rebinding) cannot reach a private
address.

Refused: other schemes, userinfo (``user:pass@host``), empty or percent-encoded hosts,
backslashes and whitespace, legacy numeric IPv4 forms that resolve to forbidden
addresses (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``), and any host with a
resolved address that is loopback, private, link-local, multicast, unspecified,
reserved, shared (CGNAT), or a v6 address embedding such a v4 one (IPv4-mapped,
IPv4-compatible, NAT64, 6to4, Teredo). Cloud metadata endpoints are refused even with
``allow_private=True``; only an explicit ``allow_hosts`` entry lets them through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmagentos.exceptions import URLRefused

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "ResolvedURL",
    "Resolver",
    "URLRefused",
    "check_url",
    "forbidden_reason",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``resolver(host, port)`` returns the IP address strings the host resolves to.
Resolver = Callable[[str, int], Iterable[str]]


METADATA_HOSTS: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass(frozen=True)
class ResolvedURL:
    """A checked URL and the address to connect to.

    Attributes:
        url: the URL as given.
        scheme: ``http`` or ``https``.
        host: the ASCII host name (or IP literal, without brackets) for ``Host`` and SNI.
        port: the port to connect to.
        ip: the pinned address to connect to.
        addresses: every address the host resolved to (all of them passed the check).
        target: path and query to request (``/`` when the URL has none).
    """

    url: str
    scheme: str
    host: str
    port: int
    ip: str
    addresses: tuple[str, ...]
    target: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the host, bracketed if IPv6, with any non-default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the pinned IP."""
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.scheme}://{ip}:{self.port}{self.target}"


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with :func:`socket.getaddrinfo`; returns address strings."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def _embedded_v4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a v6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted by default, or ``None`` if it is public."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_v4(address):
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"IPv6 address embedding {inner} ({reason})"
        if address.is_site_local:
            return "site-local address"
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address"
    if not address.is_global:
        return "non-global address"
    return None


def _parse_ip(host: str, bracketed: bool) -> IPAddress | None:
    """The host as an IP address (legacy IPv4 forms included), or ``None`` for a name.

    Raises ValueError for hosts that look numeric but do not parse.
    """
    if bracketed:
        return ipaddress.IPv6Address(host)
    with contextlib.suppress(ValueError):  # not a standard form: try the legacy ones
        return ipaddress.ip_address(host)
    last = host.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.match(last):
        return None
    # Resolvers accept inet_aton forms: 2130706433, 0177.0.0.1, 0x7f.1, 127.1.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise ValueError(f"malformed numeric host {host!r}") from None


def _allowed(host: str, address: IPAddress | None, allow: Collection[str]) -> bool:
    """Whether ``host`` (by name) or ``address`` (by IP or network) is in ``allow``."""
    for raw in allow:
        entry = raw.strip().lower().rstrip(".").strip("[]")
        if entry == host:
            return True
        if address is None:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return True
    return False


def _check_chars(url: str) -> None:
    """Refuse non-strings, whitespace, control characters and backslashes."""
    if not isinstance(url, str):
        raise URLRefused(repr(url), "URL must be a string")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise URLRefused(url, "URL contains whitespace or control characters")
    if "\\" in url:
        raise URLRefused(url, "URL contains a backslash")


def _split(url: str) -> tuple[str, str, int, IPAddress | None, str]:
    """Parse and validate ``url``: scheme, ASCII host, port, IP literal (or None), target."""
    _check_chars(url)
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise URLRefused(url, f"unparsable URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise URLRefused(url, f"scheme {scheme or '(none)'!r} is not http or https")
    netloc = parts.netloc
    if not url[len(parts.scheme) :].startswith("://"):
        raise URLRefused(url, "URL must start with scheme://")
    if "@" in netloc:
        raise URLRefused(url, "URL contains userinfo (user:password@host)")
    if "%" in netloc:
        raise URLRefused(url, "percent-encoded or zone-scoped host")
    try:
        port = parts.port
    except ValueError as err:
        raise URLRefused(url, f"invalid port ({err})") from None
    if netloc.endswith(":"):
        raise URLRefused(url, "empty port")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise URLRefused(url, f"invalid port {port}")
    raw_host = parts.hostname or ""
    bracketed = netloc.startswith("[")
    if not bracketed:
        try:
            raw_host = (
                raw_host.encode("idna").decode("ascii") if not raw_host.isascii() else raw_host
            )
        except UnicodeError:
            raise URLRefused(url, "host is not a valid internationalised name") from None
    host = raw_host.lower()
    if host.endswith(".") and not bracketed:
        host = host[:-1]
    if not host:
        raise URLRefused(url, "empty host")
    if not bracketed and not _HOST_CHARS.match(host):
        raise URLRefused(url, f"host {host!r} contains characters not allowed in a host name")
    try:
        literal = _parse_ip(host, bracketed)
    except ValueError as err:  # also AddressValueError for a bad bracketed literal
        raise URLRefused(url, f"invalid host: {err}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port, literal, target


def check_url(
    url: str,
    *,
    allow_hosts: Collection[str] = (),
    allow_private: bool = False,
    resolver: Resolver | None = None,
) -> ResolvedURL:
    """Check ``url`` and pin the address to connect to; raise :class:`URLRefused` if unsafe.

    Args:
        url: an absolute ``http``/``https`` URL.
        allow_hosts: host names (exact, case-insensitive), IP addresses or CIDR networks
            that may be contacted even if private or metadata.
        allow_private: allow loopback/private/link-local/... addresses (not metadata).
        resolver: ``resolver(host, port) -> addresses``; defaults to ``getaddrinfo``.
    """
    scheme, host, port, literal, target = _split(url)

    if literal is not None:
        host = str(literal)
        candidates = [str(literal)]
    else:
        if host in METADATA_HOSTS and not _allowed(host, None, allow_hosts):
            raise URLRefused(url, f"host {host!r} is a cloud metadata endpoint")
        try:
            candidates = list((resolver or system_resolver)(host, port))
        except (OSError, UnicodeError) as err:
            raise URLRefused(url, f"host {host!r} does not resolve ({err})") from None
        if not candidates:
            raise URLRefused(url, f"host {host!r} resolved to no addresses")

    addresses: list[str] = []
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate.split("%", 1)[0])
        except ValueError:
            raise URLRefused(url, f"resolver returned a non-address {candidate!r}") from None
        reason = forbidden_reason(address)
        if reason is not None and not _allowed(host, address, allow_hosts):
            metadata = "metadata" in reason
            if metadata or not allow_private:
                raise URLRefused(url, f"{host!r} resolves to {address}: {reason}")
        addresses.append(str(address))
    return ResolvedURL(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        ip=addresses[0],
        addresses=tuple(addresses),
        target=target,
    )
