//! The one way batch entry points release the GIL.

use pyo3::prelude::*;

/// Batches of at least this many items run with the GIL released; smaller ones are faster
/// without the release/re-acquire round trip (measured with `benches/test_bench_api.py`).
pub const DETACH_THRESHOLD: usize = 256;

/// Run `f` detached from the interpreter when `n_items >= DETACH_THRESHOLD`.
/// `f` must not touch Python objects: it captures only Rust data (owned vectors, slices of
/// them, `&` references to core structs).
pub fn run_detached<T, F>(py: Python<'_>, n_items: usize, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    if n_items >= DETACH_THRESHOLD {
        py.detach(f)
    } else {
        f()
    }
}
