"""Tenancy owned by the service: a real ``llmagentos serve`` process, raw HTTP, signed
principals. Whatever a tenant sends (another tenant's id, ``acme:s1``, dot segments,
percent-encodings, look-alikes, over-long ids), it reaches its own sessions only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos._processes import free_port, start_server
from llmagentos.principal import SECRET_ENV, Principal, PrincipalSigner
from tests.service.raw_http import call, visits

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
SECRET = "the secret the gateway and its services share"
SIGNER = PrincipalSigner(SECRET)
ACME = Principal("key-acme", "acme", ("taxi:*",))
EVIL = Principal("key-evil", "evil", ("taxi:*",))


def _serve(*flags: str, secret: str | None = SECRET) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    if secret is not None:
        env[SECRET_ENV] = secret
    return start_server(["llmagentos", "serve", str(TAXI), *flags], env=env)


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    process, url = _serve()
    yield url
    process.terminate()
    process.wait(timeout=15)


def _episode(url: str, who: Principal | None, session: str, steps: int) -> None:
    body = {"session": session, "seed": 0, "max_steps": steps}
    reply = call(url, "POST", "/v1/agent/episode", body, principal=who, signer=SIGNER)
    assert reply.status == 200, reply.body


def _qtable(url: str, who: Principal | None, target: str) -> tuple[int, int | None]:
    reply = call(url, "GET", target, principal=who, signer=SIGNER)
    return reply.status, visits(reply) if reply.status == 200 else None


def test_two_tenants_on_one_session_id_stay_apart(service: str) -> None:
    _episode(service, ACME, "shared", 30)
    assert _qtable(service, ACME, "/v1/sessions/shared/qtable") == (200, 30)
    assert _qtable(service, EVIL, "/v1/sessions/shared/qtable")[0] == 404
    assert _qtable(service, None, "/v1/sessions/shared/qtable")[0] == 404  # anonymous too
    _episode(service, EVIL, "shared", 5)
    assert _qtable(service, EVIL, "/v1/sessions/shared/qtable") == (200, 5)
    assert _qtable(service, ACME, "/v1/sessions/shared/qtable") == (200, 30)
    _episode(service, None, "shared", 7)  # no header: the anonymous tenant's own session
    assert _qtable(service, None, "/v1/sessions/shared/qtable") == (200, 7)
    assert _qtable(service, ACME, "/v1/sessions/shared/qtable") == (200, 30)


def test_nothing_evil_sends_reaches_acmes_session(service: str) -> None:
    _episode(service, ACME, "s1", 20)
    # What the gateway's rewriting made of acme's id, sent by evil in a body whose media
    # type the gateway did not recognise, and as every shape of path.
    step = b'{"session": "acme:s1", "seed": 0, "max_steps": 3}'
    for content_type in ("Application/JSON", "application/json; charset=utf-8", "text/plain"):
        call(service, "POST", "/v1/agent/episode", step, principal=EVIL, signer=SIGNER,
             content_type=content_type)  # fmt: skip
    for target in (
        "/v1/sessions/acme:s1/qtable",
        "/v1/sessions/acme%3As1/qtable",
        "/v1/sessions/acme%3as1/qtable",
        "/v1/sessions/s1/qtable",
        "/v1/sessions/x/../../sessions/acme:s1/qtable",
        "/v1/sessions/x/%2e%2e/%2e%2e/sessions/s1/qtable",
        "/v1/sessions/..%2Fs1/qtable",
        "/v1/sessions/%2e%2e/qtable",
        "/v1/sessions/s1%00/qtable",
        "/v1/sessions/%EF%BD%93%EF%BC%91/qtable",  # fullwidth s and 1
        "/v1/sessions/" + "s" * 129 + "/qtable",
        "/v1//sessions/s1/qtable",
    ):
        status, seen = _qtable(service, EVIL, target)
        assert seen != 20, target  # never acme's Q-table: evil's own "acme:s1" at most
        assert status in (200, 404, 422), (target, status)
        assert status != 200 or "acme" in target, target
        dropped = call(service, "DELETE", target.removesuffix("/qtable"), principal=EVIL,
                       signer=SIGNER).status  # fmt: skip
        assert dropped in (404, 405, 422) or (dropped == 200 and "acme" in target), target
    for session in ("\uff531", "s" * 129, "a/b", "s1\u200b", "", "acme/s1"):
        body = {"session": session, "seed": 0, "max_steps": 3}
        reply = call(service, "POST", "/v1/agent/episode", body, principal=EVIL, signer=SIGNER)
        assert reply.status == 422 and "session" in str(reply.body), session
    assert _qtable(service, ACME, "/v1/sessions/s1/qtable") == (200, 20)


def test_percent_encoded_ids_are_decoded_into_the_callers_namespace(service: str) -> None:
    _episode(service, ACME, "s9", 12)
    assert _qtable(service, ACME, "/v1/sessions/s%39/qtable") == (200, 12)  # its own "s9"
    assert _qtable(service, EVIL, "/v1/sessions/s%39/qtable")[0] == 404
    refused = call(service, "DELETE", "/v1/sessions/s%39", principal=EVIL, signer=SIGNER)
    assert refused.status == 404
    assert _qtable(service, ACME, "/v1/sessions/s9/qtable") == (200, 12)
    assert call(service, "DELETE", "/v1/sessions/s%39", principal=ACME, signer=SIGNER).status == 200
    assert _qtable(service, ACME, "/v1/sessions/s9/qtable")[0] == 404


def test_listing_shows_the_callers_own_sessions_only(service: str) -> None:
    _episode(service, ACME, "listed-a", 2)
    _episode(service, EVIL, "listed-e", 2)
    mine = call(service, "GET", "/v1/sessions", principal=ACME, signer=SIGNER)
    theirs = call(service, "GET", "/v1/sessions", principal=EVIL, signer=SIGNER)
    anonymous = call(service, "GET", "/v1/sessions")
    assert mine.status == theirs.status == anonymous.status == 200
    assert "listed-a" in mine.body["sessions"] and "listed-e" not in mine.body["sessions"]
    assert "listed-e" in theirs.body["sessions"] and "listed-a" not in theirs.body["sessions"]
    assert not {"listed-a", "listed-e"} & set(anonymous.body["sessions"])


def test_forged_expired_and_replayed_headers_are_401(service: str) -> None:
    body = {"session": "h1", "seed": 0, "max_steps": 2}
    ok = call(service, "POST", "/v1/agent/episode", body, principal=ACME, signer=SIGNER)
    assert ok.status == 200
    forger = PrincipalSigner("not the secret the service holds")
    forged = call(service, "POST", "/v1/agent/episode", body, principal=ACME, signer=forger)
    assert forged.status == 401 and forged.body["reason"] == "invalid"
    old = PrincipalSigner(SECRET, clock=lambda: time.time() - 3600)
    expired = call(service, "POST", "/v1/agent/episode", body, principal=ACME, signer=old)
    assert expired.status == 401 and expired.body["reason"] == "expired"
    raw = b'{"session": "h1", "seed": 0, "max_steps": 2}'
    elsewhere = [
        ("POST", "/v1/agent/episode", b'{"session": "h1", "seed": 1, "max_steps": 2}'),
        ("POST", "/v1/agent/reset", raw),
        ("PUT", "/v1/agent/episode", raw),
        ("POST", "/v1/agent/episode?x=1", raw),
    ]
    for signed_for in elsewhere:  # a header lifted from another request
        replayed = call(service, "POST", "/v1/agent/episode", raw, principal=ACME, signer=SIGNER,
                        signed_for=signed_for)  # fmt: skip
        assert replayed.status == 401 and replayed.body["reason"] == "mismatch", signed_for
    # Signed for the decoded form of a path the replica receives encoded.
    encoded = call(service, "GET", "/v1/sessions/h%31/qtable", principal=ACME, signer=SIGNER,
                   signed_for=("GET", "/v1/sessions/h1/qtable", b""))  # fmt: skip
    assert encoded.status == 401 and encoded.body["reason"] == "mismatch"
    garbage = call(service, "GET", "/v1/sessions", headers={"x-llmagentos-principal": "v1.x.y"})
    assert garbage.status == 401 and garbage.body["reason"] == "invalid"
    # A bad header is refused even where none is needed.
    assert call(service, "GET", "/healthz", principal=ACME, signer=forger).status == 401


def test_a_header_reaching_a_service_without_a_secret_is_401() -> None:
    process, url = _serve(secret=None)
    try:
        signed = call(url, "GET", "/v1/sessions", principal=ACME, signer=SIGNER)
        assert signed.status == 401 and "cannot verify" in signed.detail
        assert call(url, "GET", "/v1/sessions").status == 200  # anonymous, as configured
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_require_principal_refuses_unsigned_requests() -> None:
    process, url = _serve("--require-principal")
    try:
        body = {"session": "r1", "seed": 0, "max_steps": 2}
        unsigned = call(url, "POST", "/v1/agent/episode", body)
        assert unsigned.status == 401 and unsigned.body["reason"] == "missing"
        assert call(url, "GET", "/v1/sessions").status == 401
        assert call(url, "GET", "/v1/sessions/r1/qtable").status == 401
        assert call(url, "POST", "/v1/nowhere", body).status == 401  # before routing
        for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert call(url, "GET", open_path).status == 200, open_path
        signed = call(url, "POST", "/v1/agent/episode", body, principal=ACME, signer=SIGNER)
        assert signed.status == 200
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_requiring_a_principal_without_a_secret_fails_before_listening() -> None:
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-m", "llmagentos", "serve", str(TAXI), "--port", str(free_port()),
         "--require-principal"],
        check=False, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and SECRET_ENV in done.stderr


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(service: str) -> None:
    huge = b'{"session": "big", "observation": "' + b"x" * (1 << 20) + b'"}'
    reply = call(service, "POST", "/v1/perception/perceive", huge, principal=ACME, signer=SIGNER)
    assert reply.status == 413 and reply.body["field"] == "max_body_bytes"
    small = call(service, "POST", "/v1/perception/perceive", {"session": "big", "observation": 3},
                 principal=ACME, signer=SIGNER)  # fmt: skip
    assert small.status == 200


def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_replicas_own_address(
    service: str,
) -> None:
    _episode(service, ACME, "slash", 3)
    reply = call(service, "GET", "/v1/sessions/slash/qtable/", principal=ACME, signer=SIGNER)
    assert reply.status == 404 and "location" not in reply.headers
    assert "/v1/sessions/slash/qtable/" in reply.detail
