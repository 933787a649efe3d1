//! The only place that compares secret-dependent bytes.
//!
//! Thin wrappers over `subtle`: the only early exit is on the *lengths*, which are public
//! (token lengths are configuration, not secrets). A `Choice` becomes a `bool` at the last step.
#![forbid(unsafe_code)]

use subtle::{Choice, ConstantTimeEq};

/// Constant-time equality of two byte strings; different lengths compare unequal.
#[inline]
#[must_use]
pub fn eq(a: &[u8], b: &[u8]) -> Choice {
    if a.len() != b.len() {
        return Choice::from(0u8);
    }
    // OR of the XORs, eight octets at a time, then one `ConstantTimeEq` on the result: no
    // branch depends on the contents (the per-octet `ConstantTimeEq for [u8]` costs an
    // optimisation barrier per octet, ~8x slower for a 32-octet token).
    let (aw, bw) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut acc = 0u64;
    for (x, y) in aw.remainder().iter().zip(bw.remainder()) {
        acc |= u64::from(x ^ y);
    }
    for (x, y) in aw.zip(bw) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        acc |= word(x) ^ word(y);
    }
    acc.ct_eq(&0)
}

/// Constant-time "does `candidate` equal any of `stored`": every stored value is compared,
/// whatever the earlier results were.
#[inline]
#[must_use]
pub fn eq_any<'a, I>(candidate: &[u8], stored: I) -> Choice
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut acc = Choice::from(0u8);
    for s in stored {
        acc |= eq(candidate, s);
    }
    acc
}

/// Turn a `Choice` into a `bool` (the last step, after all comparisons are done).
#[inline]
#[must_use]
pub fn to_bool(c: Choice) -> bool {
    bool::from(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_unequal() {
        assert!(to_bool(eq(b"abcd", b"abcd")));
        assert!(!to_bool(eq(b"abcd", b"abce")));
        assert!(!to_bool(eq(b"abcd", b"abc")));
        assert!(to_bool(eq_any(b"x", [&b"a"[..], &b"x"[..]])));
        assert!(!to_bool(eq_any(b"x", [&b"a"[..], &b"b"[..]])));
        assert!(!to_bool(eq_any(b"x", std::iter::empty())));
    }

    #[test]
    fn every_position_and_length() {
        // Word-wise comparison: a difference in any octet, in the words or the tail, counts.
        for len in [0usize, 1, 7, 8, 9, 16, 17, 20, 31, 32, 33, 64, 127, 128] {
            let a: Vec<u8> = (0..len).map(|k| k as u8 ^ 0x5A).collect();
            assert!(to_bool(eq(&a, &a.clone())));
            for k in 0..len {
                for bit in [0x01u8, 0x80] {
                    let mut b = a.clone();
                    b[k] ^= bit;
                    assert!(!to_bool(eq(&a, &b)), "len {len} octet {k}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!to_bool(eq(&a, &longer)));
        }
    }
}
