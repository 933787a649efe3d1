//! The serve loop's live-SA check (RFC 6290 §9.2: never reveal the token of an SA that is live
//! here or anywhere in the cluster), asked once per round of received batches (see
//! `net::round`) with every candidate of the round.
//!
//! [`LiveCheck`] is implemented here for a local [`SaTable`] (read-locked once per batch) and,
//! in the Python bindings, for an object with `contains_many` (a cluster store: the GIL is
//! taken once per batch). A check that cannot answer returns [`Unavailable`] and the serve
//! loop fails closed: every candidate of that round gets `Reason::ClusterUnavailable` and no
//! reply at all.
#![forbid(unsafe_code)]

use std::sync::{PoisonError, RwLock};

use crate::responder::{Candidate, Reason};
use crate::table::SaTable;

/// The live check could not answer (store unreachable, past its deadline, refused): the
/// batch fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the live-SA check could not answer")
    }
}

/// Which SPI pairs are live, asked in batches.
pub trait LiveCheck: Sync {
    /// Set `live[k]` to whether `(spi_i[k], spi_r[k])` is a live SA. The three slices have
    /// the same length (at least 1). Only `true` entries need to be written: the caller
    /// clears `live` first.
    ///
    /// # Errors
    /// [`Unavailable`] when the answer is not known; the caller then reveals no token for
    /// any pair of the batch.
    fn contains_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        live: &mut [bool],
    ) -> Result<(), Unavailable>;
}

impl LiveCheck for RwLock<SaTable> {
    fn contains_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        live: &mut [bool],
    ) -> Result<(), Unavailable> {
        let t = self.read().unwrap_or_else(PoisonError::into_inner);
        for ((l, &a), &b) in live.iter_mut().zip(spi_i).zip(spi_r) {
            *l = t.contains(a, b);
        }
        Ok(())
    }
}

/// One received batch between the serve loop's two passes: every datagram's classification
/// in arrival order and the candidates' SPI pairs, so that the live check is asked once.
#[derive(Debug, Default)]
pub struct Batch {
    slots: Vec<Result<(usize, Candidate), Reason>>,
    spi_i: Vec<u64>,
    spi_r: Vec<u64>,
    live: Vec<bool>,
}

impl Batch {
    /// Forget the previous batch (the buffers are kept).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.spi_i.clear();
        self.spi_r.clear();
        self.live.clear();
    }

    /// A datagram that is not a candidate, and why.
    pub fn fail(&mut self, reason: Reason) {
        self.slots.push(Err(reason));
    }

    /// A candidate received in receive slot `slot`.
    pub fn candidate(&mut self, slot: usize, cand: Candidate) {
        self.spi_i.push(cand.header.spi_i);
        self.spi_r.push(cand.header.spi_r);
        self.slots.push(Ok((slot, cand)));
    }

    /// Ask `live` about every candidate at once. Returns `true` when it could not answer:
    /// the whole batch then fails closed.
    pub fn check(&mut self, live: Option<&dyn LiveCheck>) -> bool {
        self.live.clear();
        self.live.resize(self.spi_i.len(), false);
        match live {
            Some(l) if !self.spi_i.is_empty() => l
                .contains_batch(&self.spi_i, &self.spi_r, &mut self.live)
                .is_err(),
            _ => false,
        }
    }

    /// Every datagram in arrival order: `Ok((slot, candidate))` or `Err(reason)`, and
    /// whether the candidate's SA is live (after [`Batch::check`]).
    pub fn outcomes(
        &self,
    ) -> impl Iterator<Item = (Result<(usize, Candidate), Reason>, bool)> + '_ {
        let mut live = self.live.iter().copied();
        self.slots.iter().map(move |s| match s {
            Ok(c) => (Ok(*c), live.next().unwrap_or(true)),
            Err(r) => (Err(*r), false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_check() {
        let mut t = SaTable::new(1, 0).unwrap();
        t.insert(5, 6, &[1u8; 16], 0.0).unwrap();
        let t = RwLock::new(t);
        let mut live = [false; 3];
        t.contains_batch(&[5, 6, 5], &[6, 5, 7], &mut live).unwrap();
        assert_eq!(live, [true, false, false]);
    }

    struct Down;
    impl LiveCheck for Down {
        fn contains_batch(&self, _: &[u64], _: &[u64], _: &mut [bool]) -> Result<(), Unavailable> {
            Err(Unavailable)
        }
    }

    #[test]
    fn batch_fails_closed() {
        let mut b = Batch::default();
        b.fail(Reason::Malformed);
        assert!(!b.check(Some(&Down)), "no candidates: nothing to ask");
        let opts = crate::wire::RequestOptions::default();
        let d = crate::wire::build_request(5, 6, &[0u8; 32], &opts).unwrap();
        let cand = crate::responder::classify(&d, Some(false)).unwrap();
        b.candidate(3, cand);
        assert!(b.check(Some(&Down)));
        assert!(!b.check(None));
        let v: Vec<_> = b.outcomes().collect();
        assert_eq!(
            v,
            vec![(Err(Reason::Malformed), false), (Ok((3, cand)), false)]
        );
        let mut t = SaTable::new(1, 0).unwrap();
        t.insert(5, 6, &[1u8; 16], 0.0).unwrap();
        assert!(!b.check(Some(&RwLock::new(t))));
        let v: Vec<_> = b.outcomes().map(|(_, live)| live).collect();
        assert_eq!(v, vec![false, true]);
    }
}
