//! Bindings for `table.rs`: `ikeqcd.SaTable`.
//!
//! The table sits behind a `RwLock`. Batch calls take the lock inside the detached section;
//! a small call takes it attached when it is free, and waits for it detached otherwise, so a
//! long batch in one thread never holds up the interpreter. Nothing calls into Python while
//! holding the lock: arguments are converted before, results built after.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use numpy::{IntoPyArray, PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use zeroize::Zeroizing;

use super::convert;
use super::detach::{run_detached, DETACH_THRESHOLD};
use super::errors::{InvalidArgument, InvalidSpi, InvalidToken};
use crate::table::{Check, SaTable, RECEIVED_MAX};

/// The token taker's SA table: per IKE SA (SPI-I, SPI-R) the peer's QCD token(s) and the
/// last inbound and outbound traffic times. Safe to share between threads.
#[pyclass(frozen, name = "SaTable", module = "ikeqcd._core")]
pub struct PySaTable {
    pub(crate) inner: RwLock<SaTable>,
}

fn monotonic(py: Python<'_>) -> PyResult<f64> {
    static MONOTONIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MONOTONIC
        .get_or_try_init(py, || {
            py.import("time")
                .and_then(|m| m.getattr("monotonic"))
                .map(Bound::unbind)
        })?
        .call0(py)?
        .extract(py)
}

fn now_or_monotonic(py: Python<'_>, now: Option<f64>) -> PyResult<f64> {
    match now {
        Some(t) => Ok(t),
        None => monotonic(py),
    }
}

fn token_check<'py>(py: Python<'py>, c: Check) -> PyResult<Bound<'py, PyAny>> {
    static TOKEN_CHECK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    TOKEN_CHECK
        .get_or_try_init(py, || {
            py.import("ikeqcd.table")
                .and_then(|m| m.getattr("TokenCheck"))
                .map(Bound::unbind)
        })?
        .bind(py)
        .call1((c as i8,))
}

fn key_of(key: &Bound<'_, PyAny>) -> PyResult<(u64, u64)> {
    let bad = || {
        InvalidSpi::new_err(
            "an SaTable key is a tuple (spi_i, spi_r) of ints in 0..2**64-1, e.g. (a, b) in table",
        )
    };
    let t = key.cast::<PyTuple>().map_err(|_| bad())?;
    if t.len() != 2 {
        return Err(bad());
    }
    Ok((
        convert::spi(&t.get_item(0)?, "spi_i")?,
        convert::spi(&t.get_item(1)?, "spi_r")?,
    ))
}

fn received_tokens(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if let Some(one) = convert::bytes_like(obj) {
        return Ok(vec![one]);
    }
    let bad = || {
        InvalidToken::new_err(
            "tokens must be bytes or a sequence of 1 to 16 bytes objects (the received QCD tokens)",
        )
    };
    if obj.is_instance_of::<PyString>() {
        return Err(bad());
    }
    let mut out = Vec::new();
    for (k, item) in obj.try_iter().map_err(|_| bad())?.enumerate() {
        let item = item?;
        out.push(convert::bytes_like(&item).ok_or_else(|| {
            InvalidToken::new_err(format!(
                "received token {k} must be bytes, bytearray or memoryview"
            ))
        })?);
    }
    if out.len() > RECEIVED_MAX {
        return Err(InvalidToken::new_err(format!(
            "check takes 1 to {RECEIVED_MAX} received tokens, got {}",
            out.len()
        )));
    }
    Ok(out)
}

impl PySaTable {
    fn read(&self) -> RwLockReadGuard<'_, SaTable> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, SaTable> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` under the read lock: detached for batches of `n >= DETACH_THRESHOLD` items or
    /// when the lock is taken, attached otherwise.
    fn reading<T, F>(&self, py: Python<'_>, n: usize, f: F) -> T
    where
        F: FnOnce(&SaTable) -> T + Send,
        T: Send,
    {
        if n < DETACH_THRESHOLD {
            match self.inner.try_read() {
                Ok(g) => return f(&g),
                Err(TryLockError::Poisoned(p)) => return f(&p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        run_detached(py, n.max(DETACH_THRESHOLD), || f(&self.read()))
    }

    /// As [`reading`](Self::reading), under the write lock.
    fn writing<T, F>(&self, py: Python<'_>, n: usize, f: F) -> T
    where
        F: FnOnce(&mut SaTable) -> T + Send,
        T: Send,
    {
        if n < DETACH_THRESHOLD {
            match self.inner.try_write() {
                Ok(mut g) => return f(&mut g),
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        run_detached(py, n.max(DETACH_THRESHOLD), || f(&mut self.write()))
    }
}

#[pymethods]
impl PySaTable {
    #[new]
    #[pyo3(signature = (*, history = 1, capacity = 0))]
    fn new(history: i64, capacity: i64) -> PyResult<Self> {
        let capacity = usize::try_from(capacity).map_err(|_| {
            InvalidArgument::new_err(format!("capacity must be >= 0 SAs, got {capacity}"))
        })?;
        // A negative history becomes 0, which the core rejects with the allowed range.
        let history = usize::try_from(history).unwrap_or(0);
        Ok(PySaTable {
            inner: RwLock::new(SaTable::new(history, capacity)?),
        })
    }

    /// Tokens kept per SA (1..4): the newest and up to three older ones.
    #[getter]
    fn history(&self, py: Python<'_>) -> usize {
        self.reading(py, 1, SaTable::history)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.reading(py, 1, SaTable::len)
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (a, b) = key_of(key)?;
        Ok(self.reading(py, 1, |t| t.contains(a, b)))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (n, h) = self.reading(py, 1, |t| (t.len(), t.history()));
        format!("SaTable(len={n}, history={h})")
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "SaTable holds peers' QCD tokens and cannot be pickled; export with to_arrays()",
        ))
    }

    /// Store the peer's token for an SA, or replace it (a protected gratuitous token).
    #[pyo3(signature = (spi_i, spi_r, token, /, *, now = None))]
    fn insert(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        token: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<bool> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        let tok = Zeroizing::new(convert::bytes_like(token).ok_or_else(|| {
            InvalidToken::new_err("token must be bytes, bytearray or memoryview")
        })?);
        let now = now_or_monotonic(py, now)?;
        Ok(self.writing(py, 1, |t| t.insert(a, b, &tok, now))?)
    }

    /// Delete an SA and its tokens; False if there was none.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn remove(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.writing(py, 1, |t| t.remove(a, b)))
    }

    /// Is there an SA with these SPIs? Same as ``(spi_i, spi_r) in table``.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn contains(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.reading(py, 1, |t| t.contains(a, b)))
    }

    /// Compare received tokens with the SA's stored ones in constant time.
    #[pyo3(signature = (spi_i, spi_r, tokens, /))]
    fn check<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        let received = received_tokens(tokens)?;
        let refs: Vec<&[u8]> = received.iter().map(Vec::as_slice).collect();
        let c = self.reading(py, 1, |t| t.check(a, b, &refs))?;
        token_check(py, c)
    }

    /// Batch insert: row k of the 2-D uint8 ``tokens`` for pair k. Returns how many SAs were new.
    #[pyo3(signature = (spi_i, spi_r, tokens, /, *, now = None))]
    fn insert_many(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        tokens: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<usize> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let (toks, width) = convert::u8_matrix(tokens, "tokens", a.len())?;
        let toks = Zeroizing::new(toks);
        let now = now_or_monotonic(py, now)?;
        Ok(self.writing(py, a.len(), |t| t.insert_batch(&a, &b, &toks, width, now))?)
    }

    /// Batch remove: a bool array, True where the pair was there.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn remove_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let out = self.writing(py, a.len(), |t| {
            let mut out = vec![false; a.len()];
            t.remove_batch(&a, &b, &mut out).map(|_| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// Batch membership: a bool array.
    #[pyo3(
        signature = (spi_i, spi_r, /, *, threads = convert::Count::new(0)),
        text_signature = "($self, spi_i, spi_r, /, *, threads=0)"
    )]
    fn contains_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        threads: convert::Count,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let threads = convert::threads(&threads)?;
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let out = self.reading(py, a.len(), |t| {
            let mut out = vec![false; a.len()];
            t.contains_batch(&a, &b, &mut out, threads).map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// Batch check: row k of ``tokens`` against pair k; an int8 array of TokenCheck codes.
    #[pyo3(
        signature = (spi_i, spi_r, tokens, /, *, threads = convert::Count::new(0)),
        text_signature = "($self, spi_i, spi_r, tokens, /, *, threads=0)"
    )]
    fn check_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        threads: convert::Count,
    ) -> PyResult<Bound<'py, PyArray1<i8>>> {
        let threads = convert::threads(&threads)?;
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let (toks, width) = convert::u8_matrix(tokens, "tokens", a.len())?;
        let out = self.reading(py, a.len(), |t| {
            let mut out = vec![0i8; a.len()];
            t.check_batch(&a, &b, &toks, width, &mut out, threads)
                .map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// Record inbound or outbound traffic for one SA at ``now``; False if there is no such SA.
    #[pyo3(signature = (spi_i, spi_r, now, /, *, inbound))]
    fn touch(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        now: f64,
        inbound: bool,
    ) -> PyResult<bool> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.writing(py, 1, |t| t.touch(a, b, now, inbound))?)
    }

    /// Record inbound or outbound traffic at ``now`` for each pair; returns how many were found.
    #[pyo3(signature = (spi_i, spi_r, now, /, *, inbound))]
    fn touch_many(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        now: f64,
        inbound: bool,
    ) -> PyResult<usize> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        Ok(self.writing(py, a.len(), |t| t.touch_batch(&a, &b, now, inbound))?)
    }

    /// SPI pairs due for a liveness check at ``now``.
    #[pyo3(signature = (now, /, *, idle))]
    fn due_liveness<'py>(
        &self,
        py: Python<'py>,
        now: f64,
        idle: f64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (a, b) = self.reading(py, DETACH_THRESHOLD, |t| t.due_liveness(now, idle))?;
        PyTuple::new(py, [a.into_pyarray(py), b.into_pyarray(py)])
    }

    /// Whether each pair is in the table and due for a liveness check at ``now``.
    #[pyo3(signature = (spi_i, spi_r, now, /, *, idle))]
    fn due_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        now: f64,
        idle: f64,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let out = self.reading(py, a.len(), |t| {
            let mut out = vec![false; a.len()];
            t.due_batch(&a, &b, now, idle, &mut out).map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// ``(last inbound, last outbound)`` of an SA in seconds, or None.
    #[pyo3(signature = (spi_i, spi_r, /))]
    fn timestamps(
        &self,
        py: Python<'_>,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
    ) -> PyResult<Option<(f64, f64)>> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        Ok(self.reading(py, 1, |t| t.timestamps(a, b)))
    }

    /// Bytes held by the table (index capacity and record pages).
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.reading(py, 1, SaTable::memory_bytes)
    }

    /// Remove every SA and zero every token.
    fn clear(&self, py: Python<'_>) {
        self.writing(py, DETACH_THRESHOLD, SaTable::clear);
    }

    /// Everything in the table as numpy arrays (see the stub for the keys).
    fn to_arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (h, mut e) = self.reading(py, DETACH_THRESHOLD, |t| (t.history(), t.export()));
        let n = e.spi_i.len();
        let d = PyDict::new(py);
        d.set_item("spi_i", std::mem::take(&mut e.spi_i).into_pyarray(py))?;
        d.set_item("spi_r", std::mem::take(&mut e.spi_r).into_pyarray(py))?;
        d.set_item("last_in", std::mem::take(&mut e.last_in).into_pyarray(py))?;
        d.set_item("last_out", std::mem::take(&mut e.last_out).into_pyarray(py))?;
        d.set_item(
            "token_len",
            std::mem::take(&mut e.token_len)
                .into_pyarray(py)
                .reshape([n, h])?,
        )?;
        d.set_item(
            "tokens",
            std::mem::take(&mut *e.tokens)
                .into_pyarray(py)
                .reshape([n, h, e.width])?,
        )?;
        Ok(d)
    }

    /// ``(mean, longest)`` probe length of the index: a test hook for adversarial SPIs.
    fn _probe_lengths(&self, py: Python<'_>) -> (f64, usize) {
        self.reading(py, DETACH_THRESHOLD, SaTable::probe_lengths)
    }
}
