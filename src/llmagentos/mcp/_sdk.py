"""The one place that checks for the optional ``mcp`` SDK, so a missing extra fails clearly."""

from __future__ import annotations

from llmagentos.exceptions import MissingExtraError

__all__ = ["require_sdk"]


def require_sdk(feature: str) -> None:
    """Check that the ``mcp`` SDK can be imported before ``feature`` uses it.

    Raises:
        MissingExtraError: the ``llmagentos[mcp]`` extra is not installed.
    """
    try:
        import mcp  # noqa: F401
    except ImportError as err:
        # Only the SDK itself missing is a missing extra; an installed SDK that fails
        # to import (a broken dependency) must surface as the real ImportError.
        if err.name == "mcp":
            raise MissingExtraError(feature, "mcp", "mcp") from err
        raise
