"""SaTable against a dict model (hypothesis stateful testing): inserts, replacements,
removes, checks and traffic times, single and batch, for every history depth."""

from __future__ import annotations

import hmac

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from ikeqcd import SaTable, TokenCheck

U64 = np.uint64
# A small key space, so that replacements, removals of present SAs and repeats in one batch
# are common; extreme SPI values included.
SPI = st.sampled_from([0, 1, 2, 0xFFFF_FFFF, 2**63, 2**64 - 1])
KEY = st.tuples(SPI, SPI)
LENGTH = st.sampled_from([16, 17, 32, 64, 128])
# Tokens from a small pool, so that received tokens often equal stored ones.
SEED = st.integers(min_value=0, max_value=5)


def token(seed: int, length: int) -> bytes:
    return bytes((seed * 31 + k * 7) % 256 for k in range(length))


class Model:
    """The reference: (spi_i, spi_r) -> (tokens newest first, last_in, last_out)."""

    def __init__(self, history: int) -> None:
        self.history = history
        self.sas: dict[tuple[int, int], tuple[list[bytes], float, float]] = {}

    def insert(self, key: tuple[int, int], tok: bytes, now: float) -> bool:
        old = self.sas.get(key)
        if old is None:
            self.sas[key] = ([tok], now, now)
            return True
        self.sas[key] = (([tok] + old[0])[: self.history], old[1], old[2])
        return False

    def check(self, key: tuple[int, int], received: list[bytes]) -> TokenCheck:
        sa = self.sas.get(key)
        if sa is None:
            return TokenCheck.NO_SA
        hit = any(hmac.compare_digest(r, s) for r in received for s in sa[0])
        return TokenCheck.MATCH if hit else TokenCheck.MISMATCH

    def touch(self, key: tuple[int, int], now: float, inbound: bool) -> bool:
        sa = self.sas.get(key)
        if sa is None:
            return False
        toks, tin, tout = sa
        self.sas[key] = (toks, max(tin, now), tout) if inbound else (toks, tin, max(tout, now))
        return True


def arrays(keys: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([k[0] for k in keys], dtype=U64),
        np.array([k[1] for k in keys], dtype=U64),
    )


class SaTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = SaTable()
        self.model = Model(1)
        self.now = 1000.0

    @initialize(history=st.integers(min_value=1, max_value=4))
    def make(self, history: int) -> None:
        self.table = SaTable(history=history)
        self.model = Model(history)

    @rule(dt=st.sampled_from([0.0, 0.001, 0.25, 3.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(key=KEY, seed=SEED, length=LENGTH)
    def insert(self, key: tuple[int, int], seed: int, length: int) -> None:
        tok = token(seed, length)
        assert self.table.insert(*key, tok, now=self.now) == self.model.insert(key, tok, self.now)

    @rule(keys=st.lists(KEY, max_size=6), seed=SEED, length=LENGTH)
    def insert_many(self, keys: list[tuple[int, int]], seed: int, length: int) -> None:
        toks = [token(seed + k, length) for k in range(len(keys))]
        mat = np.frombuffer(b"".join(toks), dtype=np.uint8).reshape(len(keys), length)
        new = sum(self.model.insert(k, t, self.now) for k, t in zip(keys, toks))
        assert self.table.insert_many(*arrays(keys), mat.copy(), now=self.now) == new

    @rule(key=KEY)
    def remove(self, key: tuple[int, int]) -> None:
        assert self.table.remove(*key) == (self.model.sas.pop(key, None) is not None)

    @rule(keys=st.lists(KEY, max_size=6))
    def remove_many(self, keys: list[tuple[int, int]]) -> None:
        want = [self.model.sas.pop(k, None) is not None for k in keys]
        assert self.table.remove_many(*arrays(keys)).tolist() == want

    @rule(
        key=KEY,
        received=st.lists(st.tuples(SEED, LENGTH), min_size=1, max_size=8),
    )
    def check(self, key: tuple[int, int], received: list[tuple[int, int]]) -> None:
        toks = [token(s, n) for s, n in received]
        got = self.table.check(*key, toks)
        assert isinstance(got, TokenCheck)
        assert got is self.model.check(key, toks)

    @precondition(lambda self: bool(self.model.sas))
    @rule(data=st.data(), length=LENGTH)
    def check_many_stored(self, data: st.DataObject, length: int) -> None:
        """Batch checks of stored tokens (one of each SA's) and of other tokens."""
        keys = data.draw(st.lists(st.sampled_from(sorted(self.model.sas)), min_size=1))
        keys += data.draw(st.lists(KEY, max_size=3))
        toks = []
        for k in keys:
            sa = self.model.sas.get(k)
            stored = [t for t in sa[0] if len(t) == length] if sa else []
            pick = data.draw(st.sampled_from(stored)) if stored else token(9, length)
            toks.append(pick)
        mat = np.frombuffer(b"".join(toks), dtype=np.uint8).reshape(len(keys), length).copy()
        want = [self.model.check(k, [t]) for k, t in zip(keys, toks)]
        threads = data.draw(st.sampled_from([0, 1, 2]))
        assert self.table.check_many(*arrays(keys), mat, threads=threads).tolist() == want
        got = self.table.contains_many(*arrays(keys), threads=threads).tolist()
        assert got == [k in self.model.sas for k in keys]

    @rule(keys=st.lists(KEY, max_size=4), inbound=st.booleans())
    def touch_many(self, keys: list[tuple[int, int]], inbound: bool) -> None:
        found = sum(self.model.touch(k, self.now, inbound) for k in keys)
        assert self.table.touch_many(*arrays(keys), self.now, inbound=inbound) == found

    @rule(key=KEY, inbound=st.booleans(), back=st.sampled_from([0.0, 1.0]))
    def touch(self, key: tuple[int, int], inbound: bool, back: float) -> None:
        """Also with a time in the past: stored times never move back."""
        got = self.table.touch(*key, self.now - back, inbound=inbound)
        assert got == self.model.touch(key, self.now - back, inbound)

    @rule(idle=st.sampled_from([0.0, 0.001, 0.5, 4.0]))
    def due_liveness(self, idle: float) -> None:
        a, b = self.table.due_liveness(self.now, idle=idle)
        want = {
            k
            for k, (_, tin, tout) in self.model.sas.items()
            # The table keeps milliseconds; the model's times are multiples of 1 ms.
            if round(tout * 1000) > round(tin * 1000)
            and round(self.now * 1000) - round(tin * 1000) >= round(idle * 1000)
        }
        assert set(zip(a.tolist(), b.tolist())) == want

    @invariant()
    def same_contents(self) -> None:
        assert len(self.table) == len(self.model.sas)
        d = self.table.to_arrays()
        got = {}
        for k in range(len(d["spi_i"])):
            lens = d["token_len"][k]
            toks = [d["tokens"][k, j, : lens[j]].tobytes() for j in range(len(lens)) if lens[j]]
            got[int(d["spi_i"][k]), int(d["spi_r"][k])] = (
                toks,
                round(float(d["last_in"][k]), 3),
                round(float(d["last_out"][k]), 3),
            )
        want = {k: (t, round(i, 3), round(o, 3)) for k, (t, i, o) in self.model.sas.items()}
        assert got == want
        for key in list(self.model.sas)[:2]:
            assert key in self.table


TestSaTable = SaTableMachine.TestCase
