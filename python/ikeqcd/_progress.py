"""The one progress bar of the command line (``simulate``, ``serve``, ``load``): tqdm on stderr.

:func:`wanted` decides whether to draw it (off when stderr is not a terminal, unless forced);
:class:`Bar` draws one line that tqdm redraws at most 5 times a second. Progress is in seconds
(of simulated or of wall-clock time), with a free-text status after the bar.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Bar", "wanted"]

_KNOWN = "{desc} |{bar:24}| {n:.1f}/{total:g} s{postfix}"
_OPEN = "{desc} {elapsed}{postfix}"


def wanted(*, force: bool = False, off: bool = False, stream: TextIO | None = None) -> bool:
    """Whether to draw a bar: never with ``off`` (``--no-progress``), always with ``force``
    (``--progress``), otherwise only when ``stream`` (default stderr) is a terminal."""
    if off:
        return False
    if force:
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _size(stream: TextIO) -> dict[str, Any]:
    """tqdm's size options: follow a terminal's size; a terminal that reports none (a bare
    pseudo-terminal, where tqdm would hide the bar) counts as 100 x 24; anything else gets
    tqdm's default."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return {}
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": size.columns or 100, "nrows": size.lines or 24}


class Bar:
    """One progress line on ``stream`` (default stderr).

    Args:
        desc: the label before the bar.
        total: seconds to go; ``None``: open-ended (elapsed time and status only).
        stream: where to draw.
    """

    def __init__(
        self, desc: str, total: float | None = None, *, stream: TextIO | None = None
    ) -> None:
        self._desc = desc
        stream = sys.stderr if stream is None else stream
        self._bar = tqdm(
            desc=desc,
            total=total,
            file=stream,
            bar_format=_OPEN if not total else _KNOWN,
            mininterval=0.2,
            leave=True,
            disable=False,
            **_size(stream),
        )

    def show(
        self,
        done: float,
        *,
        status: str | None = None,
        desc: str | None = None,
        total: float | None = None,
    ) -> None:
        """Move the bar to ``done`` seconds with ``status`` after it; a new ``desc`` starts the
        bar over (with ``total``, when given). Redrawn at most 5 times a second."""
        bar = self._bar
        if desc is not None and desc != self._desc:
            self._desc = desc
            bar.reset(total=total if total is not None else bar.total)
            bar.set_description_str(desc, refresh=False)
        elif total is not None and total != bar.total:
            bar.total = total
        bar.bar_format = _OPEN if not bar.total else _KNOWN
        if status is not None:
            bar.set_postfix_str(status, refresh=False)
        done = min(done, bar.total) if bar.total else done
        bar.update(done - bar.n)

    def close(self) -> None:
        """Draw the last state and end the line."""
        self._bar.close()

    def __enter__(self) -> Bar:  # noqa: PYI034 - typing.Self is 3.11+
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
