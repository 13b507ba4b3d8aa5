"""Fixtures shared by the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmagentos._processes import start_server, stop_processes


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    """A header-echoing upstream process (``llmagentos.gateway.testing``): its URL."""
    process, url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    yield url
    stop_processes(process)
