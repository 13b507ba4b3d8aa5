"""The gateway's trust boundary, attacked through real processes with raw HTTP.

A real gateway process with API keys sits in front of a header-echoing replica (it
answers with the raw path, query, headers and body it received) and a real Taxi
module service. Requests are written byte for byte (``rawhttp``), so no client
normalises the path or the header names on the attacker's behalf. What must hold:

- every target the gateway could read differently from the replica is refused with a
  4xx and never reaches a replica (the replica counts every request it gets);
- what is forwarded is the exact target and body, with the caller's principal signed
  for exactly them, and without the caller's credentials or any forged principal;
- with the service's side of the contract (``serve --require-principal``), a tenant
  reaches only its own sessions, whatever it writes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmagentos._processes import free_port, start_server, stop_processes
from llmagentos.exceptions import PrincipalError
from llmagentos.gateway import ApiKeyStore
from llmagentos.principal import PRINCIPAL_HEADER, PrincipalSigner
from tests.gateway.rawhttp import RawReply, send

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
SECRET = "trust-boundary-test-principal-secret-01"
ENV = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("trust")
    keys = ApiKeyStore(home / "keys.db", scrypt_n=2**10)
    key = {t: keys.create_key(t, ["echo:*", "taxi:*"]) for t in ("acme", "evil")}
    keys.close()
    started: list[subprocess.Popen[bytes]] = []
    try:
        echo, echo_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
        started.append(echo)
        taxi, taxi_url = start_server(["llmagentos", "serve", str(TAXI)], env=ENV)
        started.append(taxi)
        config = home / "gateway.toml"
        config.write_text(
            '[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
            f'[[services]]\nname = "echo"\nreplicas = ["{echo_url}"]\n\n'
            f'[[services]]\nname = "taxi"\nreplicas = ["{taxi_url}"]\n'
        )
        gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
        started.append(gateway)
        yield {"gateway": url, "echo": echo_url, "key": key, "home": str(home)}
    finally:
        stop_processes(*reversed(started))


def _reached(echo_url: str) -> int:
    """Requests the echo replica has received so far (probes not counted)."""
    return int(httpx.get(f"{echo_url}/calls").json()["requests"])


def _bearer(key: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key}")


# Targets the gateway must refuse itself: 4xx JSON naming the problem, nothing forwarded.
REFUSED = [
    "/echo/inspect/sessions/x/../../sessions/acme:s1/qtable",
    "/taxi/v1/sessions/x/../../sessions/acme:s1/qtable",
    "/echo/inspect/a/./b",
    "/echo/inspect/a/..",
    "/echo/inspect/%2e%2e/b",
    "/echo/inspect/%2E%2E/b",
    "/echo/inspect/.%2e/b",
    "/echo/inspect/%2e./b",
    "/echo/inspect/%2E/b",
    "/echo/inspect/a%2fb",
    "/echo/inspect/a%2Fb",
    "/echo/inspect/a\\b",
    "/echo/inspect/a%5cb",
    "/echo/inspect/a%5Cb",
    "/echo//inspect",
    "/echo/inspect//b",
    "/echo/inspect/a%00b",
    "/echo/inspect/a%0d%0aX-Injected:%201",
    "/echo/inspect/a%7fb",
    "/echo/inspect/%252e%252e/b",
    "/echo/inspect/%25%32%65%25%32%65/b",
    "/echo/inspect/%ef%bc%8e%ef%bc%8e/b",
    "/echo/inspect/a%ef%bc%8fb",
    "/echo/inspect/a%e2%80%aeb",
    "/echo/inspect/%c0%ae%c0%ae/b",
    "/echo/inspect/%zz",
    "/echo/inspect/a%2",
    "/echo/inspect/" + "s" * 129,
    "/echo/inspect/x?" + "q" * 5000,
    "/gateway%2fservices",
    "/echo%2finspect",
]


@pytest.mark.parametrize("target", REFUSED, ids=[t[:60] for t in REFUSED])
def test_targets_it_could_misread_are_refused_and_never_forwarded(
    stack: dict[str, Any], target: str
) -> None:
    before = _reached(stack["echo"])
    reply = send(stack["gateway"], "GET", target, headers=[_bearer(stack["key"]["evil"])])
    assert reply.status in (400, 414), (target, reply.status, reply.body[:200])
    refusal = reply.json()
    assert refusal["detail"] and refusal["field"] in ("path", "query")
    assert _reached(stack["echo"]) == before, "a refused request reached the replica"


@pytest.mark.parametrize(
    "target",
    ["/echo/inspect/a b", "/echo/inspect/\xe9", "/echo/inspect/a\tb", "*"],
)  # fmt: skip
def test_malformed_request_lines_are_4xx_whoever_refuses_them(
    stack: dict[str, Any], target: str
) -> None:
    before = _reached(stack["echo"])
    reply = send(stack["gateway"], "GET", target, headers=[_bearer(stack["key"]["evil"])])
    assert 400 <= reply.status < 500, (target, reply.status)
    assert _reached(stack["echo"]) == before


def _principal(
    seen: dict[str, Any], *, target: str | None = None, body: bytes | None = None
) -> Any:
    """The principal the replica got, verified as the service does: against the raw
    target and the body it received (or against others, to show they do not match)."""
    headers = dict(seen["headers"])
    received = seen["raw_path"] + ("?" + seen["query"] if seen["query"] else "")
    return PrincipalSigner(SECRET).verify(
        headers.get(PRINCIPAL_HEADER),
        method=seen["method"],
        target=received if target is None else target,
        body=seen["body"].encode("latin-1") if body is None else body,
    )


def test_any_casing_of_a_json_type_is_read_and_the_body_forwarded_untouched(
    stack: dict[str, Any],
) -> None:
    evil = stack["key"]["evil"]
    body = b'{"session": "acme:s1", "action": 1}'
    for content_type in ("Application/JSON", "APPLICATION/JSON; Charset=UTF-8",
                         "application/vnd.llmagentos+JSON"):  # fmt: skip
        reply = send(
            stack["gateway"], "POST", "/echo/inspect/v1/agent/step?x=%2F",
            headers=[_bearer(evil), ("Content-Type", content_type)], body=body,
        )  # fmt: skip
        assert reply.status == 200, reply.body
        seen = reply.json()
        assert seen["body"].encode() == body  # no session rewritten: the service scopes it
        assert (seen["raw_path"], seen["query"]) == ("/inspect/v1/agent/step", "x=%2F")
        principal = _principal(seen)
        assert (principal.tenant, principal.key_id) == ("evil", evil.split("_")[1])
        # Signed for exactly this request: no other target or body verifies.
        for other in ({"target": "/inspect/v1/agent/step?x=/"}, {"body": body + b" "}):
            with pytest.raises(PrincipalError) as caught:
                _principal(seen, **other)
            assert caught.value.reason == "mismatch"
        # And a JSON-typed body that is not JSON, in that casing, never leaves.
        before = _reached(stack["echo"])
        broken = send(
            stack["gateway"], "POST", "/echo/inspect/v1/agent/step",
            headers=[_bearer(evil), ("Content-Type", content_type)], body=b'{"session": "a',
        )  # fmt: skip
        assert broken.status == 400 and broken.json()["field"] == "body"
        assert _reached(stack["echo"]) == before


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        ([("Content-Type", "application/json")], b'{"session": "a", "session": "acme:s1"}',
         "body"),
        ([("Content-Type", "application/json")], b'{"session": "' + b"s" * 129 + b'"}',
         "body.session"),
        ([], b'{"session": "' + b"s" * 129 + b'"}', "body.session"),  # no type: still read
        ([("Content-Type", "text/plain")], b'{"session": "a", "session": "b"}', "body"),
        ([("Content-Type", "application/json"), ("Content-Type", "text/plain")], b"{}",
         "content-type"),
        ([("Content-Type", "application/json"), ("Content-Encoding", "gzip")], b"{}",
         "content-encoding"),
        ([("Content-Type", "application/json")], b"[" * 100_000, "body"),
    ],
)  # fmt: skip
def test_bodies_it_cannot_attribute_are_refused(
    stack: dict[str, Any], headers: list[tuple[str, str]], body: bytes, field: str
) -> None:
    before = _reached(stack["echo"])
    reply = send(
        stack["gateway"], "POST", "/echo/inspect",
        headers=[_bearer(stack["key"]["evil"]), *headers], body=body,
    )  # fmt: skip
    assert 400 <= reply.status < 500 and reply.json()["field"] == field, reply.body[:200]
    assert _reached(stack["echo"]) == before


def test_percent_encoded_ids_are_forwarded_as_sent_and_signed_so(stack: dict[str, Any]) -> None:
    reply = send(
        stack["gateway"], "GET", "/echo/inspect/v1/sessions/acme%3As1/qtable",
        headers=[_bearer(stack["key"]["evil"])],
    )  # fmt: skip
    seen = reply.json()
    assert seen["raw_path"] == "/inspect/v1/sessions/acme%3As1/qtable"  # the replica decodes it
    assert _principal(seen).tenant == "evil"  # ...and scopes what it decodes by this tenant


def test_a_reply_carries_the_gateways_own_date_and_server_once(stack: dict[str, Any]) -> None:
    host, port = stack["gateway"].removeprefix("http://").split(":")
    request = (
        "GET /echo/inspect/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\n"
        f"Authorization: Bearer {stack['key']['evil']}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request.encode())
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        names = [name.lower() for name, _ in reply.getheaders()]
        reply.read()
    assert reply.status == 200
    assert names.count("date") == 1 and names.count("server") == 1, names


def test_credentials_and_forged_principals_never_reach_a_replica(stack: dict[str, Any]) -> None:
    evil = stack["key"]["evil"]
    forged = PrincipalSigner("not-the-gateways-secret-at-all").sign(
        _acme(), method="GET", target="/inspect", body=b""
    )
    sent = [
        ("AUTHORIZATION", f"Bearer {evil}"),
        ("Cookie", "session=acme"),
        ("COOKIE", "other=1"),
        ("Proxy-Authorization", "Basic YTpi"),
        ("X-LLMAgentOS-Principal", forged),
        ("x_llmagentos_principal", forged),
        ("X-Other", "kept"),
    ]
    reply = send(stack["gateway"], "GET", "/echo/inspect", headers=sent)
    assert reply.status == 200
    seen = reply.json()
    names = [name.lower().replace("_", "-") for name, _ in seen["headers"]]
    for secret in ("authorization", "cookie", "proxy-authorization", "x-api-key"):
        assert secret not in names
    assert names.count(PRINCIPAL_HEADER) == 1  # the gateway's own, not the forged ones
    assert _principal(seen).tenant == "evil"
    assert ("x-other", "kept") in [tuple(pair) for pair in seen["headers"]]
    # An API key in X-API-Key authenticates too, and stays at the gateway as well.
    by_header = send(stack["gateway"], "GET", "/echo/inspect", headers=[("X-Api-Key", evil)])
    assert by_header.status == 200
    assert "x-api-key" not in [n.lower() for n, _ in by_header.json()["headers"]]
    # Two credentials at once: which one counts would be a guess.
    both = send(stack["gateway"], "GET", "/echo/inspect",
                headers=[_bearer(evil), ("X-API-Key", stack["key"]["acme"])])  # fmt: skip
    assert both.status == 400


def test_header_bytes_reach_the_replica_as_sent_or_not_at_all(stack: dict[str, Any]) -> None:
    bearer = _bearer(stack["key"]["evil"])
    plain = send(stack["gateway"], "GET", "/echo/inspect", headers=[bearer, ("X-Plain", "a b\t~")])
    assert plain.status == 200
    assert ["x-plain", "a b\t~"] in plain.json()["headers"]  # byte for byte
    # A byte 0x80-0xFF (obs-text) reached the replica re-encoded as UTF-8 (0xE9 as 0xC3
    # 0xA9): the hop cannot send it as it came, so it is refused, naming the header.
    before = _reached(stack["echo"])
    for value in ("caf\xe9", "caf\xc3\xa9", "\xff"):  # Latin-1, UTF-8, neither
        reply = send(stack["gateway"], "GET", "/echo/inspect", headers=[bearer, ("X-Name", value)])
        assert reply.status == 400, (value, reply.body)
        assert reply.json()["field"] == "x-name"
        assert "outside ASCII" in reply.json()["detail"]
    assert _reached(stack["echo"]) == before
    # The gateway writes its own trace context: a caller's non-ASCII one is replaced.
    traced = send(
        stack["gateway"], "GET", "/echo/inspect",
        headers=[bearer, ("traceparent", "00-\xe9"), ("tracestate", "a=\xe9")],
    )  # fmt: skip
    assert traced.status == 200
    sent = {k: v for k, v in traced.json()["headers"] if k.startswith("trace")}
    assert sent["traceparent"].isascii() and "tracestate" not in sent


def _acme() -> Any:
    from llmagentos.principal import Principal

    return Principal("forged", "acme", ("*:*",))


def test_without_auth_no_principal_is_sent_and_credentials_still_stay(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "open.toml"
    config.write_text(f'[gateway]\nhealth_interval = 0\n\n[[services]]\nname = "echo"\n'
                      f'replicas = ["{stack["echo"]}"]\n')  # fmt: skip
    gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    try:
        reply = send(url, "GET", "/echo/inspect", headers=[
            ("Authorization", "Bearer whatever"), ("Cookie", "a=1"), ("X-API-Key", "k"),
            ("Proxy-Authorization", "Basic YTpi"), (PRINCIPAL_HEADER, "v1.forged.forged"),
        ])  # fmt: skip
    finally:
        stop_processes(gateway)
    assert reply.status == 200
    names = {name.lower() for name, _ in reply.json()["headers"]}
    assert not names & {"authorization", "cookie", "x-api-key", "proxy-authorization",
                        PRINCIPAL_HEADER}  # fmt: skip


def test_a_replicas_cookie_goes_to_its_caller_and_never_out_with_another_request(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """A replica named by host (cookies are kept for names, not addresses): the one
    caller it set a cookie for gets it, and no later request carries it to a replica."""
    named = stack["echo"].replace("127.0.0.1", "localhost")
    config = tmp_path / "named.toml"
    config.write_text(f'[gateway]\nhealth_interval = 0\n\n[[services]]\nname = "echo"\n'
                      f'replicas = ["{named}"]\n')  # fmt: skip
    gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    try:
        acme = httpx.get(f"{url}/echo/gzip")  # the replica sets a=1 and b=2
        evil = [send(url, "GET", "/echo/inspect", headers=[]) for _ in range(3)]
    finally:
        stop_processes(gateway)
    assert acme.headers.get_list("set-cookie") == ["a=1", "b=2"]
    for reply in evil:
        assert reply.status == 200
        seen = {name.lower(): value for name, value in reply.json()["headers"]}
        assert "cookie" not in seen, seen


def test_trailers_sent_after_admission_never_reach_a_replica(stack: dict[str, Any]) -> None:
    """A chunked body's trailers arrive after the headers were admitted: they are not
    headers the replica gets (a second Content-Type, a Host, anything)."""
    key = stack["key"]["acme"]
    host, port = stack["gateway"].removeprefix("http://").split(":")
    before = _reached(stack["echo"])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /echo/inspect HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n"
        )
        time.sleep(0.3)  # admitted, and reading the body
        raw.sendall(b"0\r\nContent-Type: application/json\r\nX-Evil: smuggled\r\n"
                    b"Host: evil.example\r\n\r\n")  # fmt: skip
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    if status == 200:
        seen = json.loads(answer.split(b"\r\n\r\n", 1)[1])["headers"]
        names = [name.lower() for name, _ in seen]
        assert "x-evil" not in names and names.count("content-type") == 1, seen
        assert dict(seen)["host"] != "evil.example"
    else:  # refused whole (the trailers read as repeated headers): nothing forwarded
        assert 400 <= status < 500 and _reached(stack["echo"]) == before


def test_a_head_too_large_is_refused_before_anything_reads_it(stack: dict[str, Any]) -> None:
    """httptools takes any size of header: the gateway's protocol answers 431 instead."""
    host, port = stack["gateway"].removeprefix("http://").split(":")
    before = _reached(stack["echo"])
    head = b"GET /echo/inspect HTTP/1.1\r\nHost: h\r\nX-Big: " + b"x" * (1 << 20)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            raw.sendall(head)  # (refused and closed while the head was still going out)
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert _reached(stack["echo"]) == before


def test_auth_without_a_principal_secret_fails_before_listening(tmp_path: Path) -> None:
    ApiKeyStore(tmp_path / "keys.db").close()
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nkeys = "keys.db"\n')
    env = {k: v for k, v in ENV.items() if k != "LLMAGENTOS_PRINCIPAL_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(free_port())],
        check=False, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "gateway.principal_secret_env" in done.stderr
    short = {**env, "LLMAGENTOS_PRINCIPAL_SECRET": "short"}
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "gateway", str(config), "--port", str(free_port())],
        check=False, capture_output=True, text=True, timeout=60, env=short,
    )  # fmt: skip
    assert done.returncode == 2 and "16 bytes" in done.stderr


def test_tenants_reach_only_their_own_sessions_end_to_end(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    acme, evil = (keys.create_key(t, ["taxi:*"]) for t in ("acme", "evil"))
    keys.close()
    taxi, taxi_url = start_server(
        ["llmagentos", "serve", str(TAXI), "--require-principal"], env=ENV
    )
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
                      f'[[services]]\nname = "taxi"\nreplicas = ["{taxi_url}"]\n')  # fmt: skip
    try:
        gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    except BaseException:
        stop_processes(taxi)
        raise

    def visits(key: str, target: str) -> RawReply:
        return send(url, "GET", target, headers=[_bearer(key)])

    try:
        episode = json.dumps({"session": "s1", "seed": 0, "max_steps": 5}).encode()
        ran = send(url, "POST", "/taxi/v1/agent/episode", body=episode,
                   headers=[_bearer(acme), ("Content-Type", "application/json")])  # fmt: skip
        assert ran.status == 200
        mine = visits(acme, "/taxi/v1/sessions/s1/qtable")
        assert mine.status == 200 and sum(map(sum, mine.json()["visits"])) == 5
        for target in (
            "/taxi/v1/sessions/s1/qtable",
            "/taxi/v1/sessions/acme:s1/qtable",
            "/taxi/v1/sessions/acme%3As1/qtable",
            "/taxi/v1/sessions/acme%3as1/qtable",
        ):
            assert visits(evil, target).status == 404, target  # fmt: skip
        # evil steps "acme:s1" with a body the old gateway did not rewrite: its own session.
        step = json.dumps({"session": "acme:s1", "seed": 0, "max_steps": 7}).encode()
        send(url, "POST", "/taxi/v1/agent/episode", body=step,
             headers=[_bearer(evil), ("Content-Type", "Application/JSON")])  # fmt: skip
        again = visits(acme, "/taxi/v1/sessions/s1/qtable")
        assert sum(map(sum, again.json()["visits"])) == 5  # acme's state untouched
        direct = send(taxi_url, "GET", "/v1/sessions/s1/qtable")  # around the gateway
        assert direct.status == 401
    finally:
        stop_processes(gateway, taxi)


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(data)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 4\r\nContent-Length: 40\r\n",
        b"Content-Length: 4, 40\r\n",
        b"Content-Length: +4\r\n",
    ],
    ids=["length-and-chunked", "two-lengths", "a-list-of-lengths", "a-signed-length"],
)
def test_a_request_smuggled_behind_an_ambiguous_length_never_reaches_a_replica(
    stack: dict[str, Any], framing: bytes
) -> None:
    """Framing that two parsers could read two ways is refused outright (the whole
    request, and the one hidden in its body, never forwarded)."""
    key = stack["key"]["acme"]
    before = _reached(stack["echo"])
    hidden = f"GET /echo/inspect HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {key}\r\n\r\n"
    head = f"POST /echo/echo HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {key}\r\n".encode()
    body = b"0\r\n\r\n" + hidden.encode()
    answer = _raw(stack["gateway"], head + framing + b"Connection: close\r\n\r\n" + body)
    statuses = [
        int(line.split(b" ")[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")
    ]
    assert statuses and all(400 <= s < 500 for s in statuses), answer[:300]
    assert _reached(stack["echo"]) == before


def test_a_body_holding_a_request_is_forwarded_as_a_body(stack: dict[str, Any]) -> None:
    key = stack["key"]["acme"]
    inner = b"GET /echo/inspect HTTP/1.1\r\nHost: h\r\n\r\n"
    answer = _raw(stack["gateway"],
                  b"POST /echo/inspect HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
                  + f"Authorization: Bearer {key}\r\nContent-Length: {len(inner)}\r\n".encode()
                  + b"Connection: close\r\n\r\n" + inner)  # fmt: skip
    assert answer.count(b"HTTP/1.1 ") == 1  # one request in, one reply out
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["body"] == inner.decode()


def test_a_key_revoked_after_it_was_cached_is_refused_at_once(stack: dict[str, Any]) -> None:
    """The remembered check runs in the gateway's loop now: it must still read the key
    file each time, so a revocation from another process counts on the next request."""
    home = Path(stack["home"])
    keys = ApiKeyStore(home / "keys.db", scrypt_n=2**10)
    key = keys.create_key("acme", ["echo:*"])
    try:
        url = f"{stack['gateway']}/echo/echo"
        for _ in range(3):  # verified once, then remembered
            assert httpx.post(url, content=b"x", headers=dict([_bearer(key)])).status_code == 200
        assert keys.revoke(key.split("_")[1])
        refused = httpx.post(url, content=b"x", headers=dict([_bearer(key)]))
        assert refused.status_code == 401 and "revoked" in refused.text
    finally:
        keys.close()
