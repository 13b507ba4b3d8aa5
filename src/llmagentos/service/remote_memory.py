"""A memory space served by another process: the :class:`MemorySpace` calls over HTTP.

::

    lessons = RemoteMemorySpace("http://127.0.0.1:8100", "planner", "skill")
    lessons.put(["Avoid the east corridor."])
    lessons.search("corridor", k=3).items

The service (``llmagentos serve ... --memory DB``, or a gateway route in front of it)
decides the tenant from the caller's credentials; the results are the same
:class:`~llmagentos.memory.types.SearchResult` and items an in-process space returns,
and its errors the same typed ones (404 → ``MemoryNotFound``, 422 →
``MemoryInputError``, 503 or no answer → ``MemoryBackendError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from llmagentos._blocking import run_blocking
from llmagentos.exceptions import ConfigError, MemoryBackendError, MemoryInputError, MemoryNotFound
from llmagentos.memory.types import (
    KINDS,
    Cost,
    Hit,
    MemoryItem,
    MemoryKind,
    Namespace,
    NewMemory,
    SearchResult,
    WriteResult,
)

__all__ = ["RemoteMemorySpace"]


def _item(data: Mapping[str, Any]) -> MemoryItem:
    tenant, agent, kind = str(data["namespace"]).split("/")
    return MemoryItem(
        data["id"], Namespace(tenant, agent, kind),  # type: ignore[arg-type]
        data["text"], dict(data["metadata"]), data.get("key"), data["created_at"],
        data["updated_at"], data.get("expires_at"),
    )  # fmt: skip


def _cost(data: Mapping[str, Any]) -> Cost:
    return Cost(
        seconds=data.get("seconds", 0.0),
        embedded_texts=data.get("embedded_texts", 0),
        embedding_tokens=data.get("embedding_tokens", 0),
        model_tokens=data.get("model_tokens", 0),
        cached_embeddings=data.get("cached_embeddings", 0),
    )


def _wire(item: str | NewMemory | Mapping[str, Any]) -> str | dict[str, Any]:
    if isinstance(item, NewMemory):
        out: dict[str, Any] = {"text": item.text, "metadata": item.metadata}
        for name in ("key", "ttl", "embedding"):
            if getattr(item, name) is not None:
                out[name] = getattr(item, name)
        return out
    return item if isinstance(item, str) else dict(item)


class RemoteMemorySpace:
    """One agent's namespace of one kind on a memory service (sync and async calls).

    Args:
        base_url: the service, or the gateway route in front of it.
        agent: the namespace's agent (or collection) name.
        kind: ``episodic``, ``semantic`` or ``skill``.
        headers: credentials for a gateway (``Authorization: Bearer ...``).
    """

    def __init__(
        self,
        base_url: str,
        agent: str,
        kind: MemoryKind,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", f"expected an http(s) URL, got {base_url!r}")
        if kind not in KINDS:
            raise MemoryInputError("kind", f"must be one of {', '.join(KINDS)} (got {kind!r})")
        self.agent, self.kind = agent, kind
        self._prefix = f"/v1/memory/{agent}/{kind}"
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def _call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        try:
            reply = self._client.request(method, self._prefix + path, json=body, params=params)
        except httpx.HTTPError as err:
            raise MemoryBackendError(
                f"{type(err).__name__}: {err}", backend=str(self._client.base_url)
            ) from err
        if reply.status_code < 400:
            return reply.json()
        try:
            data = reply.json()
        except ValueError:
            data = {"detail": reply.text[:500]}
        detail = str(data.get("detail", ""))
        if reply.status_code == 404 and "what" in data:
            raise MemoryNotFound(data["what"], data["name"], f"{self.agent}/{self.kind}")
        if reply.status_code in (400, 422):
            raise MemoryInputError(str(data.get("field", "request")), detail)
        raise MemoryBackendError(
            f"HTTP {reply.status_code}: {detail}", backend=str(self._client.base_url)
        )

    def put(
        self, items: str | NewMemory | Sequence[str | NewMemory | Mapping[str, Any]]
    ) -> WriteResult:
        many = [items] if isinstance(items, str | NewMemory | Mapping) else list(items)
        data = self._call("POST", "/items", {"items": [_wire(i) for i in many]})
        return WriteResult(list(data["ids"]), _cost(data["cost"]), data["evicted"])

    def get(self, item_id: str) -> MemoryItem:
        return _item(self._call("GET", f"/items/{item_id}"))

    def update(self, item_id: str, **changes: Any) -> MemoryItem:
        body = {k: v for k, v in changes.items() if k in ("text", "metadata") and v is not None}
        if "ttl" in changes:
            body["ttl" if changes["ttl"] is not None else "clear_ttl"] = changes["ttl"] or True
        return _item(self._call("PATCH", f"/items/{item_id}", body))

    def delete(self, item_id: str) -> int:
        return int(self._call("DELETE", f"/items/{item_id}")["deleted"])

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        where: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        data = self._call("POST", "/search", {"query": query, "k": k, "mode": mode, "where": where})
        hits = [
            Hit(_item(h["item"]), h["score"], h["lexical_rank"], h["vector_rank"])
            for h in data["hits"]
        ]
        return SearchResult(hits, data["mode"], _cost(data["cost"]))

    def list(self, *, limit: int = 100, offset: int = 0) -> list[MemoryItem]:
        data = self._call("GET", "/items", params={"limit": limit, "offset": offset})
        return [_item(i) for i in data["items"]]

    async def aput(self, items: Any) -> WriteResult:
        return await run_blocking(self.put, items)

    async def aget(self, item_id: str) -> MemoryItem:
        return await run_blocking(self.get, item_id)

    async def asearch(self, query: str, **options: Any) -> SearchResult:
        return await run_blocking(lambda: self.search(query, **options))

    async def adelete(self, item_id: str) -> int:
        return await run_blocking(self.delete, item_id)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteMemorySpace({self._client.base_url}{self._prefix})"
