"""Failure-detection policy: what the token maker answers and what the token taker believes.

Frozen dataclasses with presets and validation, no I/O. RFC 6290 gives the rules; the seed
slides' issue-202 discussion adds four hardening ideas that the final RFC left out (see
``shared/design.md``). :meth:`TakerPolicy.rfc6290` is the plain RFC, :meth:`TakerPolicy.hardened`
(the default) turns the hardening on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from ikeqcd.errors import InvalidPolicy

__all__ = ["MakerPolicy", "TakerPolicy"]


def _replace(obj: object, changes: dict[str, object]) -> object:
    names = {f.name for f in fields(obj)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - names)
    if unknown:
        raise InvalidPolicy(
            f"{type(obj).__name__} has no option {', '.join(map(repr, unknown))}; "
            f"options are {', '.join(sorted(names))}"
        )
    return replace(obj, **changes)  # type: ignore[type-var]


def _check_nonneg(obj: object, *names: str) -> None:
    optional = {f.name for f in fields(obj) if "None" in str(f.type)}  # type: ignore[arg-type]
    for name in names:
        value = getattr(obj, name)
        if value is None and name in optional:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise InvalidPolicy(f"{type(obj).__name__}.{name} must be a number, got {value!r}")
        if isinstance(value, int) and value > _MAX_NUMBER:
            raise InvalidPolicy(f"{type(obj).__name__}.{name} is too large, got {value!r}")
        if math.isnan(value) or value < 0:
            raise InvalidPolicy(f"{type(obj).__name__}.{name} must be >= 0, got {value!r}")


def _check_common(obj: object) -> None:
    """The bool switches are bools, and ``max_sources`` is an int in 1..2**32."""
    cls = type(obj).__name__
    for f in fields(obj):  # type: ignore[arg-type]
        if f.type == "bool" and not isinstance(getattr(obj, f.name), bool):
            raise InvalidPolicy(f"{cls}.{f.name} must be a bool, got {getattr(obj, f.name)!r}")
    m = obj.max_sources  # type: ignore[attr-defined]
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= _MAX_SOURCES:
        raise InvalidPolicy(f"{cls}.max_sources must be an int in 1..2**32, got {m!r}")


_MAX_NUMBER = 2**1000  # ints above this would overflow a float
_MAX_SOURCES = 2**32


@dataclass(frozen=True)
class MakerPolicy:
    """What a rebooted token maker sends in the clear (RFC 6290 §4.5, §8.1, §9.2, §9.3).

    Attributes:
        enabled: the administrator switch (§8.1 MUST). Off: no tokens anywhere, plain RFC 7296
            (unknown-SPI requests still get a bare INVALID_IKE_SPI, rate-limited).
        per_source_rate: replies per second allowed to one source address (token bucket).
        per_source_burst: bucket size for one source.
        global_rate: replies per second in total.
        global_burst: bucket size for the total.
        flood_fallback: what a request gets when a limit is hit: ``"bare"`` (INVALID_IKE_SPI
            without a token, itself limited to ``bare_rate``) or ``"silence"``.
        bare_rate: replies per second allowed for the bare fallback, in total (0: none).
        token_window: seconds after start during which tokens are sent at all (§9.3: limits
            dictionary building); ``None`` means always. After the window, requests get the
            flood fallback.
        max_sources: most per-source buckets kept, which bounds memory under a flood of
            spoofed sources. When the map is full, buckets that have refilled completely are
            forgotten first (losing nothing: a new bucket starts full); once every bucket is
            still active, *new* sources share one overflow bucket until some refill. During
            such a flood, legitimate peers seen for the first time share that bucket with the
            flood (peers already tracked keep their own), so size this above the number of
            peers you expect to answer at once. A source is an IPv4 host (IPv4-mapped IPv6
            included) or an IPv6 /64.
    """

    enabled: bool = True
    per_source_rate: float = 50.0
    per_source_burst: float = 200.0
    global_rate: float = 200_000.0
    global_burst: float = 400_000.0
    flood_fallback: Literal["bare", "silence"] = "bare"
    bare_rate: float = 1_000.0
    token_window: float | None = None
    max_sources: int = 65_536

    def __post_init__(self) -> None:
        _check_nonneg(
            self,
            "per_source_rate",
            "per_source_burst",
            "global_rate",
            "global_burst",
            "bare_rate",
            "token_window",
        )
        if not isinstance(self.flood_fallback, str) or self.flood_fallback not in ("bare", "silence"):
            raise InvalidPolicy(
                f"MakerPolicy.flood_fallback must be 'bare' or 'silence', got {self.flood_fallback!r}"
            )
        _check_common(self)

    @classmethod
    def unlimited(cls) -> MakerPolicy:
        """No rate limits (benchmarks and closed test beds only)."""
        inf = math.inf
        return cls(per_source_rate=inf, per_source_burst=inf, global_rate=inf, global_burst=inf)

    def with_(self, **changes: object) -> MakerPolicy:
        """A copy with some options changed (validated).

        Raises:
            InvalidPolicy: an unknown option or a bad value.
        """
        new = _replace(self, changes)
        assert isinstance(new, MakerPolicy)
        return new


@dataclass(frozen=True)
class TakerPolicy:
    """What a token taker needs before it tears an IKE SA down on an unprotected token.

    Attributes:
        enabled: whether this node is a token taker at all (§3: a non-taker ignores tokens).
        require_pending: accept a token on the INVALID_IKE_SPI path only while a request is
            outstanding for that SA and the reply's Message ID matches it (issue 202). The §8.2
            INVALID_SPI path stays unsolicited.
        require_invalid_ike_spi: on the IKE path, demand the INVALID_IKE_SPI notify beside the
            token (the §7 figure omits it; accepting that is a policy choice, spec case 33).
        accept_delay: seconds a verified token is held so that a genuine protected reply can
            cancel it (issue 202: "the attacker gets caught"). 0 acts at once.
        make_before_break: tell the owner to re-establish first and delete the old SA once the
            new one is up (issue 202: "rekey before deleting old SAs").
        dampening: seconds after a QCD teardown for a peer during which the SAs (re)established
            with that peer afterwards ignore QCD (no flapping; a replayed token cannot tear the
            fresh SA down again). SAs that existed before the teardown are not dampened: when a
            gateway with 10 000 SAs restarts, all of them must go. 0 is off.
        verify_rate: unprotected messages per second verified per source (§8.1); the rest are
            dropped unverified. Size it to the SAs one peer address carries (a verification
            costs about a microsecond).
        verify_burst: bucket size for ``verify_rate``.
        liveness_rate: at most this many liveness checks per second triggered by plain
            INVALID_IKE_SPI notifies without a token (RFC 7296 §2.21.4, spec case 41).
        liveness_idle: seconds of inbound silence (with outbound traffic) after which an SA is
            due a liveness check (seed issue 200).
        max_sources: most per-source buckets kept (bounded memory under spoofed floods).
    """

    enabled: bool = True
    require_pending: bool = True
    require_invalid_ike_spi: bool = True
    accept_delay: float = 0.5
    make_before_break: bool = True
    dampening: float = 60.0
    verify_rate: float = 10_000.0
    verify_burst: float = 20_000.0
    liveness_rate: float = 10.0
    liveness_idle: float = 10.0
    max_sources: int = 65_536

    def __post_init__(self) -> None:
        _check_nonneg(
            self,
            "accept_delay",
            "dampening",
            "verify_rate",
            "verify_burst",
            "liveness_rate",
            "liveness_idle",
        )
        _check_common(self)

    @classmethod
    def rfc6290(cls) -> TakerPolicy:
        """The plain RFC: verify, and on a match delete at once; tokens from any address;
        verification rate-limited per source."""
        return cls(
            require_pending=False,
            require_invalid_ike_spi=False,
            accept_delay=0.0,
            make_before_break=False,
            dampening=0.0,
        )

    @classmethod
    def hardened(cls) -> TakerPolicy:
        """The default: the RFC plus the four issue-202 hardening options."""
        return cls()

    @property
    def name(self) -> str:
        """``"rfc6290"``, ``"hardened"`` or ``"custom"``."""
        if self == TakerPolicy.rfc6290():
            return "rfc6290"
        if self == TakerPolicy.hardened():
            return "hardened"
        return "custom"

    def with_(self, **changes: object) -> TakerPolicy:
        """A copy with some options changed (validated).

        Raises:
            InvalidPolicy: an unknown option or a bad value.
        """
        new = _replace(self, changes)
        assert isinstance(new, TakerPolicy)
        return new
