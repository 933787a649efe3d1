//! QCD token derivation and constant-time verification (RFC 6290 §5.1, §5.2).
//!
//! `token = HMAC-H(secret, SPI-I || SPI-R [|| taker address])[..token_len]`, one secret per
//! generation (index 0 is current, up to 3 older ones, §5.1). Secrets and the HMAC states
//! derived from them are zeroized on drop and never printed.
#![forbid(unsafe_code)]

use std::fmt;

use zeroize::Zeroizing;

use crate::ct;
use crate::error::{CoreError, CoreResult};
use crate::kernel::{Keyed, K1, K256, K512};
use crate::par;

/// Most secret generations a maker keeps: the current one and three older ones (§4.5, §5.1).
pub const MAX_GENERATIONS: usize = 4;
/// Shortest secret accepted, in octets (32 recommended, §5.1).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted, in octets.
pub const MAX_SECRET_LEN: usize = 1024;
/// Token length bounds from RFC 6290 §5.
pub const MIN_TOKEN_LEN: usize = 16;
/// Token length bounds from RFC 6290 §5.
pub const MAX_TOKEN_LEN: usize = 128;

/// The HMAC used as the §5.1 HASH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA-256, 32-octet tokens by default (the project default).
    HmacSha256,
    /// HMAC-SHA-512, 64-octet tokens (the Rockhopper VPN form).
    HmacSha512,
    /// HMAC-SHA-1 truncated to 16 octets (the racoon2 form).
    HmacSha1,
}

impl Algorithm {
    /// All algorithms, in the order of their names in error messages.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::HmacSha256,
        Algorithm::HmacSha512,
        Algorithm::HmacSha1,
    ];

    /// Parse `"hmac-sha256"`, `"hmac-sha512"` or `"hmac-sha1"` (case-insensitive).
    ///
    /// # Errors
    /// `CoreError::InvalidAlgorithm` for any other name.
    pub fn parse(name: &str) -> CoreResult<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| {
                CoreError::InvalidAlgorithm(format!(
                    "unknown algorithm {name:?}: use one of \"hmac-sha256\", \"hmac-sha512\", \"hmac-sha1\""
                ))
            })
    }

    /// The canonical name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
            Algorithm::HmacSha1 => "hmac-sha1",
        }
    }

    /// Size of the full HMAC output in octets.
    #[must_use]
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
            Algorithm::HmacSha1 => 20,
        }
    }

    /// Token length used when none is given.
    #[must_use]
    pub fn default_token_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
            Algorithm::HmacSha1 => 16,
        }
    }

    /// Secret length a new secret store should create for this algorithm.
    #[must_use]
    pub fn recommended_secret_len(self) -> usize {
        match self {
            Algorithm::HmacSha512 => 64,
            _ => 32,
        }
    }
}

#[derive(Clone)]
enum KeyState {
    S256(Keyed<K256>),
    S512(Keyed<K512>),
    S1(Keyed<K1>),
}

impl KeyState {
    fn new(alg: Algorithm, key: &[u8]) -> Self {
        match alg {
            Algorithm::HmacSha256 => KeyState::S256(Keyed::new(key)),
            Algorithm::HmacSha512 => KeyState::S512(Keyed::new(key)),
            Algorithm::HmacSha1 => KeyState::S1(Keyed::new(key)),
        }
    }

    #[inline(always)]
    fn mac_spis(&self, spi_i: u64, spi_r: u64, addr: &[u8], out: &mut [u8]) {
        match self {
            KeyState::S256(k) => k.mac_spis(spi_i, spi_r, addr, out),
            KeyState::S512(k) => k.mac_spis(spi_i, spi_r, addr, out),
            KeyState::S1(k) => k.mac_spis(spi_i, spi_r, addr, out),
        }
    }

    /// Tokens for many pairs, one `tl`-octet row each (SHA-256: the kernel `select` chose).
    fn derive_rows(&self, spi_i: &[u64], spi_r: &[u64], out: &mut [u8], tl: usize) {
        if let KeyState::S256(k) = self {
            k.mac_spis_batch(crate::select::selection().kernel, spi_i, spi_r, out, tl);
            return;
        }
        for ((row, &a), &b) in out.chunks_exact_mut(tl).zip(spi_i).zip(spi_r) {
            self.mac_spis(a, b, &[], row);
        }
    }

    fn mac(&self, parts: &[&[u8]], out: &mut [u8]) {
        match self {
            KeyState::S256(k) => k.mac(parts, out),
            KeyState::S512(k) => k.mac(parts, out),
            KeyState::S1(k) => k.mac(parts, out),
        }
    }
}

/// One-shot HMAC of `data` under `key` with the given algorithm (full digest). Used by the
/// known-answer tests (RFC 4231, RFC 2202); keys of any length are allowed here.
#[must_use]
pub fn hmac(alg: Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; alg.digest_len()];
    KeyState::new(alg, key).mac(&[data], &mut out);
    out
}

/// Check an optional §5.2 taker address: 4 (IPv4) or 16 (IPv6) octets.
///
/// # Errors
/// `CoreError::InvalidAddress` for any other length.
pub fn check_address(addr: &[u8]) -> CoreResult<()> {
    match addr.len() {
        0 | 4 | 16 => Ok(()),
        n => Err(CoreError::InvalidAddress(format!(
            "address must be 4 octets (IPv4) or 16 octets (IPv6), got {n}"
        ))),
    }
}

/// Check that two SPI arrays have the same length.
///
/// # Errors
/// `CoreError::ShapeMismatch` when they differ.
pub fn check_pair_len(spi_i: &[u64], spi_r: &[u64]) -> CoreResult<()> {
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

/// A token maker: one HMAC key per secret generation.
#[derive(Clone)]
pub struct TokenMaker {
    alg: Algorithm,
    token_len: usize,
    keys: Vec<KeyState>,
}

impl fmt::Debug for TokenMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMaker")
            .field("algorithm", &self.alg.name())
            .field("token_len", &self.token_len)
            .field("generations", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl TokenMaker {
    /// Build a maker from 1..=4 secrets (index 0 = current generation).
    ///
    /// # Errors
    /// `InvalidSecret` for a wrong number or size of secrets, `InvalidTokenLength` for a
    /// `token_len` outside `16..=digest size`.
    pub fn new(secrets: &[&[u8]], alg: Algorithm, token_len: Option<usize>) -> CoreResult<Self> {
        if secrets.is_empty() || secrets.len() > MAX_GENERATIONS {
            return Err(CoreError::InvalidSecret(format!(
                "give 1 to {MAX_GENERATIONS} secrets (current first, then up to 3 older generations), got {}",
                secrets.len()
            )));
        }
        for (i, s) in secrets.iter().enumerate() {
            if s.len() < MIN_SECRET_LEN || s.len() > MAX_SECRET_LEN {
                return Err(CoreError::InvalidSecret(format!(
                    "secret {i} is {} octets; each secret must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} octets (32 recommended)",
                    s.len()
                )));
            }
        }
        let token_len = token_len.unwrap_or(alg.default_token_len());
        if token_len < MIN_TOKEN_LEN || token_len > alg.digest_len() {
            return Err(CoreError::InvalidTokenLength(format!(
                "token_len {token_len} is not possible for {}: use {MIN_TOKEN_LEN}..={}",
                alg.name(),
                alg.digest_len()
            )));
        }
        let keys = secrets
            .iter()
            .map(|s| {
                let copy = Zeroizing::new(s.to_vec());
                KeyState::new(alg, &copy)
            })
            .collect();
        Ok(TokenMaker {
            alg,
            token_len,
            keys,
        })
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Token length in octets.
    #[must_use]
    pub fn token_len(&self) -> usize {
        self.token_len
    }

    /// Number of secret generations (1..=4).
    #[must_use]
    pub fn generations(&self) -> usize {
        self.keys.len()
    }

    fn key(&self, generation: usize) -> CoreResult<&KeyState> {
        self.keys.get(generation).ok_or_else(|| {
            CoreError::InvalidGeneration(format!(
                "generation {generation} does not exist: this maker has {} (0..={})",
                self.keys.len(),
                self.keys.len() - 1
            ))
        })
    }

    /// Derive one token into `out` (`out.len() == token_len`).
    ///
    /// # Errors
    /// `InvalidGeneration`, `InvalidAddress`, or `ShapeMismatch` if `out` has the wrong size.
    pub fn derive_into(
        &self,
        generation: usize,
        spi_i: u64,
        spi_r: u64,
        addr: &[u8],
        out: &mut [u8],
    ) -> CoreResult<()> {
        check_address(addr)?;
        let key = self.key(generation)?;
        if out.len() != self.token_len {
            return Err(CoreError::ShapeMismatch(format!(
                "output buffer is {} octets, token_len is {}",
                out.len(),
                self.token_len
            )));
        }
        key.mac_spis(spi_i, spi_r, addr, out);
        Ok(())
    }

    /// Derive one token.
    ///
    /// # Errors
    /// As [`TokenMaker::derive_into`].
    pub fn derive(
        &self,
        generation: usize,
        spi_i: u64,
        spi_r: u64,
        addr: &[u8],
    ) -> CoreResult<Vec<u8>> {
        let mut out = vec![0u8; self.token_len];
        self.derive_into(generation, spi_i, spi_r, addr, &mut out)?;
        Ok(out)
    }

    /// One token per generation, current first: what an unprotected reply carries (§4.5).
    ///
    /// # Errors
    /// `InvalidAddress`.
    pub fn derive_all(&self, spi_i: u64, spi_r: u64, addr: &[u8]) -> CoreResult<Vec<Vec<u8>>> {
        (0..self.keys.len())
            .map(|g| self.derive(g, spi_i, spi_r, addr))
            .collect()
    }

    /// Write all generations' tokens for one SPI pair into `out`
    /// (`out.len() == generations * token_len`), current first.
    pub fn derive_all_into(&self, spi_i: u64, spi_r: u64, out: &mut [u8]) {
        if self.keys.len() > 1 {
            let mut refs: [Option<&Keyed<K256>>; MAX_GENERATIONS] = [None; MAX_GENERATIONS];
            for (r, k) in refs.iter_mut().zip(&self.keys) {
                if let KeyState::S256(k) = k {
                    *r = Some(k);
                }
            }
            let n = self.keys.len();
            if refs[..n].iter().all(Option::is_some) {
                let keys: [&Keyed<K256>; MAX_GENERATIONS] =
                    std::array::from_fn(|i| refs[i.min(n - 1)].expect("checked above"));
                let lanes = crate::select::lanes();
                if crate::kernel::mac_spis_multi(
                    lanes,
                    &keys[..n],
                    spi_i,
                    spi_r,
                    out,
                    self.token_len,
                ) {
                    return;
                }
            }
        }
        for (key, chunk) in self.keys.iter().zip(out.chunks_mut(self.token_len)) {
            key.mac_spis(spi_i, spi_r, &[], chunk);
        }
    }

    /// Batch derivation: `out` receives `spi_i.len()` tokens of `token_len` octets, row by row.
    /// `threads`: 0 = all (rayon default), 1 = calling thread only, k = k threads.
    ///
    /// # Errors
    /// `ShapeMismatch` for unequal inputs or a wrong-size `out`; `InvalidGeneration`.
    pub fn derive_batch(
        &self,
        generation: usize,
        spi_i: &[u64],
        spi_r: &[u64],
        out: &mut [u8],
        threads: usize,
    ) -> CoreResult<()> {
        check_pair_len(spi_i, spi_r)?;
        let key = self.key(generation)?;
        let tl = self.token_len;
        if out.len() != spi_i.len() * tl {
            return Err(CoreError::ShapeMismatch(format!(
                "output buffer holds {} octets, need {} x {tl}",
                out.len(),
                spi_i.len()
            )));
        }
        par::for_each_chunk(out, tl, threads, |first, chunk| {
            let n = chunk.len() / tl;
            let ii = &spi_i[first..first + n];
            let rr = &spi_r[first..first + n];
            key.derive_rows(ii, rr, chunk, tl);
        });
        Ok(())
    }

    /// Does `token` equal the token of any generation for this SPI pair? Every generation is
    /// computed and compared in constant time; only a length mismatch returns early.
    ///
    /// # Errors
    /// `InvalidAddress`.
    pub fn verify(&self, spi_i: u64, spi_r: u64, token: &[u8], addr: &[u8]) -> CoreResult<bool> {
        check_address(addr)?;
        Ok(ct::to_bool(self.verify_choice(spi_i, spi_r, token, addr)))
    }

    fn verify_choice(&self, spi_i: u64, spi_r: u64, token: &[u8], addr: &[u8]) -> subtle::Choice {
        let mut acc = subtle::Choice::from(0u8);
        if token.len() != self.token_len {
            return acc;
        }
        let mut expected = Zeroizing::new([0u8; crate::kernel::MAX_DIGEST]);
        for key in &self.keys {
            key.mac_spis(spi_i, spi_r, addr, &mut expected[..self.token_len]);
            acc |= ct::eq(&expected[..self.token_len], token);
        }
        acc
    }

    /// Batch verification: `tokens` holds `spi_i.len()` rows of `token_len` octets; `out[k]`
    /// says whether row k matches any generation.
    ///
    /// # Errors
    /// `ShapeMismatch` for inconsistent sizes.
    pub fn verify_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        tokens: &[u8],
        out: &mut [bool],
        threads: usize,
    ) -> CoreResult<()> {
        check_pair_len(spi_i, spi_r)?;
        let tl = self.token_len;
        if tokens.len() != spi_i.len() * tl || out.len() != spi_i.len() {
            return Err(CoreError::ShapeMismatch(format!(
                "tokens must be {} rows of token_len={tl} octets (got {} octets) and out {} long",
                spi_i.len(),
                tokens.len(),
                out.len()
            )));
        }
        par::for_each_chunk(out, 1, threads, |first, chunk| {
            // Expected tokens are derived a block of rows at a time (through the batch
            // kernel), then every generation is compared in constant time and OR-ed.
            const ROWS: usize = 256;
            let mut expected = Zeroizing::new(vec![0u8; ROWS * tl]);
            for (b, slots) in chunk.chunks_mut(ROWS).enumerate() {
                let lo = first + b * ROWS;
                let hi = lo + slots.len();
                let mut acc = [subtle::Choice::from(0u8); ROWS];
                for key in &self.keys {
                    let exp = &mut expected[..slots.len() * tl];
                    key.derive_rows(&spi_i[lo..hi], &spi_r[lo..hi], exp, tl);
                    for (k, a) in acc[..slots.len()].iter_mut().enumerate() {
                        let got = &tokens[(lo + k) * tl..(lo + k + 1) * tl];
                        *a |= ct::eq(&exp[k * tl..(k + 1) * tl], got);
                    }
                }
                for (slot, a) in slots.iter_mut().zip(acc.iter()) {
                    *slot = ct::to_bool(*a);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maker(alg: Algorithm) -> TokenMaker {
        TokenMaker::new(&[&[1u8; 32], &[2u8; 32]], alg, None).unwrap()
    }

    #[test]
    fn batch_equals_single_and_verifies() {
        for alg in Algorithm::ALL {
            let m = maker(alg);
            let n = 20_000usize;
            let a: Vec<u64> = (0..n as u64)
                .map(|x| x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let b: Vec<u64> = (0..n as u64).map(|x| x ^ 0xdead_beef).collect();
            for threads in [1usize, 0, 2] {
                let mut out = vec![0u8; n * m.token_len()];
                m.derive_batch(1, &a, &b, &mut out, threads).unwrap();
                for k in [0usize, 1, 4095, 4096, n - 1] {
                    let t = m.derive(1, a[k], b[k], &[]).unwrap();
                    assert_eq!(&out[k * m.token_len()..(k + 1) * m.token_len()], &t[..]);
                }
                let mut ok = vec![false; n];
                out[7 * m.token_len()] ^= 1;
                m.verify_batch(&a, &b, &out, &mut ok, threads).unwrap();
                assert!(!ok[7]);
                assert_eq!(ok.iter().filter(|x| **x).count(), n - 1);
            }
        }
    }

    #[test]
    fn generations_and_swaps() {
        let m = maker(Algorithm::HmacSha256);
        let t0 = m.derive(0, 1, 2, &[]).unwrap();
        let t1 = m.derive(1, 1, 2, &[]).unwrap();
        assert_ne!(t0, t1);
        assert_ne!(t0, m.derive(0, 2, 1, &[]).unwrap());
        assert_ne!(t0, m.derive(0, 1, 3, &[]).unwrap());
        assert!(m.verify(1, 2, &t0, &[]).unwrap());
        assert!(m.verify(1, 2, &t1, &[]).unwrap());
        assert!(!m.verify(1, 2, &t1[..16], &[]).unwrap());
        assert_eq!(m.derive_all(1, 2, &[]).unwrap(), vec![t0, t1]);
        let v4 = m.derive(0, 1, 2, &[10, 0, 0, 1]).unwrap();
        let v4b = m.derive(0, 1, 2, &[10, 0, 0, 2]).unwrap();
        assert_ne!(v4, v4b);
        assert!(m.verify(1, 2, &v4, &[10, 0, 0, 1]).unwrap());
        assert!(!m.verify(1, 2, &v4, &[10, 0, 0, 2]).unwrap());
    }

    #[test]
    fn errors() {
        let alg = Algorithm::HmacSha256;
        assert!(matches!(
            TokenMaker::new(&[], alg, None),
            Err(CoreError::InvalidSecret(_))
        ));
        assert!(matches!(
            TokenMaker::new(&[&[0u8; 15]], alg, None),
            Err(CoreError::InvalidSecret(_))
        ));
        let five: Vec<&[u8]> = vec![&[0u8; 32]; 5];
        assert!(matches!(
            TokenMaker::new(&five, alg, None),
            Err(CoreError::InvalidSecret(_))
        ));
        assert!(matches!(
            TokenMaker::new(&[&[0u8; 32]], alg, Some(15)),
            Err(CoreError::InvalidTokenLength(_))
        ));
        assert!(matches!(
            TokenMaker::new(&[&[0u8; 32]], alg, Some(33)),
            Err(CoreError::InvalidTokenLength(_))
        ));
        assert!(matches!(
            TokenMaker::new(&[&[0u8; 32]], Algorithm::HmacSha1, Some(21)),
            Err(CoreError::InvalidTokenLength(_))
        ));
        assert!(Algorithm::parse("md5").is_err());
        assert_eq!(
            Algorithm::parse("HMAC-SHA512").unwrap(),
            Algorithm::HmacSha512
        );
        let m = maker(alg);
        assert!(matches!(
            m.derive(2, 1, 2, &[]),
            Err(CoreError::InvalidGeneration(_))
        ));
        assert!(matches!(
            m.derive(0, 1, 2, &[1, 2, 3]),
            Err(CoreError::InvalidAddress(_))
        ));
        let mut out = vec![0u8; 10];
        assert!(matches!(
            m.derive_batch(0, &[1], &[1, 2], &mut out, 1),
            Err(CoreError::ShapeMismatch(_))
        ));
        let dbg = format!("{m:?}");
        assert!(dbg.contains("hmac-sha256") && !dbg.contains("[1, 1"));
    }
}
