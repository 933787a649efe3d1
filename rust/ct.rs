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
    let (ac, ar) = a.as_chunks::<8>();
    let (bc, br) = b.as_chunks::<8>();
    let mut acc = 0u64;
    for (x, y) in ac.iter().zip(bc) {
        acc |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in ar.iter().zip(br) {
        acc |= u64::from(x ^ y);
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
}
