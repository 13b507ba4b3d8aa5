"""The memory manager over HTTP, inside a module service: ``/v1/memory/...``.

The tenant is never the client's to say: it is the verified principal's
(:func:`~llmagentos.service.tenancy.caller_tenant`), so a path can name an agent and a
kind but only of the caller's own tenant. Requests without a principal (a service that
does not require one) use a tenant name no principal can carry (``anonymous.local``:
principal tenants have no dots), so they never reach a real tenant's items.

========================================================  =================================
route                                                     call
========================================================  =================================
``POST   /v1/memory/{agent}/{kind}/items``                 put (``{"items": [...]}``)
``GET    /v1/memory/{agent}/{kind}/items``                 list (``?limit=&offset=``)
``GET    /v1/memory/{agent}/{kind}/items/{id}``            get
``PATCH  /v1/memory/{agent}/{kind}/items/{id}``            update
``DELETE /v1/memory/{agent}/{kind}/items/{id}``            delete
``POST   /v1/memory/{agent}/{kind}/search``                search
``GET    /v1/memory/state``                                the tenant's ``state()``
========================================================  =================================

Errors: 404 for an unknown namespace or id (another tenant's item is just as unknown),
422 for a bad value (naming the field), 503 when the store or embedder is down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmagentos.exceptions import (
    EmbeddingMismatch,
    MemoryBackendError,
    MemoryInputError,
    MemoryNotFound,
)
from llmagentos.memory.types import Hit, MemoryItem, Namespace
from llmagentos.service.tenancy import ANONYMOUS, caller_tenant

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llmagentos.memory.manager import MemoryManager

__all__ = ["ANONYMOUS_MEMORY_TENANT", "add_memory_routes"]

ANONYMOUS_MEMORY_TENANT = "anonymous.local"
KindName = Literal["episodic", "semantic", "skill"]


def _lone_surrogate(value: Any) -> bool:
    """Whether ``value`` holds a string UTF-8 cannot encode (JSON's ``"\\ud800"``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _encodable(self) -> _Strict:
        # The store keeps UTF-8 text: a lone surrogate is the client's mistake (422
        # naming the field), not a failed write.
        for name in type(self).model_fields:
            if _lone_surrogate(getattr(self, name)):
                raise ValueError(f"{name} holds a lone surrogate (\\ud800-\\udfff), not text")
        return self


class PutRequest(_Strict):
    items: list[str | dict[str, Any]] = Field(min_length=1, max_length=10_000)


class UpdateRequest(_Strict):
    text: str | None = None
    metadata: dict[str, Any] | None = None
    ttl: float | None = Field(default=None, gt=0)
    clear_ttl: bool = False


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=100_000)
    k: int = Field(default=10, ge=1, le=1000)
    mode: Literal["lexical", "vector", "hybrid"] = "hybrid"
    where: dict[str, Any] | None = None


def _tenant() -> str:
    tenant = caller_tenant()
    return ANONYMOUS_MEMORY_TENANT if tenant == ANONYMOUS else tenant


def _hit(hit: Hit) -> dict[str, Any]:
    return {
        "item": hit.item.to_json(),
        "score": hit.score,
        "lexical_rank": hit.lexical_rank,
        "vector_rank": hit.vector_rank,
    }


def _item(item: MemoryItem) -> dict[str, Any]:
    return item.to_json()


def add_memory_routes(app: FastAPI, manager: MemoryManager) -> None:
    """Serve ``manager`` under ``/v1/memory`` on ``app``, namespaced by the caller's tenant."""
    from fastapi import Path, Query
    from fastapi.responses import JSONResponse

    agent_part = Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
    item_part = Path(min_length=1, max_length=128)
    kind_part = Path()

    async def namespace(agent: str, kind: KindName, *, create: bool) -> Namespace:
        tenant = _tenant()
        if create:
            from llmagentos._blocking import run_blocking

            made: Namespace = await run_blocking(manager.namespace, tenant, agent, kind)
            return made
        return Namespace(tenant, agent, kind)

    @app.post("/v1/memory/{agent}/{kind}/items", tags=["memory"], status_code=201)
    async def put(body: PutRequest, agent: str = agent_part, kind: KindName = kind_part) -> Any:
        ns = await namespace(agent, kind, create=True)
        result = await manager.aput(ns, body.items)
        return {
            "ids": result.ids,
            "evicted": result.evicted,
            "cost": _cost(result.cost),
        }

    @app.get("/v1/memory/{agent}/{kind}/items", tags=["memory"])
    async def list_items(
        agent: str = agent_part,
        kind: KindName = kind_part,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=2**63 - 1),  # SQLite's largest integer
    ) -> Any:
        from llmagentos._blocking import run_blocking

        ns = await namespace(agent, kind, create=False)
        items = await run_blocking(lambda: manager.list(ns, limit=limit, offset=offset))
        return {"items": [_item(i) for i in items]}

    @app.get("/v1/memory/{agent}/{kind}/items/{item_id}", tags=["memory"])
    async def get(
        agent: str = agent_part, kind: KindName = kind_part, item_id: str = item_part
    ) -> Any:
        ns = await namespace(agent, kind, create=False)
        return _item(await manager.aget(ns, item_id))

    @app.patch("/v1/memory/{agent}/{kind}/items/{item_id}", tags=["memory"])
    async def update(
        body: UpdateRequest,
        agent: str = agent_part,
        kind: KindName = kind_part,
        item_id: str = item_part,
    ) -> Any:
        ns = await namespace(agent, kind, create=False)
        changes: dict[str, Any] = {"text": body.text, "metadata": body.metadata}
        if body.clear_ttl:
            changes["ttl"] = None
        elif body.ttl is not None:
            changes["ttl"] = body.ttl
        return _item(await manager.aupdate(ns, item_id, **changes))

    @app.delete("/v1/memory/{agent}/{kind}/items/{item_id}", tags=["memory"])
    async def delete(
        agent: str = agent_part, kind: KindName = kind_part, item_id: str = item_part
    ) -> Any:
        ns = await namespace(agent, kind, create=False)
        return {"deleted": await manager.adelete(ns, item_id)}

    @app.post("/v1/memory/{agent}/{kind}/search", tags=["memory"])
    async def search(
        body: SearchRequest, agent: str = agent_part, kind: KindName = kind_part
    ) -> Any:
        ns = await namespace(agent, kind, create=False)
        result = await manager.asearch(ns, body.query, k=body.k, mode=body.mode, where=body.where)
        return {
            "mode": result.mode,
            "hits": [_hit(h) for h in result.hits],
            "cost": _cost(result.cost),
        }

    @app.get("/v1/memory/state", tags=["memory"])
    async def state() -> Any:
        from llmagentos._blocking import run_blocking

        tenant = _tenant()
        snapshot: dict[str, Any] = await run_blocking(manager.state, tenant)
        snapshot.pop(
            "store", None
        )  # the store's path and indexes are the operator's, not a tenant's
        return snapshot

    @app.exception_handler(MemoryNotFound)
    async def _not_found(request: Any, err: MemoryNotFound) -> Any:
        return JSONResponse(
            {"detail": str(err), "what": err.what, "name": err.name}, status_code=404
        )

    @app.exception_handler(MemoryInputError)
    async def _bad_value(request: Any, err: MemoryInputError) -> Any:
        return JSONResponse({"detail": str(err), "field": err.field}, status_code=422)

    @app.exception_handler(EmbeddingMismatch)
    async def _mismatch(request: Any, err: EmbeddingMismatch) -> Any:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.exception_handler(MemoryBackendError)
    async def _store_down(request: Any, err: MemoryBackendError) -> Any:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "1"})


def _cost(cost: Any) -> dict[str, Any]:
    return {
        "seconds": cost.seconds,
        "embedded_texts": cost.embedded_texts,
        "embedding_tokens": cost.embedding_tokens,
        "cached_embeddings": cost.cached_embeddings,
        "model_tokens": cost.model_tokens,
    }
