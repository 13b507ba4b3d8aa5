"""Write files atomically: a crash or Ctrl-C never leaves half a file behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a temporary name next to ``target``, then rename it into place.

    The temporary file is created by ``write`` itself (so it gets the usual permissions)
    in the same folder, which makes the final ``os.replace`` atomic.
    """
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
