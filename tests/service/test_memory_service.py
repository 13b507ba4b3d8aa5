"""The memory manager as a service: a real ``llmagentos serve --memory`` process, raw HTTP.

Tenancy comes from the signed principal only: whatever a tenant names in a path or a
body (another tenant's item id, its agent's name), it reaches its own items only. And
through a real gateway with API keys, end to end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.principal import SECRET_ENV, Principal, PrincipalSigner
from tests.service.raw_http import call

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"
SECRET = "memory-service-test-principal-secret"
SIGNER = PrincipalSigner(SECRET)
ACME = Principal("key-acme", "acme", ("taxi:*",))
EVIL = Principal("key-evil", "evil", ("taxi:*",))
ENV = {**os.environ, SECRET_ENV: SECRET, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("memory") / "memory.db"
    process, url = start_server(
        ["llmagentos", "serve", str(TAXI), "--memory", str(db), "--embedder", "hash:64"], env=ENV
    )
    yield url
    stop_processes(process)


def _put(url: str, who: Principal | None, agent: str, texts: list[object]) -> list[str]:
    reply = call(
        url,
        "POST",
        f"/v1/memory/{agent}/semantic/items",
        {"items": texts},
        principal=who,
        signer=SIGNER,
    )
    assert reply.status == 201, reply.body
    return list(reply.body["ids"])


def test_tenants_see_only_their_own_items(service: str) -> None:
    (secret_id,) = _put(
        service, ACME, "planner", [{"text": "acme's launch date is in May", "metadata": {"p": 1}}]
    )
    _put(service, EVIL, "planner", ["evil's own note"])
    mine = call(
        service,
        "GET",
        f"/v1/memory/planner/semantic/items/{secret_id}",
        principal=ACME,
        signer=SIGNER,
    )
    assert mine.status == 200 and mine.body["text"] == "acme's launch date is in May"
    assert mine.body["namespace"] == "acme/planner/semantic"
    for who in (EVIL, None):
        got = call(
            service,
            "GET",
            f"/v1/memory/planner/semantic/items/{secret_id}",
            principal=who,
            signer=SIGNER,
        )
        assert got.status == 404, (who, got.body)
        query = {"query": "launch date May", "mode": "hybrid"}
        found = call(service, "POST", "/v1/memory/planner/semantic/search", query,
                     principal=who, signer=SIGNER)  # fmt: skip
        assert "acme" not in json.dumps(found.body)
        for method, body in (("PATCH", {"text": "overwritten"}), ("DELETE", None)):
            changed = call(service, method, f"/v1/memory/planner/semantic/items/{secret_id}",
                           body, principal=who, signer=SIGNER)  # fmt: skip
            assert changed.status == 404
    listed = call(
        service, "GET", "/v1/memory/planner/semantic/items", principal=EVIL, signer=SIGNER
    )
    assert [i["text"] for i in listed.body["items"]] == ["evil's own note"]
    still = call(
        service,
        "GET",
        f"/v1/memory/planner/semantic/items/{secret_id}",
        principal=ACME,
        signer=SIGNER,
    )
    assert still.body["text"] == "acme's launch date is in May"
    state = call(service, "GET", "/v1/memory/state", principal=EVIL, signer=SIGNER).body
    assert all(s["namespace"].startswith("evil/") for s in state["namespaces"])
    assert "store" not in state and all(o.startswith("evil/") for o in state["owners"])


def test_search_update_delete_round_trip(service: str) -> None:
    ids = _put(service, ACME, "librarian", ["The museum opens at ten.", "Trains leave hourly."])
    query = {"query": "when do trains leave", "k": 1}
    found = call(service, "POST", "/v1/memory/librarian/semantic/search", query,
                 principal=ACME, signer=SIGNER)  # fmt: skip
    assert found.status == 200 and found.body["hits"][0]["item"]["id"] == ids[1]
    assert found.body["cost"]["embedded_texts"] == 1
    change = {"metadata": {"checked": True}, "ttl": 3600}
    changed = call(service, "PATCH", f"/v1/memory/librarian/semantic/items/{ids[0]}", change,
                   principal=ACME, signer=SIGNER)  # fmt: skip
    assert changed.status == 200 and changed.body["metadata"] == {"checked": True}
    assert changed.body["expires_at"] is not None
    gone = call(
        service,
        "DELETE",
        f"/v1/memory/librarian/semantic/items/{ids[0]}",
        principal=ACME,
        signer=SIGNER,
    )
    assert gone.body == {"deleted": 1}
    again = call(
        service,
        "DELETE",
        f"/v1/memory/librarian/semantic/items/{ids[0]}",
        principal=ACME,
        signer=SIGNER,
    )
    assert again.status == 404 and ids[0] in again.detail


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "names"),
    [
        ("POST", "/v1/memory/a/semantic/items", {"items": []}, 422, "items"),
        (
            "POST",
            "/v1/memory/a/semantic/items",
            {"items": [{"text": "x", "metadata": {"v": float("inf")}}]},
            422,
            "",
        ),
        (
            "POST",
            "/v1/memory/a/semantic/items",
            {"items": [{"text": "x", "colour": 1}]},
            422,
            "colour",
        ),
        ("POST", "/v1/memory/a/semantic/items", {"items": ["  "]}, 422, "items[0].text"),
        ("POST", "/v1/memory/a/nonsense/items", {"items": ["x"]}, 422, "kind"),
        ("POST", "/v1/memory/a/semantic/search", {"query": "x", "k": 0}, 422, "k"),
        (
            "POST",
            "/v1/memory/a/semantic/search",
            {"query": "x", "where": {"y": {"$regex": "."}}},
            422,
            "$regex",
        ),
        ("POST", "/v1/memory/ghost/semantic/search", {"query": "x"}, 404, "ghost"),
        ("GET", "/v1/memory/a/semantic/items/nope", None, 404, "nope"),
        ("POST", "/v1/memory/..%2Fevil/semantic/items", {"items": ["x"]}, 404, "no route"),
        ("GET", f"/v1/memory/a/semantic/items?offset={2**63}", None, 422, "offset"),
        ("POST", "/v1/memory/a/semantic/items", {"items": ["\ud800"]}, 422, "surrogate"),
        (
            "POST",
            "/v1/memory/a/semantic/items",
            {"items": [{"text": "x", "metadata": {"\udfff": 1}}]},
            422,
            "surrogate",
        ),
        ("POST", "/v1/memory/a/semantic/search", {"query": "\ud83d"}, 422, "query"),
    ],
)
def test_bad_input_is_a_4xx_naming_it(  # noqa: PLR0917 - the parametrized case
    service: str, method: str, target: str, body: object, status: int, names: str
) -> None:
    _put(service, ACME, "a", ["seed item"])
    raw = json.dumps(body, allow_nan=True).encode() if body is not None else None
    reply = call(service, method, target, raw, principal=ACME, signer=SIGNER)
    assert reply.status == status, reply.body
    assert names in json.dumps(reply.body)


def test_end_to_end_through_the_gateway(tmp_path: Path) -> None:
    from llmagentos.gateway import ApiKeyStore
    from tests.gateway.rawhttp import send

    keys = ApiKeyStore(tmp_path / "keys.db", scrypt_n=2**10)
    acme, evil = (keys.create_key(t, ["mem:*"]) for t in ("acme", "evil"))
    keys.close()
    service, service_url = start_server(
        ["llmagentos", "serve", str(TAXI), "--require-principal", "--memory",
         str(tmp_path / "memory.db"), "--embedder", "hash:64"], env=ENV,
    )  # fmt: skip
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nkeys = "keys.db"\nhealth_interval = 0\n\n'
                      f'[[services]]\nname = "mem"\nreplicas = ["{service_url}"]\n')  # fmt: skip
    try:
        gateway, url = start_server(["llmagentos", "gateway", str(config)], env=ENV)
    except BaseException:
        stop_processes(service)
        raise

    def request(key: str, method: str, target: str, body: object = None) -> object:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")]
        return send(url, method, target, body=raw, headers=headers)

    try:
        put = request(
            acme, "POST", "/mem/v1/memory/notes/skill/items", {"items": ["acme lesson: retry"]}
        )
        assert put.status == 201, put.body  # type: ignore[attr-defined]
        item_id = put.json()["ids"][0]  # type: ignore[attr-defined]
        assert request(acme, "GET", f"/mem/v1/memory/notes/skill/items/{item_id}").status == 200  # type: ignore[attr-defined]
        assert request(evil, "GET", f"/mem/v1/memory/notes/skill/items/{item_id}").status == 404  # type: ignore[attr-defined]
        evil_search = request(
            evil, "POST", "/mem/v1/memory/notes/skill/search", {"query": "acme lesson retry"}
        )
        assert evil_search.status == 404  # type: ignore[attr-defined]  # evil has no such namespace
        direct = send(service_url, "GET", f"/v1/memory/notes/skill/items/{item_id}")
        assert direct.status == 401  # around the gateway, no principal: refused
    finally:
        stop_processes(gateway, service)


def test_a_remote_space_gives_the_in_process_results(service: str, tmp_path: Path) -> None:
    from llmagentos.embeddings.hashing import HashingEmbedder
    from llmagentos.exceptions import MemoryInputError, MemoryNotFound
    from llmagentos.kernel.embeddings import EmbeddingService
    from llmagentos.memory import MemoryManager, NewMemory
    from llmagentos.service.remote_memory import RemoteMemorySpace

    texts = [
        NewMemory("The west gate closes at dusk.", {"area": "west", "n": 1}),
        NewMemory("Deliveries arrive at the east dock every morning.", {"area": "east", "n": 2}),
        NewMemory("The east gate is under repair until June.", {"area": "east", "n": 3}),
        NewMemory("Visitors sign in at the west lobby.", {"area": "west", "n": 4}),
    ]
    embeddings = EmbeddingService()
    local = MemoryManager(
        tmp_path / "local.db", embedder=HashingEmbedder(64), embeddings=embeddings
    )
    here = local.for_agent("twin").semantic
    there = RemoteMemorySpace(service, "twin", "semantic")
    here.put(texts)
    there.put(texts)
    for mode in ("lexical", "vector", "hybrid"):
        for query, where in (("east gate repair", None), ("gate", {"area": "west"})):
            a = here.search(query, mode=mode, where=where, k=4)
            b = there.search(query, mode=mode, where=where, k=4)
            assert [(h.item.text, h.lexical_rank, h.vector_rank) for h in a.hits] == [
                (h.item.text, h.lexical_rank, h.vector_rank) for h in b.hits
            ], (mode, query)
            assert [round(h.score, 9) for h in a.hits] == [round(h.score, 9) for h in b.hits]
    with pytest.raises(MemoryNotFound):
        there.get("no-such-id")
    with pytest.raises(MemoryInputError, match="k"):
        there.search("x", k=0)
    there.close()
    local.close()
    embeddings.close()
