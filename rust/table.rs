//! The token taker's SA table (RFC 6290 §3, §5, §5.3; digest rules T-1, T-2, T-9, T-12, T-13)
//! plus the traffic timestamps that say when a liveness check is due (seed issue 200).
//!
//! Layout, chosen for <= 96 bytes per SA at 10^6 SAs with 32-octet tokens:
//!
//! - an open-addressing index of 20-octet slots: the key (SPI-I, SPI-R) as four `u32`s and
//!   a 32-bit handle (`class << 24 | record`). Linear probing from `hash * slots >> 64`, at
//!   most 7/10 full, growing by 3/2, backward-shift deletion (no tombstones). The hash is
//!   SipHash-1-3 under a random key drawn per table (`std`'s `RandomState`): SPI-I is chosen
//!   by the remote peer, so a fixed or unkeyed hash would let it pile its SAs into one probe
//!   sequence. Batch lookups run in groups: hash the group, touch each home slot, then probe,
//!   so that the cache misses of a group overlap;
//! - records in size-class arenas: a record is `ts_in: u32 | ts_out: u32 | lens: [u8; 4] |
//!   tokens`, the tokens (newest first) packed back to back, its size `12 + Σ lens` rounded
//!   up to 4 octets. Arenas grow by pages of 1024 records, reuse freed records through an
//!   intrusive free list, drop their pages when they become empty, and zero every record
//!   that is freed and every page that is dropped (T-13). After heavy churn an arena keeps
//!   its high-water mark of pages (freed records are reused, not compacted); the index
//!   shrinks below 1/5 load.
//!
//! Timestamps are milliseconds (`u32`) since the table's epoch, which is the first `now` the
//! table saw. Before a tick would overflow, the epoch moves forward so that `now` sits at
//! 2^31 ms (24.8 days) and every stored tick drops by the same amount, saturating at zero.
//!
//! ```
//! use _core::table::{Check, SaTable};
//! let mut t = SaTable::new(2, 0).unwrap();
//! t.insert(1, 2, &[7u8; 32], 10.0).unwrap();
//! t.insert(1, 2, &[8u8; 32], 11.0).unwrap(); // T-2 replacement; the old token stays valid
//! assert_eq!(t.check(1, 2, &[&[7u8; 32]]).unwrap(), Check::Match);
//! assert_eq!(t.check(1, 2, &[&[9u8; 32]]).unwrap(), Check::Mismatch);
//! assert_eq!(t.check(2, 1, &[&[7u8; 32]]).unwrap(), Check::NoSa);
//! ```
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use subtle::Choice;
use zeroize::{Zeroize, Zeroizing};

use crate::clock::{check_duration, check_time};
use crate::ct;
use crate::error::{CoreError, CoreResult};
use crate::par;

/// Shortest token the table stores or compares (RFC 6290 §5).
pub const TOKEN_MIN: usize = 16;
/// Longest token the table stores or compares (RFC 6290 §5).
pub const TOKEN_MAX: usize = 128;
/// Most tokens kept per SA: the newest and up to three older ones (RFC 6290 §5 "MAY").
pub const HISTORY_MAX: usize = 4;
/// Most received tokens one [`SaTable::check`] takes (RFC 6290 §4.5 asks for at least 4).
pub const RECEIVED_MAX: usize = 16;
/// Most SAs one table holds (the record handle has 24 bits).
pub const CAPACITY_MAX: usize = (1 << INDEX_BITS) - 1;
/// Timestamp resolution: ticks per second.
pub const TICKS_PER_SECOND: f64 = 1000.0;

const HEADER: usize = 12;
const MAX_RECORD: usize = HEADER + TOKEN_MAX * HISTORY_MAX;
const N_CLASSES: usize = MAX_RECORD / 4 + 1;
const PAGE_SHIFT: u32 = 10;
const PAGE_RECORDS: usize = 1 << PAGE_SHIFT;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const NIL: u32 = u32::MAX;
/// Lookups are done in groups: hashes first, then probes, then records, so that the cache
/// misses of one group overlap instead of queueing one after the other.
const GROUP: usize = 32;
/// Where `now` lands after a rebase of the tick epoch.
const REBASE_TO: u32 = 1 << 31;

/// Result of comparing received tokens with the stored ones of an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum Check {
    /// No SA with these SPIs.
    NoSa = 0,
    /// The SA exists and no received token equals any stored one.
    Mismatch = 1,
    /// Some received token equals some stored token of the SA.
    Match = 2,
}

/// One index entry: the SPI pair (4-octet aligned, so a slot is 20 octets) and the handle.
#[derive(Clone, Copy)]
struct Slot {
    key: [u32; 4],
    handle: u32,
}

/// `handle` of an empty slot (real handles have a class <= 131 in their top byte).
const EMPTY: u32 = u32::MAX;
const VACANT: Slot = Slot {
    key: [0; 4],
    handle: EMPTY,
};
/// The index grows when it would be more than LOAD_NUM/LOAD_DEN full ...
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 10;
/// ... and shrinks when it falls below 1/SHRINK_DEN full.
const SHRINK_DEN: usize = 5;
const MIN_SLOTS: usize = 16;

/// Slots needed to hold `n` keys at most LOAD_NUM/LOAD_DEN full.
fn slots_for(n: usize) -> usize {
    (n * LOAD_DEN).div_ceil(LOAD_NUM).max(MIN_SLOTS)
}

/// Open-addressing index with linear probing and a per-table SipHash key.
struct Index {
    slots: Vec<Slot>,
    len: usize,
    hasher: RandomState,
}

impl Index {
    fn new(capacity: usize) -> Self {
        let mut ix = Index {
            slots: Vec::new(),
            len: 0,
            hasher: RandomState::new(),
        };
        if capacity > 0 {
            ix.resize(slots_for(capacity));
        }
        ix
    }

    #[inline]
    fn hash(&self, spi_i: u64, spi_r: u64) -> u64 {
        self.hasher.hash_one((spi_i, spi_r))
    }

    /// The home slot of a hash (`hash * slots >> 64`: any table size, uniform).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// Probe from `start` for `key`: `Ok(position)` if present, else `Err(first empty)`.
    /// The index is never full, so the walk ends.
    #[inline]
    fn probe(&self, start: usize, key: [u32; 4]) -> Result<usize, usize> {
        let mut i = start;
        loop {
            let s = &self.slots[i];
            if s.handle == EMPTY {
                return Err(i);
            }
            if s.key == key {
                return Ok(i);
            }
            i = self.next(i);
        }
    }

    #[inline]
    fn get(&self, hash: u64, key: [u32; 4]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(self.home(hash), key)
            .ok()
            .map(|i| self.slots[i].handle)
    }

    fn resize(&mut self, n_slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![VACANT; n_slots]);
        for s in old.into_iter().filter(|s| s.handle != EMPTY) {
            let start = self.home(self.hash(s.spi_i(), s.spi_r()));
            if let Err(i) = self.probe(start, s.key) {
                self.slots[i] = s;
            }
        }
    }

    /// Make room for `additional` more keys at once.
    fn reserve(&mut self, additional: usize) {
        if (self.len + additional) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            self.resize(slots_for(self.len + additional));
        }
    }

    /// Make room for one more key.
    fn reserve_one(&mut self) {
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            let grown = (self.slots.len() * 3 / 2).max(slots_for(self.len + 1));
            self.resize(grown);
        }
    }

    /// Give memory back after many removals.
    fn maybe_shrink(&mut self) {
        if self.slots.len() > MIN_SLOTS && self.len * SHRINK_DEN < self.slots.len() {
            if self.len == 0 {
                self.slots = Vec::new();
            } else {
                self.resize(slots_for(self.len) * 3 / 2);
            }
        }
    }

    /// Remove the slot at `pos`, shifting later members of its run back (no tombstones).
    fn remove_at(&mut self, pos: usize) -> Slot {
        let cap = self.slots.len();
        let removed = self.slots[pos];
        let mut hole = pos;
        let mut j = self.next(pos);
        loop {
            let s = self.slots[j];
            if s.handle == EMPTY {
                break;
            }
            let home = self.home(self.hash(s.spi_i(), s.spi_r()));
            // Move `s` into the hole unless that would put it before its home slot.
            if (j + cap - home) % cap >= (j + cap - hole) % cap {
                self.slots[hole] = s;
                hole = j;
            }
            j = self.next(j);
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        removed
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.handle != EMPTY)
    }

    /// Mean and longest probe length (slots read by a successful lookup).
    fn probe_lengths(&self) -> (f64, usize) {
        let cap = self.slots.len();
        let (mut sum, mut max) = (0usize, 0usize);
        for (i, s) in self.slots.iter().enumerate() {
            if s.handle != EMPTY {
                let d = (i + cap - self.home(self.hash(s.spi_i(), s.spi_r()))) % cap + 1;
                sum += d;
                max = max.max(d);
            }
        }
        if self.len == 0 {
            (0.0, 0)
        } else {
            (sum as f64 / self.len as f64, max)
        }
    }
}

#[inline]
fn pack(spi_i: u64, spi_r: u64) -> [u32; 4] {
    [
        spi_i as u32,
        (spi_i >> 32) as u32,
        spi_r as u32,
        (spi_r >> 32) as u32,
    ]
}

impl Slot {
    #[inline]
    fn spi_i(&self) -> u64 {
        u64::from(self.key[0]) | (u64::from(self.key[1]) << 32)
    }
    #[inline]
    fn spi_r(&self) -> u64 {
        u64::from(self.key[2]) | (u64::from(self.key[3]) << 32)
    }
}

#[inline]
fn split(handle: u32) -> (usize, u32) {
    ((handle >> INDEX_BITS) as usize, handle & INDEX_MASK)
}

#[inline]
fn class_of(token_bytes: usize) -> usize {
    (HEADER + token_bytes).div_ceil(4)
}

#[inline]
fn read_u32(r: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&r[at..at + 4]);
    u32::from_le_bytes(b)
}

#[inline]
fn write_u32(r: &mut [u8], at: usize, v: u32) {
    r[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Fixed-size records of one size class, in pages of `PAGE_RECORDS`.
struct Arena {
    rec: usize,
    pages: Vec<Box<[u8]>>,
    high: u32,
    free: u32,
    live: u32,
}

impl Arena {
    fn new(rec: usize) -> Self {
        Arena {
            rec,
            pages: Vec::new(),
            high: 0,
            free: NIL,
            live: 0,
        }
    }

    #[inline]
    fn get(&self, i: u32) -> &[u8] {
        let o = (i as usize & (PAGE_RECORDS - 1)) * self.rec;
        &self.pages[(i >> PAGE_SHIFT) as usize][o..o + self.rec]
    }

    #[inline]
    fn get_mut(&mut self, i: u32) -> &mut [u8] {
        let o = (i as usize & (PAGE_RECORDS - 1)) * self.rec;
        &mut self.pages[(i >> PAGE_SHIFT) as usize][o..o + self.rec]
    }

    /// A zeroed record. Callers keep the table below `CAPACITY_MAX`, so `high` stays in 24 bits.
    fn alloc(&mut self) -> u32 {
        let i = if self.free == NIL {
            if self.high as usize % PAGE_RECORDS == 0 {
                self.pages
                    .push(vec![0u8; self.rec * PAGE_RECORDS].into_boxed_slice());
            }
            self.high += 1;
            self.high - 1
        } else {
            let i = self.free;
            let r = self.get_mut(i);
            let next = read_u32(r, 0);
            r[..4].fill(0);
            self.free = next;
            i
        };
        self.live += 1;
        i
    }

    /// Zero the record and put it on the free list; drop all pages once nothing is live.
    fn release(&mut self, i: u32) {
        let next = self.free;
        let r = self.get_mut(i);
        r.zeroize();
        write_u32(r, 0, next);
        self.free = i;
        self.live -= 1;
        if self.live == 0 {
            // Every record was zeroed on release; only free-list links remain.
            self.pages = Vec::new();
            self.high = 0;
            self.free = NIL;
        }
    }

    fn bytes(&self) -> usize {
        self.pages.len() * self.rec * PAGE_RECORDS
            + self.pages.capacity() * std::mem::size_of::<Box<[u8]>>()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for p in &mut self.pages {
            p.zeroize();
        }
    }
}

/// The stored tokens of a record, newest first.
fn stored<'a>(rec: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut off = HEADER;
    rec[8..HEADER]
        .iter()
        .take_while(|&&l| l != 0)
        .map(move |&l| {
            let s = &rec[off..off + l as usize];
            off += l as usize;
            s
        })
}

/// Constant-time "does any of `received` equal any stored token of `rec`".
fn match_record<'a, I>(rec: &[u8], received: I) -> Choice
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut acc = Choice::from(0u8);
    for r in received {
        acc |= ct::eq_any(r, stored(rec));
    }
    acc
}

fn check_token(token: &[u8], what: &str) -> CoreResult<()> {
    if (TOKEN_MIN..=TOKEN_MAX).contains(&token.len()) {
        Ok(())
    } else {
        Err(CoreError::InvalidToken(format!(
            "{what} is {} octets; QCD tokens are {TOKEN_MIN} to {TOKEN_MAX} octets (RFC 6290 §5)",
            token.len()
        )))
    }
}

fn check_width(width: usize) -> CoreResult<()> {
    if (TOKEN_MIN..=TOKEN_MAX).contains(&width) {
        Ok(())
    } else {
        Err(CoreError::InvalidToken(format!(
            "tokens has rows of {width} octets; QCD tokens are {TOKEN_MIN} to {TOKEN_MAX} octets (RFC 6290 §5)"
        )))
    }
}

fn check_pairs(spi_i: &[u64], spi_r: &[u64]) -> CoreResult<()> {
    if spi_i.len() == spi_r.len() {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch(format!(
            "spi_i and spi_r must have the same length, got {} and {}",
            spi_i.len(),
            spi_r.len()
        )))
    }
}

fn check_out(n: usize, out: usize) -> CoreResult<()> {
    if n == out {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch(format!(
            "output buffer holds {out} entries, need {n}"
        )))
    }
}

fn check_rows(n: usize, tokens: &[u8], width: usize) -> CoreResult<()> {
    if tokens.len() == n * width {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch(format!(
            "tokens must be {n} rows of {width} octets, got {} octets",
            tokens.len()
        )))
    }
}

/// Everything in a table, as flat arrays (see [`SaTable::export`]).
#[derive(Debug, Default)]
pub struct Export {
    /// SPI-I of each SA.
    pub spi_i: Vec<u64>,
    /// SPI-R of each SA.
    pub spi_r: Vec<u64>,
    /// Last inbound activity, seconds on the caller's clock (millisecond resolution).
    pub last_in: Vec<f64>,
    /// Last outbound activity, seconds on the caller's clock.
    pub last_out: Vec<f64>,
    /// `history` lengths per SA, row-major; 0 = no token in that position.
    pub token_len: Vec<u8>,
    /// `history` tokens of `width` octets per SA, zero-padded, newest first.
    pub tokens: Zeroizing<Vec<u8>>,
    /// Longest stored token (0 for an empty table).
    pub width: usize,
}

/// The token taker's table: per IKE SA (keyed by SPI-I, SPI-R) the peer's QCD token(s) and
/// the last inbound and outbound traffic times.
pub struct SaTable {
    index: Index,
    arenas: Vec<Arena>,
    history: usize,
    epoch: Option<f64>,
}

impl SaTable {
    /// An empty table keeping `history` (1..=4) tokens per SA, with room for `capacity` SAs.
    ///
    /// # Errors
    /// `InvalidArgument` for a history outside 1..=4, `CapacityExceeded` past `CAPACITY_MAX`.
    pub fn new(history: usize, capacity: usize) -> CoreResult<Self> {
        if !(1..=HISTORY_MAX).contains(&history) {
            return Err(CoreError::InvalidArgument(format!(
                "history must be 1 to {HISTORY_MAX} tokens per SA, got {history}"
            )));
        }
        if capacity > CAPACITY_MAX {
            return Err(CoreError::CapacityExceeded(format!(
                "capacity {capacity} is more than the {CAPACITY_MAX} SAs a table holds"
            )));
        }
        Ok(SaTable {
            index: Index::new(capacity),
            arenas: (0..N_CLASSES).map(|c| Arena::new(c * 4)).collect(),
            history,
            epoch: None,
        })
    }

    /// Tokens kept per SA.
    #[must_use]
    pub fn history(&self) -> usize {
        self.history
    }

    /// Number of SAs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// True when the table holds no SA.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    #[inline]
    fn hash(&self, spi_i: u64, spi_r: u64) -> u64 {
        self.index.hash(spi_i, spi_r)
    }

    #[inline]
    fn find(&self, hash: u64, key: [u32; 4]) -> Option<u32> {
        self.index.get(hash, key)
    }

    #[inline]
    fn record(&self, handle: u32) -> &[u8] {
        let (c, i) = split(handle);
        self.arenas[c].get(i)
    }

    /// Visit `(item, handle)` for every pair, in groups: hash the group, touch each home slot
    /// (independent loads, so the misses overlap), then probe.
    #[inline]
    fn lookup_groups<F>(&self, spi_i: &[u64], spi_r: &[u64], mut f: F)
    where
        F: FnMut(usize, Option<u32>),
    {
        let ix = &self.index;
        if ix.slots.is_empty() {
            (0..spi_i.len()).for_each(|k| f(k, None));
            return;
        }
        let mut pos = [0usize; GROUP];
        for (g, (ga, gb)) in spi_i.chunks(GROUP).zip(spi_r.chunks(GROUP)).enumerate() {
            for ((p, &a), &b) in pos.iter_mut().zip(ga).zip(gb) {
                *p = ix.home(ix.hash(a, b));
            }
            let mut touch = 0u32;
            for &p in &pos[..ga.len()] {
                touch ^= ix.slots[p].key[0] ^ ix.slots[p].handle;
            }
            std::hint::black_box(touch);
            for (k, ((&p, &a), &b)) in pos.iter().zip(ga).zip(gb).enumerate() {
                f(
                    g * GROUP + k,
                    ix.probe(p, pack(a, b)).ok().map(|i| ix.slots[i].handle),
                );
            }
        }
    }

    /// Load the home slot of each hash, so that the misses of a group overlap (a hint: the
    /// index may still grow before the probes).
    #[inline]
    fn touch_homes(&self, hashes: &[u64]) {
        let ix = &self.index;
        if ix.slots.is_empty() {
            return;
        }
        let mut touch = 0u32;
        for &h in hashes {
            let s = &ix.slots[ix.home(h)];
            touch ^= s.key[0] ^ s.handle;
        }
        std::hint::black_box(touch);
    }

    /// Milliseconds since the epoch for a write; sets the epoch on first use and rebases
    /// before a tick would overflow.
    fn tick_mut(&mut self, now: f64) -> CoreResult<u32> {
        check_time(now, "now")?;
        let epoch = *self.epoch.get_or_insert(now);
        let t = ((now - epoch) * TICKS_PER_SECOND).round();
        if t <= 0.0 {
            return Ok(0);
        }
        if t < f64::from(u32::MAX) {
            return Ok(t as u32);
        }
        let shift = t - f64::from(REBASE_TO);
        self.epoch = Some(epoch + shift / TICKS_PER_SECOND);
        // `as` saturates: a shift beyond u32 zeroes every tick.
        let shift = shift as u64;
        let Self { index, arenas, .. } = self;
        for slot in index.slots.iter().filter(|s| s.handle != EMPTY) {
            let (c, i) = split(slot.handle);
            let r = arenas[c].get_mut(i);
            for at in [0, 4] {
                let v = u64::from(read_u32(r, at)).saturating_sub(shift);
                write_u32(r, at, v as u32);
            }
        }
        Ok(REBASE_TO)
    }

    /// Milliseconds since the epoch for a read (no rebase; may lie outside `u32`).
    fn tick_of(&self, now: f64) -> i64 {
        let epoch = self.epoch.unwrap_or(now);
        ((now - epoch) * TICKS_PER_SECOND).round() as i64
    }

    fn seconds(&self, tick: u32) -> f64 {
        self.epoch.unwrap_or(0.0) + f64::from(tick) / TICKS_PER_SECOND
    }

    fn new_record(arenas: &mut [Arena], token: &[u8], tick: u32) -> u32 {
        let c = class_of(token.len());
        let i = arenas[c].alloc();
        let r = arenas[c].get_mut(i);
        write_u32(r, 0, tick);
        write_u32(r, 4, tick);
        r[8] = token.len() as u8;
        r[HEADER..HEADER + token.len()].copy_from_slice(token);
        ((c as u32) << INDEX_BITS) | i
    }

    /// Put `token` in front of the record's tokens, keeping `history` in all; may move the
    /// record to another size class. Timestamps are kept. Returns the (new) handle.
    fn replace_record(arenas: &mut [Arena], handle: u32, token: &[u8], history: usize) -> u32 {
        let (c, i) = split(handle);
        let tl = token.len();
        let mut lens = [0u8; 4];
        lens[0] = tl as u8;
        lens[1..history].copy_from_slice(&arenas[c].get(i)[8..8 + history - 1]);
        let kept: usize = lens[1..].iter().map(|&l| usize::from(l)).sum();
        let total = tl + kept;
        let nc = class_of(total);
        if nc == c {
            let r = arenas[c].get_mut(i);
            r.copy_within(HEADER..HEADER + kept, HEADER + tl);
            r[HEADER..HEADER + tl].copy_from_slice(token);
            r[8..HEADER].copy_from_slice(&lens);
            r[HEADER + total..].zeroize();
            return handle;
        }
        let ni = arenas[nc].alloc();
        let (src, dst) = if c < nc {
            let (lo, hi) = arenas.split_at_mut(nc);
            (&mut lo[c], &mut hi[0])
        } else {
            let (lo, hi) = arenas.split_at_mut(c);
            (&mut hi[0], &mut lo[nc])
        };
        let old = src.get(i);
        let new = dst.get_mut(ni);
        new[..8].copy_from_slice(&old[..8]);
        new[8..HEADER].copy_from_slice(&lens);
        new[HEADER..HEADER + tl].copy_from_slice(token);
        new[HEADER + tl..HEADER + total].copy_from_slice(&old[HEADER..HEADER + kept]);
        src.release(i);
        ((nc as u32) << INDEX_BITS) | ni
    }

    /// Insert or replace one validated token; true when the SA is new.
    fn insert_hashed(&mut self, hash: u64, key: [u32; 4], token: &[u8], tick: u32) -> bool {
        if !self.index.slots.is_empty() {
            if let Ok(i) = self.index.probe(self.index.home(hash), key) {
                let slot = &mut self.index.slots[i];
                slot.handle =
                    Self::replace_record(&mut self.arenas, slot.handle, token, self.history);
                return false;
            }
        }
        self.index.reserve_one();
        let ix = &mut self.index;
        if let Err(i) = ix.probe(ix.home(hash), key) {
            let handle = Self::new_record(&mut self.arenas, token, tick);
            ix.slots[i] = Slot { key, handle };
            ix.len += 1;
        }
        true
    }

    fn capacity_error(&self, more: usize) -> CoreError {
        CoreError::CapacityExceeded(format!(
            "the table holds {} SAs and {more} more would exceed its limit of {CAPACITY_MAX}",
            self.len()
        ))
    }

    /// Store `token` for the SA, or replace its token (T-2); with `history > 1` the replaced
    /// token stays valid as an older one (T-9). A new SA gets `now` as its last inbound and
    /// outbound time; a replacement keeps its times. Returns true when the SA is new.
    ///
    /// # Errors
    /// `InvalidToken` (length outside 16..=128), `InvalidArgument` (`now` not a usable time, [`crate::clock`]),
    /// `CapacityExceeded`.
    pub fn insert(&mut self, spi_i: u64, spi_r: u64, token: &[u8], now: f64) -> CoreResult<bool> {
        check_token(token, "token")?;
        check_time(now, "now")?;
        let hash = self.hash(spi_i, spi_r);
        let key = pack(spi_i, spi_r);
        if self.len() >= CAPACITY_MAX && self.find(hash, key).is_none() {
            return Err(self.capacity_error(1));
        }
        let tick = self.tick_mut(now)?;
        Ok(self.insert_hashed(hash, key, token, tick))
    }

    /// [`insert`](Self::insert) for `spi_i.len()` pairs; `tokens` holds one row of `width`
    /// octets per pair. Pairs are applied in order (a later row for the same SA replaces an
    /// earlier one). Returns how many SAs were new. All checks happen before any change.
    ///
    /// # Errors
    /// As [`insert`](Self::insert), plus `ShapeMismatch`.
    pub fn insert_batch(
        &mut self,
        spi_i: &[u64],
        spi_r: &[u64],
        tokens: &[u8],
        width: usize,
        now: f64,
    ) -> CoreResult<usize> {
        check_pairs(spi_i, spi_r)?;
        check_width(width)?;
        check_rows(spi_i.len(), tokens, width)?;
        check_time(now, "now")?;
        let n = spi_i.len();
        if self.len() + n > CAPACITY_MAX {
            let mut fresh = std::collections::HashSet::new();
            for (&a, &b) in spi_i.iter().zip(spi_r) {
                if !self.contains(a, b) {
                    fresh.insert((a, b));
                }
            }
            if self.len() + fresh.len() > CAPACITY_MAX {
                return Err(self.capacity_error(fresh.len()));
            }
        }
        if n == 0 {
            return Ok(0);
        }
        // Size the index once for a bulk load instead of growing it step by step: all of the
        // batch into an empty table, else the pairs not there yet when the batch is large.
        if self.is_empty() {
            self.index.reserve(n);
        } else if n > self.len() / 2 {
            let mut absent = 0usize;
            self.lookup_groups(spi_i, spi_r, |_, h| absent += usize::from(h.is_none()));
            self.index.reserve(absent);
        }
        let tick = self.tick_mut(now)?;
        let mut added = 0;
        let mut hs = [0u64; GROUP];
        for ((ga, gb), gt) in spi_i
            .chunks(GROUP)
            .zip(spi_r.chunks(GROUP))
            .zip(tokens.chunks(GROUP * width))
        {
            for ((h, &a), &b) in hs.iter_mut().zip(ga).zip(gb) {
                *h = self.hash(a, b);
            }
            self.touch_homes(&hs[..ga.len()]);
            for (((&h, &a), &b), tok) in hs.iter().zip(ga).zip(gb).zip(gt.chunks_exact(width)) {
                added += usize::from(self.insert_hashed(h, pack(a, b), tok, tick));
            }
        }
        // A batch full of repeats may have reserved far more than it used.
        self.index.maybe_shrink();
        Ok(added)
    }

    /// Delete the SA and zero its tokens (T-12). False when there was no such SA.
    pub fn remove(&mut self, spi_i: u64, spi_r: u64) -> bool {
        let hash = self.hash(spi_i, spi_r);
        let found = self.remove_hashed(hash, pack(spi_i, spi_r));
        self.index.maybe_shrink();
        found
    }

    fn remove_hashed(&mut self, hash: u64, key: [u32; 4]) -> bool {
        if self.index.slots.is_empty() {
            return false;
        }
        match self.index.probe(self.index.home(hash), key) {
            Ok(pos) => {
                let slot = self.index.remove_at(pos);
                let (c, i) = split(slot.handle);
                self.arenas[c].release(i);
                true
            }
            Err(_) => false,
        }
    }

    /// [`remove`](Self::remove) for each pair; `out[k]` says whether pair k was there.
    ///
    /// # Errors
    /// `ShapeMismatch`.
    pub fn remove_batch(
        &mut self,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [bool],
    ) -> CoreResult<usize> {
        check_pairs(spi_i, spi_r)?;
        check_out(spi_i.len(), out.len())?;
        let mut removed = 0;
        let mut hs = [0u64; GROUP];
        for ((ga, gb), go) in spi_i
            .chunks(GROUP)
            .zip(spi_r.chunks(GROUP))
            .zip(out.chunks_mut(GROUP))
        {
            for ((h, &a), &b) in hs.iter_mut().zip(ga).zip(gb) {
                *h = self.hash(a, b);
            }
            self.touch_homes(&hs[..ga.len()]);
            for (((&h, &a), &b), o) in hs.iter().zip(ga).zip(gb).zip(go.iter_mut()) {
                *o = self.remove_hashed(h, pack(a, b));
                removed += usize::from(*o);
            }
        }
        self.index.maybe_shrink();
        Ok(removed)
    }

    /// Is there an SA with these SPIs?
    #[must_use]
    pub fn contains(&self, spi_i: u64, spi_r: u64) -> bool {
        self.find(self.hash(spi_i, spi_r), pack(spi_i, spi_r))
            .is_some()
    }

    /// [`contains`](Self::contains) for each pair, on up to `threads` threads (0 = all).
    ///
    /// # Errors
    /// `ShapeMismatch`.
    pub fn contains_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [bool],
        threads: usize,
    ) -> CoreResult<()> {
        check_pairs(spi_i, spi_r)?;
        check_out(spi_i.len(), out.len())?;
        par::for_each_chunk(out, 1, threads, |first, chunk| {
            let end = first + chunk.len();
            self.lookup_groups(&spi_i[first..end], &spi_r[first..end], |k, h| {
                chunk[k] = h.is_some();
            });
        });
        Ok(())
    }

    /// Compare received tokens (1..=16, each 16..=128 octets) with every stored token of the
    /// SA, in constant time: `Match` if any received equals any stored (T-8, T-9).
    ///
    /// # Errors
    /// `InvalidToken` for no tokens, too many, or a token of a wrong length.
    pub fn check(&self, spi_i: u64, spi_r: u64, received: &[&[u8]]) -> CoreResult<Check> {
        if received.is_empty() || received.len() > RECEIVED_MAX {
            return Err(CoreError::InvalidToken(format!(
                "check takes 1 to {RECEIVED_MAX} received tokens, got {}",
                received.len()
            )));
        }
        for (k, t) in received.iter().enumerate() {
            check_token(t, &format!("received token {k}"))?;
        }
        Ok(
            match self.find(self.hash(spi_i, spi_r), pack(spi_i, spi_r)) {
                None => Check::NoSa,
                Some(h) => {
                    if ct::to_bool(match_record(self.record(h), received.iter().copied())) {
                        Check::Match
                    } else {
                        Check::Mismatch
                    }
                }
            },
        )
    }

    /// [`check`](Self::check) with one received token per pair: row k of `tokens` (`width`
    /// octets) against pair k; `out[k]` is a [`Check`] code. Up to `threads` threads.
    ///
    /// # Errors
    /// `ShapeMismatch`, `InvalidToken` for a width outside 16..=128.
    pub fn check_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        tokens: &[u8],
        width: usize,
        out: &mut [i8],
        threads: usize,
    ) -> CoreResult<()> {
        check_pairs(spi_i, spi_r)?;
        check_width(width)?;
        check_rows(spi_i.len(), tokens, width)?;
        check_out(spi_i.len(), out.len())?;
        let ix = &self.index;
        par::for_each_chunk(out, 1, threads, |first, chunk| {
            if ix.slots.is_empty() {
                chunk.fill(Check::NoSa as i8);
                return;
            }
            let mut pos = [0usize; GROUP];
            let mut recs: [Option<&[u8]>; GROUP] = [None; GROUP];
            for (g, go) in chunk.chunks_mut(GROUP).enumerate() {
                let base = first + g * GROUP;
                let ga = &spi_i[base..base + go.len()];
                let gb = &spi_r[base..base + go.len()];
                for ((p, &a), &b) in pos.iter_mut().zip(ga).zip(gb) {
                    *p = ix.home(ix.hash(a, b));
                }
                // Touch the home slots, probe, touch the records, compare: each stage's
                // loads are independent, so their misses overlap.
                let mut touch = 0u32;
                for &p in &pos[..go.len()] {
                    touch ^= ix.slots[p].key[0] ^ ix.slots[p].handle;
                }
                let mut touch8 = 0u8;
                for (((r, &p), &a), &b) in recs.iter_mut().zip(&pos).zip(ga).zip(gb) {
                    *r = ix
                        .probe(p, pack(a, b))
                        .ok()
                        .map(|i| self.record(ix.slots[i].handle));
                }
                for r in recs[..go.len()].iter().flatten() {
                    // A record may straddle two cache lines: touch both ends.
                    touch8 ^= r[8] ^ r[r.len() - 1];
                }
                std::hint::black_box((touch, touch8));
                for (k, (o, r)) in go.iter_mut().zip(&recs).enumerate() {
                    let i = base + k;
                    *o = match r {
                        None => Check::NoSa,
                        Some(rec) => {
                            let tok = &tokens[i * width..(i + 1) * width];
                            if ct::to_bool(match_record(rec, [tok])) {
                                Check::Match
                            } else {
                                Check::Mismatch
                            }
                        }
                    } as i8;
                }
            }
        });
        Ok(())
    }

    /// Record traffic for the SA at `now`: inbound or outbound. Times only move forward.
    /// False when there is no such SA.
    ///
    /// # Errors
    /// `InvalidArgument` when `now` is not a usable time ([`crate::clock`]).
    pub fn touch(&mut self, spi_i: u64, spi_r: u64, now: f64, inbound: bool) -> CoreResult<bool> {
        self.touch_batch(&[spi_i], &[spi_r], now, inbound)
            .map(|n| n == 1)
    }

    /// [`touch`](Self::touch) for each pair; returns how many SAs were found.
    ///
    /// # Errors
    /// `ShapeMismatch`, `InvalidArgument`.
    pub fn touch_batch(
        &mut self,
        spi_i: &[u64],
        spi_r: &[u64],
        now: f64,
        inbound: bool,
    ) -> CoreResult<usize> {
        check_pairs(spi_i, spi_r)?;
        let tick = self.tick_mut(now)?;
        let at = if inbound { 0 } else { 4 };
        let mut found = 0;
        let mut handles = [None; GROUP];
        for (ga, gb) in spi_i.chunks(GROUP).zip(spi_r.chunks(GROUP)) {
            self.lookup_groups(ga, gb, |k, h| handles[k] = h);
            for h in handles.iter().take(ga.len()).flatten() {
                let (c, i) = split(*h);
                let r = self.arenas[c].get_mut(i);
                let v = read_u32(r, at).max(tick);
                write_u32(r, at, v);
                found += 1;
            }
        }
        Ok(found)
    }

    /// The SAs whose last outbound activity is newer than their last inbound one and whose
    /// inbound side has been silent for at least `idle` seconds at `now` (to the
    /// millisecond). An SA without traffic in a direction counts its insertion time there.
    ///
    /// # Errors
    /// `InvalidArgument` when `now` is not a usable time or `idle` not a usable duration
    /// ([`crate::clock`]).
    pub fn due_liveness(&self, now: f64, idle: f64) -> CoreResult<(Vec<u64>, Vec<u64>)> {
        check_time(now, "now")?;
        check_duration(idle, "idle")?;
        let now_t = self.tick_of(now);
        let idle_t = (idle * TICKS_PER_SECOND).round() as i64;
        let mut out = (Vec::new(), Vec::new());
        for slot in self.index.iter() {
            let r = self.record(slot.handle);
            let (tin, tout) = (read_u32(r, 0), read_u32(r, 4));
            if tout > tin && now_t.saturating_sub(i64::from(tin)) >= idle_t {
                out.0.push(slot.spi_i());
                out.1.push(slot.spi_r());
            }
        }
        Ok(out)
    }

    /// [`due_liveness`](Self::due_liveness) asked of given SAs: `out[k]` says whether pair k
    /// is in the table and due at `now`. Costs one lookup per pair instead of a walk of the
    /// whole table (a gateway that keeps its own timers asks about the SAs they name).
    ///
    /// # Errors
    /// `ShapeMismatch`, and `InvalidArgument` as [`due_liveness`](Self::due_liveness).
    pub fn due_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        now: f64,
        idle: f64,
        out: &mut [bool],
    ) -> CoreResult<()> {
        check_pairs(spi_i, spi_r)?;
        check_out(spi_i.len(), out.len())?;
        check_time(now, "now")?;
        check_duration(idle, "idle")?;
        let now_t = self.tick_of(now);
        let idle_t = (idle * TICKS_PER_SECOND).round() as i64;
        self.lookup_groups(spi_i, spi_r, |k, h| {
            out[k] = h.is_some_and(|h| {
                let r = self.record(h);
                let (tin, tout) = (read_u32(r, 0), read_u32(r, 4));
                tout > tin && now_t.saturating_sub(i64::from(tin)) >= idle_t
            });
        });
        Ok(())
    }

    /// `(last inbound, last outbound)` in seconds on the caller's clock, to the millisecond.
    #[must_use]
    pub fn timestamps(&self, spi_i: u64, spi_r: u64) -> Option<(f64, f64)> {
        let h = self.find(self.hash(spi_i, spi_r), pack(spi_i, spi_r))?;
        let r = self.record(h);
        Some((self.seconds(read_u32(r, 0)), self.seconds(read_u32(r, 4))))
    }

    /// Heap and inline bytes held by the table: the index's whole allocation (its capacity,
    /// not its length) and every arena page.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.index.slots.capacity() * std::mem::size_of::<Slot>()
            + self.arenas.capacity() * std::mem::size_of::<Arena>()
            + self.arenas.iter().map(Arena::bytes).sum::<usize>()
    }

    /// Remove every SA, zero every token and give the memory back. The epoch is kept.
    pub fn clear(&mut self) {
        self.index.slots = Vec::new();
        self.index.len = 0;
        self.arenas = (0..N_CLASSES).map(|c| Arena::new(c * 4)).collect();
    }

    /// Mean and longest probe length of the index (slots a successful lookup reads): the
    /// evidence that adversarial SPIs do not form long runs.
    #[must_use]
    pub fn probe_lengths(&self) -> (f64, usize) {
        self.index.probe_lengths()
    }

    /// Everything, in no particular order (the index's order, which differs per table).
    #[must_use]
    pub fn export(&self) -> Export {
        let n = self.len();
        let h = self.history;
        let width = self
            .index
            .iter()
            .flat_map(|s| self.record(s.handle)[8..HEADER].to_vec())
            .max()
            .map_or(0, usize::from);
        let mut e = Export {
            spi_i: Vec::with_capacity(n),
            spi_r: Vec::with_capacity(n),
            last_in: Vec::with_capacity(n),
            last_out: Vec::with_capacity(n),
            token_len: vec![0; n * h],
            tokens: Zeroizing::new(vec![0; n * h * width]),
            width,
        };
        for (k, slot) in self.index.iter().enumerate() {
            let r = self.record(slot.handle);
            e.spi_i.push(slot.spi_i());
            e.spi_r.push(slot.spi_r());
            e.last_in.push(self.seconds(read_u32(r, 0)));
            e.last_out.push(self.seconds(read_u32(r, 4)));
            for (j, t) in stored(r).enumerate() {
                e.token_len[k * h + j] = t.len() as u8;
                let o = (k * h + j) * width;
                e.tokens[o..o + t.len()].copy_from_slice(t);
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn tok(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|k| seed.wrapping_add(k as u8)).collect()
    }

    #[test]
    fn insert_check_remove() {
        let mut t = SaTable::new(1, 0).unwrap();
        assert!(t.insert(1, 2, &tok(1, 32), 0.0).unwrap());
        assert!(!t.insert(1, 2, &tok(2, 32), 0.0).unwrap());
        assert_eq!(t.len(), 1);
        assert_eq!(t.check(1, 2, &[&tok(2, 32)]).unwrap(), Check::Match);
        assert_eq!(t.check(1, 2, &[&tok(1, 32)]).unwrap(), Check::Mismatch);
        assert_eq!(
            t.check(1, 2, &[&tok(1, 32), &tok(2, 32)]).unwrap(),
            Check::Match
        );
        assert_eq!(t.check(2, 1, &[&tok(2, 32)]).unwrap(), Check::NoSa);
        assert!(t.remove(1, 2));
        assert!(!t.remove(1, 2));
        assert!(t.is_empty());
        assert_eq!(t.check(1, 2, &[&tok(2, 32)]).unwrap(), Check::NoSa);
    }

    #[test]
    fn history_moves_between_classes() {
        let mut t = SaTable::new(3, 0).unwrap();
        t.insert(5, 6, &tok(1, 16), 0.0).unwrap();
        t.insert(5, 6, &tok(2, 128), 0.0).unwrap();
        t.insert(5, 6, &tok(3, 32), 0.0).unwrap();
        for (s, l) in [(1, 16), (2, 128), (3, 32)] {
            assert_eq!(t.check(5, 6, &[&tok(s, l)]).unwrap(), Check::Match);
        }
        t.insert(5, 6, &tok(4, 64), 0.0).unwrap();
        assert_eq!(t.check(5, 6, &[&tok(1, 16)]).unwrap(), Check::Mismatch);
        let e = t.export();
        assert_eq!(e.token_len, vec![64, 32, 128]);
        assert_eq!(e.width, 128);
        assert_eq!(&e.tokens[128..160], &tok(3, 32)[..]);
        // Only one record is live, in one class.
        assert_eq!(t.arenas.iter().map(|a| a.live).sum::<u32>(), 1);
    }

    #[test]
    fn errors() {
        let mut t = SaTable::new(1, 0).unwrap();
        assert!(matches!(
            SaTable::new(0, 0),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            SaTable::new(5, 0),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            SaTable::new(1, CAPACITY_MAX + 1),
            Err(CoreError::CapacityExceeded(_))
        ));
        assert!(matches!(
            t.insert(1, 2, &[0; 15], 0.0),
            Err(CoreError::InvalidToken(_))
        ));
        assert!(matches!(
            t.insert(1, 2, &[0; 129], 0.0),
            Err(CoreError::InvalidToken(_))
        ));
        assert!(matches!(
            t.insert(1, 2, &[0; 16], f64::NAN),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            t.check(1, 2, &[]),
            Err(CoreError::InvalidToken(_))
        ));
        let many = vec![&[0u8; 16][..]; RECEIVED_MAX + 1];
        assert!(matches!(
            t.check(1, 2, &many),
            Err(CoreError::InvalidToken(_))
        ));
        assert!(matches!(
            t.insert_batch(&[1], &[], &[0; 16], 16, 0.0),
            Err(CoreError::ShapeMismatch(_))
        ));
        assert!(matches!(
            t.insert_batch(&[1], &[2], &[0; 15], 15, 0.0),
            Err(CoreError::InvalidToken(_))
        ));
        assert!(matches!(
            t.insert_batch(&[1], &[2], &[0; 17], 16, 0.0),
            Err(CoreError::ShapeMismatch(_))
        ));
        assert!(matches!(
            t.due_liveness(0.0, -1.0),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn adversarial_keys_spread() {
        // Same SPI-I with many SPI-R, and sequential values: the keyed hash must spread them
        // over the buckets like random keys (max bucket load of a balls-into-bins process).
        let t = SaTable::new(1, 0).unwrap();
        let bits = 16;
        let n = 1 << bits;
        for keys in [
            (0..n).map(|k| (7u64, k as u64)).collect::<Vec<_>>(),
            (0..n).map(|k| (k as u64, 0u64)).collect(),
            (0..n).map(|k| ((k as u64) << 40, 1u64 << 40)).collect(),
        ] {
            let mut load = vec![0u32; n];
            for (a, b) in keys {
                load[(t.hash(a, b) as usize) & (n - 1)] += 1;
            }
            let max = *load.iter().max().unwrap();
            let empty = load.iter().filter(|&&l| l == 0).count() as f64 / n as f64;
            assert!(max <= 12, "max bucket load {max}");
            assert!(
                (empty - (-1.0f64).exp()).abs() < 0.02,
                "empty fraction {empty}"
            );
        }
        // Two tables hash differently.
        let u = SaTable::new(1, 0).unwrap();
        assert_ne!(t.hash(1, 2), u.hash(1, 2));
    }

    #[test]
    fn liveness_rule() {
        let mut t = SaTable::new(1, 0).unwrap();
        t.insert(1, 1, &tok(0, 16), 100.0).unwrap();
        t.insert(2, 2, &tok(0, 16), 100.0).unwrap();
        assert_eq!(t.due_liveness(1000.0, 5.0).unwrap().0, Vec::<u64>::new());
        t.touch(1, 1, 101.0, false).unwrap();
        assert_eq!(t.due_liveness(104.999, 5.0).unwrap().0, Vec::<u64>::new());
        assert_eq!(t.due_liveness(105.0, 5.0).unwrap().0, vec![1]);
        t.touch(1, 1, 105.5, true).unwrap();
        assert_eq!(t.due_liveness(200.0, 5.0).unwrap().0, Vec::<u64>::new());
        // Older times never move a timestamp back.
        t.touch(1, 1, 50.0, true).unwrap();
        assert_eq!(t.timestamps(1, 1), Some((105.5, 101.0)));
        assert_eq!(t.timestamps(2, 2), Some((100.0, 100.0)));
    }

    #[test]
    fn rebase_keeps_order() {
        let mut t = SaTable::new(1, 0).unwrap();
        t.insert(1, 1, &tok(0, 16), 0.0).unwrap();
        t.touch(1, 1, 10.0, false).unwrap();
        let far = 60.0 * 86400.0; // past u32 milliseconds
        t.insert(2, 2, &tok(0, 16), far).unwrap();
        t.touch(2, 2, far + 1.0, false).unwrap();
        let (i2, o2) = t.timestamps(2, 2).unwrap();
        assert!((i2 - far).abs() < 1e-6 && (o2 - far - 1.0).abs() < 1e-6);
        // SA 1's ancient times were clamped to the new epoch: no longer "out > in".
        let (due, _) = t.due_liveness(far + 10.0, 5.0).unwrap();
        assert_eq!(due, vec![2]);
    }

    #[test]
    fn memory_per_sa() {
        let n = 100_000u64;
        let mut t = SaTable::new(1, 0).unwrap();
        let a: Vec<u64> = (0..n)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let toks = vec![0xA5u8; n as usize * 32];
        t.insert_batch(&a, &a, &toks, 32, 0.0).unwrap();
        let per = t.memory_bytes() as f64 / n as f64;
        // 2^18 buckets x 21 + 44-octet records + pages: about 100 at this size; <= 96 at 10^6.
        assert!(per < 110.0, "{per} bytes per SA");
        t.clear();
        assert!(t.memory_bytes() < 16_384);
    }

    #[test]
    fn churn_keeps_every_key_findable() {
        // Many inserts and removals through growth and shrinking: backward-shift deletion
        // must leave every remaining key reachable from its home slot.
        let mut t = SaTable::new(1, 0).unwrap();
        let mut model = std::collections::HashSet::new();
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..6 {
            for _ in 0..8000 {
                let k = (rnd() % 20_000, rnd() % 3);
                t.insert(k.0, k.1, &tok(round, 16), 0.0).unwrap();
                model.insert(k);
            }
            for _ in 0..(if round < 4 { 6000 } else { 30_000 }) {
                let k = (rnd() % 20_000, rnd() % 3);
                assert_eq!(t.remove(k.0, k.1), model.remove(&k));
            }
            assert_eq!(t.len(), model.len());
            for &(a, b) in &model {
                assert!(t.contains(a, b));
            }
            let (mean, longest) = t.probe_lengths();
            assert!(mean < 3.0 && longest < 200, "{mean} {longest}");
        }
        assert!(t.index.slots.len() <= slots_for(t.len()) * 5);
    }

    /// Tokens newest first, last inbound, last outbound.
    type ModelSa = (Vec<Vec<u8>>, f64, f64);

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u8, usize),
        Remove(u8, u8),
        Check(u8, u8, u8, usize),
        Touch(u8, u8, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        let len = prop_oneof![Just(16usize), Just(32), Just(20), Just(128)];
        prop_oneof![
            (0u8..4, 0u8..4, 0u8..6, len.clone()).prop_map(|(a, b, s, l)| Op::Insert(a, b, s, l)),
            (0u8..4, 0u8..4).prop_map(|(a, b)| Op::Remove(a, b)),
            (0u8..4, 0u8..4, 0u8..6, len).prop_map(|(a, b, s, l)| Op::Check(a, b, s, l)),
            (0u8..4, 0u8..4, any::<bool>()).prop_map(|(a, b, i)| Op::Touch(a, b, i)),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_model(history in 1usize..=4, ops in prop::collection::vec(op(), 1..80)) {
            let mut t = SaTable::new(history, 0).unwrap();
            let mut model: HashMap<(u64, u64), ModelSa> = HashMap::new();
            let mut now = 0.0;
            for o in ops {
                now += 0.25;
                match o {
                    Op::Insert(a, b, s, l) => {
                        let k = (u64::from(a), u64::from(b));
                        let new = t.insert(k.0, k.1, &tok(s, l), now).unwrap();
                        prop_assert_eq!(new, !model.contains_key(&k));
                        let e = model.entry(k).or_insert((Vec::new(), now, now));
                        e.0.insert(0, tok(s, l));
                        e.0.truncate(history);
                    }
                    Op::Remove(a, b) => {
                        let k = (u64::from(a), u64::from(b));
                        prop_assert_eq!(t.remove(k.0, k.1), model.remove(&k).is_some());
                    }
                    Op::Check(a, b, s, l) => {
                        let k = (u64::from(a), u64::from(b));
                        let want = match model.get(&k) {
                            None => Check::NoSa,
                            Some(e) if e.0.contains(&tok(s, l)) => Check::Match,
                            Some(_) => Check::Mismatch,
                        };
                        prop_assert_eq!(t.check(k.0, k.1, &[&tok(s, l)]).unwrap(), want);
                        let mut out = [0i8];
                        t.check_batch(&[k.0], &[k.1], &tok(s, l), l, &mut out, 1).unwrap();
                        prop_assert_eq!(out[0], want as i8);
                    }
                    Op::Touch(a, b, inbound) => {
                        let k = (u64::from(a), u64::from(b));
                        prop_assert_eq!(t.touch(k.0, k.1, now, inbound).unwrap(), model.contains_key(&k));
                        if let Some(e) = model.get_mut(&k) {
                            if inbound { e.1 = now } else { e.2 = now }
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for (k, e) in &model {
                prop_assert_eq!(t.timestamps(k.0, k.1), Some((e.1, e.2)));
            }
            let due: std::collections::HashSet<(u64, u64)> = {
                let (a, b) = t.due_liveness(now, 1.0).unwrap();
                a.into_iter().zip(b).collect()
            };
            let want: std::collections::HashSet<(u64, u64)> = model
                .iter()
                .filter(|(_, e)| e.2 > e.1 && now - e.1 >= 1.0)
                .map(|(k, _)| *k)
                .collect();
            prop_assert_eq!(&due, &want);
            // due_batch asked of every pair seen (present or not) agrees with the walk
            let mut asked: Vec<(u64, u64)> = model.keys().copied().collect();
            asked.extend([(1, 2), (u64::MAX, 0)]);
            let (ai, ar): (Vec<u64>, Vec<u64>) = asked.iter().copied().unzip();
            let mut out = vec![false; asked.len()];
            t.due_batch(&ai, &ar, now, 1.0, &mut out).unwrap();
            for (k, got) in asked.iter().zip(out) {
                prop_assert_eq!(got, due.contains(k));
            }
            let live: u32 = t.arenas.iter().map(|a| a.live).sum();
            prop_assert_eq!(live as usize, model.len());
        }
    }
}
