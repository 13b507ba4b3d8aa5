"""``--tls-cert`` / ``--tls-key``: HTTPS for ``llmagentos serve`` and ``llmagentos gateway``."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any

import typer

from llmagentos.exceptions import ConfigError

__all__ = ["TlsCert", "TlsKey", "uvicorn_tls"]

TlsCert = Annotated[
    Path | None,
    typer.Option(metavar="PEM", help="Serve HTTPS with this certificate (chain) file."),
]
TlsKey = Annotated[
    Path | None,
    typer.Option(metavar="PEM", help="The private key of --tls-cert."),
]


def uvicorn_tls(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn's TLS arguments, checked before anything listens.

    Raises:
        ConfigError: only one of the two given, or they do not load as a pair.
    """
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise ConfigError("tls", "give both --tls-cert and --tls-key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        detail = f"{cert} and {key} do not load as a certificate and its key: {err}"
        raise ConfigError("tls", detail) from err
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
