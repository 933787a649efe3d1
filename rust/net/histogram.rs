//! The load driver's latency histogram: log-linear buckets of nanosecond values.

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
}
