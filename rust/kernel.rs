//! HMAC with precomputed ipad/opad states (RFC 2104 §4), over the raw compression functions of
//! the audited RustCrypto `sha2` and `sha1` crates (which pick SHA-NI at run time).
//!
//! Why not `hmac::Hmac` per token: cloning a keyed `Hmac` and finalising it goes through the
//! generic buffering machinery and ran at 6.3 M tokens/s here, against 6.6 M/s for the bare
//! compressions; more importantly this form lets us build the one padded block of a QCD token
//! directly. Every kernel is cross-checked against `hmac::Hmac` (the reference) by proptest in
//! `rust/token.rs` and by the RFC 4231 / RFC 2202 vectors in `tests/core_vectors.rs`.
#![forbid(unsafe_code)]

use zeroize::Zeroize;

/// Largest block of the supported hashes (SHA-512: 128 octets).
pub const MAX_BLOCK: usize = 128;
/// Largest digest of the supported hashes (SHA-512: 64 octets).
pub const MAX_DIGEST: usize = 64;

/// A Merkle–Damgård hash given by its compression function.
pub trait Kernel {
    /// Chaining state (array of words).
    type State: Copy + Zeroize;
    /// Block size in octets.
    const BLOCK: usize;
    /// Octets of the length field in the final block.
    const LEN_BYTES: usize;
    /// Digest size in octets.
    const DIGEST: usize;
    /// The initial chaining value.
    const IV: Self::State;
    /// Compress one block (`block.len() == BLOCK`).
    fn compress(state: &mut Self::State, block: &[u8]);
    /// Write the first `out.len()` (<= DIGEST) octets of the big-endian digest.
    fn write(state: &Self::State, out: &mut [u8]);
}

/// SHA-256.
pub struct K256;
/// SHA-512.
pub struct K512;
/// SHA-1.
pub struct K1;

impl Kernel for K256 {
    type State = [u32; 8];
    const BLOCK: usize = 64;
    const LEN_BYTES: usize = 8;
    const DIGEST: usize = 32;
    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    #[inline(always)]
    fn compress(state: &mut Self::State, block: &[u8]) {
        let b: &[u8; 64] = block.try_into().expect("block is 64 octets");
        if crate::select::portable_forced() {
            crate::soft256::compress(state, b);
        } else {
            sha2::block_api::compress256(state, std::slice::from_ref(b));
        }
    }
    #[inline(always)]
    fn write(state: &Self::State, out: &mut [u8]) {
        write_words32(state, out);
    }
}

impl Kernel for K1 {
    type State = [u32; 5];
    const BLOCK: usize = 64;
    const LEN_BYTES: usize = 8;
    const DIGEST: usize = 20;
    const IV: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    #[inline(always)]
    fn compress(state: &mut Self::State, block: &[u8]) {
        let b: &[u8; 64] = block.try_into().expect("block is 64 octets");
        sha1::block_api::compress(state, std::slice::from_ref(b));
    }
    #[inline(always)]
    fn write(state: &Self::State, out: &mut [u8]) {
        write_words32(state, out);
    }
}

impl Kernel for K512 {
    type State = [u64; 8];
    const BLOCK: usize = 128;
    const LEN_BYTES: usize = 16;
    const DIGEST: usize = 64;
    const IV: [u64; 8] = [
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1,
        0x9b05_688c_2b3e_6c1f,
        0x1f83_d9ab_fb41_bd6b,
        0x5be0_cd19_137e_2179,
    ];
    #[inline(always)]
    fn compress(state: &mut Self::State, block: &[u8]) {
        let b: &[u8; 128] = block.try_into().expect("block is 128 octets");
        sha2::block_api::compress512(state, std::slice::from_ref(b));
    }
    #[inline(always)]
    fn write(state: &Self::State, out: &mut [u8]) {
        for (chunk, w) in out.chunks_mut(8).zip(state.iter()) {
            let be = w.to_be_bytes();
            chunk.copy_from_slice(&be[..chunk.len()]);
        }
    }
}

#[inline(always)]
fn write_words32(state: &[u32], out: &mut [u8]) {
    for (chunk, w) in out.chunks_mut(4).zip(state.iter()) {
        let be = w.to_be_bytes();
        chunk.copy_from_slice(&be[..chunk.len()]);
    }
}

/// Continue hashing from `state`, which has already absorbed `absorbed` octets (a multiple of
/// the block size), over the concatenation of `parts`, and return the final chaining state.
fn finish<K: Kernel>(mut state: K::State, absorbed: usize, parts: &[&[u8]]) -> K::State {
    let mut buf = [0u8; MAX_BLOCK];
    let mut fill = 0usize;
    let mut total = absorbed as u128;
    for part in parts {
        let mut p: &[u8] = part;
        total += p.len() as u128;
        while !p.is_empty() {
            let take = (K::BLOCK - fill).min(p.len());
            buf[fill..fill + take].copy_from_slice(&p[..take]);
            fill += take;
            p = &p[take..];
            if fill == K::BLOCK {
                K::compress(&mut state, &buf[..K::BLOCK]);
                fill = 0;
            }
        }
    }
    buf[fill] = 0x80;
    buf[fill + 1..K::BLOCK].fill(0);
    if fill + 1 + K::LEN_BYTES > K::BLOCK {
        K::compress(&mut state, &buf[..K::BLOCK]);
        buf[..K::BLOCK].fill(0);
    }
    let bits = (total * 8).to_be_bytes(); // 16 octets
    buf[K::BLOCK - K::LEN_BYTES..K::BLOCK].copy_from_slice(&bits[16 - K::LEN_BYTES..]);
    K::compress(&mut state, &buf[..K::BLOCK]);
    buf.zeroize();
    state
}

/// The ipad and opad chaining states of one HMAC key. Zeroized on drop.
pub struct Keyed<K: Kernel> {
    inner: K::State,
    outer: K::State,
}

impl<K: Kernel> Clone for Keyed<K> {
    fn clone(&self) -> Self {
        Keyed {
            inner: self.inner,
            outer: self.outer,
        }
    }
}

impl<K: Kernel> Drop for Keyed<K> {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl<K: Kernel> Keyed<K> {
    /// Precompute the two states for `key` (any length; keys longer than a block are hashed
    /// first, as RFC 2104 says).
    #[must_use]
    pub fn new(key: &[u8]) -> Self {
        let mut kb = [0u8; MAX_BLOCK];
        if key.len() > K::BLOCK {
            let st = finish::<K>(K::IV, 0, &[key]);
            K::write(&st, &mut kb[..K::DIGEST]);
        } else {
            kb[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; MAX_BLOCK];
        for (p, k) in pad[..K::BLOCK].iter_mut().zip(kb.iter()) {
            *p = k ^ 0x36;
        }
        let mut inner = K::IV;
        K::compress(&mut inner, &pad[..K::BLOCK]);
        for (p, k) in pad[..K::BLOCK].iter_mut().zip(kb.iter()) {
            *p = k ^ 0x5c;
        }
        let mut outer = K::IV;
        K::compress(&mut outer, &pad[..K::BLOCK]);
        kb.zeroize();
        pad.zeroize();
        Keyed { inner, outer }
    }

    /// HMAC over the concatenation of `parts`, truncated to `out.len()` (<= DIGEST) octets.
    pub fn mac(&self, parts: &[&[u8]], out: &mut [u8]) {
        let st = finish::<K>(self.inner, K::BLOCK, parts);
        self.outer_into(&st, out);
    }

    /// The fast path of a QCD token: the message is SPI-I || SPI-R || `addr` (0, 4 or 16
    /// octets), which always fits one block with its padding.
    #[inline(always)]
    pub fn mac_spis(&self, spi_i: u64, spi_r: u64, addr: &[u8], out: &mut [u8]) {
        let mut block = [0u8; MAX_BLOCK];
        block[..8].copy_from_slice(&spi_i.to_be_bytes());
        block[8..16].copy_from_slice(&spi_r.to_be_bytes());
        let n = 16 + addr.len();
        block[16..n].copy_from_slice(addr);
        block[n] = 0x80;
        let bits = (((K::BLOCK + n) as u64) * 8).to_be_bytes();
        block[K::BLOCK - 8..K::BLOCK].copy_from_slice(&bits);
        let mut st = self.inner;
        K::compress(&mut st, &block[..K::BLOCK]);
        self.outer_into(&st, out);
    }

    #[inline(always)]
    fn outer_into(&self, inner_state: &K::State, out: &mut [u8]) {
        let mut block = [0u8; MAX_BLOCK];
        K::write(inner_state, &mut block[..K::DIGEST]);
        block[K::DIGEST] = 0x80;
        let bits = (((K::BLOCK + K::DIGEST) as u64) * 8).to_be_bytes();
        block[K::BLOCK - 8..K::BLOCK].copy_from_slice(&bits);
        let mut st = self.outer;
        K::compress(&mut st, &block[..K::BLOCK]);
        K::write(&st, out);
    }
}

impl Keyed<K256> {
    /// HMAC-SHA-256 of SPI-I || SPI-R for many pairs: `out` gets one `tl`-octet row per pair,
    /// computed by `kernel`: the SHA-NI kernel with `w` tokens interleaved or the AVX2
    /// 8-lane kernel (the remainder one at a time), the `sha2` crate one token at a time, or
    /// the portable compression. Which
    /// kernel is fastest on this CPU is `crate::select::selection()`'s business. A SHA-NI
    /// request on a CPU without SHA-NI runs the `sha2` path.
    pub fn mac_spis_batch(
        &self,
        kernel: crate::select::Sha256Kernel,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [u8],
        tl: usize,
    ) {
        use crate::select::Sha256Kernel;
        let n = spi_i.len().min(spi_r.len()).min(out.len() / tl);
        let (spi_i, spi_r, out) = (&spi_i[..n], &spi_r[..n], &mut out[..n * tl]);
        let done = match (kernel, crate::shani::Lanes::new()) {
            (Sha256Kernel::ShaNi(1), Some(l)) => self.batch_lanes::<1>(l, spi_i, spi_r, out, tl),
            (Sha256Kernel::ShaNi(2), Some(l)) => self.batch_lanes::<2>(l, spi_i, spi_r, out, tl),
            (Sha256Kernel::ShaNi(4), Some(l)) => self.batch_lanes::<4>(l, spi_i, spi_r, out, tl),
            (Sha256Kernel::ShaNi(8), Some(l)) => self.batch_lanes::<8>(l, spi_i, spi_r, out, tl),
            (Sha256Kernel::Avx2, _) => match crate::avx2::Avx2::new() {
                Some(v) => {
                    self.batch_with::<8>(|s, w| v.compress_words(s, w), spi_i, spi_r, out, tl)
                }
                None => 0,
            },
            (Sha256Kernel::Portable, _) => {
                for ((row, &a), &b) in out.chunks_exact_mut(tl).zip(spi_i).zip(spi_r) {
                    self.mac_spis_portable(a, b, row);
                }
                n
            }
            _ => 0,
        };
        for k in done..n {
            self.mac_spis(spi_i[k], spi_r[k], &[], &mut out[k * tl..(k + 1) * tl]);
        }
    }

    /// The interleaved SHA-NI loop: `L` tokens per group; returns how many rows it wrote (a
    /// multiple of `L`; the caller does the rest).
    fn batch_lanes<const L: usize>(
        &self,
        lanes: crate::shani::Lanes,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [u8],
        tl: usize,
    ) -> usize {
        self.batch_with::<L>(
            |s, w| lanes.compress_words::<L>(s, w),
            spi_i,
            spi_r,
            out,
            tl,
        )
    }

    /// The interleaved loop over any `L`-lane compression function, fed message words: the
    /// SPIs and the inner chaining state go in as words, with no round trip through bytes.
    #[inline(always)]
    fn batch_with<const L: usize>(
        &self,
        compress: impl Fn(&mut [[u32; 8]; L], &[[u32; 16]; L]),
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [u8],
        tl: usize,
    ) -> usize {
        let n = spi_i.len();
        // inner message: SPI-I || SPI-R, 0x80, zeros, length (64 + 16 octets, in bits)
        let mut inner_words = [[0u32; 16]; L];
        // outer message: the inner digest (8 words), 0x80, zeros, length (64 + 32 octets)
        let mut outer_words = [[0u32; 16]; L];
        for w in &mut inner_words {
            w[4] = 0x8000_0000;
            w[15] = (64 + 16) * 8;
        }
        for w in &mut outer_words {
            w[8] = 0x8000_0000;
            w[15] = (64 + 32) * 8;
        }
        let mut done = 0;
        while done + L <= n {
            for (l, w) in inner_words.iter_mut().enumerate() {
                let (a, b) = (spi_i[done + l], spi_r[done + l]);
                w[..4].copy_from_slice(&[(a >> 32) as u32, a as u32, (b >> 32) as u32, b as u32]);
            }
            let mut st = [self.inner; L];
            compress(&mut st, &inner_words);
            for (w, s) in outer_words.iter_mut().zip(&st) {
                w[..8].copy_from_slice(s);
            }
            let mut st = [self.outer; L];
            compress(&mut st, &outer_words);
            for l in 0..L {
                let row = &mut out[(done + l) * tl..(done + l + 1) * tl];
                K256::write(&st[l], row);
            }
            done += L;
        }
        inner_words.zeroize();
        outer_words.zeroize();
        done
    }

    /// One token through the portable compression only (`rust/soft256.rs`), whatever
    /// `IKEQCD_KERNEL` says: the reference the SHA-NI widths are tested against.
    pub fn mac_spis_portable(&self, spi_i: u64, spi_r: u64, out: &mut [u8]) {
        let mut block = [0u8; 64];
        block[..8].copy_from_slice(&spi_i.to_be_bytes());
        block[8..16].copy_from_slice(&spi_r.to_be_bytes());
        block[16] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 16) * 8).to_be_bytes());
        let mut st = self.inner;
        crate::soft256::compress(&mut st, &block);
        block = [0u8; 64];
        K256::write(&st, &mut block[..32]);
        block[32] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut st = self.outer;
        crate::soft256::compress(&mut st, &block);
        K256::write(&st, out);
        block.zeroize();
    }
}

/// HMAC-SHA-256 of one SPI pair under up to 4 keys at once (one SHA-NI lane per key): the
/// tokens of every secret generation for an unprotected reply. `out` receives
/// `keys.len()` rows of `tl` octets. Returns false (writing nothing) when it cannot run
/// (no SHA-NI, or more than 4 keys); the caller then takes the one-at-a-time path.
pub fn mac_spis_multi(
    lanes: Option<crate::shani::Lanes>,
    keys: &[&Keyed<K256>],
    spi_i: u64,
    spi_r: u64,
    out: &mut [u8],
    tl: usize,
) -> bool {
    const L: usize = 4;
    let (Some(lanes), n @ 2..=L) = (lanes, keys.len()) else {
        return false;
    };
    let mut inner_block = [0u8; 64];
    inner_block[..8].copy_from_slice(&spi_i.to_be_bytes());
    inner_block[8..16].copy_from_slice(&spi_r.to_be_bytes());
    inner_block[16] = 0x80;
    inner_block[56..].copy_from_slice(&((64u64 + 16) * 8).to_be_bytes());
    let mut st = [K256::IV; L];
    for (l, s) in st.iter_mut().enumerate() {
        *s = keys[l.min(n - 1)].inner;
    }
    lanes.compress::<L>(&mut st, &[inner_block; L]);
    let mut outer_blocks = [[0u8; 64]; L];
    for (b, s) in outer_blocks.iter_mut().zip(st.iter()) {
        K256::write(s, &mut b[..32]);
        b[32] = 0x80;
        b[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
    }
    for (l, s) in st.iter_mut().enumerate() {
        *s = keys[l.min(n - 1)].outer;
    }
    lanes.compress::<L>(&mut st, &outer_blocks);
    for (l, row) in out.chunks_exact_mut(tl).take(n).enumerate() {
        K256::write(&st[l], row);
    }
    outer_blocks.zeroize();
    st.zeroize();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;

    macro_rules! reference {
        ($d:ty, $key:expr, $msg:expr) => {{
            let mut m = <Hmac<$d> as KeyInit>::new_from_slice($key).unwrap();
            m.update($msg);
            m.finalize().into_bytes().to_vec()
        }};
    }

    fn ours<K: Kernel>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; K::DIGEST];
        Keyed::<K>::new(key).mac(&[msg], &mut out);
        out
    }

    proptest! {
        #[test]
        fn matches_hmac_crate(key in proptest::collection::vec(any::<u8>(), 0..300),
                              msg in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(ours::<K256>(&key, &msg), reference!(sha2::Sha256, &key, &msg));
            prop_assert_eq!(ours::<K512>(&key, &msg), reference!(sha2::Sha512, &key, &msg));
            prop_assert_eq!(ours::<K1>(&key, &msg), reference!(sha1::Sha1, &key, &msg));
        }

        #[test]
        fn shani_batch_matches(key in proptest::collection::vec(any::<u8>(), 16..100),
                               n in 0usize..37, tl in 16usize..=32, seed in any::<u64>()) {
            let a: Vec<u64> = (0..n as u64).map(|x| x.wrapping_mul(seed | 1)).collect();
            let b: Vec<u64> = (0..n as u64).map(|x| x ^ seed).collect();
            use crate::select::{Sha256Kernel, WIDTHS};
            let k = Keyed::<K256>::new(&key);
            let mut portable = vec![0u8; n * tl];
            k.mac_spis_batch(Sha256Kernel::Portable, &a, &b, &mut portable, tl);
            for i in 0..n {
                let mut msg = a[i].to_be_bytes().to_vec();
                msg.extend_from_slice(&b[i].to_be_bytes());
                let want = reference!(sha2::Sha256, &key, &msg);
                prop_assert_eq!(&portable[i * tl..(i + 1) * tl], &want[..tl]);
            }
            let mut kernels = vec![Sha256Kernel::Sha2, Sha256Kernel::Avx2];
            kernels.extend(WIDTHS.iter().map(|&w| Sha256Kernel::ShaNi(w)));
            for kernel in kernels {
                let mut fast = vec![0u8; n * tl];
                k.mac_spis_batch(kernel, &a, &b, &mut fast, tl);
                prop_assert_eq!(&fast, &portable, "{:?}", kernel);
            }
        }

        #[test]
        fn multi_key_matches(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 16..80), 2..=4),
                             a in any::<u64>(), b in any::<u64>(), tl in 16usize..=32) {
            let keyed: Vec<Keyed<K256>> = keys.iter().map(|k| Keyed::new(k)).collect();
            let refs: Vec<&Keyed<K256>> = keyed.iter().collect();
            let mut out = vec![0u8; keys.len() * tl];
            if mac_spis_multi(crate::select::lanes(), &refs, a, b, &mut out, tl) {
                let mut msg = a.to_be_bytes().to_vec();
                msg.extend_from_slice(&b.to_be_bytes());
                for (i, k) in keys.iter().enumerate() {
                    let want = reference!(sha2::Sha256, k, &msg);
                    prop_assert_eq!(&out[i * tl..(i + 1) * tl], &want[..tl]);
                }
            }
        }

        #[test]
        fn spi_fast_path_matches(key in proptest::collection::vec(any::<u8>(), 16..100),
                                 a in any::<u64>(), b in any::<u64>(),
                                 addr_len in prop_oneof![Just(0usize), Just(4), Just(16)],
                                 addr_byte in any::<u8>()) {
            let addr = vec![addr_byte; addr_len];
            let mut msg = Vec::new();
            msg.extend_from_slice(&a.to_be_bytes());
            msg.extend_from_slice(&b.to_be_bytes());
            msg.extend_from_slice(&addr);
            let k = Keyed::<K256>::new(&key);
            let mut out = [0u8; 32];
            k.mac_spis(a, b, &addr, &mut out);
            prop_assert_eq!(out.to_vec(), reference!(sha2::Sha256, &key, &msg));
            let k = Keyed::<K512>::new(&key);
            let mut out = [0u8; 64];
            k.mac_spis(a, b, &addr, &mut out);
            prop_assert_eq!(out.to_vec(), reference!(sha2::Sha512, &key, &msg));
            let k = Keyed::<K1>::new(&key);
            let mut out = [0u8; 20];
            k.mac_spis(a, b, &addr, &mut out);
            prop_assert_eq!(out.to_vec(), reference!(sha1::Sha1, &key, &msg));
        }
    }
}
