//! Bindings for `ratelimit.rs`: `ikeqcd.RateLimiter`.

use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::convert;
use super::errors::{InvalidArgument, InvalidPolicy};
use crate::clock::check_time;
use crate::ratelimit::RateLimiter;

/// Keyed token buckets with bounded memory (keys: an IPv4 address as an int, or the upper 64
/// bits of an IPv6 address, i.e. its /64 prefix).
#[pyclass(frozen, name = "RateLimiter", module = "ikeqcd._core")]
pub struct PyRateLimiter {
    inner: Mutex<RateLimiter>,
}

impl PyRateLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(
        signature = (rate, burst, /, *, max_keys = convert::Count::new(65536)),
        text_signature = "(rate, burst, /, *, max_keys=65536)"
    )]
    fn new(rate: f64, burst: f64, max_keys: convert::Count) -> PyResult<Self> {
        let max_keys = max_keys.value.ok_or_else(|| {
            InvalidPolicy::new_err(format!(
                "max_keys must be a positive count, got {}",
                max_keys.shown()
            ))
        })?;
        Ok(PyRateLimiter {
            inner: Mutex::new(RateLimiter::new(rate, burst, max_keys)?),
        })
    }

    /// Take one token for `key` at time `now`; True if allowed.
    #[pyo3(signature = (key, now, /))]
    fn allow(&self, key: &Bound<'_, PyAny>, now: f64) -> PyResult<bool> {
        let key = key.extract::<u64>().map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(key.py()) {
                InvalidArgument::new_err(format!("key must be an int in 0..2**64-1, got {key}"))
            } else {
                e
            }
        })?;
        check_time(now, "now")?;
        Ok(self.lock().allow(key, now))
    }

    /// `allow` for each key in order, all at time `now`.
    #[pyo3(signature = (keys, now, /))]
    fn allow_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        now: f64,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let keys = convert::u64_vec(keys, "keys")?;
        check_time(now, "now")?;
        let mut out = vec![false; keys.len()];
        self.lock().allow_many(&keys, now, &mut out);
        Ok(out.into_pyarray(py))
    }

    /// (allowed, refused) counts so far.
    #[getter]
    fn counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.allowed, g.refused)
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    fn __repr__(&self) -> String {
        let g = self.lock();
        format!(
            "RateLimiter(keys={}, allowed={}, refused={})",
            g.len(),
            g.allowed,
            g.refused
        )
    }
}

/// The rate-limit key of a source address given as its 4 or 16 raw octets (see
/// `crate::srckey`); the socket path computes the same key.
#[pyfunction(name = "_source_key")]
#[pyo3(signature = (octets, /))]
pub fn source_key_py(octets: &[u8]) -> u64 {
    crate::srckey::of_octets(octets)
}
