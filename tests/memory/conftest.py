"""Memory fixtures: a real Postgres server for the session, and a store per test of
either backend (``store_url``: a SQLite path or a ``postgresql://`` URL with its own
schema, so every test starts empty)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.memory.pg_server import running_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend, as the string ``open_store`` takes."""
    if request.param == "sqlite":
        return str(tmp_path / "memory.db")
    base: str = request.getfixturevalue("postgres_url")
    return f"{base}?schema=t_{uuid.uuid4().hex[:12]}"
