"""A real Postgres 16 with pgvector on loopback, from the ``pgserver`` wheel's binaries.

Started once per session by ``tests/memory/conftest.py`` (as Redis is in
``tests/redis_server.py``): ``initdb`` in a temporary folder, then ``postgres`` on a
free port, stopped at the end. Postgres refuses to run as root, so under root it runs
as ``nobody``, from a hard-linked copy of the binaries (site-packages may sit under a
``/root`` that ``nobody`` cannot enter). Durability is off (``fsync=off``): the tests
kill clients, never the server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmagentos._processes import free_port

USER = "llm"


def _copy_tree(source: Path, target: Path) -> None:
    try:
        shutil.copytree(source, target, copy_function=os.link, symlinks=True)
    except OSError:  # another file system: copy (about 35 MB)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)


def _binaries(base: Path, as_other_user: bool) -> Path:
    import pgserver

    package = Path(pgserver.__file__).parent
    if not as_other_user:
        return package / "pginstall" / "bin"
    # The binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout.
    root = base / "pg"
    _copy_tree(package / "pginstall", root / "pgserver" / "pginstall")
    libs = package.parent / "pgserver.libs"
    if libs.exists():
        _copy_tree(libs, root / "pgserver.libs")
    return root / "pgserver" / "pginstall" / "bin"


def _answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False  # not accepting connections yet


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh Postgres with pgvector created in ``postgres``: yields its URL."""
    if importlib.util.find_spec("pgserver") is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip("pgserver and psycopg are not installed (pip install 'llmagentos[postgres]')")
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="llmagentos-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        run_as: dict[str, Any] = {}
        if as_root:
            nobody = pwd.getpwnam("nobody")
            base.chmod(0o755)
            os.chown(base, nobody.pw_uid, nobody.pw_gid)
            run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        binaries = _binaries(base, as_root)
        data, log = base / "data", base / "postgres.log"
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust"]
        subprocess.run(
            [*initdb, "-E", "UTF8", "--no-sync"], check=True, capture_output=True, **run_as
        )
        port = free_port()
        settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        options = [arg for s in settings for arg in ("-c", s)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                 "-k", str(base), *options],
                stdout=out, stderr=subprocess.STDOUT, **run_as,
            )  # fmt: skip
        url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"postgres did not start on port {port}: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)
