//! Bindings for `pairmap.rs`: `ikeqcd._core._PairMap` (the token taker's per-SA bookkeeping).

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::convert;
use super::detach::run_detached;
use crate::error::CoreResult;
use crate::pairmap::PairMap;

/// SPI pair -> int (0..2**63-1), keyed hashing, batch operations over numpy arrays.
#[pyclass(frozen, name = "_PairMap", module = "ikeqcd._core")]
pub struct PyPairMap {
    inner: Mutex<PairMap>,
}

impl PyPairMap {
    fn lock(&self) -> MutexGuard<'_, PairMap> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch call that writes one int64 per pair.
    fn values<'py, F>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        f: F,
    ) -> PyResult<Bound<'py, PyArray1<i64>>>
    where
        F: FnOnce(&mut PairMap, &[u64], &[u64], &mut [i64]) -> CoreResult<()> + Send,
    {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let out = run_detached(py, a.len(), || {
            let mut out = vec![0i64; a.len()];
            f(&mut self.lock(), &a, &b, &mut out).map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }
}

#[pymethods]
impl PyPairMap {
    #[new]
    fn new() -> Self {
        PyPairMap {
            inner: Mutex::new(PairMap::new()),
        }
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    fn __bool__(&self) -> bool {
        !self.lock().is_empty()
    }

    /// The pair's value, or None.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn get(&self, spi_i: &Bound<'_, PyAny>, spi_r: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.lock().get(a, b))
    }

    /// Set the pair's value.
    #[pyo3(signature = (spi_i, spi_r, value, /))]
    fn set(&self, spi_i: &Bound<'_, PyAny>, spi_r: &Bound<'_, PyAny>, value: u64) -> PyResult<()> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        self.lock().insert(a, b, value)?;
        Ok(())
    }

    /// Remove the pair; its value, or None.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn pop(&self, spi_i: &Bound<'_, PyAny>, spi_r: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.lock().remove(a, b))
    }

    /// Set each pair's value, in order.
    #[pyo3(signature = (spi_i, spi_r, values, /))]
    fn set_many(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let v = convert::u64_vec(values, "values")?;
        Ok(run_detached(py, a.len(), || {
            self.lock().insert_batch(&a, &b, &v)
        })?)
    }

    /// Each pair's value as an int64 array, -1 where absent.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        self.values(py, spi_i, spi_r, |m, a, b, out| m.get_batch(a, b, out))
    }

    /// Remove each pair, in order: the values removed, -1 where there was none.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn pop_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        self.values(py, spi_i, spi_r, PairMap::remove_batch)
    }

    /// Remove each pair whose value equals ``values[k]``, in order; which ones were.
    #[pyo3(signature = (spi_i, spi_r, values, /))]
    fn pop_matching<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let v = convert::u64_vec(values, "values")?;
        let out = run_detached(py, a.len(), || {
            let mut out = vec![false; a.len()];
            self.lock()
                .remove_matching_batch(&a, &b, &v, &mut out)
                .map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// Remove every entry and give the memory back.
    fn clear(&self) {
        self.lock().clear();
    }

    /// Heap bytes held (an estimate).
    fn memory_bytes(&self) -> usize {
        self.lock().memory_bytes()
    }
}
