//! The token maker's reply policy on the hot path (RFC 6290 §8.1, §9.3; RFC 7296 §2.21.4):
//! for each request that qualifies for a QCD reply, decide between the full reply, a bare
//! INVALID_IKE_SPI, or silence.
//!
//! - switched off (§8.1 MUST): plain RFC 7296, a bare INVALID_IKE_SPI (rate-limited);
//! - outside the answering window after start (§9.3): the same;
//! - per-source and global token buckets: within both, the full reply; otherwise the flood
//!   fallback: a bare INVALID_IKE_SPI (itself limited by the bare bucket) or silence.
#![forbid(unsafe_code)]

use crate::error::CoreResult;
use crate::ratelimit::RateLimiter;
use crate::responder::Reason;

/// What a limit-exceeded request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// A bare INVALID_IKE_SPI (no token), limited by the bare bucket.
    Bare,
    /// Nothing.
    Silence,
}

/// Options of [`MakerGate`] (mirrors the Python `MakerPolicy`).
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// The administrator switch.
    pub enabled: bool,
    /// Per-source replies per second and bucket size.
    pub per_source: (f64, f64),
    /// Global replies per second and bucket size.
    pub global: (f64, f64),
    /// Bare INVALID_IKE_SPI replies per second (bucket size is the same number, at least 1;
    /// 0: none).
    pub bare_rate: f64,
    /// What a limited request gets.
    pub fallback: Fallback,
    /// Tokens are sent only while `now <= window_end`.
    pub window_end: Option<f64>,
    /// Most per-source buckets held.
    pub max_sources: usize,
}

/// Bucket size for the bare fallback: one second's worth, at least 1, but 0 for a rate of 0.
fn bare_burst(rate: f64) -> f64 {
    if rate > 0.0 {
        rate.max(1.0)
    } else {
        0.0
    }
}

/// The decision state: three token buckets and the switches.
#[derive(Debug)]
pub struct MakerGate {
    cfg: GateConfig,
    per_source: RateLimiter,
    global: RateLimiter,
    bare: RateLimiter,
}

impl MakerGate {
    /// Build the gate.
    ///
    /// # Errors
    /// `InvalidPolicy` for a negative or NaN rate, or `max_sources` 0.
    pub fn new(cfg: GateConfig) -> CoreResult<Self> {
        Ok(MakerGate {
            per_source: RateLimiter::new(cfg.per_source.0, cfg.per_source.1, cfg.max_sources)?,
            global: RateLimiter::new(cfg.global.0, cfg.global.1, 1)?,
            // a rate of 0 means no bare replies at all (a bucket of 1 would let one through)
            bare: RateLimiter::new(cfg.bare_rate, bare_burst(cfg.bare_rate), 1)?,
            cfg,
        })
    }

    fn bare_or_drop(&mut self, why: Reason, now: f64) -> Reason {
        if self.bare.allow(0, now) {
            why
        } else {
            Reason::RateLimitedDrop
        }
    }

    /// The decision for one candidate from source `key` at `now`.
    pub fn decide(&mut self, key: u64, now: f64) -> Reason {
        if !self.cfg.enabled {
            return self.bare_or_drop(Reason::Disabled, now);
        }
        if self.cfg.window_end.is_some_and(|end| now > end) {
            return self.bare_or_drop(Reason::OutsideWindow, now);
        }
        if self.per_source.allow(key, now) {
            if self.global.allow(0, now) {
                return Reason::Replied;
            }
            // the global limit refused: this source did not get its reply, give its token back
            self.per_source.refund(key);
        }
        match self.cfg.fallback {
            Fallback::Bare => self.bare_or_drop(Reason::RateLimitedBare, now),
            Fallback::Silence => Reason::RateLimitedDrop,
        }
    }

    /// Apply [`MakerGate::decide`] to every entry of `reasons` that is `Replied` (a candidate
    /// that passed the live check), in order; other entries are left alone.
    pub fn decide_batch(&mut self, reasons: &mut [i8], keys: &[u64], now: f64) {
        for (r, &k) in reasons.iter_mut().zip(keys) {
            if *r == Reason::Replied.code() {
                *r = self.decide(k, now).code();
            }
        }
    }

    /// Number of per-source buckets held (bounded by `max_sources`).
    #[must_use]
    pub fn sources_tracked(&self) -> usize {
        self.per_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GateConfig {
        GateConfig {
            enabled: true,
            per_source: (10.0, 5.0),
            global: (100.0, 8.0),
            bare_rate: 3.0,
            fallback: Fallback::Bare,
            window_end: None,
            max_sources: 16,
        }
    }

    #[test]
    fn limits_and_fallbacks() {
        let mut g = MakerGate::new(cfg()).unwrap();
        let from_one: Vec<Reason> = (0..8).map(|_| g.decide(1, 0.0)).collect();
        assert_eq!(
            from_one.iter().filter(|r| **r == Reason::Replied).count(),
            5
        );
        assert_eq!(
            from_one
                .iter()
                .filter(|r| **r == Reason::RateLimitedBare)
                .count(),
            3
        );
        // global bucket (8) runs out after 3 more from other sources
        let others: Vec<Reason> = (2..8).map(|k| g.decide(k, 0.0)).collect();
        assert_eq!(others.iter().filter(|r| **r == Reason::Replied).count(), 3);
        assert!(others.iter().all(|r| *r != Reason::RateLimitedBare)); // bare bucket is empty
        let mut silent = MakerGate::new(GateConfig {
            fallback: Fallback::Silence,
            ..cfg()
        })
        .unwrap();
        let r: Vec<Reason> = (0..7).map(|_| silent.decide(1, 0.0)).collect();
        assert_eq!(r[6], Reason::RateLimitedDrop);
    }

    #[test]
    fn global_refusal_does_not_spend_the_source_bucket() {
        let mut g = MakerGate::new(GateConfig {
            global: (0.0, 2.0),
            ..cfg()
        })
        .unwrap();
        assert_eq!(g.decide(1, 0.0), Reason::Replied);
        assert_eq!(g.decide(1, 0.0), Reason::Replied);
        for _ in 0..10 {
            assert_ne!(g.decide(1, 0.0), Reason::Replied); // global bucket is empty
        }
        // source 1 spent only the 2 tokens it was answered with: 3 of its 5 remain
        let mut g2 = MakerGate {
            global: RateLimiter::new(100.0, 100.0, 1).unwrap(),
            ..g
        };
        let replied = (0..10)
            .filter(|_| g2.decide(1, 0.0) == Reason::Replied)
            .count();
        assert_eq!(replied, 3);
    }

    #[test]
    fn switch_and_window() {
        let mut off = MakerGate::new(GateConfig {
            enabled: false,
            ..cfg()
        })
        .unwrap();
        assert_eq!(off.decide(1, 0.0), Reason::Disabled);
        let mut w = MakerGate::new(GateConfig {
            window_end: Some(10.0),
            ..cfg()
        })
        .unwrap();
        assert_eq!(w.decide(1, 9.0), Reason::Replied);
        assert_eq!(w.decide(1, 10.5), Reason::OutsideWindow);
        let mut none = MakerGate::new(GateConfig {
            enabled: false,
            bare_rate: 0.0,
            ..cfg()
        })
        .unwrap();
        assert_eq!(none.decide(1, 0.0), Reason::RateLimitedDrop);
        let mut reasons = [0i8, 4, 0];
        let mut g = MakerGate::new(cfg()).unwrap();
        g.decide_batch(&mut reasons, &[1, 1, 2], 0.0);
        assert_eq!(reasons, [0, 4, 0]);
    }
}
