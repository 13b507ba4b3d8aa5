"""An SSRF-safe HTTP fetch for agent tools, on httpx.

Every URL (the first and every redirect hop) goes through
:func:`~llmagentos.tools.ssrf.check_url` before any connection is made, and the request
goes to the pinned IP it returned (the ``Host`` header and, for https, the TLS SNI name
carry the original host), so DNS rebinding cannot redirect it. Redirects are followed
by hand, responses are capped at ``max_bytes`` and the whole call at ``timeout``
seconds. The environment's proxy settings are ignored (a proxy would resolve the name
itself and defeat the pinning).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from llmagentos._blocking import run_blocking
from llmagentos.durable.scope import call_key
from llmagentos.exceptions import HttpToolError, HttpToolTimeout
from llmagentos.tools.base import FunctionTool
from llmagentos.tools.ssrf import ResolvedURL, Resolver, check_url

__all__ = ["HttpResponse", "HttpToolError", "HttpToolTimeout", "http_request", "http_tool"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})
_HOP_MANAGED = frozenset({"host", "content-length", "transfer-encoding"})


@dataclass(frozen=True)
class HttpResponse:
    """The (possibly truncated) answer to :func:`http_request`.

    ``headers`` has lower-case names (repeated headers joined with ``", "``); ``url`` is
    the final URL after redirects, with its original host name; ``truncated`` is true
    when the body was cut at ``max_bytes``.
    """

    status: int
    headers: dict[str, str] = field(repr=False)
    text: str = field(repr=False)
    url: str
    truncated: bool


def _origin(resolved: ResolvedURL) -> tuple[str, str, int]:
    return resolved.scheme, resolved.host, resolved.port


async def _check(
    url: str,
    allow_hosts: Collection[str],
    allow_private: bool,
    resolver: Resolver | None,
) -> ResolvedURL:
    """check_url, with the blocking system resolver on the runtime's own pool.

    Not ``asyncio.to_thread``: the default executor is anyone's, and a few hung sync
    calls there would hold every fetch at its DNS lookup.
    """
    if resolver is not None:
        return check_url(
            url, allow_hosts=allow_hosts, allow_private=allow_private, resolver=resolver
        )
    return await run_blocking(check_url, url, allow_hosts=allow_hosts, allow_private=allow_private)


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """Read at most ``max_bytes`` of the body; returns the bytes and whether it was cut."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str,
    headers: Mapping[str, str],
    body: bytes | str | None,
    allow_hosts: Collection[str],
    allow_private: bool,
    max_bytes: int,
    max_redirects: int,
    resolver: Resolver | None,
) -> HttpResponse:
    current = await _check(url, allow_hosts, allow_private, resolver)
    first_origin = _origin(current)
    send_headers = {k: v for k, v in headers.items() if k.lower() not in _HOP_MANAGED}
    if not any(k.lower() == "accept-encoding" for k in send_headers):
        send_headers["Accept-Encoding"] = "identity"  # the size cap then bounds the wire too
    redirects = 0
    while True:
        hop_headers = dict(send_headers)
        if _origin(current) != first_origin:
            hop_headers = {k: v for k, v in hop_headers.items() if k.lower() not in _SENSITIVE}
        hop_headers["Host"] = current.host_header
        extensions = {"sni_hostname": current.host} if current.scheme == "https" else {}
        request = client.build_request(
            method,
            current.pinned_url,
            headers=hop_headers,
            content=body,
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as err:
            raise HttpToolTimeout(current.url, f"timed out ({err!r})") from err
        except httpx.HTTPError as err:
            raise HttpToolError(current.url, f"request failed ({err!r})") from err
        try:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                redirects += 1
                if redirects > max_redirects:
                    raise HttpToolError(current.url, f"more than {max_redirects} redirects")
                next_url = urljoin(current.url, location)
                status = response.status_code
                if status == 303 or (status in (301, 302) and method.upper() == "POST"):
                    method = "GET" if method.upper() != "HEAD" else "HEAD"
                    body = None
                    send_headers = {
                        k: v
                        for k, v in send_headers.items()
                        if not k.lower().startswith("content-")
                    }
                current = await _check(next_url, allow_hosts, allow_private, resolver)
                continue
            try:
                data, truncated = await _read_capped(response, max_bytes)
            except httpx.TimeoutException as err:
                raise HttpToolTimeout(current.url, f"timed out reading ({err!r})") from err
            except httpx.HTTPError as err:
                raise HttpToolError(current.url, f"reading the body failed ({err!r})") from err
            encoding = response.encoding or "utf-8"
            try:
                text = data.decode(encoding, errors="replace")
            except LookupError:
                text = data.decode("utf-8", errors="replace")
            return HttpResponse(
                status=response.status_code,
                headers={k: ", ".join(response.headers.get_list(k)) for k in response.headers},
                text=text,
                url=current.url,
                truncated=truncated,
            )
        finally:
            await response.aclose()


async def http_request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    allow_hosts: Collection[str] = (),
    allow_private: bool = False,
    max_bytes: int = 1_000_000,
    timeout: float = 10.0,
    max_redirects: int = 5,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HttpResponse:
    """Fetch ``url`` safely; see the module docstring for the guarantees.

    Raises:
        URLRefused: the URL or a redirect target failed :func:`check_url` (nothing was
            sent to it).
        HttpToolTimeout: the whole call took longer than ``timeout`` seconds.
        HttpToolError: connection or protocol failure, or too many redirects.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    async with httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
    ) as client:
        try:
            async with asyncio.timeout(timeout):
                return await _fetch(
                    client,
                    url,
                    method=method,
                    headers=headers or {},
                    body=body,
                    allow_hosts=allow_hosts,
                    allow_private=allow_private,
                    max_bytes=max_bytes,
                    max_redirects=max_redirects,
                    resolver=resolver,
                )
        except TimeoutError as err:
            if isinstance(err, HttpToolTimeout):
                raise
            raise HttpToolTimeout(url, f"no complete answer within {timeout:g}s") from err


def http_tool(
    *,
    allow_hosts: Collection[str] = (),
    allow_private: bool = False,
    max_bytes: int = 200_000,
    timeout: float = 10.0,
    namespace: str = "web",
) -> FunctionTool:
    """:func:`http_request` as a tool a model may call (``web.fetch``), with the SSRF guard.

    Requests other than GET and HEAD carry an ``Idempotency-Key`` header: inside a
    durable run it is the call's key, so a server that honours the header drops the
    repeat of a call cut off by a crash.
    """

    async def fetch(url: str, method: str = "GET", body: str | None = None) -> dict[str, Any]:
        """Fetch a web page or call a web API over http(s).

        Args:
            url: the http or https address.
            method: GET, POST, PUT, PATCH, DELETE or HEAD.
            body: the request body (text), if any.
        """
        verb = method.upper()
        if verb not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)} (got {method!r})")
        headers = {}
        key = call_key()
        if verb not in ("GET", "HEAD") and key is not None:
            headers["Idempotency-Key"] = key
        response = await http_request(
            url, method=verb, headers=headers, body=body, allow_hosts=allow_hosts,
            allow_private=allow_private, max_bytes=max_bytes, timeout=timeout,
        )  # fmt: skip
        return {
            "status": response.status,
            "url": response.url,
            "content_type": response.headers.get("content-type", ""),
            "text": response.text,
            "truncated": response.truncated,
        }

    return FunctionTool(fetch, namespace=namespace, timeout=timeout + 1.0)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
