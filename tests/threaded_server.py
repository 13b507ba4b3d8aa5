"""A real uvicorn server on a thread of the test process, for raw-socket tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmagentos._processes import free_port


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[int]:
    """Serve ``app`` on a free port (uvicorn ``Config`` settings in ``config``); yields
    the port once the server has started, and stops it after."""
    import uvicorn

    chosen = free_port()
    settings = {"host": "127.0.0.1", "port": chosen, "log_level": "warning", "lifespan": "off"}
    server = uvicorn.Server(uvicorn.Config(app, **settings, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield chosen
    finally:
        server.should_exit = True
        thread.join(timeout=10)
