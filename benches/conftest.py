"""Benchmarks are off in the default test run; run them with
``python -m pytest benches/ --benchmark-enable`` (see the README's performance section)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def spis_1m() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    a = rng.integers(0, 2**64 - 1, 1_000_000, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, 1_000_000, dtype=np.uint64, endpoint=True)
    return a, b
