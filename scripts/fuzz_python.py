"""Fuzz ikeqcd's public Python API with hypothesis, for a set time per target.

Every target feeds random and mutated inputs (real messages built with the codec, valid secret
files and pcap files, with bytes flipped, cut, inserted, lengths rewritten) and wrong types,
shapes, dtypes and sizes into public entry points. Allowed outcomes: a result, a subclass of
``ikeqcd.errors.IkeQcdError``, or ``TypeError`` where the fuzzer passed a wrong Python type on
purpose. Anything else is a finding: it is printed with hypothesis's shrunk example, and the
script exits 1. ``FailureDetector.receive`` is stricter: for bytes input it must never raise.

Run: ``.venv/bin/python scripts/fuzz_python.py --seconds 300`` (the total, split between the
targets), or ``--target NAME`` for one; ``--list`` lists the targets. ``tests/test_robust.py``
runs each target for a fraction of a second in the default test run.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ikeqcd import (
    FailureDetector,
    MakerPolicy,
    SaTable,
    SecretStore,
    TakerPolicy,
    TokenMaker,
    TokenResponder,
    pcap,
    wire,
)
from ikeqcd.errors import IkeQcdError

HERE = Path(__file__).resolve().parent


def _seed_datagrams() -> list[bytes]:
    spec = importlib.util.spec_from_file_location("fuzz_seeds", HERE / "fuzz_seeds.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.datagrams().values())


SEEDS = _seed_datagrams()
MAKER = TokenMaker([b"\x11" * 32, b"\x22" * 32])
SPI_I, SPI_R = 0x1122334455667788, 0x99AABBCCDDEEFF00

# -- strategies --------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits (AFL-style havoc, small)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 6))
        n = len(data)
        if op == 0 and n:  # flip bits of one octet
            i = draw(st.integers(0, n - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == 1 and n:  # interesting value
            i = draw(st.integers(0, n - 1))
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 4, 8, 28, 41, 46, 53]))
        elif op == 2:  # truncate
            del data[draw(st.integers(0, n)) :]
        elif op == 3:  # insert random octets
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=40))
        elif op == 4 and n:  # delete a range
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 40))]
        elif op == 5 and n >= 4:  # rewrite a 16- or 32-bit length field
            i = draw(st.integers(0, n - 2))
            width = draw(st.sampled_from([2, 4]))
            v = draw(st.sampled_from([0, 1, 3, 4, 8, n, n - i, n + 1, 0xFFFF, 0xFFFFFFFF]))
            data[i : i + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "big")[: n - i]
        elif op == 6 and n:  # duplicate a chunk (payload chains)
            i = draw(st.integers(0, n - 1))
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


def datagrams(seeds: list[bytes] = SEEDS) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400), mutated(seeds))


WRONG: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 300), max_size=4),
    st.just(object()),
    st.just(np.zeros(3)),
)
"""Values of the wrong Python type for a bytes or int argument."""

NAT_T = st.sampled_from([None, True, False])
BAD_NAT_T = st.sampled_from([0, 1, "yes", 2.0, b"\x01"])


def buffers(data: bytes) -> st.SearchStrategy[Any]:
    return st.sampled_from([data, bytearray(data), memoryview(data)])


def any_array() -> st.SearchStrategy[Any]:
    """Arrays of many dtypes and shapes, sometimes strided, sometimes not arrays at all."""
    arrays = hnp.arrays(
        dtype=st.sampled_from(
            [np.uint64, np.int64, np.uint32, np.int8, np.uint8, np.float64, np.bool_]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    )
    strided = hnp.arrays(np.uint64, st.integers(0, 12)).map(lambda a: a[::2])
    return st.one_of(arrays, strided, st.lists(st.integers(0, 2**64 - 1), max_size=5))


def spis() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(0, 2**64 - 1),
        st.sampled_from([-1, 2**64, 2**100, 1.0, True, np.uint64(5), np.int64(-3)]),
    )


# -- bookkeeping -------------------------------------------------------------------------


@dataclass
class Stats:
    name: str
    executions: int = 0
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)


_COUNT = [0]


def expect(fn: Callable[..., Any], *args: Any, wrong_type: bool = False, **kw: Any) -> Any:
    """Call ``fn``; documented errors are swallowed (returning None), anything else raises."""
    try:
        return fn(*args, **kw)
    except IkeQcdError:
        return None
    except TypeError:
        if wrong_type:
            return None
        raise


# -- targets -----------------------------------------------------------------------------

TARGETS: dict[str, tuple[Callable[..., None], dict[str, st.SearchStrategy[Any]]]] = {}


def target(**strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a fuzz target: its body and the strategies of its arguments."""

    def register(body: Callable[..., None]) -> Callable[..., None]:
        TARGETS[body.__name__.removeprefix("t_")] = (body, strategies)
        return body

    return register



@target(d=datagrams(), nat_t=NAT_T, as_buffer=st.integers(0, 2))
def t_wire(d: bytes, nat_t: bool | None, as_buffer: int) -> None:
    _COUNT[0] += 1
    buf: Any = [d, bytearray(d), memoryview(d)][as_buffer]
    msg = expect(wire.parse_message, buf, nat_t=nat_t)
    hdr = expect(wire.parse_header, buf, nat_t=nat_t)
    rep = expect(wire.parse_qcd_reply, buf, nat_t=nat_t)
    batch = wire.parse_qcd_replies([buf, d], nat_t=nat_t)
    assert bool(batch.ok[0]) == (rep is not None) == bool(batch.ok[1])
    if msg is not None:
        assert rep is not None and hdr is not None and msg.header == hdr
    if rep is not None:
        assert batch.tokens(0) == tuple(rep.tokens)
        for t in rep.tokens:
            assert 16 <= len(t) <= 128
        # Builders accept what the parsers produce.
        if rep.tokens and msg is not None:
            out = wire.build_qcd_reply(msg.header, rep.tokens[:4])
            assert wire.parse_qcd_reply(out).tokens == rep.tokens[:4]


@target(x=WRONG, nat_t=st.one_of(NAT_T, BAD_NAT_T), seq=st.lists(st.one_of(WRONG, st.binary())))
def t_wire_types(x: Any, nat_t: Any, seq: list[Any]) -> None:
    _COUNT[0] += 1
    for fn in (wire.parse_message, wire.parse_header, wire.parse_qcd_reply):
        expect(fn, x, nat_t=nat_t, wrong_type=True)
        expect(fn, SEEDS[0], nat_t=nat_t, wrong_type=True)
    expect(wire.parse_qcd_replies, seq, nat_t=nat_t, wrong_type=True)
    expect(wire.parse_qcd_replies, x, wrong_type=True)
    expect(wire.build_qcd_notify, x, wrong_type=True)
    expect(wire.build_qcd_reply, SEEDS[0], [x], wrong_type=True)
    expect(wire.build_request, x, 1, wrong_type=True)
    expect(wire.build_invalid_spi_message, x, wrong_type=True)


@target(
    ds=st.lists(datagrams(), max_size=8),
    nat_t=NAT_T,
    live=st.sampled_from(["none", "set", "call", "table"]),
    policy=st.booleans(),
)
def t_responder(ds: list[bytes], nat_t: bool | None, live: str, policy: bool) -> None:
    _COUNT[0] += 1
    live_obj: Any = None
    if live == "set":
        live_obj = {(SPI_I, SPI_R)}
    elif live == "call":
        live_obj = lambda a, b: a == SPI_I
    elif live == "table":
        live_obj = SaTable()
        live_obj.insert(SPI_I, SPI_R, b"\x01" * 32, now=0.0)
    r = TokenResponder(
        MAKER, live=live_obj, nat_t=nat_t, policy=MakerPolicy() if policy else None
    )
    replies, reasons = r.respond_many(ds)
    assert len(replies) == len(ds) == len(reasons)
    for d, reply, code in zip(ds, replies, reasons.tolist()):
        single = r.respond(d)
        assert (single is None) == (reply is None)
        if reply is not None:
            parsed = wire.parse_qcd_reply(reply)
            assert parsed.response and parsed.invalid_ike_spi
            for t in parsed.tokens:
                assert MAKER.verify(parsed.spi_i, parsed.spi_r, t)
        else:
            assert code not in (0, 9, 10, 12)
    expect(r.respond_many, ds + [None], wrong_type=True)  # type: ignore[list-item]


@target(
    ds=st.lists(datagrams(), min_size=1, max_size=6),
    source=st.one_of(
        st.sampled_from([("192.0.2.1", 500), ("2001:db8::1", 4500), ("10.0.0.1", 0)])
    ),
    policy=st.sampled_from(["hardened", "rfc6290"]),
    pending=st.booleans(),
)
def t_detector(ds: list[bytes], source: tuple[str, int], policy: str, pending: bool) -> None:
    _COUNT[0] += 1
    clock = [100.0]
    fd = FailureDetector(
        policy=TakerPolicy.hardened() if policy == "hardened" else TakerPolicy.rfc6290(),
        clock=lambda: clock[0],
    )
    fd.token_received(SPI_I, SPI_R, MAKER.token(SPI_I, SPI_R))
    fd.child_sa_added(0xDEADBEEF, SPI_I, SPI_R)
    if pending:
        fd.request_sent(SPI_I, SPI_R, 7)
    for d in ds:
        v = fd.receive(d, source)  # never raises on bytes input
        assert v.kind is not None
        clock[0] += 0.3
        for ev in fd.poll():
            assert ev is not None


@target(
    a=any_array(),
    b=any_array(),
    toks=any_array(),
    width=st.sampled_from([15, 16, 32, 128, 129]),
    now=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def t_table_batch(a: Any, b: Any, toks: Any, width: int, now: float | None) -> None:
    _COUNT[0] += 1
    t = SaTable(history=2)
    t.insert(1, 2, b"\x07" * 32, now=0.0)
    wrong = not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray))
    wrong_t = wrong or not isinstance(toks, np.ndarray)
    ok_toks = np.zeros((len(a) if isinstance(a, np.ndarray) and a.ndim == 1 else 1, width), np.uint8)
    for tk in (toks, ok_toks):
        expect(t.insert_many, a, b, tk, now=now, wrong_type=wrong_t or now is None)
        expect(t.check_many, a, b, tk, wrong_type=wrong_t)
    expect(t.contains_many, a, b, wrong_type=wrong)
    expect(t.touch_many, a, b, 0.0 if now is None else now, inbound=True, wrong_type=wrong)
    expect(t.due_liveness, 0.0 if now is None else now, idle=1.0)
    expect(t.remove_many, a, b, wrong_type=wrong)
    arrs = t.to_arrays()
    assert len(arrs["spi_i"]) == len(t)


@target(
    secrets=st.one_of(
        st.binary(max_size=70),
        st.lists(st.binary(min_size=0, max_size=70), max_size=6),
        WRONG,
    ),
    algorithm=st.one_of(st.sampled_from(["hmac-sha256", "hmac-sha512", "hmac-sha1"]), st.text(max_size=12)),
    token_len=st.one_of(st.none(), st.integers(-5, 200), st.sampled_from([16, 20, 32, 64, 2**70])),
    spi_i=spis(),
    spi_r=spis(),
    generation=st.one_of(st.integers(-2, 6), st.sampled_from([2**70, None])),
    address=st.one_of(st.none(), st.binary(max_size=20), st.sampled_from(["192.0.2.1", 7])),
    token=st.one_of(st.binary(max_size=140), WRONG),
    arrs=st.tuples(any_array(), any_array(), any_array()),
)
def t_tokenmaker(
    secrets: Any,
    algorithm: str,
    token_len: Any,
    spi_i: Any,
    spi_r: Any,
    generation: Any,
    address: Any,
    token: Any,
    arrs: tuple[Any, Any, Any],
) -> None:
    _COUNT[0] += 1
    m = expect(TokenMaker, secrets, algorithm=algorithm, token_len=token_len, wrong_type=True)
    if m is None:
        return
    tok = expect(m.token, spi_i, spi_r, generation=generation, address=address, wrong_type=True)
    if tok is not None:
        assert len(tok) == m.token_len
        assert m.verify(spi_i, spi_r, tok, address=address)
    expect(m.verify, spi_i, spi_r, token, address=address, wrong_type=True)
    expect(m.all_tokens, spi_i, spi_r, address=address, wrong_type=True)
    a, b, tk = arrs
    wrong = not all(isinstance(x, np.ndarray) for x in arrs)
    expect(m.tokens, a, b, generation=generation if isinstance(generation, int) else 0, threads=1, wrong_type=wrong)
    expect(m.verify_many, a, b, tk, threads=1, wrong_type=wrong)


def _secret_file_seeds() -> list[bytes]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o700)
        for alg in ("hmac-sha256", "hmac-sha512", "hmac-sha1"):
            s = SecretStore(Path(d) / alg, algorithm=alg)
            s.create()
            s.rotate()
            out.append(s.path.read_bytes())
    return out


def _pcap_seeds() -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.pcap"
        pcap.write_pcap(
            p,
            [
                (1.5, "192.0.2.1", 500, "192.0.2.2", 500, SEEDS[0]),
                (2.0, "2001:db8::1", 4500, "2001:db8::2", 4500, SEEDS[1]),
            ],
        )
        return [p.read_bytes()]


SECRET_SEEDS = _secret_file_seeds()
PCAP_SEEDS = _pcap_seeds()
_TMP = tempfile.mkdtemp(prefix="ikeqcd-fuzz-")
os.chmod(_TMP, 0o700)
atexit.register(shutil.rmtree, _TMP, True)


@target(
    data=st.one_of(st.binary(max_size=400), mutated(SECRET_SEEDS)),
    algorithm=st.sampled_from([None, "hmac-sha256", "hmac-sha512", "hmac-sha1"]),
)
def t_secret_file(data: bytes, algorithm: str | None) -> None:
    _COUNT[0] += 1
    path = Path(_TMP) / "qcd.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    store = SecretStore(path, algorithm=algorithm)
    if expect(store.load) is None and store.loaded:
        m = store.maker()
        assert 1 <= m.generations <= 4
        assert len(store.fingerprint()) == 16
    assert store.loaded == (expect(lambda: store.maker()) is not None)


@target(data=st.one_of(st.binary(max_size=300), mutated(PCAP_SEEDS)))
def t_pcap(data: bytes) -> None:
    _COUNT[0] += 1
    path = Path(_TMP) / "x.pcap"
    path.write_bytes(data)
    pkts = expect(pcap.read_pcap, path)
    for p in pkts or []:
        assert isinstance(p.payload, bytes) and 0 <= p.sport < 65536


_NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10**9), WRONG
)


@target(
    maker=st.dictionaries(
        st.sampled_from(
            ["enabled", "per_source_rate", "per_source_burst", "global_rate", "global_burst",
             "flood_fallback", "bare_rate", "token_window", "max_sources"]
        ),
        st.one_of(_NUM, st.sampled_from(["bare", "silence", "loud"])),
        max_size=3,
    ),
    taker=st.dictionaries(
        st.sampled_from(
            ["enabled", "require_pending", "require_invalid_ike_spi", "accept_delay",
             "make_before_break", "dampening", "verify_rate", "verify_burst", "liveness_rate",
             "liveness_idle", "max_sources"]
        ),
        _NUM,
        max_size=3,
    ),
)
def t_policy(maker: dict[str, Any], taker: dict[str, Any]) -> None:
    _COUNT[0] += 1
    mp = expect(MakerPolicy, **maker)
    if mp is not None:
        TokenResponder(MAKER, policy=mp).respond(SEEDS[0], ("192.0.2.1", 500))
    tp = expect(TakerPolicy, **taker)
    if tp is not None:
        FailureDetector(policy=tp).receive(SEEDS[4], ("192.0.2.1", 500))




def run_target(name: str, seconds: float, *, chunk: int = 300, verbose: bool = True) -> Stats:
    """Run one target for about ``seconds``, in rounds of ``chunk`` hypothesis examples."""
    body, strategies = TARGETS[name]
    stats = Stats(name)
    start = time.monotonic()
    _COUNT[0] = 0
    while time.monotonic() - start < seconds and not stats.findings:
        configured = settings(
            max_examples=chunk,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink],
            report_multiple_bugs=False,
        )(given(**strategies)(body))
        try:
            configured()
        except Exception as e:  # noqa: BLE001 -- any exception is a finding: record it, stop
            text = "".join(traceback.format_exception(e))
            stats.findings.append(text)
            if verbose:
                print(f"!! {name}: finding\n{text}", file=sys.stderr)
    stats.executions = _COUNT[0]
    stats.seconds = time.monotonic() - start
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="total time, split between targets")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="repeatable")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (body, _) in TARGETS.items():
            print(f"{name}: {(body.__doc__ or '').strip()}")
        return 0
    names = args.target or list(TARGETS)
    per = args.seconds / len(names)
    print("| target | executions | seconds | findings |\n|---|---:|---:|---:|")
    total = 0
    bad = 0
    for name in names:
        s = run_target(name, per)
        total += s.executions
        bad += len(s.findings)
        print(f"| {name} | {s.executions} | {s.seconds:.0f} | {len(s.findings)} |", flush=True)
    print(f"\n{total} executions, {bad} findings")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
