"""Bearer JWTs at the gateway: HS256 with a secret, RS256 with a PEM key and through a
JWKS URL (a real HTTP server on loopback, counting its fetches); the tenant and scopes
come from claims and work exactly like an API key's; every bad token is a 401 that says
why; made-up key ids cost no JWKS fetch each."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

jwt = pytest.importorskip("jwt", reason="needs llmagentos[gateway] (pyjwt)")
pytest.importorskip("starlette", reason="needs llmagentos[gateway]")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from llmagentos.exceptions import ConfigError  # noqa: E402
from llmagentos.gateway import ApiKeyStore, Gateway, ManualClock, ServiceRegistry  # noqa: E402
from llmagentos.gateway.config import load_gateway_config  # noqa: E402
from llmagentos.gateway.jwt_auth import JwtVerifier  # noqa: E402
from llmagentos.gateway.testing import app as echo_app  # noqa: E402
from llmagentos.principal import PRINCIPAL_HEADER, PrincipalSigner  # noqa: E402

SECRET = "a-long-shared-secret-for-hs256-tokens-0123456789"
PRINCIPALS = "the-secret-gateway-and-services-share-0123"


def _token(key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    body = {"sub": "alice", "tenant": "acme", "scope": "echo:*", "aud": "llmagentos",
            "exp": int(time.time()) + 300, **claims}  # fmt: skip
    return str(jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm))


def _client(verifier: JwtVerifier, keys: ApiKeyStore | None = None) -> httpx.AsyncClient:
    registry = ServiceRegistry([{"name": "echo", "replicas": ["http://echo.test"]}])
    gateway = Gateway(
        registry, jwt=verifier, keys=keys, transport=httpx.ASGITransport(app=echo_app),
        principal_secret=PRINCIPALS,
    )  # fmt: skip
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app()), base_url="http://gateway.test"
    )


@pytest.fixture
async def hs256() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(JwtVerifier(secret=SECRET, audience="llmagentos")) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _signed_tenant(reply: httpx.Response) -> str:
    """The tenant of the principal the replica received (checked with the shared secret)."""
    seen = reply.json()
    header = dict(seen["headers"])[PRINCIPAL_HEADER]
    target = seen["raw_path"] + ("?" + seen["query"] if seen["query"] else "")
    principal = PrincipalSigner(PRINCIPALS).verify(
        header, method=seen["method"], target=target, body=seen["body"].encode("latin-1")
    )
    return principal.tenant


async def test_a_valid_token_passes_and_its_tenant_is_signed_for_the_service(hs256) -> None:
    reply = await hs256.post("/echo/inspect", json={"session": "s1"}, headers=_bearer(_token()))
    assert reply.status_code == 200
    assert _signed_tenant(reply) == "acme"  # the token's tenant
    assert reply.json()["body"] == '{"session":"s1"}'  # the body itself untouched
    listed = await hs256.post("/echo/echo", headers=_bearer(_token(scope=["echo:/echo"])))
    assert listed.status_code == 200  # scopes as a list work too


@pytest.mark.parametrize(
    ("claims", "key", "why"),
    [
        ({"exp": int(time.time()) - 3600}, SECRET, "expired"),
        ({}, "another-secret-of-the-same-length-0123456789abc", "Signature"),
        ({"aud": "someone-else"}, SECRET, "Audience"),
        ({"tenant": None}, SECRET, "'tenant'"),
        ({"tenant": "Not A Tenant"}, SECRET, "tenant"),
        ({"scope": ""}, SECRET, "no scopes"),
        ({"exp": None}, SECRET, "exp"),
    ],
)
async def test_bad_tokens_are_401_saying_why(hs256, claims, key, why) -> None:
    reply = await hs256.post("/echo/echo", headers=_bearer(_token(key, **claims)))
    assert reply.status_code == 401 and why in reply.json()["detail"]
    assert reply.headers["www-authenticate"].startswith("Bearer")


async def test_scopes_and_unsigned_tokens(hs256) -> None:
    other = await hs256.post("/echo/echo", headers=_bearer(_token(scope="taxi:*")))
    assert other.status_code == 403 and "echo:/echo" in other.json()["detail"]
    unsigned = jwt.encode({"tenant": "acme", "scope": "*:*", "exp": 9999999999}, None, "none")
    refused = await hs256.post("/echo/echo", headers=_bearer(unsigned))
    assert refused.status_code == 401  # alg "none" is never accepted
    api_key = await hs256.post("/echo/echo", headers=_bearer("lak_0123456789ab_" + "x" * 30))
    assert api_key.status_code == 401 and "not a JWT" in api_key.json()["detail"]


async def test_keys_and_tokens_side_by_side(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    key = keys.create_key("globex", ["echo:*"])
    async with _client(JwtVerifier(secret=SECRET, audience="llmagentos"), keys) as client:
        by_key = await client.post("/echo/inspect", json={"session": "a"}, headers=_bearer(key))
        by_token = await client.post("/echo/inspect", json={"session": "a"},
                                     headers=_bearer(_token()))  # fmt: skip
    assert _signed_tenant(by_key) == "globex"
    assert _signed_tenant(by_token) == "acme"


def _rsa() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem.decode()


class _Provider:
    """An identity provider's JWKS endpoint on loopback: its keys (by kid) and fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.url = ""

    def add_key(self, kid: str) -> Any:
        private, _ = _rsa()
        self.keys[kid] = private
        return private

    def document(self) -> bytes:
        published = []
        for kid, private in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": published}).encode()


@pytest.fixture
def provider() -> Iterator[_Provider]:
    idp = _Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            idp.fetches += 1
            body = idp.document()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idp.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    yield idp
    server.shutdown()
    server.server_close()


@pytest.fixture
def jwks_server(provider: _Provider) -> tuple[Any, str]:
    return provider.add_key("k1"), provider.url


def _rs256(private: Any, kid: str, **claims: Any) -> str:
    body = {"tenant": "acme", "scope": "echo:*", "exp": int(time.time()) + 60, **claims}
    return str(jwt.encode(body, private, "RS256", headers={"kid": kid}))


async def test_made_up_key_ids_cost_no_jwks_fetch_each(provider: _Provider) -> None:
    private = provider.add_key("k1")
    clock = ManualClock()
    verifier = JwtVerifier(jwks_url=provider.url, algorithms=["RS256"], clock=clock)
    async with _client(verifier) as client:
        good = await client.post("/echo/inspect", headers=_bearer(_rs256(private, "k1")))
        assert good.status_code == 200 and provider.fetches == 1
        # A flood of tokens naming keys the provider never published (each token also
        # new, so none is answered from the failure memory).
        replies = [
            await client.post("/echo/inspect", headers=_bearer(_rs256(private, f"forged-{i}")))
            for i in range(15)
        ]
        assert {r.status_code for r in replies} <= {401, 429}
        assert any(r.status_code == 401 and "not in the provider's key set" in r.json()["detail"]
                   for r in replies)  # fmt: skip
        assert provider.fetches == 1  # fetched a moment ago: not again, whatever they name
        # The provider rotates in a new key: found once the refresh interval has passed.
        rotated = provider.add_key("k2")
        early = await client.post("/echo/inspect", headers=_bearer(_rs256(rotated, "k2")))
        assert early.status_code == 401 and provider.fetches == 1
        clock.advance(31)
        late = await client.post("/echo/inspect", headers=_bearer(_rs256(rotated, "k2", sub="b")))
        assert late.status_code == 200 and provider.fetches == 2


async def test_a_provider_that_never_answered_is_503_not_500() -> None:
    from llmagentos._processes import free_port

    url = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    verifier = JwtVerifier(jwks_url=url, algorithms=["RS256"])
    private, _ = _rsa()
    async with _client(verifier) as client:
        replies = [
            await client.post("/echo/inspect", headers=_bearer(_rs256(private, "k1", sub=str(i))))
            for i in range(3)
        ]
    assert [r.status_code for r in replies] == [503] * 3
    assert "could not be fetched" in replies[0].json()["detail"]
    assert verifier.jwks is not None and verifier.jwks.fetches == 1  # not one per request


async def test_rs256_with_a_public_key_and_through_jwks(jwks_server) -> None:
    private, public_pem = _rsa()
    async with _client(JwtVerifier(public_key=public_pem, algorithms=["RS256"])) as client:
        good = await client.post("/echo/echo", headers=_bearer(_token(private, "RS256", aud=None)))
        forged = await client.post("/echo/echo", headers=_bearer(_token(aud=None)))  # HS256
    assert good.status_code == 200 and forged.status_code == 401
    idp_key, url = jwks_server
    signed = jwt.encode(
        {"tenant": "acme", "scope": "echo:*", "exp": int(time.time()) + 60}, idp_key, "RS256",
        headers={"kid": "k1"},
    )  # fmt: skip
    async with _client(JwtVerifier(jwks_url=url, algorithms=["RS256"])) as client:
        via_jwks = await client.post("/echo/echo", headers=_bearer(signed))
        stranger = await client.post(
            "/echo/echo", headers=_bearer(_token(private, "RS256", aud=None))
        )
    assert via_jwks.status_code == 200
    assert stranger.status_code == 401  # a key the provider does not publish


def test_the_config_reads_jwt_and_keeps_secrets_out_of_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway.jwt]\nsecret_env = "TEST_JWT_SECRET"\naudience = "llmagentos"\n')
    monkeypatch.setenv("TEST_JWT_SECRET", SECRET)
    monkeypatch.setenv("LLMAGENTOS_PRINCIPAL_SECRET", PRINCIPALS)
    assert isinstance(load_gateway_config(config).options["jwt"], JwtVerifier)
    cases = {
        '[gateway.jwt]\nsecret = "inline"\n': ("gateway.jwt.secret", "secret_env"),
        '[gateway.jwt]\nsecret_env = "TEST_JWT_UNSET"\n': ("gateway.jwt.secret_env", "empty"),
        '[gateway.jwt]\npublic_key = "missing.pem"\n': ("gateway.jwt.public_key", "missing"),
        '[gateway.jwt]\nsecret_env = "TEST_JWT_SECRET"\nalgorithms = ["none"]\n': (
            "gateway.jwt.algorithms",
            "real algorithms",
        ),
        '[gateway.jwt]\nsecret_env = "TEST_JWT_SECRET"\nalgorithms = ["RS256"]\n': (
            "gateway.jwt.algorithms",
            "HS256",
        ),
        "[gateway.jwt]\naudience = 'x'\n": ("gateway.jwt", "exactly one"),
    }
    for text, (field, words) in cases.items():
        config.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_gateway_config(config)
        assert caught.value.field == field and words in str(caught.value), text
