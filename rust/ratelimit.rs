//! Keyed token buckets with bounded memory, for the maker's reply limits (RFC 6290 §8.1,
//! RFC 7296 §2.21.4) and the taker's per-source verification limit.
//!
//! Keys are chosen by the network (source addresses), so the map uses a randomly keyed hash
//! (std `RandomState`, SipHash-1-3) and holds at most `max_keys` buckets. When it is full,
//! buckets that have refilled completely are forgotten first (forgetting them loses nothing:
//! a new bucket starts full too); if every bucket is still active — a flood from many sources —
//! new keys share one overflow bucket, so a spoofed-source flood cannot grow memory or reset
//! anyone's limit.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::collections::HashMap;

use crate::error::{CoreError, CoreResult};

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: f64,
}

impl Bucket {
    fn refill(&mut self, now: f64, rate: f64, burst: f64) {
        if now > self.last {
            self.tokens = (self.tokens + (now - self.last) * rate).min(burst);
            self.last = now;
        }
    }

    fn take(&mut self, now: f64, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets keyed by a 64-bit source key (an IPv4 address, or an IPv6 /64 prefix).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_keys: usize,
    map: HashMap<u64, Bucket, RandomState>,
    overflow: Bucket,
    /// Requests allowed / refused so far.
    pub allowed: u64,
    /// Requests refused so far.
    pub refused: u64,
}

impl RateLimiter {
    /// `rate` tokens per second, `burst` bucket size (both may be `f64::INFINITY`: no limit).
    ///
    /// # Errors
    /// `CoreError::InvalidPolicy` when a rate is negative or NaN, or `max_keys` is 0.
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> CoreResult<Self> {
        if rate.is_nan() || burst.is_nan() || rate < 0.0 || burst < 0.0 {
            return Err(CoreError::InvalidPolicy(format!(
                "rate and burst must be >= 0, got rate={rate} burst={burst}"
            )));
        }
        if max_keys == 0 {
            return Err(CoreError::InvalidPolicy(
                "max_keys must be at least 1".to_owned(),
            ));
        }
        Ok(RateLimiter {
            rate,
            burst,
            max_keys,
            map: HashMap::with_hasher(RandomState::new()),
            overflow: Bucket {
                tokens: burst,
                last: f64::NEG_INFINITY,
            },
            allowed: 0,
            refused: 0,
        })
    }

    /// Number of buckets currently held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no bucket is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn make_room(&mut self, now: f64) {
        let (rate, burst) = (self.rate, self.burst);
        self.map.retain(|_, b| {
            b.refill(now, rate, burst);
            b.tokens < burst
        });
    }

    /// Take one token for `key` at time `now` (seconds, monotonic). True if allowed.
    pub fn allow(&mut self, key: u64, now: f64) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if rate.is_infinite() && burst.is_infinite() {
            self.allowed += 1;
            return true;
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.max_keys {
            self.make_room(now);
        }
        let ok = if let Some(b) = self.map.get_mut(&key) {
            b.take(now, rate, burst)
        } else if self.map.len() < self.max_keys {
            let mut b = Bucket {
                tokens: burst,
                last: now,
            };
            let ok = b.take(now, rate, burst);
            self.map.insert(key, b);
            ok
        } else {
            self.overflow.take(now, rate, burst)
        };
        if ok {
            self.allowed += 1;
        } else {
            self.refused += 1;
        }
        ok
    }

    /// [`RateLimiter::allow`] for each key in order, all at time `now`.
    pub fn allow_many(&mut self, keys: &[u64], now: f64, out: &mut [bool]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.allow(*k, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let mut r = RateLimiter::new(10.0, 5.0, 100).unwrap();
        let allowed = (0..20).filter(|_| r.allow(1, 0.0)).count();
        assert_eq!(allowed, 5);
        assert!(!r.allow(1, 0.05));
        assert!(r.allow(1, 0.1)); // one token after 0.1 s at 10/s
        assert!(r.allow(2, 0.1)); // another key is independent
        assert_eq!((r.allowed, r.refused), (7, 16));
    }

    #[test]
    fn bounded_under_spoofed_flood() {
        let mut r = RateLimiter::new(1.0, 2.0, 1000).unwrap();
        let mut allowed = 0;
        for k in 0..100_000u64 {
            if r.allow(k, 0.0) {
                allowed += 1;
            }
        }
        assert!(r.len() <= 1000);
        // 1000 keyed buckets at 1 token each (burst 2, 1 taken) plus the overflow's burst of 2
        assert_eq!(allowed, 1000 + 2);
        // after the buckets have refilled, new keys get their own buckets again
        assert!(r.allow(999_999, 10.0));
        assert!(r.len() <= 1000);
    }

    #[test]
    fn unlimited_and_errors() {
        let mut r = RateLimiter::new(f64::INFINITY, f64::INFINITY, 1).unwrap();
        assert!((0..1000).all(|k| r.allow(k, 0.0)));
        assert!(r.is_empty());
        assert!(RateLimiter::new(-1.0, 1.0, 1).is_err());
        assert!(RateLimiter::new(1.0, f64::NAN, 1).is_err());
        assert!(RateLimiter::new(1.0, 1.0, 0).is_err());
    }
}
