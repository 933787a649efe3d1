//! A map from an IKE SA's SPI pair to a number, with batch operations: the token taker's
//! per-SA bookkeeping (the Message ID of the request in flight, the sequence number an SA was
//! stored at, the batch a held restart belongs to) kept out of Python dicts.
//!
//! SPIs come from the network and are attacker-chosen, so the map hashes with the standard
//! library's keyed SipHash (a random key per map). An entry costs 24 octets plus a control
//! octet, at most 8/7 of that in a full map, against roughly 100 for a Python dict entry
//! with an int key.

use std::collections::HashMap;

use crate::error::{CoreError, CoreResult};

/// The largest value an entry may hold (batch reads give -1 for "absent").
pub const VALUE_MAX: u64 = i64::MAX as u64;

/// SPI pair -> value (0..=[`VALUE_MAX`]).
#[derive(Default)]
pub struct PairMap {
    map: HashMap<(u64, u64), u64>,
}

fn check_pairs(a: &[u64], b: &[u64], n: usize, what: &str) -> CoreResult<()> {
    if a.len() == b.len() && b.len() == n {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch(format!(
            "spi_i, spi_r and {what} must have the same length, got {}, {} and {n}",
            a.len(),
            b.len()
        )))
    }
}

fn check_value(v: u64) -> CoreResult<u64> {
    if v <= VALUE_MAX {
        Ok(v)
    } else {
        Err(CoreError::InvalidArgument(format!(
            "a value must be in 0..=2**63-1, got {v}"
        )))
    }
}

impl PairMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the map has no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The pair's value.
    #[must_use]
    pub fn get(&self, spi_i: u64, spi_r: u64) -> Option<u64> {
        self.map.get(&(spi_i, spi_r)).copied()
    }

    fn reserve(&mut self, more: usize) -> CoreResult<()> {
        self.map.try_reserve(more).map_err(|_| {
            CoreError::CapacityExceeded(format!(
                "no memory for {more} more entries beside {}",
                self.map.len()
            ))
        })
    }

    /// Set the pair's value; returns the old one.
    ///
    /// # Errors
    /// `InvalidArgument` for a value above [`VALUE_MAX`], `CapacityExceeded` without memory.
    pub fn insert(&mut self, spi_i: u64, spi_r: u64, value: u64) -> CoreResult<Option<u64>> {
        let value = check_value(value)?;
        self.reserve(1)?;
        Ok(self.map.insert((spi_i, spi_r), value))
    }

    /// Remove the pair; returns its value.
    pub fn remove(&mut self, spi_i: u64, spi_r: u64) -> Option<u64> {
        let old = self.map.remove(&(spi_i, spi_r));
        self.shrink();
        old
    }

    /// [`insert`](Self::insert) for each pair, in order (a pair given twice keeps the last
    /// value). Nothing is written when a value is out of range.
    ///
    /// # Errors
    /// `ShapeMismatch`, `InvalidArgument`, `CapacityExceeded`.
    pub fn insert_batch(&mut self, spi_i: &[u64], spi_r: &[u64], values: &[u64]) -> CoreResult<()> {
        check_pairs(spi_i, spi_r, values.len(), "values")?;
        values.iter().try_for_each(|&v| check_value(v).map(drop))?;
        self.reserve(spi_i.len())?;
        for ((&a, &b), &v) in spi_i.iter().zip(spi_r).zip(values) {
            self.map.insert((a, b), v);
        }
        Ok(())
    }

    /// Each pair's value, -1 where absent.
    ///
    /// # Errors
    /// `ShapeMismatch`.
    pub fn get_batch(&self, spi_i: &[u64], spi_r: &[u64], out: &mut [i64]) -> CoreResult<()> {
        check_pairs(spi_i, spi_r, out.len(), "the output")?;
        for ((&a, &b), o) in spi_i.iter().zip(spi_r).zip(out.iter_mut()) {
            *o = self.map.get(&(a, b)).map_or(-1, |&v| v as i64);
        }
        Ok(())
    }

    /// Remove each pair, in order; `out[k]` is the value removed, -1 where there was none
    /// (a pair given twice: its value, then -1).
    ///
    /// # Errors
    /// `ShapeMismatch`.
    pub fn remove_batch(
        &mut self,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [i64],
    ) -> CoreResult<()> {
        check_pairs(spi_i, spi_r, out.len(), "the output")?;
        for ((&a, &b), o) in spi_i.iter().zip(spi_r).zip(out.iter_mut()) {
            *o = self.map.remove(&(a, b)).map_or(-1, |v| v as i64);
        }
        self.shrink();
        Ok(())
    }

    /// Remove each pair whose value equals `values[k]`, in order; `out[k]` says it was.
    ///
    /// # Errors
    /// `ShapeMismatch`.
    pub fn remove_matching_batch(
        &mut self,
        spi_i: &[u64],
        spi_r: &[u64],
        values: &[u64],
        out: &mut [bool],
    ) -> CoreResult<()> {
        check_pairs(spi_i, spi_r, values.len(), "values")?;
        check_pairs(spi_i, spi_r, out.len(), "the output")?;
        for (((&a, &b), &v), o) in spi_i.iter().zip(spi_r).zip(values).zip(out.iter_mut()) {
            let hit = self.map.get(&(a, b)) == Some(&v);
            if hit {
                self.map.remove(&(a, b));
            }
            *o = hit;
        }
        self.shrink();
        Ok(())
    }

    /// Remove every entry and give the memory back.
    pub fn clear(&mut self) {
        self.map = HashMap::new();
    }

    /// Heap bytes held (the buckets, their control octets; an estimate of the allocation).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<((u64, u64), u64)>() + 1;
        self.map.capacity() * 8 / 7 * bucket
    }

    /// Give memory back once the map is a quarter full (peaks do not stay).
    fn shrink(&mut self) {
        let (len, cap) = (self.map.len(), self.map.capacity());
        if cap > 1024 && len * 4 < cap {
            self.map.shrink_to(len * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u8, u64),
        Remove(u8, u8),
        RemoveIf(u8, u8, u64),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), 0u8..3, 0u64..4).prop_map(|(a, b, v)| Op::Set(a, b, v)),
            2 => (any::<u8>(), 0u8..3).prop_map(|(a, b)| Op::Remove(a, b)),
            2 => (any::<u8>(), 0u8..3, 0u64..4).prop_map(|(a, b, v)| Op::RemoveIf(a, b, v)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_model(ops in prop::collection::vec(op(), 1..200)) {
            let mut m = PairMap::new();
            let mut model: std::collections::BTreeMap<(u64, u64), u64> = Default::default();
            for o in ops {
                match o {
                    Op::Set(a, b, v) => {
                        let k = (u64::from(a), u64::from(b));
                        prop_assert_eq!(m.insert(k.0, k.1, v).unwrap(), model.insert(k, v));
                    }
                    Op::Remove(a, b) => {
                        let k = (u64::from(a), u64::from(b));
                        let mut out = [0i64];
                        m.remove_batch(&[k.0], &[k.1], &mut out).unwrap();
                        prop_assert_eq!(out[0], model.remove(&k).map_or(-1, |v| v as i64));
                    }
                    Op::RemoveIf(a, b, v) => {
                        let k = (u64::from(a), u64::from(b));
                        let mut out = [false];
                        m.remove_matching_batch(&[k.0], &[k.1], &[v], &mut out).unwrap();
                        let hit = model.get(&k) == Some(&v);
                        if hit { model.remove(&k); }
                        prop_assert_eq!(out[0], hit);
                    }
                    Op::Clear => { m.clear(); model.clear(); }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let keys: Vec<(u64, u64)> = (0..=255u64).flat_map(|a| (0..3u64).map(move |b| (a, b))).collect();
            let (ka, kb): (Vec<u64>, Vec<u64>) = keys.iter().copied().unzip();
            let mut out = vec![0i64; keys.len()];
            m.get_batch(&ka, &kb, &mut out).unwrap();
            for (k, got) in keys.iter().zip(out) {
                prop_assert_eq!(got, model.get(k).map_or(-1, |&v| v as i64));
            }
        }
    }

    #[test]
    fn batches_check_shapes_and_values() {
        let mut m = PairMap::new();
        assert!(m.insert_batch(&[1, 2], &[1], &[0, 0]).is_err());
        assert!(m.insert_batch(&[1], &[1], &[u64::MAX]).is_err());
        assert!(m.is_empty());
        assert!(m.get_batch(&[1], &[1], &mut []).is_err());
        m.insert_batch(&[1, 1], &[2, 2], &[5, 6]).unwrap();
        assert_eq!(m.get(1, 2), Some(6));
        let mut out = [0i64; 2];
        m.remove_batch(&[1, 1], &[2, 2], &mut out).unwrap();
        assert_eq!(out, [6, -1]);
    }

    #[test]
    fn peaks_are_given_back() {
        let mut m = PairMap::new();
        let a: Vec<u64> = (0..100_000).collect();
        m.insert_batch(&a, &a, &vec![1; a.len()]).unwrap();
        let big = m.memory_bytes();
        let mut out = vec![0i64; a.len() - 10];
        m.remove_batch(&a[10..], &a[10..], &mut out).unwrap();
        assert!(
            m.memory_bytes() * 100 < big,
            "{} of {big}",
            m.memory_bytes()
        );
        assert_eq!(m.len(), 10);
    }
}
