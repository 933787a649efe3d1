//! The default test run's short version of `benches/ct_dudect.rs` (a second or two): the
//! harness runs over every target, and the deliberately leaky byte loop is flagged far above
//! the threshold. The verdicts on the real targets come from the long run recorded in
//! SECURITY.md (`cargo bench --bench ct_dudect`): a few thousand measurements on a loaded
//! 2-core machine make their |t| too noisy to assert on here.

#[path = "../benches/ct_dudect.rs"]
mod ct_dudect;

use ct_dudect::{baseline_must_leak, run, T_THRESHOLD};

#[test]
fn leaky_baseline_is_flagged_and_every_target_runs() {
    let reports = run(20_000, 6290, None);
    let names: Vec<&str> = reports.iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "leaky-loop",
            "slice-eq",
            "ct::eq",
            "TokenMaker::verify",
            "TokenMaker::verify_batch",
            "SaTable::check",
            "SaTable::check_batch"
        ]
    );
    for r in &reports {
        assert_eq!(r.pairs.len(), 3, "{}", r.name);
        for p in &r.pairs {
            assert!(p.n > 10_000 && p.t.is_finite(), "{} {}", r.name, p.name());
        }
    }
    let leaky = &reports[0];
    for p in leaky.pairs.iter().filter(|p| baseline_must_leak(p)) {
        // Typically |t| > 100 here; 4x the threshold leaves room for a very busy machine.
        assert!(
            p.t > 4.0 * T_THRESHOLD,
            "leaky baseline not flagged on {}: |t| = {:.2}",
            p.name(),
            p.t
        );
    }
    println!("{}", ct_dudect::table(&reports));
}
