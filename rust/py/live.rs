//! The serve loop's live check from Python: a native `SaTable`, or any object with
//! `contains_many(spi_i, spi_r) -> bool array` (a cluster store), asked once per received
//! batch with the GIL taken once for it.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::intern;
use pyo3::prelude::*;

use super::errors::InvalidArgument;
use super::table::PySaTable;
use crate::live::{LiveCheck, Unavailable};

/// What `_UdpServer(live=...)` reads per batch.
pub enum LiveSource {
    /// A native table, read-locked once per batch (no GIL).
    Table(Py<PySaTable>),
    /// An object with `contains_many`; any exception, or an answer of the wrong shape or
    /// type, fails the batch closed.
    Object(Py<PyAny>),
}

impl LiveSource {
    /// A table, or an object with a callable `contains_many`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything else.
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(t) = obj.cast::<PySaTable>() {
            return Ok(LiveSource::Table(t.clone().unbind()));
        }
        let has = obj
            .getattr(intern!(obj.py(), "contains_many"))
            .is_ok_and(|m| m.is_callable());
        if has {
            Ok(LiveSource::Object(obj.clone().unbind()))
        } else {
            Err(InvalidArgument::new_err(format!(
                "live must be an ikeqcd.SaTable or an object with contains_many(spi_i, spi_r), \
                 got {}",
                obj.get_type().name()?
            )))
        }
    }

    /// Whether this is an object asked through Python (not a native table).
    pub fn is_object(&self) -> bool {
        matches!(self, LiveSource::Object(_))
    }

    /// The check the serve loop calls.
    pub fn check(&self) -> &dyn LiveCheck {
        self
    }
}

impl LiveCheck for LiveSource {
    fn contains_batch(
        &self,
        spi_i: &[u64],
        spi_r: &[u64],
        live: &mut [bool],
    ) -> Result<(), Unavailable> {
        match self {
            LiveSource::Table(t) => t.get().inner.contains_batch(spi_i, spi_r, live),
            LiveSource::Object(obj) => Python::attach(|py| {
                let a = PyArray1::from_slice(py, spi_i);
                let b = PyArray1::from_slice(py, spi_r);
                let got = obj
                    .bind(py)
                    .call_method1(intern!(py, "contains_many"), (a, b))
                    .map_err(|_| Unavailable)?;
                let arr: PyReadonlyArray1<'_, bool> = got.extract().map_err(|_| Unavailable)?;
                let view = arr.as_array();
                if view.len() != live.len() {
                    return Err(Unavailable);
                }
                for (l, &v) in live.iter_mut().zip(view.iter()) {
                    *l = v;
                }
                Ok(())
            }),
        }
    }
}
