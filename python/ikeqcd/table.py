"""The token taker's SA table: the result codes of :meth:`ikeqcd.SaTable.check`.

:class:`ikeqcd.SaTable` itself is native (``ikeqcd._core``); this module holds what the
Python side adds to it.
"""

from __future__ import annotations

import enum

__all__ = ["TokenCheck"]


class TokenCheck(enum.IntEnum):
    """Outcome of comparing received QCD tokens with an SA's stored ones.

    :meth:`ikeqcd.SaTable.check` returns a member; :meth:`ikeqcd.SaTable.check_many` returns
    an ``int8`` array of the same codes (compare with ``TokenCheck.MATCH`` etc.).
    """

    NO_SA = 0
    """No SA with these SPIs: log it (RFC 6290 §3, T-4), nothing to delete."""
    MISMATCH = 1
    """The SA exists and no received token equals a stored one: log it, keep the SA."""
    MATCH = 2
    """A received token equals a stored one: the peer lost this SA (T-5)."""
