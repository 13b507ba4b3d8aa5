"""What the four module kinds share: reset, training mode, and sync/async twins.

Each module kind has a *seed method* users override (``perceive``, ``plan``, ``execute``,
``learn``), a richer *full form* the runtime calls (``decide``, ``perform``, ``update``),
and an async twin of each. A subclass may override any one of them; the others follow.
Which of them a subclass overrides is worked out once per class, in
``__init_subclass__``, so the hot path pays no lookup.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar, TypeVar

__all__ = ["Component", "Module", "only_components", "run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code.

    Works both with no event loop (the common case) and from inside a running loop,
    where the coroutine runs on a private loop in a helper thread so the caller's loop
    is never re-entered.
    """
    import asyncio  # lazily: it costs more to import than the rest of the package
    import contextvars
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    # The helper thread runs in a copy of the caller's context, so context variables
    # (a durable run's step position, say) reach the coroutine as they would in-thread.
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(context.run(asyncio.run, coro))
        except BaseException as err:  # re-raised in the caller's thread
            error.append(err)

    thread = threading.Thread(target=target, name="llmagentos-run-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Component:
    """Base of the replaceable sub-components (collector, selector, optimizer, ...).

    Components are plain objects; ``reset`` is called at every episode start and
    ``state_dict``/``load_state_dict`` carry whatever must survive a save and resume.
    ``training`` mirrors the owning module's mode.
    """

    training: bool = True

    def reset(self, *, seed: int | None = None) -> None:
        """Prepare for a new episode. ``seed`` reseeds any randomness."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state that :meth:`load_state_dict` restores."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def only_components(*parts: object) -> tuple[Component, ...]:
    """The parts that are :class:`Component` instances (others are plain protocol objects)."""
    return tuple(part for part in parts if isinstance(part, Component))


class Module:
    """Base of the four module kinds.

    Attributes:
        kind: ``perception``, ``planning``, ``execution`` or ``learning``.
        training: ``True`` while the agent trains; evaluation turns exploration and
            learning off.
    """

    kind: ClassVar[str] = "module"
    #: Method names whose override by a subclass changes how the others behave.
    _twin_names: ClassVar[tuple[str, ...]] = ()
    #: The subset of ``_twin_names`` the concrete class overrides (computed per class).
    _overrides: ClassVar[frozenset[str]] = frozenset()
    #: Whether the class overrides an async twin (it may really await something).
    _awaits: ClassVar[bool] = False
    #: The class that defines the defaults (set by each kind's base class).
    _kind_base: ClassVar[type[Module] | None] = None

    training: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = cls._kind_base
        if base is None:
            return
        cls._overrides = frozenset(
            name for name in cls._twin_names if getattr(cls, name) is not getattr(base, name)
        )
        cls._awaits = any(name.startswith("a") for name in cls._overrides)

    def components(self) -> Iterable[Component]:
        """The sub-components this module is made of (reset and saved with it)."""
        return ()

    def reset(self, *, seed: int | None = None) -> Any:
        """Prepare for a new episode; reseeds components when ``seed`` is given."""
        for component in self.components():
            component.reset(seed=seed)
        return None

    async def areset(self, *, seed: int | None = None) -> Any:
        """Async twin of :meth:`reset`."""
        return self.reset(seed=seed)

    def train(self, mode: bool = True) -> None:
        """Switch training mode on (default) or off, for the module and its components."""
        self.training = mode
        for component in self.components():
            component.training = mode

    def close(self) -> None:
        """Release resources (environments, connections)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state of the components, keyed by component position."""
        return {str(i): c.state_dict() for i, c in enumerate(self.components())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for i, component in enumerate(self.components()):
            if str(i) in state:
                component.load_state_dict(state[str(i)])

    def __repr__(self) -> str:
        parts = ", ".join(f"{type(c).__name__}" for c in self.components())
        return f"{type(self).__name__}({parts})"
