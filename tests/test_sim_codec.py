"""The simulator's batch codec builds the same bytes as the one-message helpers and reads them
back with the core's batch AES-GCM and the real notify parser."""

from __future__ import annotations

import numpy as np
from ikeqcd import _protect, wire
from ikeqcd.sim import codec


def test_batch_messages_equal_the_single_ones() -> None:
    rng = np.random.default_rng(1)
    n = 6
    si = rng.integers(1, 2**63, n, dtype=np.uint64)
    sr = rng.integers(1, 2**63, n, dtype=np.uint64)
    keys = codec.new_keys(n)
    toks = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    auth = codec.seal(keys, si, sr, exchange=wire.EXCHANGE_IKE_AUTH, message_id=1, initiator=True,
                      response=False, inner_next=wire.PAYLOAD_NOTIFY, inner=codec.qcd_notifies(toks))
    info = codec.seal(keys, si, sr, exchange=wire.EXCHANGE_INFORMATIONAL, message_id=np.arange(n),
                      initiator=False, response=True)
    for i in range(n):
        key, a, b = keys[i].tobytes(), int(si[i]), int(sr[i])
        assert auth[i].tobytes() == _protect.seal(
            key, a, b, exchange=wire.EXCHANGE_IKE_AUTH, message_id=1, initiator=True, response=False,
            inner_next=wire.PAYLOAD_NOTIFY, inner=wire.build_qcd_notify(toks[i].tobytes()))
        assert info[i].tobytes() == _protect.seal(
            key, a, b, exchange=wire.EXCHANGE_INFORMATIONAL, message_id=i, initiator=False, response=True)
    init = codec.plain_init(si, np.zeros(n, np.uint64), response=False)
    assert init[0].tobytes() == _protect.plain_message(
        int(si[0]), 0, exchange=wire.EXCHANGE_IKE_SA_INIT, message_id=0, flags=wire.FLAG_I,
        payloads=[(wire.PAYLOAD_NONCE, init[0, 32:].tobytes())])

    ds = codec.as_list(auth)
    h = codec.headers(ds + [b"short"])
    assert h.fast.tolist() == [True] * n + [False]
    assert (h.spi_i[:n] == si).all() and (h.exchange[:n] == wire.EXCHANGE_IKE_AUTH).all()
    ok, nxt, inner = codec.open_sealed(keys, codec.gather(ds, np.arange(n), auth.shape[1]))
    assert ok.all()
    has, got = codec.tokens_in(nxt, inner)
    assert has.all() and (got == toks).all()
    bad = keys.copy()
    bad[2, 0] ^= 1
    assert codec.open_sealed(bad, auth)[0].tolist() == [True, True, False, True, True, True]
    ok, nxt, inner = codec.open_sealed(keys, info)
    assert ok.all() and not codec.tokens_in(nxt, inner)[0].any()
    assert len(codec.headers([]).fast) == 0


def test_a_framed_check_with_its_sealed_tail_is_the_sealed_check() -> None:
    """Gateway A keeps only the 17 sealed octets of a liveness check and frames the rest
    again for a retransmission: the octets must be those :func:`codec.seal` sent."""
    rng = np.random.default_rng(7)
    n = 64
    keys = rng.integers(0, 256, (n, _protect.KEY_LEN), dtype=np.uint8)
    si = rng.integers(1, 2**63, n, dtype=np.uint64)
    sr = rng.integers(1, 2**63, n, dtype=np.uint64)
    mids = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    ex = wire.EXCHANGE_INFORMATIONAL
    sealed = codec.seal(keys, si, sr, exchange=ex, message_id=mids, initiator=True, response=False)
    again = codec.frame(si, sr, exchange=ex, message_id=mids, initiator=True, response=False)
    assert sealed.shape[1] == codec.SEALED_MIN
    assert not (again[:, -codec.SEALED_TAIL:] == sealed[:, -codec.SEALED_TAIL:]).all()
    again[:, -codec.SEALED_TAIL:] = sealed[:, -codec.SEALED_TAIL:]
    assert (again == sealed).all()
