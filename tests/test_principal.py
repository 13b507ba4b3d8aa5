"""The signed principal: what a service trusts of the gateway's word."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import ConfigError, PrincipalError
from llmagentos.principal import Principal, PrincipalSigner, principal_secret

SECRET = "s" * 32
ACME = Principal("k1", "acme", ("taxi:*",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def signed(signer: PrincipalSigner, **request: object) -> str:
    base = {"method": "POST", "target": "/v1/agent/step", "body": b'{"session":"s1"}'}
    return signer.sign(ACME, **{**base, **request})  # type: ignore[arg-type]


def test_a_signed_principal_verifies_on_its_own_request() -> None:
    signer = PrincipalSigner(SECRET)
    header = signed(signer)
    got = signer.verify(header, method="post", target="/v1/agent/step", body=b'{"session":"s1"}')
    assert got == ACME


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "PUT"), ("target", "/v1/agent/act"), ("target", "/v1/agent/step?x=1"),
     ("body", b'{"session":"s2"}')],
)  # fmt: skip
def test_a_header_is_worthless_on_another_request(field: str, value: object) -> None:
    signer = PrincipalSigner(SECRET)
    request: dict[str, object] = {
        "method": "POST", "target": "/v1/agent/step", "body": b'{"session":"s1"}'
    }  # fmt: skip
    header = signer.sign(ACME, **request)  # type: ignore[arg-type]
    request[field] = value
    with pytest.raises(PrincipalError) as caught:
        signer.verify(header, **request)  # type: ignore[arg-type]
    assert caught.value.reason == "mismatch"


def test_another_secret_or_a_tampered_payload_is_invalid() -> None:
    header = signed(PrincipalSigner(SECRET))
    with pytest.raises(PrincipalError, match="signature") as caught:
        PrincipalSigner("t" * 32).verify(
            header, method="POST", target="/v1/agent/step", body=b'{"session":"s1"}'
        )
    assert caught.value.reason == "invalid"
    version, payload, mark = header.split(".")
    forged = f"{version}.{payload[:-2]}AA.{mark}"
    for bad in [forged, "v1..", "v2.a.b", "junk", "v1.a.!!!", "v1." + "a" * 9000 + ".b"]:
        with pytest.raises(PrincipalError) as caught:
            PrincipalSigner(SECRET).verify(bad, method="POST", target="/", body=b"")
        assert caught.value.reason == "invalid"


def test_missing_and_expired_headers_are_refused() -> None:
    clock = Clock()
    signer = PrincipalSigner(SECRET, ttl=30, skew=2, clock=clock)
    with pytest.raises(PrincipalError) as caught:
        signer.verify(None, method="GET", target="/", body=b"")
    assert caught.value.reason == "missing"
    header = signed(signer)
    clock.now += 31  # inside ttl + skew
    signer.verify(header, method="POST", target="/v1/agent/step", body=b'{"session":"s1"}')
    clock.now += 2
    with pytest.raises(PrincipalError) as caught:
        signer.verify(header, method="POST", target="/v1/agent/step", body=b'{"session":"s1"}')
    assert caught.value.reason == "expired"
    clock.now = 900.0  # issued in the replica's future
    with pytest.raises(PrincipalError) as caught:
        signer.verify(header, method="POST", target="/v1/agent/step", body=b'{"session":"s1"}')
    assert caught.value.reason == "expired"


def test_short_secrets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="principal_secret"):
        PrincipalSigner("short")
    monkeypatch.setenv("LLMAGENTOS_PRINCIPAL_SECRET", "x" * 20)
    assert principal_secret() == b"x" * 20
    monkeypatch.delenv("LLMAGENTOS_PRINCIPAL_SECRET")
    assert principal_secret() is None


def test_scopes_match_service_and_route() -> None:
    assert ACME.can("taxi", "/v1/agent/step")
    assert not ACME.can("maze", "/v1/agent/step")


async def test_run_blocking_is_not_held_up_by_a_full_default_executor() -> None:
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Fill the loop's default executor with calls that hang.
    hung = [loop.run_in_executor(None, release.wait) for _ in range(64)]
    try:
        name = await asyncio.wait_for(
            run_blocking(lambda: threading.current_thread().name), timeout=5
        )
        assert name.startswith("llmagentos-io")
    finally:
        release.set()
        await asyncio.gather(*hung)
