"""Name things in config: a registry of factories per kind, like Gymnasium's ``make``.

Kinds are free-form strings; the built-ins use ``perception``, ``planning``,
``execution``, ``learning`` (whole modules), ``extractor``, ``selector``,
``optimizer``, ``reward`` (components) and ``env``. Anywhere a registered name is
accepted, an import path ``"package.module:Name"`` works too.

Factories may ask for *context* by parameter name (``env``, ``q_table``,
``n_actions``, ...): :meth:`Registry.make` passes the context entries a factory's
signature names and the caller did not give.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from llmagentos.exceptions import ConfigError, RegistryError

__all__ = ["Registry", "RegistryEntry", "register", "registry"]

F = TypeVar("F", bound=Callable[..., Any])

_MODULE_KINDS = ("perception", "planning", "execution", "learning")


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One registered factory."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str


def import_object(path: str) -> Any:
    """Import ``"package.module:Name"`` (or ``package.module.Name``)."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError("", f"{path!r} is not an import path like 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError("", f"cannot import {module_name!r} (from {path!r}): {err}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError("", f"{module_name!r} has no attribute {attr!r}") from err
    return obj


class Registry:
    """Factories by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, RegistryEntry]] = {}
        self._loaded_builtins = False

    def _ensure_builtins(self) -> None:
        if not self._loaded_builtins:
            self._loaded_builtins = True
            importlib.import_module("llmagentos.builtins")

    def register(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        overwrite: bool = False,
    ) -> None:
        """Register ``factory`` as ``name`` of ``kind``.

        Raises:
            ValueError: the name is taken and ``overwrite`` is false.
        """
        self._ensure_builtins()
        entries = self._entries.setdefault(kind, {})
        if name in entries and not overwrite:
            raise ValueError(f"{kind} {name!r} is already registered (pass overwrite=True)")
        doc = description or (inspect.getdoc(factory) or "").split("\n", 1)[0]
        entries[name] = RegistryEntry(kind, name, factory, doc)

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        self._ensure_builtins()
        return sorted(self._entries.get(kind, {}))

    def entries(self, kind: str) -> list[RegistryEntry]:
        self._ensure_builtins()
        return [self._entries[kind][n] for n in self.names(kind)]

    def kinds(self) -> list[str]:
        self._ensure_builtins()
        return sorted(self._entries)

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory for ``name`` (a registered name or an import path).

        Raises:
            RegistryError: unknown name; lists the close matches.
        """
        self._ensure_builtins()
        entry = self._entries.get(kind, {}).get(name)
        if entry is not None:
            return entry.factory
        if ":" in name:
            obj = import_object(name)
            if not callable(obj):
                raise ConfigError("", f"{name!r} is not callable")
            return obj  # type: ignore[no-any-return]
        suggestions = difflib.get_close_matches(name, self.names(kind), n=5, cutoff=0.5)
        label = f"{kind} module" if kind in _MODULE_KINDS else kind
        raise RegistryError(label, name, suggestions)

    def make(
        self,
        kind: str,
        name: str,
        /,
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call the factory for ``name`` with ``kwargs`` plus the context it asks for.

        Raises:
            RegistryError: unknown name.
            ConfigError: the factory does not accept the given arguments.
        """
        factory = self.get(kind, name)
        call_kwargs = dict(kwargs)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # some builtins have no signature
            signature = None
        if signature is not None:
            params = signature.parameters
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            for key, value in (context or {}).items():
                if key in params and key not in call_kwargs:
                    call_kwargs[key] = value
            unknown = [k for k in kwargs if k not in params and not accepts_any]
            if unknown:
                allowed = [
                    p
                    for p, spec in params.items()
                    if spec.kind in (spec.KEYWORD_ONLY, spec.POSITIONAL_OR_KEYWORD)
                    and p not in (context or {})
                ]
                raise ConfigError(
                    unknown[0],
                    f"{kind} {name!r} takes no parameter {unknown[0]!r}"
                    + (f" (it takes: {', '.join(allowed)})" if allowed else ""),
                )
        try:
            return factory(**call_kwargs)
        except TypeError as err:
            raise ConfigError("", f"cannot make {kind} {name!r}: {err}") from err


registry = Registry()


def register(kind: str, name: str | None = None, *, description: str = "") -> Callable[[F], F]:
    """Decorator form of :meth:`Registry.register` on the global registry."""

    def decorator(factory: F) -> F:
        registry.register(kind, name or factory.__name__, factory, description=description)
        return factory

    return decorator
