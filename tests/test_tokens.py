"""TokenMaker: known answers, hypothesis cross-checks against Python's hmac, batch vs single,
generations, §5.2 address binding, every error path, threads, array edge cases."""

from __future__ import annotations

import gc
import hashlib
import hmac
import ipaddress
import pickle
import threading

import ikeqcd
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ikeqcd import TokenMaker, errors
from ikeqcd._core import _hmac

from .conftest import load_vectors

HASHES = {"hmac-sha256": "sha256", "hmac-sha512": "sha512", "hmac-sha1": "sha1"}
DIGEST = {"hmac-sha256": 32, "hmac-sha512": 64, "hmac-sha1": 20}
U64 = st.integers(min_value=0, max_value=2**64 - 1)


def ref_token(secret: bytes, alg: str, tl: int, a: int, b: int, addr: bytes = b"") -> bytes:
    msg = a.to_bytes(8, "big") + b.to_bytes(8, "big") + addr
    return hmac.new(secret, msg, HASHES[alg]).digest()[:tl]


def test_rfc_hmac_vectors() -> None:
    doc = load_vectors("hmac.json")
    assert len(doc["vectors"]) == 21
    for v in doc["vectors"]:
        want = bytes.fromhex(v["mac"])
        got = _hmac(v["algorithm"], bytes.fromhex(v["key"]), bytes.fromhex(v["data"]))
        assert got[: len(want)] == want, v["source"]


def test_golden_tokens() -> None:
    doc = load_vectors("tokens.json")
    secrets = [bytes.fromhex(s) for s in doc["secrets"]]
    makers: dict[tuple[str, int | None], TokenMaker] = {}
    for v in doc["vectors"]:
        key = (v["algorithm"], v["token_len"])
        if key not in makers:
            makers[key] = TokenMaker(secrets, algorithm=key[0], token_len=key[1])
        m = makers[key]
        a, b = int(v["spi_i"], 16), int(v["spi_r"], 16)
        addr = ipaddress.ip_address(v["address"]) if v["address"] else None
        want = bytes.fromhex(v["token"])
        assert m.token(a, b, generation=v["generation"], address=addr) == want
        assert m.verify(a, b, want, address=addr)
        if addr is None:
            assert m.all_tokens(a, b)[v["generation"]] == want


@given(
    secret=st.binary(min_size=16, max_size=200),
    alg=st.sampled_from(sorted(HASHES)),
    data=st.data(),
    a=U64,
    b=U64,
)
def test_matches_python_hmac(secret: bytes, alg: str, data: st.DataObject, a: int, b: int) -> None:
    tl = data.draw(st.integers(min_value=16, max_value=DIGEST[alg]))
    m = TokenMaker(secret, algorithm=alg, token_len=tl)
    assert m.token_len == tl
    assert m.token(a, b) == ref_token(secret, alg, tl, a, b)
    addr = data.draw(st.sampled_from([b"\x0a\x00\x00\x01", bytes(range(16))]))
    assert m.token(a, b, address=addr) == ref_token(secret, alg, tl, a, b, addr)


@given(a=U64, b=U64, bit=st.integers(min_value=0, max_value=127))
def test_bit_flip_and_swap_change_token(a: int, b: int, bit: int) -> None:
    """Spec case 4: swapping the SPIs or flipping one bit changes the token."""
    m = TokenMaker(bytes(32))
    t = m.token(a, b)
    pair = (a << 64 | b) ^ (1 << bit)
    assert m.token(pair >> 64, pair & (2**64 - 1)) != t
    if a != b:
        assert m.token(b, a) != t


@pytest.mark.parametrize("alg", sorted(HASHES))
@pytest.mark.parametrize("threads", [0, 1, 2])
def test_batch_equals_single(alg: str, threads: int) -> None:
    m = TokenMaker([b"a" * 32, b"b" * 32], algorithm=alg)
    rng = np.random.default_rng(1)
    n = 20_000  # above the parallel threshold
    a = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    for gen in (0, 1):
        t = m.tokens(a, b, generation=gen, threads=threads)
        assert t.shape == (n, m.token_len) and t.dtype == np.uint8
        for k in (0, 1, 4095, 4096, 9999, n - 1):
            assert t[k].tobytes() == m.token(int(a[k]), int(b[k]), generation=gen)
        ok = m.verify_many(a, b, t, threads=threads)
        assert ok.dtype == np.bool_ and ok.all()
        t[5, 3] ^= 0x40
        ok = m.verify_many(a, b, t, threads=threads)
        assert not ok[5] and ok.sum() == n - 1


def test_empty_batch() -> None:
    m = TokenMaker(bytes(32))
    e = np.zeros(0, dtype=np.uint64)
    assert m.tokens(e, e).shape == (0, 32)
    assert m.verify_many(e, e, np.zeros((0, 32), np.uint8)).shape == (0,)


def test_generations_rfc_5_1() -> None:
    """Spec case 6: k older generations -> k+1 tokens, any of them verifies."""
    secrets = [bytes([g]) * 32 for g in range(4)]
    m = TokenMaker(secrets)
    assert m.generations == 4
    toks = m.all_tokens(10, 20)
    assert len(toks) == 4 and len(set(toks)) == 4
    for g, t in enumerate(toks):
        assert t == ref_token(secrets[g], "hmac-sha256", 32, 10, 20)
        assert m.verify(10, 20, t)
    only_current = TokenMaker(secrets[0])
    assert only_current.verify(10, 20, toks[0]) and not only_current.verify(10, 20, toks[1])


def test_address_binding_rfc_5_2() -> None:
    """Spec case 7: two taker addresses give different tokens; IPv4 and IPv6 objects work."""
    m = TokenMaker(bytes(32))
    v4a, v4b = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
    v6 = ipaddress.ip_address("2001:db8::5")
    ta, tb, t6 = m.token(1, 2, address=v4a), m.token(1, 2, address=v4b), m.token(1, 2, address=v6)
    assert len({ta, tb, t6, m.token(1, 2)}) == 4
    assert m.token(1, 2, address=v4a.packed) == ta
    assert m.verify(1, 2, ta, address=v4a) and not m.verify(1, 2, ta, address=v4b)
    assert not m.verify(1, 2, ta)
    assert m.all_tokens(1, 2, address=v6) == [t6]


def test_verify_rejects_wrong_length_and_type() -> None:
    m = TokenMaker(bytes(32))
    t = m.token(1, 2)
    assert m.verify(1, 2, bytearray(t)) and m.verify(1, 2, memoryview(t))
    assert not m.verify(1, 2, t[:16]) and not m.verify(1, 2, t + b"\0")
    with pytest.raises(errors.InvalidToken):
        m.verify(1, 2, "not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda: TokenMaker(b"x" * 15), errors.InvalidSecret),
        (lambda: TokenMaker(b"x" * 1025), errors.InvalidSecret),
        (lambda: TokenMaker([]), errors.InvalidSecret),
        (lambda: TokenMaker([b"x" * 32] * 5), errors.InvalidSecret),
        (lambda: TokenMaker("a string secret"), errors.InvalidSecret),
        (lambda: TokenMaker(12345), errors.InvalidSecret),
        (lambda: TokenMaker([b"x" * 32, 7]), errors.InvalidSecret),
        (lambda: TokenMaker(b"x" * 32, algorithm="md5"), errors.InvalidAlgorithm),
        (lambda: TokenMaker(b"x" * 32, token_len=15), errors.InvalidTokenLength),
        (lambda: TokenMaker(b"x" * 32, token_len=33), errors.InvalidTokenLength),
        (lambda: TokenMaker(b"x" * 32, algorithm="hmac-sha1", token_len=21), errors.InvalidTokenLength),
    ],
)
def test_constructor_errors(call: object, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, ValueError) and isinstance(info.value, ikeqcd.IkeQcdError)
    assert str(info.value)


def test_call_errors() -> None:
    m = TokenMaker(bytes(32))
    good = np.arange(4, dtype=np.uint64)
    cases: list[tuple[object, type[Exception]]] = [
        (lambda: m.token(-1, 0), errors.InvalidSpi),
        (lambda: m.token(2**64, 0), errors.InvalidSpi),
        (lambda: m.token("1", 0), errors.InvalidSpi),
        (lambda: m.token(1, 2, generation=1), errors.InvalidGeneration),
        (lambda: m.token(1, 2, address=b"\x01\x02\x03"), errors.InvalidAddress),
        (lambda: m.token(1, 2, address="10.0.0.1"), errors.InvalidAddress),
        (lambda: m.tokens(good, good[:3]), errors.InvalidArray),
        (lambda: m.tokens(good.astype(np.int64), good), errors.InvalidArray),
        (lambda: m.tokens(good.astype(np.float64), good), errors.InvalidArray),
        (lambda: m.tokens([1, 2], [3, 4]), errors.InvalidArray),
        (lambda: m.tokens(good.reshape(2, 2), good.reshape(2, 2)), errors.InvalidArray),
        (lambda: m.tokens(np.arange(8, dtype=np.uint64)[::2], good), errors.InvalidArray),
        (lambda: m.tokens(good, good, generation=3), errors.InvalidGeneration),
        (lambda: m.verify_many(good, good, np.zeros((4, 16), np.uint8)), errors.InvalidToken),
        (lambda: m.verify_many(good, good, np.zeros((3, 32), np.uint8)), errors.InvalidArray),
        (lambda: m.verify_many(good, good, np.zeros((4, 32), np.int8)), errors.InvalidArray),
        (lambda: m.verify_many(good, good, np.zeros((32, 4), np.uint8).T), errors.InvalidArray),
    ]
    for call, exc in cases:
        with pytest.raises(exc) as info:
            call()  # type: ignore[operator]
        assert isinstance(info.value, ValueError), call


def test_repr_and_pickle_never_show_secret() -> None:
    secret = b"\x13\x37" * 16
    m = TokenMaker(secret)
    text = repr(m) + str(m)
    assert "TokenMaker(algorithm='hmac-sha256', token_len=32, generations=1)" == repr(m)
    for needle in (secret.hex(), "1337", repr(secret)):
        assert needle not in text
    with pytest.raises(TypeError):
        pickle.dumps(m)
    try:
        TokenMaker([secret, b"short"])
    except errors.InvalidSecret as e:
        assert secret.hex() not in str(e) and "1337" not in str(e)


def test_inputs_not_retained() -> None:
    """The numpy inputs are released after the call: resizing them afterwards works."""
    m = TokenMaker(bytes(32))
    a = np.arange(1000, dtype=np.uint64)
    b = np.arange(1000, dtype=np.uint64)
    t = m.tokens(a, b)
    m.verify_many(a, b, t)
    gc.collect()
    a.resize(10, refcheck=True)


def test_threads_concurrently() -> None:
    m = TokenMaker([b"p" * 32, b"q" * 32])
    a = np.arange(50_000, dtype=np.uint64)
    b = a * np.uint64(3)
    want = m.tokens(a, b, threads=1)
    failures: list[str] = []

    def worker(seed: int) -> None:
        try:
            for _ in range(5):
                got = m.tokens(a, b, threads=(seed % 3))
                if not np.array_equal(got, want):
                    failures.append("batch mismatch")
                if not m.verify_many(a, b, got).all():
                    failures.append("verify mismatch")
                if m.token(int(a[seed]), int(b[seed])) != want[seed].tobytes():
                    failures.append("single mismatch")
        except Exception as e:  # pragma: no cover - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_python_digest_reference_agrees() -> None:
    """The reference used throughout these tests is hashlib's, not ours."""
    assert ref_token(b"k" * 32, "hmac-sha256", 32, 1, 2) == hmac.digest(
        b"k" * 32, bytes(7) + b"\x01" + bytes(7) + b"\x02", hashlib.sha256
    )
