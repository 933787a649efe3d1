"""Read timings from the ``benchmark`` fixture of pytest-benchmark or pytest-codspeed alike.

Both plugins provide a ``benchmark`` fixture with ``benchmark(fn, ...)`` and
``benchmark.pedantic(fn, args=..., rounds=...)``; only pytest-benchmark keeps per-run
statistics (``benchmark.stats``) and ``extra_info``. Under pytest-codspeed (which measures by
instruction counts or its own wall clock and reports to CodSpeed), or with
``--benchmark-disable``, :func:`seconds` returns ``None`` and the suites skip their printed
rates instead of failing:

    python -m pytest benches/ --benchmark-enable --benchmark-json out.json   # pytest-benchmark
    python -m pytest benches/ --codspeed                                     # pytest-codspeed
"""

from __future__ import annotations

from typing import Any


def seconds(benchmark: Any, which: str = "min") -> float | None:
    """The fixture's ``min``/``median`` seconds per round, or ``None`` when it keeps none."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    value = getattr(inner, which, None)
    return float(value) if value else None


def note(benchmark: Any, key: str, value: float) -> None:
    """Store ``value`` in ``extra_info`` where the fixture has one (pytest-benchmark)."""
    extra = getattr(benchmark, "extra_info", None)
    if isinstance(extra, dict):
        extra[key] = value
