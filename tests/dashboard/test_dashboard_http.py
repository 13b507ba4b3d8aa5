"""The dashboard's boundary, over raw HTTP to a real process: who may see it, who may
decide, and what bad input gets (4xx with the reason, never 5xx)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import start_server, stop_processes
from tests.dashboard.runs import ROOT

TOKEN = "a-dashboard-token-0123456789"


@pytest.fixture(scope="module")
def open_dashboard(runs_root: Path) -> Iterator[str]:
    process, url = start_server(["llmagentos", "dashboard", str(runs_root)])
    yield url
    stop_processes(process)


@pytest.fixture(scope="module")
def guarded_dashboard(runs_root: Path) -> Iterator[str]:
    env = {**os.environ, "LLMAGENTOS_DASHBOARD_TOKEN": TOKEN}
    process, url = start_server(["llmagentos", "dashboard", str(runs_root)], env=env)
    yield url
    stop_processes(process)


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _csrf(url: str) -> str:
    page = httpx.get(url + "/").text
    found = re.search(r'<meta name="csrf" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("LLMAGENTOS_DASHBOARD_TOKEN", None)
    command = [sys.executable, "-m", "llmagentos", "dashboard", str(tmp_path)]
    refused = subprocess.run([*command, "--host", "0.0.0.0"], env=env, capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 2
    assert "host: 0.0.0.0 is not a loopback address" in refused.stderr
    short = subprocess.run([*command, "--host", "0.0.0.0"], capture_output=True, text=True,
                           env={**env, "LLMAGENTOS_DASHBOARD_TOKEN": "short"}, timeout=60,
                           check=False)  # fmt: skip
    assert short.returncode == 2 and "token: must be at least 16 characters" in short.stderr


def test_with_a_token_nothing_is_shown_without_it(guarded_dashboard: str) -> None:
    for request in (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /run?id=maze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /static/plotly.min.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /?token=wrong HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: llmagentos_dashboard=" + TOKEN.encode()
        + b"\r\nConnection: close\r\n\r\n",  # the cookie holds a digest, not the token
    ):  # fmt: skip
        reply = _raw(guarded_dashboard, request)
        assert _status(reply) == 401, reply[:200]
        assert b"maze" not in reply
    assert httpx.get(guarded_dashboard + "/readyz").status_code == 200
    bearer = httpx.get(guarded_dashboard + "/", headers={"authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200 and "maze" in bearer.text
    first = httpx.get(guarded_dashboard + f"/?token={TOKEN}")
    assert first.status_code == 303 and "token" not in first.headers["location"]
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    with httpx.Client(base_url=guarded_dashboard, follow_redirects=True) as browser:
        assert "maze" in browser.get(f"/?token={TOKEN}").text
        assert "maze" in browser.get("/run?id=maze").text  # the cookie carries on


def test_a_decision_needs_this_page_s_form(open_dashboard: str) -> None:
    csrf = _csrf(open_dashboard)
    form = {"csrf": csrf, "id": "maze", "decision": "approve", "key": "k"}
    forged = httpx.post(open_dashboard + "/decide", data={**form, "csrf": "guess"})
    assert forged.status_code == 403 and "stale or forged" in forged.text
    elsewhere = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    cross = httpx.post(open_dashboard + "/decide", data=form, headers=elsewhere)
    assert cross.status_code == 403 and "cross-site" in cross.text
    bad = httpx.post(open_dashboard + "/decide", data={**form, "decision": "delete"})
    assert bad.status_code == 400 and "decision must be approve, refuse or resume" in bad.text
    no_journal = httpx.post(open_dashboard + "/decide", data=form)
    assert no_journal.status_code == 409 and "no durable run here" in no_journal.text
    outside = httpx.post(open_dashboard + "/decide", data={**form, "id": "../../etc"})
    assert outside.status_code == 404 and "not under the runs folder" in outside.text
    huge = httpx.post(open_dashboard + "/decide", data={**form, "note": "x" * 100_000})
    assert huge.status_code == 413


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/run?id=../../etc", 404, "not under the runs folder"),
        ("/run?id=", 404, "no run named"),
        ("/run?id=%00", 404, "no run named"),
        ("/run?id=nowhere", 404, "is not a folder"),
        ("/episode?id=maze&e=abc", 404, "episode must be a whole number"),
        ("/episode?id=maze&e=99999", 404, "episode 99999 is not traced"),
        ("/step?id=maze&e=0&s=-1", 404, "step must be a whole number"),
        ("/step?id=maze&e=0&s=99999", 404, "has steps 0 to"),
        ("/step?id=broken&e=0&s=0", 404, "not traced"),
        ("/static/../app.py", 404, ""),
        ("/gateway", 404, "--gateway URL"),
    ],
)
def test_bad_addresses_are_named_never_a_server_error(open_dashboard, path, status, named) -> None:
    reply = httpx.get(open_dashboard + path)
    assert reply.status_code == status
    assert named in reply.text
    assert reply.headers.get("x-frame-options", "DENY") == "DENY"


def test_broken_and_missing_runs_folders_are_shown(tmp_path: Path, open_dashboard: str) -> None:
    page = httpx.get(open_dashboard + "/").text
    assert "results.json cannot be read" in page and "gone without finishing" in page
    assert httpx.get(open_dashboard + "/run?id=broken").status_code == 200
    assert httpx.get(open_dashboard + "/run?id=nested/died").status_code == 200
    process, url = start_server(["llmagentos", "dashboard", str(tmp_path / "missing")])
    try:
        reply = httpx.get(url + "/")
        assert reply.status_code == 200 and "is not a folder" in reply.text
    finally:
        stop_processes(process)


def test_memory_namespaces_and_sizes_are_shown(tmp_path: Path, runs_root: Path) -> None:
    from llmagentos.memory import MemoryManager

    store = tmp_path / "memory.db"
    with MemoryManager(store, embedder=None) as memory:
        lessons = memory.namespace("acme", "robot", "semantic")
        memory.put(lessons, ["the dock is east", "walls cost a step", "loops waste time"])
        memory.put(memory.namespace("acme", "robot", "episodic"), "episode 1 went well")
    process, url = start_server(["llmagentos", "dashboard", str(runs_root), "--memory", str(store)])
    try:
        page = httpx.get(url + "/").text
    finally:
        stop_processes(process)
    table = page[page.index('<table id="memory">') :]
    assert "acme/robot/semantic" in table and "acme/robot/episodic" in table
    assert re.search(r"acme/robot/semantic</td><td class=\"num\">3<", table)
