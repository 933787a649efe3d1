"""Option types of the command line: every value is checked here, once, before any work.

Each type is an argparse ``type=`` callable. A refused value raises
:class:`argparse.ArgumentTypeError`, which argparse turns into its usage line and one
``ikeqcd CMD: error: argument --opt: <what is allowed>, got <value>`` line with exit status 2,
never a traceback. Every type has an upper bound (no ``OverflowError`` deep in the core for
``--sas 99999999999999999999``), refuses ``nan``, and refuses ``inf`` unless it documents what
``inf`` means. Output paths are checked where they will be written (the directory exists and is
writable, the path is not a directory, the extension is one the writer knows) before a run
starts, not after it.

The types carry their bounds as attributes (:class:`Number`) and their kind (:class:`Path`),
so the tests can build their bad-value table from the parser itself: an option added without
one of these types fails ``tests/test_cli_bad_values.py``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from pathlib import Path as _P

__all__ = [
    "SEED",
    "Address",
    "ClusterUrl",
    "HexDatagram",
    "Name",
    "Number",
    "Path",
    "count",
    "fraction",
    "port",
    "seconds",
]

_Err = argparse.ArgumentTypeError


class Number:
    """An int or float option within ``lo..hi``.

    Args:
        kind: ``int`` or ``float``.
        lo: the smallest value allowed.
        hi: the largest value allowed (every number option has one).
        lo_open: ``lo`` itself is not allowed (``> lo``).
        hi_open: ``hi`` itself is not allowed (``< hi``).
        words: spellings with a documented meaning (``{"max": 0.0}``, ``{"inf": math.inf}``),
            matched case-insensitively before the number is parsed. Only these can give
            ``inf``; ``nan`` is always refused.
        unit: what the number counts, for the error message (``"seconds"``).
    """

    def __init__(
        self,
        kind: type[int | float],
        lo: float,
        hi: float,
        *,
        lo_open: bool = False,
        hi_open: bool = False,
        words: Mapping[str, float] | None = None,
        unit: str = "",
    ) -> None:
        self.kind = kind
        self.lo, self.hi = lo, hi
        self.lo_open, self.hi_open = lo_open, hi_open
        self.words = {k.lower(): v for k, v in (words or {}).items()}
        self.unit = unit
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def allowed(self) -> str:
        """The allowed values in words, as the error messages say them."""
        what = "an integer" if self.kind is int else "a number"
        lo = f"{self.lo:g}" if self.kind is float else str(int(self.lo))
        hi = f"{self.hi:g}" if self.kind is float else str(int(self.hi))
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        if self.kind is int and not self.lo_open and not self.hi_open:
            span = f"{lo}..{hi}"
        else:
            span = f"{left}{lo}, {hi}{right}"
        text = f"{what}{' of ' + self.unit if self.unit else ''} in {span}"
        if self.words:
            text += " or " + " / ".join(repr(w) for w in self.words)
        return text

    def accepts(self, value: float) -> bool:
        """Whether a parsed number is within the bounds."""
        if math.isnan(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __call__(self, text: str) -> int | float:
        word = text.strip().lower()
        if word in self.words:
            v = self.words[word]
            return int(v) if self.kind is int and math.isfinite(v) else v
        try:
            value: int | float = self.kind(text)
        except ValueError:
            raise _Err(f"must be {self.allowed()}, got {text!r}") from None
        if not self.accepts(value):
            raise _Err(f"must be {self.allowed()}, got {text!r}")
        return value

    def __repr__(self) -> str:
        return f"Number({self.allowed()})"


MAX_SECONDS = 1e9
"""The longest duration any option takes (about 31 years): finite, so it cannot overflow."""

SEED = Number(int, 0, 2**64 - 1)
"""A random seed: what the core's 64-bit generators take."""


def count(lo: int, hi: int, unit: str = "") -> Number:
    """An integer in ``lo..hi``."""
    return Number(int, lo, hi, unit=unit)


def seconds(
    *, zero: bool = True, hi: float = MAX_SECONDS, words: Mapping[str, float] | None = None
) -> Number:
    """A finite duration in seconds: ``>= 0`` (``zero``) or ``> 0``, at most ``hi``."""
    return Number(float, 0.0, hi, lo_open=not zero, words=words, unit="seconds")


def fraction(*, one: bool = True) -> Number:
    """A probability or fraction in ``[0, 1]`` (``[0, 1)`` without ``one``)."""
    return Number(float, 0.0, 1.0, hi_open=not one)


def port(*, zero: bool = True) -> Number:
    """A UDP or TCP port: 0..65535 (0 picks a free one) or 1..65535."""
    return Number(int, 0 if zero else 1, 65535, unit="port number" if zero else "")


def _one_of(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class Path:
    """A file option, checked before any work starts.

    Args:
        mode: ``"out"``: a file to write: its directory must exist and be writable, the path
            must not be a directory, an existing file must be writable. ``"in"``: an
            existing readable file (not a directory). ``"secret"``: a secret file that may
            not exist yet: not a directory, and its directory must exist (nothing creates
            missing directories for a secret silently; the error says how to make a private
            one).
        extensions: for ``"out"``: the endings the writer understands (``(".png", ".svg")``);
            empty means any.
        dash: ``"-"`` is accepted and returned as is (stdin or stdout).
    """

    def __init__(self, mode: str, *, extensions: tuple[str, ...] = (), dash: bool = False):
        if mode not in ("out", "in", "secret"):
            raise ValueError(f"unknown path mode {mode!r}")
        self.mode = mode
        self.extensions = extensions
        self.dash = dash
        self.__name__ = "path"

    def __call__(self, text: str) -> str:
        if self.dash and text == "-":
            return text
        if not text:
            raise _Err("an empty path")
        p = _P(text)
        if p.is_dir():
            if self.mode == "secret" and p.stat().st_mode & 0o022:
                raise _Err(
                    f"{text} is a directory, and one others can write: keep the secret file "
                    f"in a private directory (mkdir -m 700 DIR), e.g. DIR/qcd.secret"
                )
            name = "qcd.secret" if self.mode == "secret" else "FILE" + (self.extensions or ("",))[0]
            raise _Err(f"{text} is a directory; give a file's path, e.g. {p / name}")
        if self.extensions and p.suffix.lower() not in self.extensions:
            raise _Err(f"must end in {_one_of(self.extensions)}, got {text!r}")
        if self.mode == "in":
            return self._existing(p, text)
        parent = p.parent
        if not parent.exists():
            if self.mode == "secret":
                raise _Err(
                    f"the directory {parent} does not exist; nothing creates it for you: make "
                    f"it private first (mkdir -m 700 {parent}) or choose another path"
                )
            raise _Err(f"the directory {parent} does not exist")
        if not parent.is_dir():
            raise _Err(f"{parent} is not a directory")
        if self.mode == "out":
            if p.exists() and not os.access(p, os.W_OK):
                raise _Err(f"{text} exists and is not writable")
            if not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
                raise _Err(f"cannot create files in {parent} (no write permission)")
        return text

    @staticmethod
    def _existing(p: _P, text: str) -> str:
        if not p.exists():
            missing = p.parent if not p.parent.exists() else p
            raise _Err(f"{missing} does not exist")
        if not p.is_file():
            raise _Err(f"{text} is not a regular file")
        if not os.access(p, os.R_OK):
            raise _Err(f"{text} is not readable (no read permission)")
        return text

    def __repr__(self) -> str:
        return f"Path({self.mode!r}, extensions={self.extensions!r})"


class Address:
    """``HOST:PORT`` (IPv6 as ``[HOST]:PORT``), port 0..65535; returned as given."""

    __name__ = "address"

    def __call__(self, text: str) -> str:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _Err(f"must be HOST:PORT (IPv6 as [HOST]:PORT), got {text!r}")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not bare or ("[" in bare or "]" in bare) or (":" in bare and bare == host):
            raise _Err(f"must be HOST:PORT (IPv6 as [HOST]:PORT), got {text!r}")
        try:
            port(zero=True)(port_text)
        except _Err:
            raise _Err(f"the port of HOST:PORT must be 0..65535, got {text!r}") from None
        return text

    def __repr__(self) -> str:
        return "Address()"


class HexDatagram:
    """A datagram as hex digits (``:`` separators allowed); returns the bytes."""

    __name__ = "hex"

    def __call__(self, text: str) -> bytes:
        try:
            return bytes.fromhex(text.replace(":", ""))
        except ValueError:
            raise _Err(f"not hex digits: {text[:40]!r}") from None

    def __repr__(self) -> str:
        return "HexDatagram()"


class ClusterUrl:
    """``redis://HOST[:PORT][/DB]`` or ``rediss://...`` (TLS) with no password or user in it
    (a password on the command line shows in ``ps``); returned as given."""

    __name__ = "cluster URL"

    def __call__(self, text: str) -> str:
        import urllib.parse

        form = "redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
        try:
            p = urllib.parse.urlsplit(text)
            port_ = p.port
        except ValueError:
            raise _Err(f"must be {form} with a port 1..65535, got {text!r}") from None
        if p.scheme not in ("redis", "rediss") or not p.hostname:
            raise _Err(f"must be {form}, got {text!r}")
        if p.password is not None or p.username:
            raise _Err(
                "must not carry a user or password (it would show in ps): give the password "
                "with --cluster-password-file or IKEQCD_CLUSTER_PASSWORD"
            )
        if port_ == 0:
            raise _Err(f"the port must be 1..65535, got {text!r}")
        db = p.path.lstrip("/")
        if db and not (db.isdigit() and int(db) <= 1_000_000):
            raise _Err(f"the database must be a number 0..1000000, got {text!r}")
        if p.query or p.fragment:
            raise _Err(f"must be {form} with nothing after the database, got {text!r}")
        return text

    def __repr__(self) -> str:
        return "ClusterUrl()"


class Name:
    """A name of 1..63 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""

    __name__ = "name"

    def __call__(self, text: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", text):
            raise _Err(
                f"must be 1..63 of A-Z a-z 0-9 . _ - starting with a letter or digit, got {text!r}"
            )
        return text

    def __repr__(self) -> str:
        return "Name()"

