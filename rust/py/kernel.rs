//! Binding for `select.rs`: `ikeqcd._core.kernel_info()`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The SHA-256 kernel the HMAC-SHA-256 batch path uses in this process (chosen on first use),
/// how it was chosen, and the calibration rates (tokens/s) it was chosen from.
#[pyfunction]
#[pyo3(name = "kernel_info")]
pub fn kernel_info_py(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let sel = py.detach(crate::select::selection);
    let d = PyDict::new(py);
    d.set_item("kernel", sel.kernel.name())?;
    let width = match sel.kernel {
        crate::select::Sha256Kernel::ShaNi(w) => w,
        crate::select::Sha256Kernel::Avx2 => crate::avx2::LANES,
        _ => 1,
    };
    d.set_item("width", width)?;
    d.set_item("source", sel.source)?;
    d.set_item("note", &sel.note)?;
    d.set_item("sha_ni", crate::shani::Lanes::new().is_some())?;
    d.set_item("avx2", crate::avx2::Avx2::new().is_some())?;
    let cal = PyDict::new(py);
    for (k, rate) in &sel.calibration {
        cal.set_item(k.name(), *rate)?;
    }
    d.set_item("calibration", cal)?;
    Ok(d)
}
