//! Multi-lane SHA-256 compression with the x86 SHA extensions (SHA-NI), for the batch path of
//! HMAC-SHA-256 tokens.
//!
//! One SHA-256 block is a chain of 32 dependent `sha256rnds2` instructions; running `L`
//! independent blocks interleaved keeps the SHA unit busy while each chain waits on its
//! latency. The intrinsics need the `sha`, `ssse3` and
//! `sse4.1` target features, which are checked at run time before any call.
//!
//! The AVX trap (see `shared/design.md`): these are legacy-SSE encoded instructions. If the
//! calling thread left the upper halves of the YMM/ZMM registers dirty (AVX code without
//! `vzeroupper`), some CPUs run them many times slower. [`Lanes::new`] therefore issues
//! `vzeroupper` once per batch where AVX exists.
//!
//! The interleave width in use is chosen per CPU at run time by `rust/select.rs`.
//!
//! Correctness: `rust/kernel.rs` proptests compare every width (1, 2, 4, 8) against the portable
//! kernel and the `hmac` crate; `tests/core_vectors.rs` runs the golden tokens through it.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    _mm_shuffle_epi8, _mm_storeu_si128,
};

/// SHA-256 round constants.
#[cfg(target_arch = "x86_64")]
static K32: [u32; 64] = crate::soft256::K;

/// A capability token: holding one proves the CPU has SHA-NI (and SSSE3/SSE4.1).
#[derive(Clone, Copy, Debug)]
pub struct Lanes(());

impl Lanes {
    /// `Some` when this CPU can run the SHA-NI kernels (checked at run time, cached by std).
    /// Also clears dirty upper vector state once (the AVX trap above).
    #[must_use]
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("ssse3")
                && std::arch::is_x86_feature_detected!("sse4.1")
            {
                if std::arch::is_x86_feature_detected!("avx") {
                    // SAFETY: AVX was detected just above, which is all `zero_upper` needs.
                    unsafe { zero_upper() };
                }
                return Some(Lanes(()));
            }
        }
        None
    }

    /// As [`Lanes::compress`], with each block given as its 16 message words (already read
    /// big-endian): the batch path builds them from SPIs and chaining states directly.
    #[inline]
    pub fn compress_words<const L: usize>(
        self,
        states: &mut [[u32; 8]; L],
        words: &[[u32; 16]; L],
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Lanes` value exists only after `new` confirmed sha, ssse3 and sse4.1.
        unsafe {
            compress_lanes_words::<L>(states, words);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (states, words);
            unreachable!("Lanes cannot be constructed on this architecture");
        }
    }

    /// Compress one 64-octet block into each of `L` independent states.
    #[inline]
    pub fn compress<const L: usize>(self, states: &mut [[u32; 8]; L], blocks: &[[u8; 64]; L]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Lanes` value exists only after `new` confirmed sha, ssse3 and sse4.1.
        unsafe {
            compress_lanes::<L>(states, blocks);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (states, blocks);
            unreachable!("Lanes cannot be constructed on this architecture");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper() {
    core::arch::x86_64::_mm256_zeroupper();
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn compress_lanes<const L: usize>(states: &mut [[u32; 8]; L], blocks: &[[u8; 64]; L]) {
    let mask = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    let zero = _mm_set_epi64x(0, 0);
    let mut w = [[zero; 4]; L];
    for l in 0..L {
        for (i, wi) in w[l].iter_mut().enumerate() {
            // SAFETY: `blocks[l]` is 64 octets; loads at 0, 16, 32, 48.
            let m = unsafe { _mm_loadu_si128(blocks[l].as_ptr().cast::<__m128i>().add(i)) };
            *wi = _mm_shuffle_epi8(m, mask);
        }
    }
    // SAFETY: same target features as this function.
    unsafe { rounds::<L>(states, w) };
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn compress_lanes_words<const L: usize>(states: &mut [[u32; 8]; L], words: &[[u32; 16]; L]) {
    let zero = _mm_set_epi64x(0, 0);
    let mut w = [[zero; 4]; L];
    for l in 0..L {
        for (i, wi) in w[l].iter_mut().enumerate() {
            // SAFETY: `words[l]` is 16 u32 = 64 octets; loads at 0, 16, 32, 48.
            *wi = unsafe { _mm_loadu_si128(words[l].as_ptr().cast::<__m128i>().add(i)) };
        }
    }
    // SAFETY: same target features as this function.
    unsafe { rounds::<L>(states, w) };
}

/// The 64 rounds over message words already in SHA-NI lane order, then the feed-forward.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn rounds<const L: usize>(states: &mut [[u32; 8]; L], mut w: [[__m128i; 4]; L]) {
    let zero = _mm_set_epi64x(0, 0);
    let mut abef = [zero; L];
    let mut cdgh = [zero; L];
    for l in 0..L {
        // SAFETY: `states[l]` is 8 u32 = 32 octets; unaligned 16-octet loads at 0 and 16.
        let (t, s1) = unsafe {
            let p = states[l].as_ptr().cast::<__m128i>();
            (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        };
        let t = _mm_shuffle_epi32(t, 0xB1); // CDAB
        let s1 = _mm_shuffle_epi32(s1, 0x1B); // EFGH
        abef[l] = _mm_alignr_epi8(t, s1, 8); // ABEF
        cdgh[l] = _mm_blend_epi16(s1, t, 0xF0); // CDGH
    }
    let save_abef = abef;
    let save_cdgh = cdgh;
    for r in 0..16 {
        // SAFETY: K32 has 64 entries; 4 * r + 3 <= 63.
        let k = unsafe { _mm_loadu_si128(K32.as_ptr().add(4 * r).cast::<__m128i>()) };
        let i = r % 4;
        for l in 0..L {
            if r >= 4 {
                let w0 = w[l][i];
                let w1 = w[l][(i + 1) % 4];
                let w2 = w[l][(i + 2) % 4];
                let w3 = w[l][(i + 3) % 4];
                let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
                w[l][i] = _mm_sha256msg2_epu32(t, w3);
            }
            let wk = _mm_add_epi32(w[l][i], k);
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(wk, 0x0E));
        }
    }
    for l in 0..L {
        let a = _mm_add_epi32(abef[l], save_abef[l]);
        let c = _mm_add_epi32(cdgh[l], save_cdgh[l]);
        let t = _mm_shuffle_epi32(a, 0x1B); // FEBA
        let c = _mm_shuffle_epi32(c, 0xB1); // DCHG
        let s0 = _mm_blend_epi16(t, c, 0xF0); // DCBA
        let s1 = _mm_alignr_epi8(c, t, 8); // HGFE
                                           // SAFETY: `states[l]` is 32 octets; unaligned 16-octet stores at 0 and 16.
        unsafe {
            let p = states[l].as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(p, s0);
            _mm_storeu_si128(p.add(1), s1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_sha2_compress() {
        let Some(lanes) = Lanes::new() else {
            eprintln!("no SHA-NI on this CPU: nothing to compare");
            return;
        };
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut states = [[0u32; 8]; 4];
            let mut blocks = [[0u8; 64]; 4];
            for l in 0..4 {
                for w in states[l].iter_mut() {
                    *w = next() as u32;
                }
                for b in blocks[l].iter_mut() {
                    *b = next() as u8;
                }
            }
            let mut want = states;
            for l in 0..4 {
                sha2::block_api::compress256(&mut want[l], &blocks[l..=l]);
            }
            let mut got4 = states;
            lanes.compress::<4>(&mut got4, &blocks);
            assert_eq!(got4, want);
            let mut got2 = [states[0], states[1]];
            lanes.compress::<2>(&mut got2, &[blocks[0], blocks[1]]);
            assert_eq!(got2, [want[0], want[1]]);
            let mut got1 = [states[2]];
            lanes.compress::<1>(&mut got1, &[blocks[2]]);
            assert_eq!(got1, [want[2]]);
            let st8 = [
                states[0], states[1], states[2], states[3], states[3], states[2], states[1],
                states[0],
            ];
            let bl8 = [
                blocks[0], blocks[1], blocks[2], blocks[3], blocks[3], blocks[2], blocks[1],
                blocks[0],
            ];
            let mut got8 = st8;
            lanes.compress::<8>(&mut got8, &bl8);
            assert_eq!(
                got8,
                [want[0], want[1], want[2], want[3], want[3], want[2], want[1], want[0]]
            );
        }
    }
}
