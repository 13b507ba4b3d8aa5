"""The gateway's structured access log: one JSON line per request, written off the
event loop and flushed at shutdown (real gateway and upstream processes)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from llmagentos._processes import free_port, start_server
from llmagentos.gateway.access_log import ACCESS_LOGGER, configure_access_log, plain_sink
from llmagentos.gateway.replies import log_access

pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

ROOT = Path(__file__).resolve().parents[2]


def test_every_request_is_one_json_line(tmp_path: Path) -> None:
    upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n')
    log = tmp_path / "access.jsonl"
    gateway, url = start_server(["llmagentos", "gateway", str(config), "--access-log", str(log)])
    try:
        httpx.post(f"{url}/up/echo?x=1", content=b"hi", headers={"x-request-id": "req-abc"})
        httpx.get(f"{url}/nope/v1/x", headers={"x-request-id": "req-404"})
        for index in range(20):
            httpx.get(f"{url}/up/echo", headers={"x-request-id": f"bulk-{index}"})
        admin = httpx.get(f"{url}/gateway/services", headers={"x-request-id": "req-admin"})
        assert admin.headers["x-request-id"] == "req-admin"
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        gateway.terminate()  # a graceful stop flushes what is still queued
        gateway.wait(timeout=15)
        upstream.terminate()
        upstream.wait(timeout=15)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_id = {line["request_id"]: line for line in lines}
    assert len(lines) == 23 and len(by_id) == 23  # the gateway's own routes too
    first = by_id["req-abc"]
    assert {k: first[k] for k in ("method", "service", "route", "status", "upstream")} == {
        "method": "POST", "service": "up", "route": "/echo", "status": 200,
        "upstream": upstream_url,
    }  # fmt: skip
    assert first["attempts"] == 1 and first["ms"] > 0
    missing = by_id["req-404"]
    assert missing["status"] == 404 and missing["upstream"] == "-"
    assert [line["request_id"] for line in lines[2:22]] == [f"bulk-{i}" for i in range(20)]
    assert by_id["req-admin"]["service"] == "gateway" and by_id["req-admin"]["route"] == "/services"
    assert 'route="/services",service="gateway",status="200",upstream="-"' in metrics


def test_an_unwritable_access_log_fails_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[[services]]\nname = "up"\nreplicas = ["http://127.0.0.1:9"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(free_port()),
         "--access-log", str(tmp_path / "no" / "such" / "dir" / "a.log")],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 2 and "access_log" in done.stderr


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.filters[:] = saved[0], saved[1]
    logger.setLevel(saved[2])
    logger.propagate = saved[3]


def _log_one(request_id: str) -> None:
    log_access("GET", request_id, service="up", route="/echo", upstream="-", status=200,
               seconds=0.0012, attempts=1)  # fmt: skip


def test_the_sink_takes_lines_without_log_records_and_others_still_get_records(
    tmp_path: Path, access_logger: logging.Logger
) -> None:
    sink = configure_access_log(str(tmp_path / "access.jsonl"))
    assert sink is not None and plain_sink(access_logger) is sink
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *a, **k: made.append(factory(*a, **k)) or made[-1])
    try:
        _log_one("fast")
        assert made == []  # no record: the line went straight to the sink
        seen: list[str] = []
        other = logging.Handler()
        other.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
        access_logger.addHandler(other)  # someone else reads the log too: records again
        assert plain_sink(access_logger) is None
        _log_one("both")
        access_logger.removeHandler(other)
        access_logger.addFilter(lambda record: "hidden" not in record.getMessage())
        assert plain_sink(access_logger) is None  # a filter needs records
        _log_one("hidden")
    finally:
        logging.setLogRecordFactory(factory)
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["fast", "both"]
    assert lines[0] == {"request_id": "fast", "method": "GET", "service": "up", "route": "/echo",
                        "upstream": "-", "status": 200, "ms": 1.2, "attempts": 1}  # fmt: skip
    assert [json.loads(text)["request_id"] for text in seen] == ["both"]


def test_a_sink_given_another_format_gets_records(
    tmp_path: Path, access_logger: logging.Logger
) -> None:
    sink = configure_access_log(str(tmp_path / "access.jsonl"))
    assert sink is not None
    sink.setFormatter(logging.Formatter("access %(message)s"))
    assert plain_sink(access_logger) is None
    _log_one("formatted")
    sink.close()
    assert (tmp_path / "access.jsonl").read_text().startswith('access {"request_id": "formatted"')


@pytest.mark.parametrize(
    "route", ["/echo", '/a"b\\c', "/\u00e9\u2028\x00\x1f", "/\ud800", "/" + "x" * 300]
)
def test_an_access_line_is_what_json_dumps_writes(access_logger, route):
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    try:
        log_access(
            "POST", 'id"1', service="up", route=route, upstream="http://127.0.0.1:1",
            status=HTTPStatus.OK, seconds=0.0012345, attempts=2,
        )  # fmt: skip
    finally:
        access_logger.removeHandler(handler)
    expected = {
        "request_id": 'id"1', "method": "POST", "service": "up", "route": route,
        "upstream": "http://127.0.0.1:1", "status": 200, "ms": 1.23, "attempts": 2,
    }  # fmt: skip
    assert seen == [json.dumps(expected)]
