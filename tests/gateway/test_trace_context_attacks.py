"""Forged, malformed and oversized trace context at a real gateway, raw HTTP.

Whatever a client sends as ``traceparent`` / ``tracestate``, the replica behind the
gateway gets exactly one well-formed ``traceparent`` (the gateway's own span as the
parent) and at most one valid ``tracestate`` of at most 512 characters; the client
gets no 5xx. With telemetry on and off.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.telemetry.store import read_spans
from llmagentos.telemetry.trace_context import clean_tracestate
from tests.gateway.rawhttp import send

pytest.importorskip("starlette", reason="needs llmagentos[serve]")

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
VALID = f"00-{TRACE}-{SPAN}-01"
# Flags: sampled, and OpenTelemetry's spans may set level 2's "random" bit too.
WELL_FORMED = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-0[0-3]")

MALFORMED = [
    "",
    "garbage",
    f"00-{TRACE.upper()}-{SPAN}-01",  # upper case hex
    f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
    f"00-{'0' * 32}-{SPAN}-01",  # the invalid trace id
    f"00-{TRACE}-{'0' * 16}-01",  # the invalid parent id
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE[:-1]}-{SPAN}-01",
    f"00-{TRACE}z-{SPAN}-01",
    f"0g-{TRACE}-{SPAN}-01",
    f"00_{TRACE}_{SPAN}_01",
    f"00-{TRACE}-{SPAN}-01" + "0" * 9000,  # long
    f"00-{TRACE}-{SPAN}-\xe9\xe9",  # not ASCII
    f"01-{TRACE}-{SPAN}-01x",  # a later version's extra fields come after a dash
]


@dataclass(frozen=True)
class Gateway:
    url: str
    spans: Path
    telemetry: bool


@pytest.fixture(scope="module", params=[False, True], ids=["telemetry-off", "telemetry-on"])
def gateway(
    request: pytest.FixtureRequest, echo: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("trace-attacks")
    config = folder / "gateway.toml"
    config.write_text(f'[[services]]\nname = "up"\nreplicas = ["{echo}"]\n')
    spans = folder / "spans.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMAGENTOS_TELEMETRY")}
    if request.param:
        env |= {"LLMAGENTOS_TELEMETRY": "file", "LLMAGENTOS_TELEMETRY_FILE": str(spans)}
    process, url = start_server(["llmagentos", "gateway", str(config)], env=env)
    yield Gateway(url, spans, request.param)
    stop_processes(process)


def _upstream_trace(url: str, headers: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    reply = send(url, "GET", "/up/inspect", headers=headers)
    assert reply.status == 200, (headers, reply.status, reply.body[:300])
    seen = reply.json()["headers"]
    parents = [value for name, value in seen if name.lower() == "traceparent"]
    states = [value for name, value in seen if name.lower() == "tracestate"]
    assert len(parents) == 1 and WELL_FORMED.fullmatch(parents[0]), parents
    assert len(states) <= 1
    if states:
        assert len(states[0]) <= 512 and clean_tracestate(states) == states[0], states
    return parents, states


def test_a_valid_caller_trace_continues_with_the_gateways_span(gateway: Gateway) -> None:
    url = gateway.url
    [parent], [state] = _upstream_trace(
        url, [("traceparent", VALID), ("tracestate", "vendor=abc, other@sys=x y")]
    )
    _, trace_id, span_id, _ = parent.split("-")
    assert trace_id == TRACE and span_id != SPAN  # the same trace, the gateway's own span
    assert state == "vendor=abc,other@sys=x y"


@pytest.mark.parametrize("forged", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_traceparent_starts_a_new_trace_and_drops_tracestate(
    gateway, forged: str
) -> None:
    url = gateway.url
    [parent], states = _upstream_trace(url, [("traceparent", forged), ("tracestate", "a=b")])
    assert TRACE not in parent and states == []


def test_two_traceparents_are_no_trace_at_all(gateway: Gateway) -> None:
    url = gateway.url
    other = f"00-{'1' * 32}-{SPAN}-01"
    [parent], _ = _upstream_trace(url, [("traceparent", VALID), ("traceparent", other)])
    assert TRACE not in parent and "1" * 32 not in parent


def test_a_later_version_is_read_and_sent_on_as_version_00(gateway: Gateway) -> None:
    url = gateway.url
    [parent], _ = _upstream_trace(url, [("traceparent", f"cc-{TRACE}-{SPAN}-01-future")])
    assert parent.startswith(f"00-{TRACE}-")


@pytest.mark.parametrize(
    "state",
    [
        "UPPER=x",  # keys are lower case
        "a=b,a=c",  # a key named twice
        "a",  # no value
        "a=b=c",
        "a=" + "x" * 300,  # a value over 256 characters
        ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
        "a=",  # an empty value
        "a b=c",  # a space in a key
    ],
    ids=range(8),
)
def test_an_invalid_tracestate_is_dropped_whole(gateway: Gateway, state: str) -> None:
    url = gateway.url
    [parent], states = _upstream_trace(url, [("traceparent", VALID), ("tracestate", state)])
    assert parent.split("-")[1] == TRACE and states == []


def test_an_oversized_tracestate_is_cut_to_512_characters(gateway: Gateway) -> None:
    url = gateway.url
    members = [f"k{i}=" + "v" * 40 for i in range(20)] + ["big=" + "w" * 200]
    halves = [("tracestate", ",".join(members[:10])), ("tracestate", ",".join(members[10:]))]
    _, [state] = _upstream_trace(url, [("traceparent", VALID), *halves])  # two headers, one list
    kept = state.split(",")
    assert "big=" + "w" * 200 not in kept  # the long member goes first
    assert kept == members[: len(kept)] and len(kept) >= 10


def test_the_gateway_span_is_the_one_the_replica_is_told_of(gateway: Gateway) -> None:
    [parent], _ = _upstream_trace(gateway.url, [("traceparent", VALID)])
    if not gateway.telemetry:
        return  # nothing exported: the span id is the gateway's all the same (checked above)
    span_id = parent.split("-")[2]
    deadline = time.monotonic() + 20  # the batch processor exports every few seconds
    while time.monotonic() < deadline:
        records = {record["span_id"]: record for record in read_spans(gateway.spans)}
        if span_id in records:
            own = records[span_id]
            assert own["trace_id"] == TRACE and own["parent_id"] == SPAN
            assert own["kind"] == "server"
            return
        time.sleep(0.2)
    pytest.fail(f"the gateway never exported span {span_id}")
