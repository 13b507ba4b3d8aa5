"""Remote modules: the module contract over HTTP, so an Agent mixes local and remote.

Each remote module is a subclass of its kind whose methods (sync and async) call a
module service (:func:`llmagentos.service.app.service_app`). Modules that share state
on the service side (a planner and a learner over one Q-table) must use the same
``session``: :func:`remote_modules` hands out a set that does.

Example::

    planning, learning = remote_modules("http://127.0.0.1:8101", "planning", "learning")
    agent = Agent(perception, planning, execution, learning)   # no other change
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from llmagentos.exceptions import ConfigError, ModuleError
from llmagentos.modules.execution import ExecutionModule
from llmagentos.modules.learning import LearningModule
from llmagentos.modules.perception import PerceptionModule
from llmagentos.modules.planning import PlanningModule
from llmagentos.telemetry.propagation import inject
from llmagentos.telemetry.spans import set_attributes, span
from llmagentos.telemetry.state import TELEMETRY
from llmagentos.types import Decision, Features, Observation, Outcome, Transition

__all__ = [
    "RemoteExecution",
    "RemoteLearning",
    "RemotePerception",
    "RemotePlanning",
    "ServiceClient",
    "remote_modules",
]


class ServiceClient:
    """HTTP calls to one module service for one session (sync and async clients).

    The async client is one per event loop (an ``httpx.AsyncClient`` belongs to the
    loop it first ran on): each ``asyncio.run`` gets its own, closed when that loop
    shuts down (``asyncio.run`` closes open async generators, one of which holds it),
    and :meth:`close` / :meth:`aclose` close whatever is left.

    Args:
        base_url: the service (or the gateway route in front of it).
        session: the session id; a new random one by default.
        timeout: seconds per call.
        headers: extra headers (an API key for a gateway, say).
        retries: how many times a call answered ``429``/``503`` with a
            ``Retry-After`` of at most :data:`MAX_RETRY_WAIT` seconds (a server that
            shed it, a gateway whose replicas are briefly all down) is sent again,
            after that wait. Safe: the call was not run, and its idempotency key makes
            a call that was run count once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: str | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError("retries", f"must be an integer >= 0 (got {retries!r})")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", f"expected an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.session = session or uuid.uuid4().hex
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.retries = retries
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=self.headers, transport=transport
        )
        # One async client per loop, with what closes it at the loop's end; entries of
        # closed loops are dropped whenever another loop adds one.
        self._async: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, _Keeper]] = {}
        self._guard = threading.Lock()
        self._calls = 0
        # Keys name this client too: another one on the same session (a restarted
        # process) counts from 1 again, and a service refuses a key reused for
        # another request.
        self._key_prefix = f"{self.session}:{uuid.uuid4().hex[:12]}"

    def _key(self) -> dict[str, str]:
        # One key per call: a gateway may retry it on another replica, and a service
        # with a session store applies it once (see llmagentos.service.store).
        self._calls += 1
        headers = {"idempotency-key": f"{self._key_prefix}:{self._calls}"}
        if TELEMETRY.on:  # the callee's spans join this trace
            inject(headers)
        return headers

    def _hop(self, path: str) -> dict[str, Any] | None:
        if not TELEMETRY.on:
            return None
        return {"http.request.method": "POST", "url.full": f"{self.base_url}{path}"}

    def _reply(self, kind: str, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        path = response.request.url.path
        raise ModuleError(kind, f"remote {path}: {response.status_code} {detail}")

    def post(self, kind: str, path: str, **payload: Any) -> Any:
        with span(f"POST {path}", self._hop(path), kind="client") as hop:
            body, headers = {"session": self.session, **payload}, self._key()
            try:
                response = self._client.post(path, json=body, headers=headers)
                for _ in range(self.retries):
                    wait = retry_wait(response)
                    if wait is None:
                        break
                    time.sleep(wait)
                    response = self._client.post(path, json=body, headers=headers)
            except httpx.HTTPError as err:
                raise ModuleError(kind, f"remote {self.base_url}{path}: {err!r}") from err
            set_attributes(hop, {"http.response.status_code": response.status_code})
            return self._reply(kind, response)

    async def _client_for_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._guard:
            found = self._async.get(loop)
        if found is not None and not found[0].is_closed:
            return found[0]
        client = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout, headers=self.headers
        )
        keeper = _Keeper(client)
        await keeper.start()
        with self._guard:
            ended = [other for other in self._async if other.is_closed()]
            dropped = [self._async.pop(other)[1] for other in ended]
            self._async[loop] = (client, keeper)
        for old in dropped:
            old.finish()
        return client

    async def apost(self, kind: str, path: str, **payload: Any) -> Any:
        client = await self._client_for_loop()
        with span(f"POST {path}", self._hop(path), kind="client") as hop:
            body, headers = {"session": self.session, **payload}, self._key()
            try:
                response = await client.post(path, json=body, headers=headers)
                for _ in range(self.retries):
                    wait = retry_wait(response)
                    if wait is None:
                        break
                    await asyncio.sleep(wait)
                    response = await client.post(path, json=body, headers=headers)
            except httpx.HTTPError as err:
                raise ModuleError(kind, f"remote {self.base_url}{path}: {err!r}") from err
            set_attributes(hop, {"http.response.status_code": response.status_code})
            return self._reply(kind, response)

    def close(self) -> None:
        """Close the sync client and every loop's async client still open."""
        self._client.close()
        with self._guard:
            entries = list(self._async.items())
            self._async.clear()
        for loop, (client, keeper) in entries:
            if client.is_closed or loop.is_closed():
                keeper.finish()  # a closed loop closed its client (or can no longer)
            elif loop.is_running():
                # Called from that loop's own thread, or another: close it there.
                if _running_loop() is loop:
                    loop.create_task(client.aclose())
                    keeper.finish()
                else:
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=10)
                    loop.call_soon_threadsafe(keeper.finish)
            elif _running_loop() is None:
                loop.run_until_complete(client.aclose())
                keeper.finish()
            else:  # another loop runs in this thread: that one cannot run now
                keeper.finish()

    async def aclose(self) -> None:
        """Close the sync client and every loop's async client (awaiting this loop's)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            mine = self._async.pop(loop, None)
        if mine is not None:
            await mine[0].aclose()
            mine[1].finish()
        self.close()


MAX_RETRY_WAIT = 5.0
"""The longest ``Retry-After`` a :class:`ServiceClient` waits out before a retry."""


def retry_wait(response: httpx.Response) -> float | None:
    """Seconds to wait before sending a refused call again, or ``None``: not to.

    Only a ``429`` or ``503`` saying when to come back (``Retry-After`` in seconds, at
    most :data:`MAX_RETRY_WAIT`) is retried; a longer outage is the caller's to see.
    """
    if response.status_code not in (429, 503):
        return None
    try:
        wait = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date: no promise worth waiting on
    return wait if 0 <= wait <= MAX_RETRY_WAIT else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Keeper:
    """Closes a loop's client when the loop shuts down.

    An async generator suspended at its ``yield`` for the loop's life: asyncio.run's
    ``shutdown_asyncgens()`` closes it, running its ``finally`` while the loop still
    runs. :meth:`finish` retires it without a loop once the client is dealt with, so
    no half-run generator is left for the garbage collector to hand a closed loop.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.active = True
        self._generator = self._run()

    async def _run(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self.active and not self.client.is_closed:
                await self.client.aclose()

    async def start(self) -> None:
        await self._generator.__anext__()  # the running loop now tracks it

    def finish(self) -> None:
        self.active = False
        closing = self._generator.aclose()
        try:
            closing.send(None)  # the finally has nothing to await any more
        except (StopIteration, StopAsyncIteration):
            return  # closed, as intended
        except RuntimeError:  # already running its finally (the loop is shutting down)
            closing.close()


class _Remote:
    kind: str
    client: ServiceClient

    def _bind(self, client: ServiceClient) -> None:
        self.client = client

    def reset(self, *, seed: int | None = None) -> Any:
        return self.client.post(self.kind, f"/v1/{self.kind}/reset", seed=seed)["observation"]

    def train(self, mode: bool = True) -> Any:
        self.client.post(self.kind, f"/v1/{self.kind}/train", mode=mode)
        self.training = mode
        return self

    def close(self) -> None:
        self.client.close()


class RemotePerception(_Remote, PerceptionModule):
    """Perception served by a module service."""

    def __init__(self, client: ServiceClient) -> None:
        super().__init__()
        self._bind(client)

    def perceive(self, observation: Observation) -> Features:
        return self.client.post(self.kind, "/v1/perception/perceive", observation=observation)[
            "features"
        ]

    async def aperceive(self, observation: Observation) -> Features:
        path = "/v1/perception/perceive"
        reply = await self.client.apost(self.kind, path, observation=observation)
        return reply["features"]


class RemotePlanning(_Remote, PlanningModule):
    """Planning served by a module service."""

    def __init__(self, client: ServiceClient) -> None:
        super().__init__()
        self._bind(client)

    def decide(self, features: Features) -> Decision:
        reply = self.client.post(self.kind, "/v1/planning/decide", features=features)
        return Decision(
            reply["action"], reply.get("reason"), reply.get("scores"), reply.get("details")
        )

    async def adecide(self, features: Features) -> Decision:
        reply = await self.client.apost(self.kind, "/v1/planning/decide", features=features)
        return Decision(
            reply["action"], reply.get("reason"), reply.get("scores"), reply.get("details")
        )


class RemoteExecution(_Remote, ExecutionModule):
    """Execution served by a module service (the environment lives there)."""

    def __init__(self, client: ServiceClient) -> None:
        super().__init__()
        self._bind(client)

    def perform(self, action: Any) -> Outcome:
        return Outcome(**self.client.post(self.kind, "/v1/execution/perform", action=action))

    async def aperform(self, action: Any) -> Outcome:
        return Outcome(**await self.client.apost(self.kind, "/v1/execution/perform", action=action))

    async def areset(self, *, seed: int | None = None) -> Observation:
        reply = await self.client.apost(self.kind, "/v1/execution/reset", seed=seed)
        return reply["observation"]


class RemoteLearning(_Remote, LearningModule):
    """Learning served by a module service."""

    def __init__(self, client: ServiceClient) -> None:
        super().__init__()
        self._bind(client)

    def update(self, transition: Transition) -> dict[str, Any] | None:
        reply = self.client.post(self.kind, "/v1/learning/update", transition=transition.to_dict())
        report: dict[str, Any] | None = reply["report"]
        return report

    async def aupdate(self, transition: Transition) -> dict[str, Any] | None:
        reply = await self.client.apost(
            self.kind, "/v1/learning/update", transition=transition.to_dict()
        )
        report: dict[str, Any] | None = reply["report"]
        return report


_CLASSES: dict[str, type[Any]] = {
    "perception": RemotePerception,
    "planning": RemotePlanning,
    "execution": RemoteExecution,
    "learning": RemoteLearning,
}


def remote_modules(
    base_url: str, *kinds: str, session: str | None = None, **client: Any
) -> list[Any]:
    """Remote modules of ``kinds`` on one service, sharing one session (and its state)."""
    unknown = [kind for kind in kinds if kind not in _CLASSES]
    if unknown:
        raise ConfigError("kinds", f"unknown module kinds {unknown}; one of {list(_CLASSES)}")
    shared = ServiceClient(base_url, session=session, **client)
    return [_CLASSES[kind](shared) for kind in kinds]
