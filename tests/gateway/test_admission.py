"""API keys, scopes, signed principals and rate limits at the gateway (in-process ASGI,
real keys); the same through real processes is in test_trust_boundary.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

from llmagentos.build import build_agent
from llmagentos.cli.main import main
from llmagentos.config import load_config
from llmagentos.gateway import ApiKeyStore, Gateway, ServiceRegistry, TokenBucket
from llmagentos.gateway.testing import app as echo_app
from llmagentos.principal import PRINCIPAL_HEADER, PrincipalSigner
from llmagentos.service import service_app

SECRET = "a-principal-secret-for-the-tests-0123456789"

TAXI = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"


class _Router(httpx.AsyncBaseTransport):
    """Upstreams by host: the echo app and a Taxi module service, both in process."""

    def __init__(self) -> None:
        service = service_app(lambda: build_agent(load_config(TAXI)))
        self.apps = {
            "echo.test": httpx.ASGITransport(app=echo_app),
            "taxi.test": httpx.ASGITransport(app=service),
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


@pytest.fixture
def setup(tmp_path: Path):
    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    acme = keys.create_key("acme", ["echo:*", "taxi:*"])
    globex = keys.create_key("globex", ["taxi:*"])
    admin = keys.create_key(None, admin=True)
    everything = keys.create_key("ops", ["*:*"])
    registry = ServiceRegistry([
        {"name": "echo", "replicas": ["http://echo.test"]},
        {"name": "taxi", "replicas": ["http://taxi.test"]},
    ])  # fmt: skip
    gateway = Gateway(
        registry, keys=keys, limiter=TokenBucket(0.5, 5), transport=_Router(),
        principal_secret=SECRET,
    )  # fmt: skip
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app()),
                               base_url="http://gateway.test")  # fmt: skip
    keyring = {"acme": acme, "globex": globex, "admin": admin, "everything": everything}
    return client, keys, keyring


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_missing_wrong_revoked_and_unscoped_keys_are_refused(setup) -> None:
    client, keys, key = setup
    missing = await client.post("/echo/echo", content=b"x")
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    wrong = await client.post("/echo/echo", headers=_auth(key["acme"][:-4] + "abcd"))
    assert wrong.status_code == 401
    garbage = await client.post("/echo/echo", headers=_auth("not-a-key"))
    assert garbage.status_code == 401
    scope = await client.post("/echo/echo", headers=_auth(key["globex"]))
    assert scope.status_code == 403 and "echo" in scope.json()["detail"]
    ok = await client.post("/echo/echo", headers=_auth(key["acme"]))
    assert ok.status_code == 200
    keys.revoke(key["acme"].split("_")[1])
    revoked = await client.post("/echo/echo", headers=_auth(key["acme"]))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    # The admin routes take only an admin key; no service scope opens them, '*:*' included.
    assert (await client.get("/gateway/services", headers=_auth(key["globex"]))).status_code == 403
    star = await client.get("/gateway/services", headers=_auth(key["everything"]))
    assert star.status_code == 403 and "not an admin key" in star.json()["detail"]
    listed = await client.get("/gateway/services", headers=_auth(key["admin"]))
    assert listed.status_code == 200
    as_service = await client.post("/echo/echo", headers=_auth(key["admin"]))
    assert as_service.status_code == 403 and "admin key" in as_service.json()["detail"]


async def test_bodies_pass_unchanged_with_the_callers_principal_signed_for_them(setup) -> None:
    client, _, key = setup
    body = b'{"session": "acme:s1", "observation": 1}'
    seen = (
        await client.post(
            "/echo/inspect/v1/sessions/a%3Ab?x=1", content=body,
            headers={**_auth(key["acme"]),
                     "content-type": "Application/JSON; charset=UTF-8"},
        )
    ).json()  # fmt: skip
    assert seen["body"] == body.decode()  # the gateway rewrites no session
    headers = dict(seen["headers"])
    assert "authorization" not in headers  # the caller's credential stays at the gateway
    target = seen["raw_path"] + "?" + seen["query"]
    assert target == "/inspect/v1/sessions/a%3Ab?x=1"  # still encoded, as sent
    principal = PrincipalSigner(SECRET).verify(
        headers[PRINCIPAL_HEADER], method="POST", target=target, body=body
    )
    assert (principal.tenant, principal.key_id) == ("acme", key["acme"].split("_")[1])


async def test_an_over_long_or_ambiguous_session_is_refused_by_the_gateway(setup) -> None:
    client, _, key = setup
    long = await client.post(
        "/taxi/v1/agent/episode", json={"session": "s" * 129, "seed": 0}, headers=_auth(key["acme"])
    )
    assert long.status_code == 400 and long.json()["field"] == "body.session"
    twice = await client.post(
        "/taxi/v1/agent/episode", content=b'{"session": "s1", "session": "acme:s1"}',
        headers={**_auth(key["acme"]), "content-type": "application/json"},
    )  # fmt: skip
    assert twice.status_code == 400 and "repeated" in twice.json()["detail"]


async def test_each_key_has_its_own_token_bucket(setup) -> None:
    client, _, key = setup
    statuses = [
        (await client.post("/echo/echo", headers=_auth(key["acme"]))).status_code for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    limited = await client.post("/echo/echo", headers=_auth(key["acme"]))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = await client.post("/taxi/healthz", headers=_auth(key["globex"]))
    assert other.status_code != 429  # globex's bucket is its own


def test_keys_command_creates_lists_and_revokes(tmp_path: Path, capsys) -> None:
    file = str(tmp_path / "k.db")
    assert main(["keys", "create", "--tenant", "acme", "--scope", "taxi:*", "--file", file]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("lak_")
    assert main(["keys", "list", "--file", file]) == 0
    listing = capsys.readouterr().out
    secret = key.split("_", 2)[2]  # the secret itself may contain "_"
    assert "acme" in listing and secret not in listing  # the secret is never shown
    assert main(["keys", "revoke", key.split("_")[1], "--file", file]) == 0
    assert main(["keys", "revoke", "nope", "--file", file]) == 2
    capsys.readouterr()
    assert main(["keys", "create", "--admin", "--file", file]) == 0
    admin = capsys.readouterr().out.strip()
    assert ApiKeyStore(file).authenticate_admin(admin) == admin.split("_")[1]
    assert main(["keys", "list", "--file", file]) == 0
    assert "(admin key)" in capsys.readouterr().out
    assert main(["keys", "create", "--file", file]) == 2  # a service key needs a tenant
    assert "--tenant" in capsys.readouterr().err
    assert main(["keys", "create", "--admin", "--tenant", "acme", "--file", file]) == 2


def test_the_config_builds_keys_and_limits_and_names_bad_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmagentos.exceptions import ConfigError
    from llmagentos.gateway.config import load_gateway_config

    ApiKeyStore(tmp_path / "keys.db").close()
    good = tmp_path / "good.toml"
    good.write_text('[gateway]\nkeys = "keys.db"\nrate_per_second = 10\nburst = 20\n')
    monkeypatch.delenv("LLMAGENTOS_PRINCIPAL_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:  # auth without a secret: refused
        load_gateway_config(good)
    assert caught.value.field == "gateway.principal_secret_env"
    monkeypatch.setenv("LLMAGENTOS_PRINCIPAL_SECRET", SECRET)
    loaded = load_gateway_config(good)
    assert isinstance(loaded.options["keys"], ApiKeyStore)
    assert isinstance(loaded.options["limiter"], TokenBucket)
    assert loaded.options["principal_secret"] == SECRET.encode()
    cases = {
        '[gateway]\nkeys = "missing.db"\n': "gateway.keys",
        "[gateway]\nrate_per_second = -1\n": "gateway.rate_per_second",
        "[gateway]\nburst = 5\n": "gateway.rate_per_second",
        '[gateway]\nrate_per_second = 1\nredis_url = "http://x"\n': "gateway.redis_url",
        "[gateway]\nretries = 1.5\n": "gateway.retries",
        "[gateway]\ncolour = 1\n": "gateway.colour",
        '[gateway]\nbalancing = "random"\n': "gateway.balancing",
        '[[services]]\nname = "x"\nroute_timeouts = { "slow" = 1 }\n': (
            "services[0].route_timeouts.slow"
        ),
        '[gateway]\nkeys = "keys.db"\nprincipal_secret_env = "UNSET_SECRET_VAR"\n': (
            "gateway.principal_secret_env"
        ),
        '[gateway]\nforward_unsigned = "yes"\n': "gateway.forward_unsigned",
        '[gateway]\nrate_limit_failure = "maybe"\n': "gateway.rate_limit_failure",
        '[gateway]\nreplica_networks = ["10.0.0.0/33"]\n': "gateway.replica_networks[0]",
        "[gateway]\nmax_segment_chars = 0\n": "gateway.max_segment_chars",
        "[gateway]\nauth_address_rate = -1\n": "gateway.auth_address_rate",
        '[gateway]\napi_key_header = "x key"\n': "gateway.api_key_header",
        '[[services]]\nname = "x"\nreplicas = ["http://10.1.2.3:80"]\n': (
            "services[0].replicas[0]"
        ),
        '[[services]]\nname = "x"\nreplicas = ["http://u:p@127.0.0.1:80"]\n': (
            "services[0].replicas[0]"
        ),
        '[[services]]\nname = "x"\nreplicas = ["http://127.0.0.1:80/a/../b"]\n': (
            "services[0].replicas[0]"
        ),
    }
    for text, field in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_gateway_config(bad)
        assert caught.value.field == field, text
    # Remote replicas: allowed once the operator widens the ranges (loaded, never called).
    wide = tmp_path / "wide.toml"
    wide.write_text(
        '[gateway]\nreplica_networks = ["10.0.0.0/8"]\n\n'
        '[[services]]\nname = "x"\nreplicas = ["http://10.1.2.3:80"]\n'
    )
    assert load_gateway_config(wide).registry.names() == ["x"]
    unsigned = tmp_path / "unsigned.toml"
    unsigned.write_text('[gateway]\nkeys = "keys.db"\nforward_unsigned = true\n')
    monkeypatch.delenv("LLMAGENTOS_PRINCIPAL_SECRET")
    assert load_gateway_config(unsigned).options["principal_secret"] is None  # opted in
