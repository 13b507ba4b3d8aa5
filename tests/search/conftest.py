"""One BLAS thread for the search tests.

The machine has 2 shared cores; under load, OpenBLAS's second thread spins while it
waits for a core, and LSA's QR decompositions run ten times slower than on one thread.
The numbers do not depend on it (each test compares runs made the same way).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import scipy.linalg  # noqa: F401  (its own OpenBLAS must be loaded to be limited)
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(limits=1, user_api="blas"):
        yield
