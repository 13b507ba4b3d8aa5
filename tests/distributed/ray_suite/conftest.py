"""Inside the namespace: a local Ray cluster of 2 CPUs, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    from llmagentos.distributed import connect

    ray = connect(num_cpus=2)
    yield ray
    ray.shutdown()
