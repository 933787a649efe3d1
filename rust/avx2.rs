//! Eight-lane SHA-256 compression with AVX2 (one 32-bit lane of each YMM register per
//! message), for the HMAC-SHA-256 batch path on CPUs where it beats the alternatives, notably
//! x86 CPUs without SHA-NI. `rust/select.rs` times it against the SHA-NI widths and the `sha2`
//! crate at first use and keeps the fastest.
//!
//! The AVX trap (see `shared/design.md`): this code dirties the upper YMM state. LLVM emits
//! `vzeroupper` on return from any function that used YMM registers, and the SHA-NI path
//! issues one itself before each batch (`shani::Lanes::new`), so legacy-SSE SHA-NI code that
//! runs afterwards on the same thread is not slowed down.
//!
//! Correctness: `rust/kernel.rs` proptests compare it with the portable kernel and the `hmac`
//! crate; `tests/core_vectors.rs` runs the golden tokens through it (`IKEQCD_KERNEL=avx2`).

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_andnot_si256, _mm256_or_si256,
    _mm256_set1_epi32, _mm256_setr_epi32, _mm256_slli_epi32, _mm256_srli_epi32,
    _mm256_storeu_si256, _mm256_xor_si256,
};

/// Lanes per compression.
pub const LANES: usize = 8;

/// A capability token: holding one proves the CPU has AVX2.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// `Some` when this CPU has AVX2 (checked at run time, cached by std).
    #[must_use]
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return Some(Avx2(()));
            }
        }
        None
    }

    /// Compress one 64-octet block into each of 8 independent states.
    #[inline]
    pub fn compress(self, states: &mut [[u32; 8]; LANES], blocks: &[[u8; 64]; LANES]) {
        let words: [[u32; 16]; LANES] = std::array::from_fn(|l| {
            std::array::from_fn(|t| {
                let b = &blocks[l][4 * t..4 * t + 4];
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            })
        });
        self.compress_words(states, &words);
    }

    /// As [`Avx2::compress`], each block given as its 16 message words (read big-endian).
    #[inline]
    pub fn compress_words(self, states: &mut [[u32; 8]; LANES], words: &[[u32; 16]; LANES]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Avx2` value exists only after `new` confirmed AVX2.
        unsafe {
            compress8(states, words);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (states, words);
            unreachable!("Avx2 cannot be constructed on this architecture");
        }
    }
}

#[cfg(target_arch = "x86_64")]
use crate::soft256::K;

/// Rotate every lane right by `R` (`L` = 32 - `R`: stable Rust cannot compute it).
///
/// # Safety
/// The CPU must have AVX2 (as for every function here).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn ror<const R: i32, const L: i32>(x: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_srli_epi32::<R>(x), _mm256_slli_epi32::<L>(x))
}

/// Lane `l` of word `i` of every state or block, gathered into one vector.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gather(f: impl Fn(usize) -> u32) -> __m256i {
    // `as i32` reinterprets the bits, as the intrinsic wants
    _mm256_setr_epi32(
        f(0) as i32,
        f(1) as i32,
        f(2) as i32,
        f(3) as i32,
        f(4) as i32,
        f(5) as i32,
        f(6) as i32,
        f(7) as i32,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn compress8(states: &mut [[u32; 8]; LANES], words: &[[u32; 16]; LANES]) {
    let mut w = [_mm256_set1_epi32(0); 16];
    for (t, wt) in w.iter_mut().enumerate() {
        *wt = gather(|l| words[l][t]);
    }
    let init: [__m256i; 8] = std::array::from_fn(|i| gather(|l| states[l][i]));
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = init;
    for (t, &k) in K.iter().enumerate() {
        let wt = if t < 16 {
            w[t]
        } else {
            let w15 = w[(t + 1) % 16];
            let w2 = w[(t + 14) % 16];
            let s0 = _mm256_xor_si256(
                _mm256_xor_si256(ror::<7, 25>(w15), ror::<18, 14>(w15)),
                _mm256_srli_epi32::<3>(w15),
            );
            let s1 = _mm256_xor_si256(
                _mm256_xor_si256(ror::<17, 15>(w2), ror::<19, 13>(w2)),
                _mm256_srli_epi32::<10>(w2),
            );
            let n = _mm256_add_epi32(
                _mm256_add_epi32(w[t % 16], s0),
                _mm256_add_epi32(w[(t + 9) % 16], s1),
            );
            w[t % 16] = n;
            n
        };
        let s1 = _mm256_xor_si256(
            _mm256_xor_si256(ror::<6, 26>(e), ror::<11, 21>(e)),
            ror::<25, 7>(e),
        );
        let ch = _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g));
        let t1 = _mm256_add_epi32(
            _mm256_add_epi32(h, s1),
            _mm256_add_epi32(ch, _mm256_add_epi32(wt, _mm256_set1_epi32(k as i32))),
        );
        let s0 = _mm256_xor_si256(
            _mm256_xor_si256(ror::<2, 30>(a), ror::<13, 19>(a)),
            ror::<22, 10>(a),
        );
        let maj = _mm256_xor_si256(
            _mm256_xor_si256(_mm256_and_si256(a, b), _mm256_and_si256(a, c)),
            _mm256_and_si256(b, c),
        );
        let t2 = _mm256_add_epi32(s0, maj);
        h = g;
        g = f;
        f = e;
        e = _mm256_add_epi32(d, t1);
        d = c;
        c = b;
        b = a;
        a = _mm256_add_epi32(t1, t2);
    }
    for (i, v) in [a, b, c, d, e, f, g, h].into_iter().enumerate() {
        let sum = _mm256_add_epi32(v, init[i]);
        let mut lanes = [0u32; LANES];
        // SAFETY: `lanes` is 8 u32 = 32 octets, the size of one unaligned 256-bit store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), sum) };
        for (l, s) in states.iter_mut().enumerate() {
            s[i] = lanes[l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_sha2_compress() {
        let Some(avx) = Avx2::new() else {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        };
        let mut seed = 0x0bad_cafe_1234_5678u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut states = [[0u32; 8]; LANES];
            let mut blocks = [[0u8; 64]; LANES];
            for l in 0..LANES {
                for w in states[l].iter_mut() {
                    *w = next() as u32;
                }
                for b in blocks[l].iter_mut() {
                    *b = next() as u8;
                }
            }
            let mut want = states;
            for l in 0..LANES {
                sha2::block_api::compress256(&mut want[l], &blocks[l..=l]);
            }
            avx.compress(&mut states, &blocks);
            assert_eq!(states, want);
        }
    }
}
