"""Bad input sweep: every public function, method and CLI command given wrong types, wrong
sizes, empty and huge inputs gets a documented answer: a subclass of
``ikeqcd.errors.IkeQcdError`` (``TypeError`` only where a wrong Python type is passed, as
Python itself does), a documented harmless result, or, for the CLI, exit code 2 (usage) or 1
(failure) with a one-line message on stderr.

The cases are data: ``scripts/bad_input_table.py`` prints them as the table in SECURITY.md.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ikeqcd import (
    FailureDetector,
    MakerPolicy,
    RateLimiter,
    SaTable,
    SecretStore,
    TakerPolicy,
    TokenMaker,
    TokenResponder,
    VerdictKind,
    pcap,
    wire,
)
from ikeqcd.cli import main
from ikeqcd.errors import (
    CapacityError,
    IkeQcdError,
    InvalidAddress,
    InvalidAlgorithm,
    InvalidArgument,
    InvalidArray,
    InvalidGeneration,
    InvalidPolicy,
    InvalidSecret,
    InvalidSpi,
    InvalidToken,
    InvalidTokenLength,
    MalformedMessage,
    SecretFileError,
)

_TMP = Path(tempfile.mkdtemp(prefix="ikeqcd-bad-input-"))
os.chmod(_TMP, 0o700)
atexit.register(shutil.rmtree, _TMP, True)

K = b"\x5a" * 32
M = TokenMaker(K)
U = np.arange(1, 4, dtype=np.uint64)
REQ = wire.build_request(0x1122334455667788, 0x99AABBCCDDEEFF00, sk_body=b"\x00" * 32)
HUGE = b"\x00" * 1_000_000
SRC = ("192.0.2.1", 500)


@dataclass(frozen=True)
class Case:
    """One bad input and its documented outcome."""

    api: str
    """The public name called."""
    bad: str
    """What is wrong with the input."""
    call: Callable[[], Any] | tuple[Callable[[], Any], ...]
    """One call, or several that must each give the outcome."""
    raises: type[BaseException] | None = None
    """The documented exception, or None when a documented result comes back."""
    result: str = ""
    """The documented result (when nothing is raised), checked by ``check``."""
    check: Callable[[Any], bool] | None = None


def _file(name: str, data: bytes, mode: int = 0o600) -> Path:
    p = _TMP / name
    p.write_bytes(data)
    os.chmod(p, mode)
    return p


def _good_secret_file(name: str) -> Path:
    s = SecretStore(_TMP / name)
    if not s.exists():
        s.create()
    return s.path


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


def _table() -> SaTable:
    t = SaTable()
    t.insert(1, 2, b"\x07" * 32, now=0.0)
    return t


def _detector() -> FailureDetector:
    fd = FailureDetector(clock=lambda: 1.0)
    fd.token_received(1, 2, b"\x07" * 32)
    return fd


def _store(name: str, data: bytes, mode: int = 0o600) -> Callable[[], None]:
    return lambda: SecretStore(_file(name, data, mode), algorithm=None).load()


CASES: list[Case] = [
    # -- TokenMaker --------------------------------------------------------------------
    Case("TokenMaker(secrets)", "str instead of bytes", lambda: TokenMaker("k" * 32), InvalidSecret),  # type: ignore[arg-type]
    Case("TokenMaker(secrets)", "an int", lambda: TokenMaker(42), InvalidSecret),  # type: ignore[arg-type]
    Case("TokenMaker(secrets)", "empty bytes", lambda: TokenMaker(b""), InvalidSecret),
    Case("TokenMaker(secrets)", "15 octets (too short)", lambda: TokenMaker(b"k" * 15), InvalidSecret),
    Case("TokenMaker(secrets)", "1 MB (too long)", lambda: TokenMaker(HUGE), InvalidSecret),
    Case("TokenMaker(secrets)", "empty list", lambda: TokenMaker([]), InvalidSecret),
    Case("TokenMaker(secrets)", "5 generations", lambda: TokenMaker([K] * 5), InvalidSecret),
    Case("TokenMaker(secrets)", "a str in the list", lambda: TokenMaker([K, "k"]), InvalidSecret),  # type: ignore[list-item]
    Case("TokenMaker(algorithm=)", "unknown name", lambda: TokenMaker(K, algorithm="md5"), InvalidAlgorithm),
    Case("TokenMaker(algorithm=)", "an int", lambda: TokenMaker(K, algorithm=5), TypeError),  # type: ignore[arg-type]
    Case("TokenMaker(token_len=)", "15 / 33 for SHA-256", (lambda: TokenMaker(K, token_len=15), lambda: TokenMaker(K, token_len=33)), InvalidTokenLength),
    Case("TokenMaker(token_len=)", "negative", lambda: TokenMaker(K, token_len=-1), InvalidTokenLength),
    Case("TokenMaker(token_len=)", "2**70", lambda: TokenMaker(K, token_len=2**70), InvalidTokenLength),
    Case("TokenMaker(token_len=)", "a float", lambda: TokenMaker(K, token_len=16.0), TypeError),  # type: ignore[arg-type]
    Case("TokenMaker.token", "SPI -1", lambda: M.token(-1, 1), InvalidSpi),
    Case("TokenMaker.token", "SPI 2**64", lambda: M.token(1, 2**64), InvalidSpi),
    Case("TokenMaker.token", "SPI as str", lambda: M.token("1", 1), InvalidSpi),  # type: ignore[arg-type]
    Case("TokenMaker.token", "generation 1 of 1", lambda: M.token(1, 2, generation=1), InvalidGeneration),
    Case("TokenMaker.token", "generation -1", lambda: M.token(1, 2, generation=-1), InvalidGeneration),
    Case("TokenMaker.token", "address of 5 octets", lambda: M.token(1, 2, address=b"12345"), InvalidAddress),
    Case("TokenMaker.token", "address as str", lambda: M.token(1, 2, address="10.0.0.1"), InvalidAddress),  # type: ignore[arg-type]
    Case("TokenMaker.verify", "token as str", lambda: M.verify(1, 2, "t" * 32), InvalidToken),  # type: ignore[arg-type]
    Case("TokenMaker.verify", "empty token", lambda: M.verify(1, 2, b""), None, "False", lambda r: r is False),
    Case("TokenMaker.verify", "1 MB token", lambda: M.verify(1, 2, HUGE), None, "False", lambda r: r is False),
    Case("TokenMaker.tokens", "lists instead of arrays", lambda: M.tokens([1], [2]), InvalidArray),  # type: ignore[arg-type]
    Case("TokenMaker.tokens", "int64 arrays", lambda: M.tokens(U.astype(np.int64), U), InvalidArray),  # type: ignore[arg-type]
    Case("TokenMaker.tokens", "2-D arrays", lambda: M.tokens(U.reshape(3, 1), U), InvalidArray),
    Case("TokenMaker.tokens", "strided view", lambda: M.tokens(np.arange(6, dtype=np.uint64)[::2], U), InvalidArray),
    Case("TokenMaker.tokens", "unequal lengths", lambda: M.tokens(U, U[:2]), InvalidArray),
    Case("TokenMaker.tokens", "empty arrays", lambda: M.tokens(U[:0], U[:0]), None, "shape (0, 32)", lambda r: r.shape == (0, 32)),
    Case("TokenMaker.tokens", "threads -1 / 10**6", (lambda: M.tokens(U, U, threads=-1), lambda: M.tokens(U, U, threads=10**6)), InvalidArgument),
    Case("TokenMaker.verify_many", "rows of 16 octets, token_len 32", lambda: M.verify_many(U, U, np.zeros((3, 16), np.uint8)), InvalidToken),
    Case("TokenMaker.verify_many", "row count differs", lambda: M.verify_many(U, U, np.zeros((2, 32), np.uint8)), InvalidArray),
    Case("TokenMaker.verify_many", "tokens as bytes", lambda: M.verify_many(U, U, b"x" * 96), InvalidArray),  # type: ignore[arg-type]
    # -- SaTable -----------------------------------------------------------------------
    Case("SaTable()", "history 0 / 5", (lambda: SaTable(history=0), lambda: SaTable(history=5)), InvalidArgument),
    Case("SaTable()", "capacity -1", lambda: SaTable(capacity=-1), InvalidArgument),
    Case("SaTable()", "capacity 2**30", lambda: SaTable(capacity=2**30), CapacityError),
    Case("SaTable()", "history as str", lambda: SaTable(history="2"), TypeError),  # type: ignore[arg-type]
    Case("SaTable.insert", "token of 15 / 129 octets", (lambda: _table().insert(1, 3, b"t" * 15), lambda: _table().insert(1, 3, b"t" * 129)), InvalidToken),
    Case("SaTable.insert", "token as str", lambda: _table().insert(1, 3, "t" * 32), InvalidToken),  # type: ignore[arg-type]
    Case("SaTable.insert", "SPI -1", lambda: _table().insert(-1, 3, K), InvalidSpi),
    Case("SaTable.insert", "now = NaN", lambda: _table().insert(1, 3, K, now=math.nan), InvalidArgument),
    Case("SaTable.insert", "now as str", lambda: _table().insert(1, 3, K, now="0"), TypeError),  # type: ignore[arg-type]
    Case("SaTable.check", "no tokens", lambda: _table().check(1, 2, []), InvalidToken),
    Case("SaTable.check", "17 tokens", lambda: _table().check(1, 2, [K] * 17), InvalidToken),
    Case("SaTable.check", "empty token", lambda: _table().check(1, 2, b""), InvalidToken),
    Case("SaTable.check", "1 MB token", lambda: _table().check(1, 2, HUGE), InvalidToken),
    Case("SaTable.check", "SPI 2**64", lambda: _table().check(2**64, 2, K), InvalidSpi),
    Case("SaTable.__contains__", "not a 2-tuple", lambda: (1,) in _table(), InvalidSpi),
    Case("SaTable.remove", "SPI as float", lambda: _table().remove(1.0, 2), InvalidSpi),  # type: ignore[arg-type]
    Case("SaTable.insert_many", "float64 SPIs", lambda: _table().insert_many(U.astype(float), U, np.zeros((3, 32), np.uint8)), InvalidArray),  # type: ignore[arg-type]
    Case("SaTable.insert_many", "1-D tokens", lambda: _table().insert_many(U, U, np.zeros(96, np.uint8)), InvalidArray),
    Case("SaTable.insert_many", "rows of 200 octets", lambda: _table().insert_many(U, U, np.zeros((3, 200), np.uint8)), InvalidToken),
    Case("SaTable.insert_many", "Fortran-order tokens", lambda: _table().insert_many(U, U, np.asfortranarray(np.zeros((3, 32), np.uint8))), InvalidArray),
    Case("SaTable.check_many", "threads -1", lambda: _table().check_many(U, U, np.zeros((3, 32), np.uint8), threads=-1), InvalidArgument),
    Case("SaTable.contains_many", "unequal lengths", lambda: _table().contains_many(U, U[:1]), InvalidArray),
    Case("SaTable.remove_many", "lists", lambda: _table().remove_many([1], [2]), InvalidArray),  # type: ignore[arg-type]
    Case("SaTable.touch", "now = inf", lambda: _table().touch(1, 2, math.inf, inbound=True), InvalidArgument),
    Case("SaTable.touch_many", "now = NaN", lambda: _table().touch_many(U, U, math.nan, inbound=False), InvalidArgument),
    Case("SaTable.due_liveness", "idle -1 / NaN", (lambda: _table().due_liveness(0.0, idle=-1.0), lambda: _table().due_liveness(0.0, idle=math.nan)), InvalidArgument),
    Case("SaTable.timestamps", "unknown SA", lambda: _table().timestamps(9, 9), None, "None", lambda r: r is None),
    # -- RateLimiter -------------------------------------------------------------------
    Case("RateLimiter()", "rate -1 / NaN", (lambda: RateLimiter(-1.0, 1.0), lambda: RateLimiter(math.nan, 1.0)), InvalidPolicy),
    Case("RateLimiter()", "max_keys 0 / -1", (lambda: RateLimiter(1.0, 1.0, max_keys=0), lambda: RateLimiter(1.0, 1.0, max_keys=-1)), InvalidPolicy),
    Case("RateLimiter()", "rate as str", lambda: RateLimiter("1", 1.0), TypeError),  # type: ignore[arg-type]
    Case("RateLimiter.allow", "key -1", lambda: RateLimiter(1.0, 1.0).allow(-1, 0.0), InvalidArgument),
    Case("RateLimiter.allow_many", "list of keys", lambda: RateLimiter(1.0, 1.0).allow_many([1], 0.0), InvalidArray),  # type: ignore[arg-type]
    # -- MakerPolicy / TakerPolicy ----------------------------------------------------
    Case("MakerPolicy()", "negative / NaN rate", (lambda: MakerPolicy(per_source_rate=-1), lambda: MakerPolicy(global_rate=math.nan)), InvalidPolicy),
    Case("MakerPolicy()", "rate as str", lambda: MakerPolicy(bare_rate="fast"), InvalidPolicy),  # type: ignore[arg-type]
    Case("MakerPolicy()", "rate 10**400", lambda: MakerPolicy(global_rate=10**400), InvalidPolicy),
    Case("MakerPolicy()", "flood_fallback 'loud'", lambda: MakerPolicy(flood_fallback="loud"), InvalidPolicy),  # type: ignore[arg-type]
    Case("MakerPolicy()", "enabled = 0.0", lambda: MakerPolicy(enabled=0.0), InvalidPolicy),  # type: ignore[arg-type]
    Case("MakerPolicy()", "max_sources 0 / 2**70", (lambda: MakerPolicy(max_sources=0), lambda: MakerPolicy(max_sources=2**70)), InvalidPolicy),
    Case("MakerPolicy()", "unknown option", lambda: MakerPolicy(speed=1), TypeError),  # type: ignore[call-arg]
    Case("TakerPolicy()", "accept_delay -1 / None", (lambda: TakerPolicy(accept_delay=-1), lambda: TakerPolicy(accept_delay=None)), InvalidPolicy),  # type: ignore[arg-type]
    Case("TakerPolicy()", "require_pending = 'yes'", lambda: TakerPolicy(require_pending="yes"), InvalidPolicy),  # type: ignore[arg-type]
    Case("TakerPolicy.with_", "dampening NaN", lambda: TakerPolicy.hardened().with_(dampening=math.nan), InvalidPolicy),
    # -- wire --------------------------------------------------------------------------
    Case("wire.parse_message", "empty", lambda: wire.parse_message(b""), MalformedMessage),
    Case("wire.parse_message", "27 octets", lambda: wire.parse_message(REQ[:27]), MalformedMessage),
    Case("wire.parse_message", "1 MB of zeros", lambda: wire.parse_message(HUGE), MalformedMessage),
    Case("wire.parse_message", "one octet appended", lambda: wire.parse_message(REQ + b"\x00"), MalformedMessage),
    Case("wire.parse_message", "str", lambda: wire.parse_message(REQ.hex()), InvalidArgument),  # type: ignore[arg-type]
    Case("wire.parse_message", "None", lambda: wire.parse_message(None), InvalidArgument),  # type: ignore[arg-type]
    Case("wire.parse_message", "nat_t = 'yes'", lambda: wire.parse_message(REQ, nat_t="yes"), InvalidArgument),  # type: ignore[arg-type]
    Case("wire.parse_header", "ESP on UDP/4500", lambda: wire.parse_header(b"\x01\x02\x03\x04" + REQ, nat_t=True), MalformedMessage),
    Case("wire.parse_qcd_reply", "NAT keepalive 0xFF", lambda: wire.parse_qcd_reply(b"\xff", nat_t=True), MalformedMessage),
    Case("wire.parse_qcd_reply", "1 MB of zeros", lambda: wire.parse_qcd_reply(HUGE), MalformedMessage),
    Case("wire.parse_qcd_replies", "a list with an int", lambda: wire.parse_qcd_replies([REQ, 5]), InvalidArgument),  # type: ignore[list-item]
    Case("wire.parse_qcd_replies", "bytes instead of a list", lambda: wire.parse_qcd_replies(REQ), InvalidArgument),
    Case("wire.parse_qcd_replies", "empty list", lambda: wire.parse_qcd_replies([]), None, "0 rows", lambda r: len(r) == 0),
    Case("wire.parse_qcd_replies", "garbage rows", lambda: wire.parse_qcd_replies([b"", HUGE]), None, "ok = [False, False]", lambda r: not r.ok.any()),
    Case("wire.build_qcd_reply", "no tokens / 5 tokens", (lambda: wire.build_qcd_reply(REQ, []), lambda: wire.build_qcd_reply(REQ, [K] * 5)), InvalidToken),
    Case("wire.build_qcd_reply", "token of 15 / 129 octets", (lambda: wire.build_qcd_reply(REQ, [b"t" * 15]), lambda: wire.build_qcd_reply(REQ, [b"t" * 129])), InvalidToken),
    Case("wire.build_qcd_reply", "empty request", lambda: wire.build_qcd_reply(b"", [K]), MalformedMessage),
    Case("wire.build_qcd_notify", "1 MB token", lambda: wire.build_qcd_notify(HUGE), InvalidToken),
    Case("wire.build_qcd_notify", "next_payload 256", lambda: wire.build_qcd_notify(K, next_payload=256), InvalidArgument),
    Case("wire.build_invalid_spi_message", "child SPI 2**32", lambda: wire.build_invalid_spi_message(2**32), InvalidArgument),
    Case("wire.build_invalid_spi_message", "IKE SPI -1", lambda: wire.build_invalid_spi_message(1, spi_i=-1), InvalidSpi),
    Case("wire.build_request", "SPI 2**64", lambda: wire.build_request(2**64, 1), InvalidSpi),
    Case("wire.build_request", "exchange 256 / message_id 2**32", (lambda: wire.build_request(1, 1, exchange=256), lambda: wire.build_request(1, 1, message_id=2**32)), InvalidArgument),
    Case("wire.build_request", "1 MB sk_body", lambda: wire.build_request(1, 1, sk_body=HUGE), InvalidArgument),
    # -- TokenResponder ----------------------------------------------------------------
    Case("TokenResponder()", "maker as bytes", lambda: TokenResponder(K), InvalidArgument),  # type: ignore[arg-type]
    Case("TokenResponder()", "nat_t = 'yes'", lambda: TokenResponder(M, nat_t="yes"), InvalidArgument),  # type: ignore[arg-type]
    Case("TokenResponder()", "live = 42", lambda: TokenResponder(M, live=42), InvalidArgument),  # type: ignore[arg-type]
    Case("TokenResponder()", "policy as str", lambda: TokenResponder(M, policy="strict"), InvalidArgument),  # type: ignore[arg-type]
    Case("TokenResponder.respond", "None", lambda: TokenResponder(M).respond(None), InvalidArgument),  # type: ignore[arg-type]
    Case("TokenResponder.respond", "empty / 1 MB datagram", (lambda: TokenResponder(M).respond(b""), lambda: TokenResponder(M).respond(HUGE)), None, "None (no reply; counted as MALFORMED)", lambda r: r is None),
    Case("TokenResponder.respond_many", "a None in the list", lambda: TokenResponder(M).respond_many([REQ, None]), InvalidArgument),  # type: ignore[list-item]
    Case("TokenResponder.respond_many", "sources of another length", lambda: TokenResponder(M).respond_many([REQ], [SRC, SRC]), InvalidArgument),
    # -- FailureDetector ---------------------------------------------------------------
    Case("FailureDetector()", "policy as str", lambda: FailureDetector(policy="hardened"), InvalidArgument),  # type: ignore[arg-type]
    Case("FailureDetector()", "table as dict", lambda: FailureDetector(table={}), InvalidArgument),  # type: ignore[arg-type]
    Case("FailureDetector.receive", "empty / 1 MB datagram", (lambda: _detector().receive(b"", SRC), lambda: _detector().receive(HUGE, SRC)), None, "Verdict MALFORMED (never raises on network input)", lambda r: r.kind is VerdictKind.MALFORMED),
    Case("FailureDetector.receive", "datagram as str", lambda: _detector().receive("x", SRC), InvalidArgument),  # type: ignore[arg-type]
    Case("FailureDetector.token_received", "token of 15 octets", lambda: _detector().token_received(1, 3, b"t" * 15), InvalidToken),
    Case("FailureDetector.token_received", "SPI -1", lambda: _detector().token_received(-1, 3, K), InvalidSpi),
    Case("FailureDetector.request_sent", "SPI as str", lambda: _detector().request_sent("1", 2, 0), InvalidSpi),  # type: ignore[arg-type]
    Case("FailureDetector.request_sent", "message_id -1", lambda: _detector().request_sent(1, 2, -1), InvalidArgument),
    Case("FailureDetector.response_received", "message_id 2**32", lambda: _detector().response_received(1, 2, 2**32), InvalidArgument),
    Case("FailureDetector.child_sa_added", "child SPI 2**32", lambda: _detector().child_sa_added(2**32, 1, 2), InvalidArgument),
    Case("FailureDetector.sa_deleted", "SPI 2**64", lambda: _detector().sa_deleted(2**64, 1), InvalidSpi),
    # -- SecretStore -------------------------------------------------------------------
    Case("SecretStore()", "unknown algorithm", lambda: SecretStore(_TMP / "a", algorithm="md5"), InvalidAlgorithm),
    Case("SecretStore()", "path as int", lambda: SecretStore(42), TypeError),  # type: ignore[arg-type]
    Case("SecretStore.load", "missing file", lambda: SecretStore(_TMP / "missing").load(), SecretFileError),
    Case("SecretStore.load", "empty file", _store("empty.secret", b""), SecretFileError),
    Case("SecretStore.load", "100 random octets", _store("rand.secret", bytes(range(100))), SecretFileError),
    Case("SecretStore.load", "1 MB file", _store("huge.secret", HUGE), SecretFileError),
    Case("SecretStore.load", "good file, mode 0644", lambda: SecretStore(_file("open.secret", _good_secret_file("g1").read_bytes(), 0o644)).load(), SecretFileError),
    Case("SecretStore.load", "good file, last octet flipped", lambda: SecretStore(_file("flip.secret", _flip_last(_good_secret_file("g2").read_bytes()))).load(), SecretFileError),
    Case("SecretStore.maker", "nothing loaded", lambda: SecretStore(_TMP / "none").maker(), SecretFileError),
    Case("SecretStore.rotate", "nothing loaded", lambda: SecretStore(_TMP / "none").rotate(), SecretFileError),
    Case("SecretStore.create", "file exists", lambda: SecretStore(_good_secret_file("g3")).create(), SecretFileError),
    Case("SecretStore.import_bytes", "empty / garbage blob", (lambda: SecretStore(_TMP / "i1").import_bytes(b""), lambda: SecretStore(_TMP / "i1").import_bytes(HUGE)), SecretFileError),
    Case("SecretStore.import_bytes", "blob as str", lambda: SecretStore(_TMP / "i2").import_bytes("blob"), TypeError),  # type: ignore[arg-type]
    # -- pcap --------------------------------------------------------------------------
    Case("pcap.read_pcap", "empty file", lambda: pcap.read_pcap(_file("e.pcap", b"")), InvalidArgument),
    Case("pcap.read_pcap", "100 random octets", lambda: pcap.read_pcap(_file("r.pcap", bytes(range(100)))), InvalidArgument),
    Case("pcap.read_pcap", "missing file", lambda: pcap.read_pcap(_TMP / "missing.pcap"), FileNotFoundError),
    Case("pcap.write_pcap", "packet of 1 field", lambda: pcap.write_pcap(_TMP / "w.pcap", [(0.0,)]), InvalidArgument),  # type: ignore[list-item]
    Case("pcap.write_pcap", "address 'nowhere'", lambda: pcap.write_pcap(_TMP / "w.pcap", [(0.0, "nowhere", 500, "192.0.2.2", 500, REQ)]), InvalidAddress),
    Case("pcap.write_pcap", "port 70000", lambda: pcap.write_pcap(_TMP / "w.pcap", [(0.0, "192.0.2.1", 70000, "192.0.2.2", 500, REQ)]), InvalidArgument),
    Case("pcap.write_pcap", "1 MB payload", lambda: pcap.write_pcap(_TMP / "w.pcap", [(0.0, "192.0.2.1", 500, "192.0.2.2", 500, HUGE)]), InvalidArgument),
    Case("pcap.write_pcap", "payload as str", lambda: pcap.write_pcap(_TMP / "w.pcap", [(0.0, "192.0.2.1", 500, "192.0.2.2", 500, "x")]), InvalidArgument),
]


@dataclass(frozen=True)
class CliCase:
    """One bad command line and its exit code (2: usage error, 1: failure)."""

    argv: tuple[str, ...]
    code: int
    bad: str
    stdin: bytes = b""


def _cli_paths() -> dict[str, str]:
    return {
        "GOOD": str(_good_secret_file("cli-good")),
        "GARBAGE": str(_file("cli-garbage", bytes(range(200)))),
        "MISSING": str(_TMP / "cli-missing"),
    }


CLI_CASES: list[CliCase] = [
    CliCase((), 2, "no command"),
    CliCase(("nope",), 2, "unknown command"),
    CliCase(("simulate", "--sas", "many"), 2, "--sas not an int"),
    CliCase(("simulate", "--sas", "0"), 2, "--sas 0"),
    CliCase(("simulate", "--sas", "-5"), 2, "--sas negative"),
    CliCase(("simulate", "--sas", "4294967296"), 2, "--sas 2**32 (huge)"),
    CliCase(("simulate", "--loss", "1.5"), 2, "--loss outside [0, 1)"),
    CliCase(("simulate", "--rtt", "nan"), 2, "--rtt NaN"),
    CliCase(("simulate", "--rtt", "-1"), 2, "--rtt negative"),
    CliCase(("simulate", "--time-scale", "0"), 2, "--time-scale 0"),
    CliCase(("simulate", "--attack", "flood"), 2, "unknown --attack"),
    CliCase(("simulate", "--policy", "lax"), 2, "unknown --policy"),
    CliCase(("decode", "zz"), 2, "not hex"),
    CliCase(("decode",), 1, "nothing to decode (empty stdin)"),
    CliCase(("decode", "--pcap", "MISSING"), 2, "--pcap file missing"),
    CliCase(("decode", "--pcap", "GARBAGE"), 1, "--pcap not a pcap file"),
    CliCase(("decode", "--secret-file", "GARBAGE", "00"), 1, "--secret-file corrupt"),
    CliCase(("decode", "--port", "501", "00"), 2, "--port not 500/4500/auto"),
    CliCase(("secret",), 2, "no action"),
    CliCase(("secret", "init"), 2, "no --file"),
    CliCase(("secret", "init", "--file", "GOOD"), 1, "init over an existing file"),
    CliCase(("secret", "init", "--file", "X", "--algorithm", "md5"), 2, "unknown --algorithm"),
    CliCase(("secret", "rotate", "--file", "MISSING"), 1, "rotate a missing file"),
    CliCase(("secret", "fingerprint", "--file", "GARBAGE"), 1, "fingerprint a corrupt file"),
    CliCase(("secret", "import", "--file", "MISSING", "--input", "MISSING"), 2, "import: --input missing"),
    CliCase(("secret", "import", "--file", "MISSING"), 1, "import: empty blob on stdin"),
    CliCase(("secret", "import", "--file", "MISSING", "--input", "GARBAGE"), 1, "import: garbage blob"),
    CliCase(("bench", "--n", "-1"), 2, "bench --n negative"),
    CliCase(("bench", "--n", "x"), 2, "bench --n not an int"),
]


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{c.api}: {c.bad}" for c in CASES])
def test_bad_input(case: Case) -> None:
    calls = case.call if isinstance(case.call, tuple) else (case.call,)
    for call in calls:
        if case.raises is None:
            result = call()
            assert case.check is not None and case.check(result), result
            continue
        with pytest.raises(case.raises) as e:
            call()
        err = e.value
        assert type(err) is case.raises or issubclass(case.raises, OSError), (
            f"{type(err).__name__} is a subclass of the documented {case.raises.__name__}: "
            "name the exact class"
        )
        if not issubclass(case.raises, (TypeError, OSError)):
            assert isinstance(err, IkeQcdError)
        if isinstance(err, IkeQcdError) and not isinstance(err, (SecretFileError, CapacityError)):
            assert isinstance(err, ValueError), "bad-argument errors are ValueErrors"
        assert str(err), "the message says what was wrong"


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.bad for c in CLI_CASES])
def test_bad_command_line(
    case: CliCase, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _cli_paths()
    argv = [paths.get(a, a) for a in case.argv]
    stdin = io.TextIOWrapper(io.BytesIO(case.stdin))
    monkeypatch.setattr("sys.stdin", stdin)
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    _, err = capsys.readouterr()
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert lines, "a message on stderr"
    # exit 1: exactly one line; exit 2: argparse's usage, then one error line. Every bad
    # value is refused by the option types before any work (exit 2, ikeqcd._options).
    assert len(lines) == 1 if code == 1 else "error:" in lines[-1]
    assert lines[-1].startswith("ikeqcd") and "error:" in lines[-1], lines[-1]
    assert "Traceback" not in err


def test_every_public_callable_is_swept() -> None:
    """Each public class and function appears in the sweep (the table stays complete)."""
    covered = {c.api.split("(")[0].split(".")[0] for c in CASES}
    covered |= {c.api.split("(")[0] for c in CASES}
    for name in ("TokenMaker", "SaTable", "RateLimiter", "MakerPolicy", "TakerPolicy",
                 "TokenResponder", "FailureDetector", "SecretStore"):
        assert name in covered, name
    for fn in ("parse_message", "parse_header", "parse_qcd_reply", "parse_qcd_replies",
               "build_qcd_reply", "build_qcd_notify", "build_invalid_spi_message",
               "build_request"):
        assert f"wire.{fn}" in covered, fn
    assert {"pcap.read_pcap", "pcap.write_pcap"} <= covered
    commands = {c.argv[0] for c in CLI_CASES if c.argv}
    assert {"simulate", "decode", "secret", "bench"} <= commands
