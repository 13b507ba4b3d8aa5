"""The llmagentos exception hierarchy.

Every error the library raises on purpose derives from :class:`LLMAgentOSError`::

    LLMAgentOSError
    ├── ConfigError            bad configuration: names the field and the problem
    ├── RegistryError          unknown registry name: lists the close matches
    │   (also a LookupError)
    ├── ModuleError            a module failed or broke its contract during a step
    │   ├── ActionError        an action outside the environment's action space
    │   └── ModuleOutputError  a module returned a value of the wrong shape
    ├── EnvError               an environment broke the Gymnasium contract
    ├── CheckError             ``check_module`` / ``check_env`` found a violation
    ├── QTableError            a Q-table file cannot be read or does not fit
    ├── MissingExtraError      an optional dependency is not installed: names the extra
    │   (also an ImportError)
    ├── BudgetExceeded         an agent used up a token, request, step, time or tool budget
    ├── RunPaused              a run stopped on purpose and can be resumed
    │   └── ApprovalPending    a sensitive action awaits a human decision
    ├── DeployError            a deployment could not start or be found
    ├── DocumentError          a document cannot be read or parsed (``path``, ``reason``)
    ├── SessionStoreError      a service's session store is unusable (a bad signature)
    │   ├── SessionStoreUnavailable  the store did not answer (HTTP 503)
    │   ├── SessionConflict    another replica moved the session on (HTTP 409)
    │   └── SessionStateRefused  a stored state forged, copied or rolled back (``reason``)
    ├── SessionLimitReached    a session quota is full (``field``: the limit; HTTP 429/503)
    ├── RunLookupError         a run, episode or step to explain is not there (``field``)
    │   (also a LookupError)
    ├── JournalError           a durable run's journal cannot be used
    │   └── ResumeMismatch     a resumed run did not replay as recorded
    ├── GatewayError           the gateway refused a request (``status``: the HTTP status)
    │   ├── AuthError          401 missing/malformed/unknown/revoked key, 403 no scope
    │   ├── RateLimited        429: a token bucket is empty (``retry_after``)
    │   └── RateLimitUnavailable  the shared rate-limit store did not answer (503)
    ├── PrincipalError         a service got no valid signed principal (HTTP 401)
    ├── MemoryManagerError     the memory manager refused or failed a call
    │   ├── MemoryInputError   a bad argument: names the field (also ValueError; HTTP 422)
    │   ├── MemoryNotFound     no such item or namespace here: names it (also LookupError; 404)
    │   ├── EmbeddingMismatch  a vector whose dimension or model does not fit the namespace
    │   └── MemoryBackendError the store or the embedding backend failed (HTTP 503)
    ├── ToolError              a tool error raised on purpose (a failed call is a result)
    │   ├── ToolDefinitionError  a tool cannot be built or registered (also ValueError)
    │   ├── URLRefused         a URL refused before connecting (SSRF guard; also ValueError)
    │   ├── HttpToolError      an HTTP tool request failed
    │   │   └── HttpToolTimeout  ... within its time budget (also TimeoutError)
    │   ├── SandboxError       the code sandbox failed to run code
    │   │   └── SandboxUnavailable  the host cannot confine code: names what is missing
    │   │       └── ConfinementUnavailable  a limit cannot be enforced per sandbox here
    │   ├── MCPError           an MCP server or session failed (``server``)
    │   │   └── MCPConnectionError  unreachable, or the connection was lost
    │   ├── PathRefused        a workspace path escapes its root (also ValueError)
    │   ├── PatternError       a search pattern the regex engine refuses (also ValueError)
    │   │   └── PatternTooCostly  ... because running it could cost too much
    │   ├── ToolPoolExhausted  no tool thread can be had: hung calls reached the cap
    │   └── ToolProcessError   a process-isolated tool's worker died or answered wrongly
    └── ModelError             a model call failed (``model`` names the model)
        ├── UnknownModelError  no such model id: lists the available ones (also LookupError)
        ├── ModelHTTPError     the backend answered 4xx/5xx (``status_code``, ``body``)
        ├── ModelConnectionError  the backend could not be reached
        ├── ModelTimeoutError  the call's deadline passed
        └── ModelOutputError   the reply broke its contract (bad JSON, schema, tool
                               arguments) even after the allowed repair attempts

Exceptions carry their data as attributes and never log; foreign exceptions are
translated at the boundary with ``raise ... from err``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ActionError",
    "ApprovalPending",
    "AuthError",
    "BudgetExceeded",
    "CheckError",
    "ConfigError",
    "ConfinementUnavailable",
    "DeployError",
    "DocumentError",
    "EnvError",
    "GatewayError",
    "JournalError",
    "SessionConflict",
    "SessionLimitReached",
    "SessionStateRefused",
    "SessionStoreError",
    "SessionStoreUnavailable",
    "MCPConnectionError",
    "MCPError",
    "LLMAgentOSError",
    "MissingExtraError",
    "ModelConnectionError",
    "EmbeddingMismatch",
    "MemoryBackendError",
    "MemoryManagerError",
    "MemoryInputError",
    "MemoryNotFound",
    "ModelError",
    "ModelHTTPError",
    "ModelOutputError",
    "ModelTimeoutError",
    "ModuleError",
    "ModuleOutputError",
    "PathRefused",
    "PatternError",
    "PatternTooCostly",
    "PrincipalError",
    "QTableError",
    "RateLimitUnavailable",
    "RateLimited",
    "RegistryError",
    "ResumeMismatch",
    "RunLookupError",
    "RunPaused",
    "SandboxError",
    "SandboxUnavailable",
    "ToolDefinitionError",
    "ToolError",
    "ToolPoolExhausted",
    "ToolProcessError",
    "URLRefused",
    "HttpToolError",
    "HttpToolTimeout",
    "UnknownModelError",
]


def _short(value: Any, limit: int = 80) -> str:
    """A repr short enough for a one-line error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _restore_error(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Rebuild a pickled error without calling its ``__init__`` (whose signature is its own)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class LLMAgentOSError(Exception):
    """Base class of every error llmagentos raises on purpose.

    Every subclass pickles with its attributes, whatever its ``__init__`` takes, so an
    error raised in another process (a Ray worker, the cluster's kernel) arrives whole.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


class ConfigError(LLMAgentOSError, ValueError):
    """A configuration value is missing or invalid.

    Attributes:
        field: dotted path of the offending field (``agent.learning.alpha``), or ``""``.
        problem: what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class RegistryError(LLMAgentOSError, LookupError):
    """A name is not registered; ``suggestions`` holds the close matches."""

    def __init__(self, kind: str, name: str, suggestions: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else ""
        )
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class ModuleError(LLMAgentOSError):
    """A module raised or broke its contract while the agent ran it.

    Attributes:
        module: which module (``perception``, ``planning``, ``execution``, ``learning``).
        message: what went wrong.
        step: the step index within the episode (``None`` during reset or outside a run);
            the agent fills it in when the error passes through it.
        value: the offending input or output, when there is one.
    """

    def __init__(
        self,
        module: str,
        message: str,
        *,
        step: int | None = None,
        value: Any = None,
    ) -> None:
        self.module = module
        self.message = message
        self.step = step
        self.value = value
        super().__init__(module, message)

    def __str__(self) -> str:
        where = f"{self.module} module" + (f" at step {self.step}" if self.step is not None else "")
        return f"{where}: {self.message}"


class ActionError(ModuleError):
    """The planner chose an action the environment does not accept."""


class ModuleOutputError(ModuleError):
    """A module returned a value of the wrong shape or type."""


class EnvError(LLMAgentOSError):
    """An environment broke the Gymnasium ``reset``/``step`` contract."""


class CheckError(LLMAgentOSError, AssertionError):
    """A conformance check failed; ``target`` says what was being checked."""

    def __init__(self, target: str, message: str) -> None:
        self.target = target
        super().__init__(f"{target}: {message}")


class QTableError(LLMAgentOSError, ValueError):
    """A Q-table cannot be loaded, or does not fit the environment it is used with."""


class MissingExtraError(LLMAgentOSError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        self.feature, self.extra, self.package = feature, extra, package
        super().__init__(
            f"{feature} needs the package {package!r}: pip install 'llmagentos[{extra}]'"
        )


class DocumentError(LLMAgentOSError):
    """A document cannot be read or parsed; an indexer reports it by path and skips it.

    Attributes:
        path: the file, as given to the loader.
        reason: what is wrong (``unsupported type '.xyz'``, ``binary content``, ...).
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class BudgetExceeded(LLMAgentOSError):
    """An agent used up a budget (tokens, requests, cost, steps, time).

    Attributes:
        agent: the agent whose budget ran out.
        resource: what ran out (``tokens``, ``requests``, ...).
        limit: the budget; ``used``: how much was used (or would be, with this call).
    """

    def __init__(self, agent: str, resource: str, limit: float, used: float) -> None:
        self.agent, self.resource, self.limit, self.used = agent, resource, limit, used
        super().__init__(f"agent {agent!r} exceeded its {resource} budget ({used:g} of {limit:g})")


class RunPaused(LLMAgentOSError):
    """A run stopped on purpose and can be resumed (not a failure).

    Raised through the agent's modules unchanged, so the runner can record the pause.
    """


class ApprovalPending(RunPaused):
    """A sensitive action waits for a human decision; the run is paused until then.

    Attributes:
        key: the request's idempotency key (what ``llmagentos runs approve`` names).
        tool: the tool the action calls; ``arguments``: its arguments.
    """

    def __init__(self, key: str, tool: str, arguments: Any) -> None:
        self.key, self.tool, self.arguments = key, tool, arguments
        super().__init__(f"tool call {tool!r} awaits approval (request {key})")


class DeployError(LLMAgentOSError):
    """A deployment (``llmagentos up``) could not start, or its state cannot be read."""


class SessionStoreError(LLMAgentOSError):
    """A module service's session store cannot be used (unreachable, or a stored
    state that fails its signature check)."""


class SessionStoreUnavailable(SessionStoreError):
    """The session store did not answer (Redis down, SQLite locked or full): HTTP 503,
    the call was not applied or not kept; sending it again is safe."""


class SessionConflict(SessionStoreError):
    """Another replica moved the session on while this one applied a call (HTTP 409:
    the call was not applied; sending it again is safe)."""


class SessionStateRefused(SessionStoreError):
    """A stored session state was refused: not signed for this service, tenant, session
    and version (``reason``: ``forged``), older than one this replica saw (``rollback``),
    or unsigned and pickled (``unsigned``). Nothing is loaded; the store is left as is."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class SessionLimitReached(LLMAgentOSError):
    """A new session does not fit: ``field`` names the limit (``max_sessions_per_tenant``:
    HTTP 429; ``max_sessions`` or every session busy: HTTP 503 with ``Retry-After``)."""

    def __init__(self, field: str, limit: int, message: str, *, status: int = 429) -> None:
        self.field, self.limit, self.status = field, limit, status
        super().__init__(message)


class RunLookupError(LLMAgentOSError, LookupError):
    """A run folder, an episode or a step asked for is not there.

    Attributes:
        field: what was asked for: ``run``, ``episode`` or ``step``.
        problem: what is there instead (the episodes traced, the steps of the episode).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class JournalError(LLMAgentOSError):
    """A durable run's journal cannot be opened, does not fit the run, or is corrupt."""


class ResumeMismatch(JournalError):
    """A resumed run did not replay as recorded: the agent is not deterministic.

    Attributes:
        step: the global step index where the replay differed; ``field``: what differed.
    """

    def __init__(self, step: int, field: str, recorded: Any, replayed: Any) -> None:
        self.step, self.field = step, field
        self.recorded, self.replayed = recorded, replayed
        super().__init__(
            f"replay differs from the journal at step {step}: {field} was "
            f"{_short(recorded)}, replay gave {_short(replayed)} (is the agent seeded and "
            "deterministic, and the config unchanged?)"
        )


class GatewayError(LLMAgentOSError):
    """The gateway refused a request; ``status`` is the HTTP status it answers with.

    Attributes:
        field: what in the request was refused (``path``, ``body.session``...), or ``""``.
    """

    def __init__(self, status: int, message: str, *, field: str = "") -> None:
        self.status = status
        self.field = field
        super().__init__(message)


class RateLimited(GatewayError):
    """Too many requests (HTTP 429); ``retry_after``: seconds until one would pass."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(429, message)


class RateLimitUnavailable(GatewayError):
    """The shared rate-limit store did not answer (HTTP 503 with ``Retry-After``)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class AuthError(GatewayError):
    """A request is not authenticated (401) or not allowed (403).

    Attributes:
        reason: ``missing``, ``malformed``, ``unknown``, ``revoked`` (401) or
            ``forbidden`` (403).
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(403 if reason == "forbidden" else 401, message)


class PrincipalError(LLMAgentOSError):
    """A service refused a request's signed principal (answered 401).

    Attributes:
        reason: ``missing``, ``invalid``, ``expired`` or ``mismatch``.
    """

    status = 401

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class MemoryManagerError(LLMAgentOSError):
    """The memory manager refused or failed a call."""


class MemoryInputError(MemoryManagerError, ValueError):
    """A bad argument to the memory manager.

    Attributes:
        field: the argument or field at fault; ``problem``: what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class MemoryNotFound(MemoryManagerError, LookupError):
    """No such item (or namespace) where the caller looked.

    An item of another tenant or agent is "not found" too: its existence is not told.

    Attributes:
        what: ``item``, ``key`` or ``namespace``; ``name``: the id or name looked up;
        ``namespace``: where it was looked up.
    """

    def __init__(self, what: str, name: str, namespace: str) -> None:
        self.what, self.name, self.namespace = what, name, namespace
        if what == "namespace":
            super().__init__(f"no memory namespace {name!r}")
        else:
            super().__init__(f"no {what} {name!r} in memory namespace {namespace!r}")


class EmbeddingMismatch(MemoryManagerError, ValueError):
    """A vector that does not fit its namespace's index (refused before anything is written).

    Attributes:
        namespace: the namespace; ``expected`` and ``got``: dimensions or model ids.
    """

    def __init__(self, namespace: str, what: str, expected: object, got: object) -> None:
        self.namespace, self.what, self.expected, self.got = namespace, what, expected, got
        super().__init__(
            f"memory namespace {namespace!r} holds {what} {expected!r}, got {got!r}: "
            "an index has one embedding model and dimension"
        )


class MemoryBackendError(MemoryManagerError):
    """The memory store or its embedding backend failed (unreachable, corrupt, closed).

    Attributes:
        backend: which store or embedder.
    """

    def __init__(self, message: str, *, backend: str) -> None:
        self.backend = backend
        super().__init__(f"{backend}: {message}")


class ToolError(LLMAgentOSError):
    """Base class of tool errors raised on purpose (never for a failed tool call)."""


class ToolDefinitionError(ToolError, ValueError):
    """A tool cannot be built or registered: bad name, bad signature, duplicate."""


class URLRefused(ToolError, ValueError):
    """A URL was refused before any connection was made.

    Attributes:
        url: the URL as given.
        reason: why it was refused.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        shown = url if len(url) <= 200 else url[:197] + "..."
        super().__init__(f"refused URL {shown!r}: {reason}")


class HttpToolError(ToolError):
    """An HTTP request made by a tool failed (connection, protocol, redirects)."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(f"{url}: {message}")


class HttpToolTimeout(HttpToolError, TimeoutError):
    """An HTTP request made by a tool did not finish within its time budget."""


class SandboxError(ToolError):
    """The code-execution sandbox failed to set up or run (never for the code's own errors)."""


class SandboxUnavailable(SandboxError):
    """The host lacks what the sandbox needs, so it refuses to run anything.

    Attributes:
        backend: the backend asked for (``auto``, ``bwrap``, ``unshare``).
        problems: one line per backend probed: what was tried and the exact error.
        hint: what to install or enable.
    """

    def __init__(self, backend: str, problems: Sequence[str], hint: str) -> None:
        self.backend, self.problems, self.hint = backend, list(problems), hint
        tried = "; ".join(self.problems) or "nothing to probe"
        super().__init__(
            f"sandbox backend {backend!r} is unavailable, refusing to run code unconfined: "
            f"{tried}. {hint}"
        )


class ConfinementUnavailable(SandboxUnavailable):
    """A limit cannot be enforced per sandbox on this host (no usable cgroup for it).

    Attributes:
        confinement: the confinement asked for (``auto``, ``cgroup``, ``cgroup-v1``...).
        limits: each :class:`~llmagentos.sandbox.SandboxLimits` field that cannot be
            enforced, with why.
    """

    def __init__(self, confinement: str, limits: dict[str, str], hint: str) -> None:
        self.confinement, self.limits = confinement, dict(limits)
        problems = [f"{name}: {why}" for name, why in self.limits.items()]
        SandboxError.__init__(
            self,
            f"sandbox confinement {confinement!r} cannot enforce "
            f"{', '.join(self.limits)} per sandbox here, refusing: {'; '.join(problems)}. "
            f"{hint}",
        )
        self.backend, self.problems, self.hint = confinement, problems, hint


class MCPError(ToolError):
    """An MCP server or session failed outside a single tool call.

    Attributes:
        server: how the server was reached (a command line or a URL).
    """

    def __init__(self, server: str, message: str) -> None:
        self.server = server
        super().__init__(f"MCP server {server}: {message}")


class MCPConnectionError(MCPError, ConnectionError):
    """An MCP server could not be reached, or its connection was lost."""


class PathRefused(ToolError, ValueError):
    """A workspace file tool refused a path (escape, symlink, device, NUL, too large).

    Attributes:
        path: the path as given.
        reason: why it was refused.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        shown = path if len(path) <= 200 else path[:197] + "..."
        super().__init__(f"refused path {shown!r}: {reason}")


class PatternError(ToolError, ValueError):
    """A search pattern was refused: bad syntax, or a feature the engine lacks.

    Attributes:
        pattern: the pattern as given.
        reason: why it was refused.
    """

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        shown = pattern if len(pattern) <= 200 else pattern[:197] + "..."
        super().__init__(f"pattern {shown!r} refused: {reason}")


class PatternTooCostly(PatternError):
    """A search pattern would cost too much to run (too large once compiled)."""


class ToolPoolExhausted(ToolError):
    """A sync tool call was refused at once: the tool pool cannot run it now.

    Attributes:
        reason: what is full (threads stuck in timed-out calls, or the queue).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the tool pool refused the call: {reason}")


class ToolProcessError(ToolError):
    """A process-isolated tool's worker process died, or sent back an unusable answer.

    Attributes:
        tool: the tool's import path (``module:qualname``).
    """

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        super().__init__(f"tool {tool}: {message}")


class ModelError(LLMAgentOSError):
    """A model call failed. ``model`` is the model id (``local:smollm2``, ...)."""

    def __init__(self, message: str, *, model: str = "") -> None:
        self.model = model
        super().__init__(f"{model}: {message}" if model else message)


class UnknownModelError(ModelError, LookupError):
    """No model has this id; ``available`` lists the ids and prefixes that work."""

    def __init__(self, model: str, available: Sequence[str]) -> None:
        self.available = list(available)
        super().__init__(f"unknown model id; available: {', '.join(self.available)}", model=model)

    def __str__(self) -> str:
        return str(self.args[0])


class ModelHTTPError(ModelError):
    """The backend answered with an HTTP error status."""

    def __init__(
        self,
        status_code: int,
        body: str = "",
        *,
        model: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after
        detail = f": {body[:200]}" if body else ""
        super().__init__(f"HTTP {status_code}{detail}", model=model)


class ModelConnectionError(ModelError):
    """The backend could not be reached (refused, reset, DNS, broken stream)."""


class ModelTimeoutError(ModelError):
    """The call did not finish before its deadline."""


class ModelOutputError(ModelError):
    """The model's reply broke its contract (invalid JSON, schema, or tool arguments).

    ``errors`` holds the validation message of every attempt, oldest first.
    """

    def __init__(self, message: str, *, model: str = "", errors: Sequence[str] = ()) -> None:
        self.errors = list(errors)
        super().__init__(message, model=model)


def describe(value: Any) -> str:
    """Public helper for messages: a short repr with the type name."""
    return f"{_short(value)} ({type(value).__name__})"
