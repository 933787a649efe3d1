"""Clock readings handed to the policy layer: the Python side of ``rust/clock.rs``.

A caller's clock (``clock=`` of :class:`~ikeqcd.FailureDetector` and
:class:`~ikeqcd.TokenResponder`) can be broken or hostile; one NaN, infinite or absurd
reading must not poison state for ever, so every reading is checked and refused with
:class:`~ikeqcd.errors.InvalidArgument`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ikeqcd.errors import InvalidArgument

__all__ = ["MAX_SECONDS", "check_time", "read_clock"]

MAX_SECONDS = 1e12
"""The largest accepted |time| in seconds (about 31 700 years), as in the core."""


def check_time(value: object, name: str = "now") -> float:
    """``value`` as a float if it is a usable time (a finite real within ±1e12 s).

    Raises:
        InvalidArgument: anything else (NaN, ±inf, 1e308, a non-number).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # type: ignore[arg-type]  # numpy scalars and the like
        except (TypeError, ValueError):
            raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}") from None
    t = float(value)
    if not math.isfinite(t) or abs(t) > MAX_SECONDS:
        raise InvalidArgument(
            f"{name} must be a finite number of seconds within ±{MAX_SECONDS:g}, got {t!r}"
        )
    return t


def read_clock(clock: Callable[[], float]) -> float:
    """One checked reading of ``clock``."""
    return check_time(clock(), "clock()")

