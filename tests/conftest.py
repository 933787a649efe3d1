"""Shared fixtures and hypothesis profiles ("fast" by default, "slow" for nightly runs)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "fast", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

VECTORS = Path(__file__).parent / "vectors"
ROOT = Path(__file__).resolve().parent.parent


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def secret() -> bytes:
    return bytes(range(32))


@pytest.fixture
def summary(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """A line for the terminal summary's interop section (see below)."""

    def line(text: str) -> None:
        record_property("interop_summary", text)

    return line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the interop tests measured (``record_property("interop_summary", ...)``),
    so that a plain ``pytest -q`` run (CI's) shows it without ``-s`` or ``-rA``."""
    lines: dict[str, None] = {}  # every phase's report carries the test's properties
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == "interop_summary":
                    lines[f"{report.nodeid.split('::')[-1]}: {value}"] = None
    if lines:
        terminalreporter.write_sep("-", "interop with real IKE daemons")
        for line in lines:
            terminalreporter.write_line(line)
