"""API keys, scopes, tenants and rate limits at the gateway (in-process ASGI, real keys)."""

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
from llmagentos.service import service_app

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
    admin = keys.create_key("ops", ["gateway:*"])
    registry = ServiceRegistry([
        {"name": "echo", "replicas": ["http://echo.test"]},
        {"name": "taxi", "replicas": ["http://taxi.test"]},
    ])  # fmt: skip
    gateway = Gateway(registry, keys=keys, limiter=TokenBucket(0.5, 5), transport=_Router())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app()),
                               base_url="http://gateway.test")  # fmt: skip
    return client, keys, {"acme": acme, "globex": globex, "admin": admin}


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
    # The admin routes need a gateway scope.
    assert (await client.get("/gateway/services", headers=_auth(key["globex"]))).status_code == 403
    listed = await client.get("/gateway/services", headers=_auth(key["admin"]))
    assert listed.status_code == 200


async def test_sessions_are_moved_into_the_callers_tenant(setup) -> None:
    client, _, key = setup
    echoed = await client.post(
        "/echo/echo", json={"session": "s1", "observation": 1}, headers=_auth(key["acme"])
    )
    assert '"session": "acme:s1"' in echoed.json()["body"]
    # acme's session s1 on the Taxi service is not globex's s1.
    episode = {"session": "s1", "seed": 0, "max_steps": 5}
    ran = await client.post("/taxi/v1/agent/episode", json=episode, headers=_auth(key["acme"]))
    assert ran.status_code == 200
    mine = await client.get("/taxi/v1/sessions/s1/qtable", headers=_auth(key["acme"]))
    theirs = await client.get("/taxi/v1/sessions/s1/qtable", headers=_auth(key["globex"]))
    assert mine.status_code == 200 and sum(map(sum, mine.json()["visits"])) == 5
    assert theirs.status_code == 404  # another tenant cannot even see it
    bad = await client.post(
        "/taxi/v1/agent/episode", json={"session": "a b", "seed": 0}, headers=_auth(key["acme"])
    )
    assert bad.status_code == 400 and "session ids" in bad.json()["detail"]


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


def test_the_config_builds_keys_and_limits_and_names_bad_fields(tmp_path: Path) -> None:
    from llmagentos.exceptions import ConfigError
    from llmagentos.gateway.config import load_gateway_config

    ApiKeyStore(tmp_path / "keys.db").close()
    good = tmp_path / "good.toml"
    good.write_text('[gateway]\nkeys = "keys.db"\nrate_per_second = 10\nburst = 20\n')
    loaded = load_gateway_config(good)
    assert isinstance(loaded.options["keys"], ApiKeyStore)
    assert isinstance(loaded.options["limiter"], TokenBucket)
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
    }
    for text, field in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_gateway_config(bad)
        assert caught.value.field == field
