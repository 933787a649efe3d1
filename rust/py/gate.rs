//! Bindings for `gate.rs`: the private `_MakerGate` used by `ikeqcd.TokenResponder`.

use std::sync::Mutex;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;

use super::convert;
use super::errors::InvalidPolicy;
use crate::gate::{Fallback, GateConfig, MakerGate};

/// The maker's reply policy on the hot path (built from a `MakerPolicy`).
#[pyclass(frozen, name = "_MakerGate", module = "ikeqcd._core")]
pub struct PyMakerGate {
    pub(crate) inner: Mutex<MakerGate>,
}

#[pymethods]
impl PyMakerGate {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, enabled, per_source_rate, per_source_burst, global_rate, global_burst, bare_rate, fallback, window_end, max_sources))]
    fn new(
        enabled: bool,
        per_source_rate: f64,
        per_source_burst: f64,
        global_rate: f64,
        global_burst: f64,
        bare_rate: f64,
        fallback: &str,
        window_end: Option<f64>,
        max_sources: usize,
    ) -> PyResult<Self> {
        let fallback = match fallback {
            "bare" => Fallback::Bare,
            "silence" => Fallback::Silence,
            other => {
                return Err(InvalidPolicy::new_err(format!(
                    "fallback must be 'bare' or 'silence', got {other:?}"
                )))
            }
        };
        let cfg = GateConfig {
            enabled,
            per_source: (per_source_rate, per_source_burst),
            global: (global_rate, global_burst),
            bare_rate,
            fallback,
            window_end,
            max_sources,
        };
        Ok(PyMakerGate {
            inner: Mutex::new(MakerGate::new(cfg)?),
        })
    }

    /// Decide every `REPLIED` entry of `reasons` (int8, modified in place) for sources `keys`.
    #[pyo3(signature = (reasons, keys, now, /))]
    fn decide_many(
        &self,
        reasons: &Bound<'_, PyArray1<i8>>,
        keys: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<()> {
        let keys = convert::u64_vec(keys, "keys")?;
        crate::clock::check_time(now, "now")?;
        let mut rw = reasons.try_readwrite().map_err(|e| {
            InvalidPolicy::new_err(format!("reasons must be a writable int8 array: {e}"))
        })?;
        let slice = rw
            .as_slice_mut()
            .map_err(|_| InvalidPolicy::new_err("reasons must be C-contiguous"))?;
        if slice.len() != keys.len() {
            return Err(InvalidPolicy::new_err(format!(
                "reasons has {} entries, keys {}",
                slice.len(),
                keys.len()
            )));
        }
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.decide_batch(slice, &keys, now);
        Ok(())
    }

    /// Per-source buckets currently held.
    #[getter]
    fn sources_tracked(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sources_tracked()
    }
}
