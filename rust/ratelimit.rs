//! Keyed token buckets with bounded memory, for the maker's reply limits (RFC 6290 §8.1,
//! RFC 7296 §2.21.4) and the taker's per-source verification limit.
//!
//! Keys are chosen by the network (source addresses), so the map uses a randomly keyed hash
//! (std `RandomState`, SipHash-1-3) and holds at most `max_keys` buckets. When it is full,
//! buckets that have refilled completely are forgotten first (forgetting them loses nothing:
//! a new bucket starts full too); if every bucket is still active — a flood from many sources —
//! new keys share one overflow bucket, so a spoofed-source flood cannot grow memory or reset
//! anyone's limit. A sweep for refilled buckets costs O(`max_keys`), so after one that frees
//! less than an eighth of the map, the next waits until an eighth can have refilled: each
//! request costs O(1) amortized even under a spoofed flood.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::collections::HashMap;

use crate::clock::check_time;
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

    /// When this bucket will be full again if nothing takes from it.
    fn full_at(&self, rate: f64, burst: f64) -> f64 {
        if self.tokens >= burst {
            self.last
        } else if rate > 0.0 {
            self.last + (burst - self.tokens) / rate
        } else {
            f64::INFINITY
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
    /// No sweep for refilled buckets before this time (see `make_room`).
    next_sweep: f64,
    /// Sweeps done so far (tests check the amortized bound).
    sweeps: u64,
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
            next_sweep: f64::NEG_INFINITY,
            sweeps: 0,
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

    /// Forget refilled buckets. If that frees less than an eighth of the map, the next sweep
    /// waits until enough buckets can have refilled to free an eighth, so a flood of new keys
    /// meeting a full map costs O(1) amortized per request instead of O(`max_keys`).
    fn make_room(&mut self, now: f64) {
        let (rate, burst) = (self.rate, self.burst);
        self.sweeps += 1;
        self.map.retain(|_, b| {
            b.refill(now, rate, burst);
            b.tokens < burst
        });
        let want = (self.max_keys / 8).max(1);
        let room = self.max_keys - self.map.len();
        if room >= want {
            self.next_sweep = f64::NEG_INFINITY;
            return;
        }
        let mut full: Vec<f64> = self.map.values().map(|b| b.full_at(rate, burst)).collect();
        let nth = want - room - 1; // < map.len() because room < want <= max_keys
        let (_, at, _) = full.select_nth_unstable_by(nth, f64::total_cmp);
        self.next_sweep = *at;
    }

    /// Take one token for `key` at time `now` (seconds, monotonic). True if allowed.
    ///
    /// A `now` that is not a usable time ([`crate::clock::check_time`]: NaN, ±inf, beyond
    /// ±1e12 s) is refused without touching any bucket, so one broken clock reading cannot
    /// leave a bucket that never refills; the bindings raise `InvalidArgument` for it first.
    pub fn allow(&mut self, key: u64, now: f64) -> bool {
        if check_time(now, "now").is_err() {
            self.refused += 1;
            return false;
        }
        let (rate, burst) = (self.rate, self.burst);
        if rate.is_infinite() && burst.is_infinite() {
            self.allowed += 1;
            return true;
        }
        if self.map.len() >= self.max_keys && now >= self.next_sweep && !self.map.contains_key(&key)
        {
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

    /// Give back the token that the last successful [`RateLimiter::allow`] for `key` took
    /// (the request was refused further on); never above the bucket size.
    pub fn refund(&mut self, key: u64) {
        if self.rate.is_infinite() && self.burst.is_infinite() {
            return;
        }
        let burst = self.burst;
        let b = match self.map.get_mut(&key) {
            Some(b) => b,
            None => &mut self.overflow,
        };
        b.tokens = (b.tokens + 1.0).min(burst);
        self.allowed = self.allowed.saturating_sub(1);
        self.refused += 1;
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
        // one sweep when the map first filled up; the rest waited for buckets to refill
        assert_eq!(r.sweeps, 1);
        // after the buckets have refilled, new keys get their own buckets again
        assert!(r.allow(999_999, 10.0));
        assert_eq!((r.len(), r.sweeps), (1, 2));
    }

    #[test]
    fn sweeps_are_amortized_when_buckets_refill_one_by_one() {
        // 1000 buckets that become full at staggered times: a sweep must not run for every
        // new key that meets the full map, only once an eighth of the map can be freed
        let mut r = RateLimiter::new(1.0, 1.0, 1000).unwrap();
        for k in 0..1000u64 {
            assert!(r.allow(k, k as f64 * 0.001)); // bucket k full again at 1 + k ms
        }
        let mut t = 1.0;
        for k in 1000..101_000u64 {
            t += 0.000_01;
            r.allow(k, t);
        }
        assert!(r.len() <= 1000);
        // 100k requests over 1 s. A sweep runs only once 125 buckets (an eighth) can be freed,
        // plus one right after the freed room has filled up: about 2 * 1000/125 sweeps, each
        // after >= 125 new keys (O(1) amortized). Before this bound it was one per request.
        assert!(r.sweeps <= 20, "{} sweeps", r.sweeps);
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
