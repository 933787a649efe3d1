//! Data-parallel helper for the batch paths: split an output slice into chunks and run them
//! on rayon threads, or on the calling thread for small inputs / `threads == 1`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

/// Below this many items a batch runs on the calling thread (chosen by benchmark: splitting
/// smaller batches costs more in wake-ups than it gains).
pub const PAR_THRESHOLD: usize = 8192;
/// Most threads a batch call may ask for. Each distinct count gets its own pool, kept for the
/// life of the process, so an unbounded count would let one call spawn (and keep) any number
/// of OS threads; larger requests are clamped here and refused by the Python bindings.
pub const MAX_THREADS: usize = 256;
/// Items per parallel work unit.
const CHUNK_ITEMS: usize = 4096;

fn pool_for(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = pools
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = guard.get(&threads) {
        return Some(Arc::clone(p));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ikeqcd-{i}"))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    guard.insert(threads, Arc::clone(&pool));
    Some(pool)
}

/// How many threads a call with `threads` would use (0 = rayon's default: all cores, or
/// `RAYON_NUM_THREADS`).
#[must_use]
pub fn effective_threads(threads: usize) -> usize {
    if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads.min(MAX_THREADS)
    }
}

/// Run `f(first_item_index, out_chunk)` over `out`, which holds `stride` elements per item.
pub fn for_each_chunk<T, F>(out: &mut [T], stride: usize, threads: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let n_items = out.len().checked_div(stride).unwrap_or(0);
    if n_items < PAR_THRESHOLD || effective_threads(threads) <= 1 {
        f(0, out);
        return;
    }
    let work = |out: &mut [T]| {
        out.par_chunks_mut(CHUNK_ITEMS * stride)
            .enumerate()
            .for_each(|(ci, chunk)| f(ci * CHUNK_ITEMS, chunk));
    };
    if threads == 0 {
        work(out);
    } else if let Some(pool) = pool_for(threads.min(MAX_THREADS)) {
        pool.install(|| work(out));
    } else {
        f(0, out);
    }
}
