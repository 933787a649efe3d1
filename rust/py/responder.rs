//! Bindings for `responder.rs`: the native half of `ikeqcd.TokenResponder`.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::detach::run_detached;
use super::errors::InvalidArray;
use super::token::PyTokenMaker;
use super::wire::{datagram_arg, datagrams_arg};
use crate::responder::{self, Reason};
use crate::token::TokenMaker;

/// The native responder: classification and reply building for one `TokenMaker`. Use
/// `ikeqcd.TokenResponder`, which adds the live-SA check, the policy seam and counters.
#[pyclass(frozen, name = "_Responder", module = "ikeqcd._core")]
pub struct PyResponder {
    maker: TokenMaker,
    nat_t: Option<bool>,
}

fn reply_list<'py>(
    py: Python<'py>,
    reasons: &[i8],
    out: &[u8],
    ends: &[usize],
) -> PyResult<Bound<'py, PyList>> {
    let mut start = 0usize;
    PyList::new(
        py,
        reasons.iter().zip(ends).map(|(&r, &end)| {
            let item = if end > start {
                Some(PyBytes::new(py, &out[start..end]))
            } else {
                None
            };
            debug_assert_eq!(
                item.is_some(),
                Reason::from_code(r).is_some_and(Reason::sends)
            );
            start = end;
            item
        }),
    )
}

#[pymethods]
impl PyResponder {
    #[new]
    #[pyo3(signature = (maker, /, *, nat_t = None))]
    fn new(maker: &Bound<'_, PyTokenMaker>, nat_t: Option<bool>) -> Self {
        PyResponder {
            maker: maker.get().inner.clone(),
            nat_t,
        }
    }

    /// Octets of one full reply (without / with the non-ESP marker).
    #[getter]
    fn reply_len(&self) -> (usize, usize) {
        (
            responder::reply_len(&self.maker, false),
            responder::reply_len(&self.maker, true),
        )
    }

    /// Classify and answer one datagram with no live set: (reply or None, reason code).
    #[pyo3(signature = (datagram, /))]
    fn respond<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, i8)> {
        let d = datagram_arg(datagram, "datagram")?;
        let mut out = Vec::new();
        let r = responder::respond(&self.maker, d.as_ref(), self.nat_t, |_, _| false, &mut out)?;
        let reply = (!out.is_empty()).then(|| PyBytes::new(py, &out));
        Ok((reply, r.code()))
    }

    /// Classify one datagram: (reason code, SPI-I, SPI-R); code 0 = a candidate.
    #[pyo3(signature = (datagram, /))]
    fn classify(&self, datagram: &Bound<'_, PyAny>) -> PyResult<(i8, u64, u64)> {
        let d = datagram_arg(datagram, "datagram")?;
        Ok(match responder::classify(d.as_ref(), self.nat_t) {
            Ok(c) => (Reason::Replied.code(), c.header.spi_i, c.header.spi_r),
            Err(r) => (r.code(), 0, 0),
        })
    }

    /// Build what `decision` asks for (0 = full reply, 10 = bare INVALID_IKE_SPI, other =
    /// nothing) for one datagram: (reply or None, final reason code).
    #[pyo3(signature = (datagram, decision, /))]
    fn build<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
        decision: i8,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, i8)> {
        let d = datagram_arg(datagram, "datagram")?;
        let Some(dec) = Reason::from_code(decision) else {
            return Ok((None, decision));
        };
        if !dec.sends() {
            return Ok((None, decision));
        }
        let mut out = Vec::new();
        let r = responder::build_one(&self.maker, d.as_ref(), self.nat_t, dec, &mut out)?;
        let reply = (!out.is_empty()).then(|| PyBytes::new(py, &out));
        Ok((reply, r.code()))
    }

    /// Classify and answer a batch with no live set: (list of replies or None, int8 reasons).
    #[pyo3(signature = (datagrams, /))]
    fn respond_many<'py>(
        &self,
        py: Python<'py>,
        datagrams: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let ds = datagrams_arg(datagrams)?;
        let n = ds.len();
        let (maker, nat_t) = (&self.maker, self.nat_t);
        let (reasons, out, ends) = run_detached(py, n, || {
            let mut reasons = vec![0i8; n];
            let mut ends = vec![0usize; n];
            let mut out = Vec::with_capacity(n * responder::reply_len(maker, true));
            responder::respond_batch(
                maker,
                &ds,
                nat_t,
                |_, _| false,
                &mut reasons,
                &mut out,
                &mut ends,
            )
            .map(|()| (reasons, out, ends))
        })?;
        drop(ds);
        let list = reply_list(py, &reasons, &out, &ends)?;
        (list, reasons.into_pyarray(py)).into_pyobject(py)
    }

    /// Pass 1 over a batch: (int8 reasons with 0 = candidate, uint64 SPI-I, uint64 SPI-R).
    #[pyo3(signature = (datagrams, /))]
    fn classify_many<'py>(
        &self,
        py: Python<'py>,
        datagrams: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let ds = datagrams_arg(datagrams)?;
        let n = ds.len();
        let nat_t = self.nat_t;
        let (reasons, a, b) = run_detached(py, n, || {
            let mut reasons = vec![0i8; n];
            let (mut a, mut b) = (vec![0u64; n], vec![0u64; n]);
            responder::classify_batch(&ds, nat_t, &mut reasons, &mut a, &mut b)
                .map(|()| (reasons, a, b))
        })?;
        drop(ds);
        (
            reasons.into_pyarray(py),
            a.into_pyarray(py),
            b.into_pyarray(py),
        )
            .into_pyobject(py)
    }

    /// Pass 2 over a batch: build what each decision asks for (see `build`); returns (list of
    /// replies or None, final int8 reasons).
    #[pyo3(signature = (datagrams, decisions, /))]
    fn build_many<'py>(
        &self,
        py: Python<'py>,
        datagrams: &Bound<'py, PyAny>,
        decisions: PyReadonlyArray1<'py, i8>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyArray1<i8>>)> {
        let ds = datagrams_arg(datagrams)?;
        let n = ds.len();
        let mut reasons = decisions
            .as_slice()
            .map_err(|_| InvalidArray::new_err("decisions must be a C-contiguous int8 array"))?
            .to_vec();
        if reasons.len() != n {
            return Err(InvalidArray::new_err(format!(
                "{n} datagrams but {} decisions",
                reasons.len()
            )));
        }
        let (maker, nat_t) = (&self.maker, self.nat_t);
        let (reasons, out, ends) = run_detached(py, n, || {
            let mut ends = vec![0usize; n];
            let mut out = Vec::new();
            responder::build_batch(maker, &ds, nat_t, &mut reasons, &mut out, &mut ends)
                .map(|()| (reasons, out, ends))
        })?;
        drop(ds);
        let list = reply_list(py, &reasons, &out, &ends)?;
        Ok((list, reasons.into_pyarray(py)))
    }

    fn __repr__(&self) -> String {
        format!("_Responder({:?}, nat_t={:?})", self.maker, self.nat_t)
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "a responder holds secrets and cannot be pickled",
        ))
    }
}

/// The reason names in code order (the Python `Reason` enum is checked against this).
#[pyfunction(name = "_reason_names")]
pub fn reason_names_py() -> Vec<&'static str> {
    Reason::ALL.iter().map(|r| r.name()).collect()
}
