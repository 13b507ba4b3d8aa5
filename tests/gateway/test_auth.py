"""API keys (hashed, scoped, revocable), and admin keys apart from them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmagentos.exceptions import AuthError, ConfigError
from llmagentos.gateway import ApiKeyStore, Principal
from llmagentos.gateway.auth import key_id_of

FAST = 2**4  # scrypt cost for tests: the format is the same, only cheaper


@pytest.fixture
def store() -> ApiKeyStore:
    return ApiKeyStore(scrypt_n=FAST)


def reason(store: ApiKeyStore, header: str | None) -> tuple[str, int]:
    with pytest.raises(AuthError) as info:
        store.authenticate(header)
    return info.value.reason, info.value.status


def test_a_key_authenticates_as_its_tenant_with_its_scopes(store: ApiKeyStore) -> None:
    key = store.create_key("acme", ["planner:*", "*:read"])
    assert key.startswith("lak_")
    principal = store.authenticate(f"Bearer {key}")
    assert principal.tenant == "acme"
    assert principal.scopes == ("planner:*", "*:read")
    assert store.authenticate(key) == principal  # a bare key (X-API-Key) works too
    assert store.authenticate(f"bearer  {key} ") == principal


def test_only_a_salted_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = ApiKeyStore(path, scrypt_n=FAST)
    key_a = store.create_key("acme", ["*:*"])
    key_b = store.create_key("acme", ["*:*"])
    store.close()
    raw = path.read_bytes() + (
        path.with_name("keys.db-wal").read_bytes()
        if path.with_name("keys.db-wal").exists()
        else b""
    )
    secret = key_a.split("_", 2)[2]
    assert secret.encode() not in raw and key_a.encode() not in raw
    with sqlite3.connect(path) as db:
        salts = [row[0] for row in db.execute("SELECT salt FROM api_keys")]
    assert len(salts) == 2 and salts[0] != salts[1]
    reopened = ApiKeyStore(path)  # keys keep the hash cost they were made with
    assert reopened.authenticate(key_b).tenant == "acme"
    reopened.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("Bearer", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("lak_nothex00zzzz_" + "a" * 43, "malformed"),
        ("lak_0123456789ab_short", "malformed"),
        ("sk-" + "a" * 40, "malformed"),
        ("lak_0123456789ab_" + "a" * 43, "unknown"),
    ],
)
def test_bad_headers_are_401_with_a_reason(
    store: ApiKeyStore, header: str | None, expected: str
) -> None:
    assert reason(store, header) == (expected, 401)


def test_a_wrong_secret_is_unknown_not_revoked(store: ApiKeyStore) -> None:
    key = store.create_key("acme", ["*:*"])
    key_id = key.split("_")[1]
    forged = f"lak_{key_id}_{'b' * 43}"
    assert reason(store, forged) == ("unknown", 401)
    assert store.revoke(key_id)
    # A guesser learns nothing about the key's state; the holder learns it was revoked.
    assert reason(store, forged) == ("unknown", 401)
    assert reason(store, key) == ("revoked", 401)


def test_revocation_is_seen_after_a_cached_success(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    gateway_1, gateway_2 = ApiKeyStore(path, scrypt_n=FAST), ApiKeyStore(path, scrypt_n=FAST)
    key = gateway_1.create_key("acme", ["*:*"])
    assert gateway_2.authenticate(key).tenant == "acme"  # verified, now cached
    assert gateway_1.revoke(key.split("_")[1])
    assert reason(gateway_2, key) == ("revoked", 401)  # another process's revocation
    assert not gateway_1.revoke("000000000000")
    assert [k.revoked for k in gateway_1.list_keys()] == [True]
    gateway_1.close()
    gateway_2.close()


def test_scopes_allow_by_service_and_route_pattern() -> None:
    p = Principal("id", "acme", ("planner:*", "*:read", "learning:v1/sessions/*"))
    assert p.can("planner", "decide")
    assert p.can("execution", "read")
    assert p.can("learning", "v1/sessions/s1")
    assert not p.can("execution", "perform")
    assert not p.can("learning", "v1/other")
    assert not p.can("plannerx", "read-all")
    p.require("planner", "anything")
    with pytest.raises(AuthError) as info:
        p.require("execution", "perform")
    assert (info.value.status, info.value.reason) == (403, "forbidden")
    assert not Principal("id", "acme", ()).can("planner", "decide")


def test_store_refuses_bad_tenants_and_scopes(store: ApiKeyStore) -> None:
    for tenant in ("", "Acme", "a:b", "a" * 33, "-a", "acme\n"):
        with pytest.raises(ConfigError):
            store.create_key(tenant, ["*:*"])
    for scopes in ([], ["planner"], [":x"], ["planner:"], ["a b:c"]):
        with pytest.raises(ConfigError):
            store.create_key("acme", scopes)
    with pytest.raises(ConfigError):
        ApiKeyStore(scrypt_n=1000)
    assert store.list_keys() == []


def test_listing_keys_shows_no_secret(store: ApiKeyStore) -> None:
    store.create_key("acme", ["*:*"])
    store.create_key("globex", ["planner:*"])
    infos = store.list_keys("globex")
    assert [(i.tenant, i.scopes, i.revoked) for i in infos] == [("globex", ("planner:*",), False)]
    assert len(store.list_keys()) == 2


def test_admin_keys_open_only_the_admin_routes_and_service_keys_never_do(
    store: ApiKeyStore,
) -> None:
    admin = store.create_key(None, admin=True)
    everything = store.create_key("acme", ["*:*"])
    assert store.authenticate_admin(f"Bearer {admin}") == admin.split("_")[1]
    with pytest.raises(AuthError) as info:
        store.authenticate(admin)  # no service route, whatever it asks for
    assert (info.value.status, info.value.reason) == (403, "forbidden")
    with pytest.raises(AuthError) as info:
        store.authenticate_admin(everything)  # '*:*' is no admin scope
    assert info.value.status == 403 and "not an admin key" in str(info.value)
    assert store.authenticate(everything).tenant == "acme"
    listed = {i.key_id: i.admin for i in store.list_keys()}
    assert listed == {admin.split("_")[1]: True, everything.split("_")[1]: False}
    store.revoke(admin.split("_")[1])
    assert reason(store, admin) == ("revoked", 401)
    for bad in (("acme", ()), (None, ("*:*",))):
        with pytest.raises(ConfigError):
            store.create_key(*bad, admin=True)


def test_a_key_file_from_before_admin_keys_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema of the previous release
        db.execute(
            "CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " scopes TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL,"
            " n INTEGER NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)"
        )
    store = ApiKeyStore(path, scrypt_n=FAST)
    key = store.create_key("acme", ["taxi:*"])
    assert store.authenticate(key).tenant == "acme"
    assert not store.list_keys()[0].admin


def test_the_claimed_key_id_is_read_without_any_check() -> None:
    assert key_id_of("Bearer lak_0123456789ab_" + "a" * 43) == "0123456789ab"
    assert key_id_of("lak_0123456789ab_short") is None
    assert key_id_of(None) is None
