//! Which SHA-256 kernel the HMAC-SHA-256 batch path runs, chosen once per process at run time.
//!
//! Interleaving independent tokens beats one bulk stream on any SHA-NI core, but the best
//! interleave width differs between CPUs: AMD Zen runs 4 lanes fastest, while a core with fewer
//! vector registers to spare or a longer `sha256rnds2` latency may want 2 or 8 (the 4-lane
//! kernel reached 0.66 of an Intel Xeon's bulk SHA-256 limit and 0.95 of an AMD EPYC's), and
//! without SHA-NI an 8-lane AVX2 kernel may beat one block at a time. So at first use the
//! batch kernel is timed at each SHA-NI width, with AVX2 and with the `sha2` crate one block at
//! a time, on a small batch under a throwaway key, and the fastest is kept for the life of the
//! process. The calibration costs a few milliseconds once; [`selection`] reports the choice and
//! the measured rates (`ikeqcd._core.kernel_info()`, `ikeqcd bench`).
//!
//! `IKEQCD_KERNEL` overrides the choice, read once at first use:
//! - `auto` (or unset): calibrate as above;
//! - `shani-1`, `shani-2`, `shani-4`, `shani-8`: that SHA-NI interleave width (falls back to
//!   `auto` with a note when the CPU has no SHA-NI);
//! - `sha2`: the `sha2` crate one block at a time (its own run-time SHA-NI detection);
//! - `avx2`: the 8-lane AVX2 kernel of `rust/avx2.rs` (falls back to `auto` without AVX2);
//! - `portable`: the plain-Rust compression of `rust/soft256.rs` everywhere, SHA-NI unused:
//!   the slow kernel the benchmark gate's self-test forces to prove the gate can fail.
//!
//! An unknown value is ignored (auto) and reported in the note.
#![forbid(unsafe_code)]

use std::sync::OnceLock;
use std::time::Instant;

use crate::kernel::{Keyed, K256};
use crate::shani::Lanes;

/// The interleave widths the SHA-NI batch kernel is compiled for.
pub const WIDTHS: [usize; 4] = [1, 2, 4, 8];

/// A SHA-256 kernel for the batch path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha256Kernel {
    /// Plain Rust, no SHA-NI (forced with `IKEQCD_KERNEL=portable`).
    Portable,
    /// The `sha2` crate, one block at a time (SHA-NI when it detects it, else software).
    Sha2,
    /// Our SHA-NI kernel with this many tokens interleaved.
    ShaNi(usize),
    /// Our AVX2 kernel, 8 tokens in the 8 lanes of each YMM register (`rust/avx2.rs`).
    Avx2,
}

impl Sha256Kernel {
    /// A short name: `portable`, `sha2`, `sha-ni x4`.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Sha256Kernel::Portable => "portable".to_owned(),
            Sha256Kernel::Sha2 => "sha2".to_owned(),
            Sha256Kernel::ShaNi(w) => format!("sha-ni x{w}"),
            Sha256Kernel::Avx2 => "avx2 x8".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
enum Request {
    Auto,
    Force(Sha256Kernel),
}

fn request() -> &'static (Request, String) {
    static REQ: OnceLock<(Request, String)> = OnceLock::new();
    REQ.get_or_init(|| {
        let raw = std::env::var("IKEQCD_KERNEL").unwrap_or_default();
        let v = raw.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "auto" => (Request::Auto, String::new()),
            "portable" | "scalar" => (Request::Force(Sha256Kernel::Portable), String::new()),
            "sha2" => (Request::Force(Sha256Kernel::Sha2), String::new()),
            "avx2" => (Request::Force(Sha256Kernel::Avx2), String::new()),
            _ => match v.strip_prefix("shani-").and_then(|w| w.parse::<usize>().ok()) {
                Some(w) if WIDTHS.contains(&w) => {
                    (Request::Force(Sha256Kernel::ShaNi(w)), String::new())
                }
                _ => (
                    Request::Auto,
                    format!(
                        "IKEQCD_KERNEL={raw:?} ignored: use auto, portable, sha2, avx2, shani-1, shani-2, shani-4 or shani-8"
                    ),
                ),
            },
        }
    })
}

/// True when `IKEQCD_KERNEL=portable`: every SHA-256 compression then goes through
/// `rust/soft256.rs` (one relaxed read of an initialised `OnceLock` per call).
#[inline]
#[must_use]
pub fn portable_forced() -> bool {
    matches!(request().0, Request::Force(Sha256Kernel::Portable))
}

/// The SHA-NI capability for the multi-key path, `None` when SHA-NI is absent or
/// `IKEQCD_KERNEL=portable`. Also clears dirty upper vector state (see `shani.rs`).
#[must_use]
pub fn lanes() -> Option<Lanes> {
    if portable_forced() {
        None
    } else {
        Lanes::new()
    }
}

/// The kernel in use, how it was chosen, and the calibration it was chosen from.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The batch kernel.
    pub kernel: Sha256Kernel,
    /// `"calibrated"`, `"IKEQCD_KERNEL"` or `"no SHA-NI, no AVX2"`.
    pub source: &'static str,
    /// Anything worth saying about the choice (an ignored override, a fallback); may be empty.
    pub note: String,
    /// Tokens per second each candidate reached in the calibration (empty when not run).
    pub calibration: Vec<(Sha256Kernel, f64)>,
}

/// The selection, made on first call (calibrating when `IKEQCD_KERNEL` is unset or `auto`).
pub fn selection() -> &'static Selection {
    static SEL: OnceLock<Selection> = OnceLock::new();
    SEL.get_or_init(|| {
        let (req, note) = request();
        let mut note = note.clone();
        let have_shani = Lanes::new().is_some();
        let have_avx2 = crate::avx2::Avx2::new().is_some();
        match *req {
            Request::Force(Sha256Kernel::ShaNi(_)) if !have_shani => {
                note = "IKEQCD_KERNEL asks for SHA-NI but this CPU has none: auto".to_owned();
            }
            Request::Force(Sha256Kernel::Avx2) if !have_avx2 => {
                note = "IKEQCD_KERNEL asks for AVX2 but this CPU has none: auto".to_owned();
            }
            Request::Force(k) => {
                return Selection {
                    kernel: k,
                    source: "IKEQCD_KERNEL",
                    note,
                    calibration: Vec::new(),
                };
            }
            Request::Auto => {}
        }
        if !have_shani && !have_avx2 {
            return Selection {
                kernel: Sha256Kernel::Sha2,
                source: "no SHA-NI, no AVX2",
                note,
                calibration: Vec::new(),
            };
        }
        let calibration = calibrate();
        let kernel = calibration
            .iter()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .map_or(Sha256Kernel::ShaNi(4), |c| c.0);
        Selection {
            kernel,
            source: "calibrated",
            note,
            calibration,
        }
    })
}

/// Time every candidate this CPU can run (the `sha2` crate, the SHA-NI widths, AVX2) on the
/// same small batch, round-robin so that a burst of load from
/// another process hits all of them alike; keep each candidate's best round.
#[must_use]
pub fn calibrate() -> Vec<(Sha256Kernel, f64)> {
    const N: usize = 2048;
    const ROUNDS: usize = 7;
    const TL: usize = 32;
    let key = Keyed::<K256>::new(b"ikeqcd kernel calibration, not a secret");
    let a: Vec<u64> = (0..N as u64)
        .map(|x| x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let b: Vec<u64> = (0..N as u64).map(|x| x ^ 0x5a5a_5a5a).collect();
    let mut out = vec![0u8; N * TL];
    let mut cands: Vec<Sha256Kernel> = vec![Sha256Kernel::Sha2];
    if Lanes::new().is_some() {
        cands.extend(WIDTHS.iter().map(|&w| Sha256Kernel::ShaNi(w)));
    }
    if crate::avx2::Avx2::new().is_some() {
        cands.push(Sha256Kernel::Avx2);
    }
    let mut best = vec![f64::INFINITY; cands.len()];
    for round in 0..=ROUNDS {
        for (c, slot) in cands.iter().zip(best.iter_mut()) {
            let t0 = Instant::now();
            key.mac_spis_batch(*c, &a, &b, &mut out, TL);
            let dt = t0.elapsed().as_secs_f64();
            std::hint::black_box(&out);
            if round > 0 {
                // round 0 warms caches and the CPU's clock up
                *slot = slot.min(dt);
            }
        }
    }
    cands
        .into_iter()
        .zip(best)
        .map(|(c, dt)| (c, N as f64 / dt.max(1e-9)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_stable_and_named() {
        let s = selection();
        assert!(std::ptr::eq(s, selection()));
        let name = s.kernel.name();
        assert!(name == "portable" || name == "sha2" || name.starts_with("sha-ni x"));
        if s.source == "calibrated" {
            assert!(s.calibration.len() >= 2);
            assert!(s.calibration.iter().all(|c| c.1 > 0.0));
        }
    }
}
