//! Latency histograms: the load driver's [`Histogram`] (log-linear buckets of nanosecond
//! values) and serve's [`BatchTimes`] (fixed Prometheus-style buckets, lock-free).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Log-linear histogram of nanosecond values: 16 buckets per power of two (about 6 %
/// resolution), exact below 16 ns. Fixed size (976 counters), no allocation per value.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

fn bucket_low(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let g = (i / SUB) as u32; // >= 1
    ((SUB + i % SUB) as u64) << (g - 1)
}

impl Histogram {
    /// Count one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Values counted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Largest value counted.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The non-empty buckets as (middle of the bucket, count), in increasing order: a
    /// compact copy of the distribution (for Locust's statistics). The middles do not depend
    /// on the values counted, so two snapshots can be subtracted bucket by bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let lo = bucket_low(i);
                let hi = if i + 1 < BUCKETS {
                    bucket_low(i + 1)
                } else {
                    u64::MAX
                };
                (lo + (hi - lo) / 2, c)
            })
    }

    /// The `q`-quantile (0..=1), as the middle of its bucket (capped at the maximum); 0 when
    /// empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                let lo = bucket_low(i);
                let hi = if i + 1 < BUCKETS {
                    bucket_low(i + 1)
                } else {
                    u64::MAX
                };
                return (lo + (hi - lo) / 2).min(self.max);
            }
        }
        self.max
    }
}

/// Upper bounds (nanoseconds, inclusive) of [`BatchTimes`]' buckets: 1 µs to 100 ms in
/// 1-2.5-5 steps; one more bucket counts everything above.
pub const BATCH_TIME_BOUNDS_NS: [u64; 16] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Lock-free histogram of durations with the fixed buckets [`BATCH_TIME_BOUNDS_NS`]: serve's
/// time to answer one received batch, counted by the serve loop and read (for Prometheus)
/// from any thread while it runs.
#[derive(Debug, Default)]
pub struct BatchTimes {
    counts: [AtomicU64; BATCH_TIME_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl BatchTimes {
    /// Count one duration.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BATCH_TIME_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts per bucket (not cumulative; the last one is above the largest bound) and
    /// the sum of the durations in nanoseconds, each read atomically.
    #[must_use]
    pub fn snapshot(&self) -> ([u64; BATCH_TIME_BOUNDS_NS.len() + 1], u64) {
        let mut counts = [0u64; BATCH_TIME_BOUNDS_NS.len() + 1];
        for (c, a) in counts.iter_mut().zip(&self.counts) {
            *c = a.load(Ordering::Relaxed);
        }
        (counts, self.sum_ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.07, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.07, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        for i in 0..BUCKETS - 1 {
            assert!(bucket_low(i) < bucket_low(i + 1));
            assert_eq!(bucket_of(bucket_low(i)), i);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn batch_times_buckets() {
        let t = BatchTimes::default();
        let values = [0u64, 1_000, 1_001, 100_000_000, 100_000_001, u64::MAX];
        for ns in values {
            t.record(Duration::from_nanos(ns));
        }
        let (counts, sum) = t.snapshot();
        assert_eq!(counts[0], 2); // 0 and 1 µs: le 1 µs
        assert_eq!(counts[1], 1); // 1.001 µs: le 2.5 µs
        assert_eq!(counts[BATCH_TIME_BOUNDS_NS.len() - 1], 1); // 100 ms
        assert_eq!(counts[BATCH_TIME_BOUNDS_NS.len()], 2); // above
        assert_eq!(counts.iter().sum::<u64>(), 6);
        assert_eq!(sum, values.iter().fold(0u64, |a, &v| a.wrapping_add(v)));
    }
}
