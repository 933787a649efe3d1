//! dudect-style constant-time check of the token comparisons (Reparaz, Balasch and
//! Verbauwhede, "Dude, is my code constant time?", DATE 2017), with no Python and no extra
//! crates.
//!
//! For each target, every measurement times ONE call on a candidate token of one of three
//! classes, drawn at random per measurement (so drift and background load hit every class
//! alike):
//!
//! - `equal`: the candidate equals the stored/derived token;
//! - `first`: it differs in its first octet;
//! - `last`: it differs in its last octet.
//!
//! The timings are then compared class against class with Welch's t-test, on the raw data and
//! on the data cropped at dudect's percentiles (`1 - 0.5^(10 (i+1) / 100)`: long tails from
//! interrupts and the other processes on the machine are cut off at many levels). The largest
//! |t| over the crops is reported; |t| >= 4.5 means the two classes have distinguishable
//! timings ("LEAK"). `first` against `last` is the pair that matters most: a comparison that
//! stops at the first differing octet tells an attacker how long a prefix they guessed.
//!
//! The `leaky-loop` target is a byte loop that returns at the first difference (what a naive
//! `memcmp` does): it must come out as LEAK, or a PASS of the real targets means nothing.
//!
//! Run: `cargo bench --bench ct_dudect -- [--quick] [--n N] [--target NAME] [--seed S]`.
//! `--n` is the number of measurements per target (default 3,000,000, so about 10^6 per class;
//! `--quick`: 20,000).
//! The timer is the TSC (`rdtsc` between `lfence`s) on x86_64, `Instant` elsewhere.
#![allow(dead_code)] // tests/ct_quick.rs includes this file as a module and uses part of it

use std::hint::black_box;

use _core::ct;
use _core::table::SaTable;
use _core::token::{Algorithm, TokenMaker};

/// |t| at or above this means "the classes' timings differ" (dudect's threshold).
pub const T_THRESHOLD: f64 = 4.5;
/// Token length of every target (HMAC-SHA-256 default).
pub const TOKEN_LEN: usize = 32;
/// Measurements per class needed before a cropped test is reported.
const MIN_PER_CLASS: u64 = 1_000;
/// Crop levels (dudect's `NUMBER_PERCENTILES`).
const N_CROPS: usize = 100;
/// Rows per call of the batch targets.
const BATCH: usize = 32;

/// The three input classes.
pub const CLASSES: [&str; 3] = ["equal", "first", "last"];

// ---------------------------------------------------------------------------------------------
// Timer and PRNG
// ---------------------------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn now() -> u64 {
    use core::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: `lfence` and `rdtsc` are part of every x86_64 CPU (SSE2 is baseline); they read
    // the time-stamp counter and order loads, and touch no memory.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn now() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// SplitMix64: enough randomness to pick classes and fill tokens; reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
    /// A non-zero octet (so that XOR-ing it in really changes the token).
    fn nonzero(&mut self) -> u8 {
        (self.next_u64() % 255 + 1) as u8
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// Running mean and variance (Welford).
#[derive(Clone, Copy, Default)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
    fn var(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }
}

/// Welch's t between two samples (0 when either is too small or both are constant).
fn welch(a: &Moments, b: &Moments) -> f64 {
    if a.n < 2 || b.n < 2 {
        return 0.0;
    }
    let se = (a.var() / a.n as f64 + b.var() / b.n as f64).sqrt();
    if se == 0.0 {
        if a.mean == b.mean {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (a.mean - b.mean) / se
    }
}

/// One class pair's outcome.
#[derive(Clone, Debug)]
pub struct PairResult {
    pub a: usize,
    pub b: usize,
    /// Measurements in the two classes together (uncropped).
    pub n: u64,
    /// Largest |t| over the uncropped test and every crop with enough data.
    pub t: f64,
    /// Median timer ticks of the two classes.
    pub median_a: u64,
    pub median_b: u64,
}

impl PairResult {
    pub fn leaks(&self) -> bool {
        self.t >= T_THRESHOLD
    }
    pub fn name(&self) -> String {
        format!("{}/{}", CLASSES[self.a], CLASSES[self.b])
    }
}

/// Welch t for every class pair, raw and cropped at dudect's percentiles of the pooled data.
pub fn analyse(samples: &[(u8, u64)]) -> Vec<PairResult> {
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let cuts: Vec<u64> = (0..N_CROPS)
        .map(|i| pct(1.0 - 0.5f64.powf(10.0 * (i + 1) as f64 / N_CROPS as f64)))
        .collect();
    // tests[0] = uncropped; tests[1 + i] = times < cuts[i]. One Moments per class each.
    let mut tests = vec![[Moments::default(); 3]; N_CROPS + 1];
    for &(class, t) in samples {
        let x = t as f64;
        tests[0][class as usize].push(x);
        for (i, &cut) in cuts.iter().enumerate() {
            if t < cut {
                tests[1 + i][class as usize].push(x);
            }
        }
    }
    let median = |class: u8| {
        let mut v: Vec<u64> = samples
            .iter()
            .filter(|s| s.0 == class)
            .map(|s| s.1)
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let medians = [median(0), median(1), median(2)];
    let mut out = Vec::new();
    for (a, b) in [(0usize, 1usize), (0, 2), (1, 2)] {
        let mut t = welch(&tests[0][a], &tests[0][b]).abs();
        for m in &tests[1..] {
            if m[a].n >= MIN_PER_CLASS && m[b].n >= MIN_PER_CLASS {
                t = t.max(welch(&m[a], &m[b]).abs());
            }
        }
        out.push(PairResult {
            a,
            b,
            n: tests[0][a].n + tests[0][b].n,
            t,
            median_a: medians[a],
            median_b: medians[b],
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// The deliberately leaky baseline: stops at the first differing octet.
#[inline(never)]
pub fn leaky_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for i in 0..a.len() {
        // black_box keeps the compiler from turning the loop into a vectorised compare.
        if black_box(a[i]) != black_box(b[i]) {
            return false;
        }
    }
    true
}

/// One timed call on a candidate; returns something derived from the result (black-boxed).
pub type Call = Box<dyn FnMut(&[u8]) -> u64>;

/// A target: a name and a closure that runs one call on a prepared candidate (for the batch
/// targets, `BATCH` rows of candidates laid end to end).
pub struct Target {
    pub name: &'static str,
    /// What the call is, for the table.
    pub what: &'static str,
    /// How many candidate tokens one call takes (1, or `BATCH`).
    pub rows: usize,
    /// The reference tokens the candidates are made from (one per row).
    pub reference: Vec<u8>,
    pub call: Call,
}

/// Every target, built with keys and tables drawn from `rng`.
pub fn targets(rng: &mut Rng) -> Vec<Target> {
    let mut out = Vec::new();

    // The leaky baseline and the bare comparison of rust/ct.rs.
    let mut secret = vec![0u8; TOKEN_LEN];
    rng.fill(&mut secret);
    let s = secret.clone();
    out.push(Target {
        name: "leaky-loop",
        what: "byte loop, exit at first difference (baseline; must LEAK)",
        rows: 1,
        reference: secret.clone(),
        call: Box::new(move |c| u64::from(leaky_eq(&s, c))),
    });
    let s = secret.clone();
    out.push(Target {
        name: "slice-eq",
        what: "`==` on &[u8] (memcmp/bcmp; information only)",
        rows: 1,
        reference: secret.clone(),
        call: Box::new(move |c| u64::from(black_box(&s[..]) == black_box(c))),
    });
    let s = secret.clone();
    out.push(Target {
        name: "ct::eq",
        what: "ct::eq, 32-octet tokens",
        rows: 1,
        reference: secret.clone(),
        call: Box::new(move |c| u64::from(ct::to_bool(ct::eq(black_box(&s), c)))),
    });

    // TokenMaker::verify: two generations, the candidate is made from generation 0's token.
    let mut k0 = [0u8; 32];
    let mut k1 = [0u8; 32];
    rng.fill(&mut k0);
    rng.fill(&mut k1);
    let maker = TokenMaker::new(&[&k0, &k1], Algorithm::HmacSha256, None).expect("valid maker");
    let (si, sr) = (rng.next_u64() | 1, rng.next_u64() | 1);
    let reference = maker.derive(0, si, sr, &[]).expect("derive");
    let m = maker.clone();
    out.push(Target {
        name: "TokenMaker::verify",
        what: "TokenMaker::verify, HMAC-SHA-256, 2 generations",
        rows: 1,
        reference,
        call: Box::new(move |c| u64::from(m.verify(si, sr, c, &[]).unwrap_or(false))),
    });

    // TokenMaker::verify_batch: BATCH pairs, one thread.
    let spis: Vec<(u64, u64)> = (0..BATCH)
        .map(|_| (rng.next_u64() | 1, rng.next_u64()))
        .collect();
    let bi: Vec<u64> = spis.iter().map(|p| p.0).collect();
    let br: Vec<u64> = spis.iter().map(|p| p.1).collect();
    let mut reference = Vec::new();
    for &(a, b) in &spis {
        reference.extend(maker.derive(0, a, b, &[]).expect("derive"));
    }
    let (m, i2, r2) = (maker.clone(), bi.clone(), br.clone());
    let mut okv = vec![false; BATCH];
    out.push(Target {
        name: "TokenMaker::verify_batch",
        what: "TokenMaker::verify_batch, 32 rows, 1 thread",
        rows: BATCH,
        reference,
        call: Box::new(move |c| {
            m.verify_batch(&i2, &r2, c, &mut okv, 1).expect("shapes");
            okv.iter().map(|&x| u64::from(x)).sum()
        }),
    });

    // SaTable::check: 10,000 SAs with history 2; the SA under test also holds an older token.
    let mut table = SaTable::new(2, 0).expect("table");
    let mut tok = vec![0u8; TOKEN_LEN];
    for _ in 0..10_000 {
        rng.fill(&mut tok);
        table
            .insert(rng.next_u64(), rng.next_u64(), &tok, 1.0)
            .expect("insert");
    }
    let mut reference = Vec::new();
    for &(a, b) in &spis {
        rng.fill(&mut tok); // the older token
        table.insert(a, b, &tok, 1.0).expect("insert");
        rng.fill(&mut tok); // the newest token: candidates are made from it
        table.insert(a, b, &tok, 1.0).expect("insert");
        reference.extend_from_slice(&tok);
    }
    let table = std::sync::Arc::new(table);
    let (t1, (a0, b0)) = (table.clone(), spis[0]);
    out.push(Target {
        name: "SaTable::check",
        what: "SaTable::check, 1 received token, history 2, 10k SAs",
        rows: 1,
        reference: reference[..TOKEN_LEN].to_vec(),
        call: Box::new(move |c| t1.check(a0, b0, &[c]).map_or(9, |r| r as u64)),
    });
    let mut outv = vec![0i8; BATCH];
    out.push(Target {
        name: "SaTable::check_batch",
        what: "SaTable::check_batch (check_many), 32 rows, 1 thread",
        rows: BATCH,
        reference,
        call: Box::new(move |c| {
            table
                .check_batch(&bi, &br, c, TOKEN_LEN, &mut outv, 1)
                .expect("shapes");
            outv.iter().map(|&x| x as u64).sum()
        }),
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

/// Measurements prepared and timed per chunk (inputs are made before any timing).
const CHUNK: usize = 8_192;

/// Time `n` single calls of `target` with randomly interleaved classes.
pub fn measure(target: &mut Target, n: usize, rng: &mut Rng) -> Vec<(u8, u64)> {
    let width = target.rows * TOKEN_LEN;
    let mut samples = Vec::with_capacity(n);
    let mut inputs = vec![0u8; CHUNK * width];
    let mut classes = vec![0u8; CHUNK];
    // Warm caches and branch predictors; these calls are not recorded.
    for _ in 0..1_000 {
        black_box((target.call)(&target.reference));
    }
    while samples.len() < n {
        let m = CHUNK.min(n - samples.len());
        for (k, class) in classes[..m].iter_mut().enumerate() {
            *class = (rng.next_u64() % 3) as u8;
            let row = &mut inputs[k * width..(k + 1) * width];
            row.copy_from_slice(&target.reference);
            for tok in row.chunks_exact_mut(TOKEN_LEN) {
                match *class {
                    1 => tok[0] ^= rng.nonzero(),
                    2 => tok[TOKEN_LEN - 1] ^= rng.nonzero(),
                    _ => {}
                }
            }
        }
        for k in 0..m {
            let input = &inputs[k * width..(k + 1) * width];
            let t0 = now();
            let r = (target.call)(black_box(input));
            let t1 = now();
            black_box(r);
            samples.push((classes[k], t1.wrapping_sub(t0)));
        }
    }
    samples
}

/// One target's report.
pub struct Report {
    pub name: &'static str,
    pub what: &'static str,
    pub pairs: Vec<PairResult>,
}

/// Measure and analyse the targets whose name contains `filter`.
pub fn run(n: usize, seed: u64, filter: Option<&str>) -> Vec<Report> {
    let mut rng = Rng::new(seed);
    let mut reports = Vec::new();
    for mut t in targets(&mut rng) {
        if filter.is_some_and(|f| !t.name.contains(f)) {
            continue;
        }
        let samples = measure(&mut t, n, &mut rng);
        reports.push(Report {
            name: t.name,
            what: t.what,
            pairs: analyse(&samples),
        });
    }
    reports
}

/// The pairs on which the leaky baseline must be flagged: `equal` and `last` both scan all 32
/// octets, so only the pairs with `first` differ.
pub fn baseline_must_leak(p: &PairResult) -> bool {
    p.a == 1 || p.b == 1
}

fn verdict(r: &Report, p: &PairResult) -> &'static str {
    match (r.name, p.leaks(), baseline_must_leak(p)) {
        ("leaky-loop", true, true) => "LEAK (expected)",
        ("leaky-loop", false, true) => "pass (baseline NOT flagged!)",
        ("leaky-loop", true, false) => "LEAK (result only: both scan every octet)",
        ("leaky-loop", false, false) => "pass (both scan every octet)",
        ("slice-eq", true, _) => "LEAK (info)",
        ("slice-eq", false, _) => "pass (info)",
        (_, true, _) => "LEAK",
        (_, false, _) => "pass",
    }
}

/// The table printed at the end (markdown, so it can go straight into SECURITY.md).
pub fn table(reports: &[Report]) -> String {
    let mut s = String::from(
        "| target | pair | n | median ticks | max abs t | verdict |\n|---|---|---:|---|---:|---|\n",
    );
    for r in reports {
        for p in &r.pairs {
            s.push_str(&format!(
                "| {} | {} | {} | {} / {} | {:.2} | {} |\n",
                r.name,
                p.name(),
                p.n,
                p.median_a,
                p.median_b,
                p.t,
                verdict(r, p)
            ));
        }
    }
    s
}

fn main() {
    let mut n: usize = 3_000_000;
    let mut seed: u64 = 6290;
    let mut filter: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => n = 20_000,
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--target" => filter = args.next(),
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => {
                println!(
                    "usage: cargo bench --bench ct_dudect -- [--quick] [--n N] [--target NAME] [--seed S]"
                );
                return;
            }
            other => {
                eprintln!("ct_dudect: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    let start = std::time::Instant::now();
    let reports = run(n, seed, filter.as_deref());
    println!(
        "dudect: {n} measurements per target, seed {seed}, {:.1} s, threshold |t| < {T_THRESHOLD}\n",
        start.elapsed().as_secs_f64()
    );
    for r in &reports {
        println!("- {}: {}", r.name, r.what);
    }
    println!("\n{}", table(&reports));
    let real_leaks = reports
        .iter()
        .filter(|r| r.name != "leaky-loop" && r.name != "slice-eq")
        .any(|r| r.pairs.iter().any(PairResult::leaks));
    let baseline_caught = reports.iter().filter(|r| r.name == "leaky-loop").all(|r| {
        r.pairs
            .iter()
            .filter(|p| baseline_must_leak(p))
            .all(PairResult::leaks)
    });
    println!(
        "real targets: {}; leaky baseline: {}",
        if real_leaks { "LEAK FOUND" } else { "all pass" },
        if baseline_caught {
            "flagged"
        } else {
            "NOT flagged"
        }
    );
    if real_leaks || !baseline_caught {
        std::process::exit(1);
    }
}
