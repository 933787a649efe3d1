//! Bindings for `aead.rs`: batch AES-128-GCM over rows of a 2-D uint8 array (the simulator's
//! protected messages).

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use zeroize::Zeroizing;

use super::convert;
use super::detach::run_detached;
use super::errors::InvalidArray;
use crate::aead;

/// Opened rows and whether each authenticated.
type Opened<'py> = (Bound<'py, PyArray2<u8>>, Bound<'py, PyArray1<bool>>);

fn matrix(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<u8>, usize, usize)> {
    let arr: PyReadonlyArray2<'_, u8> = obj.extract().map_err(|_| {
        InvalidArray::new_err(format!("{name} must be a 2-D numpy array of dtype uint8"))
    })?;
    let shape = arr.shape();
    let (n, cols) = (shape[0], shape[1]);
    let slice = arr.as_slice().map_err(|_| {
        InvalidArray::new_err(format!(
            "{name} is not C-contiguous; pass np.ascontiguousarray({name})"
        ))
    })?;
    Ok((slice.to_vec(), n, cols))
}

fn keys_for(obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Zeroizing<Vec<u8>>> {
    let (keys, kn, kc) = matrix(obj, "keys")?;
    if kn != n || kc != aead::KEY_LEN {
        return Err(InvalidArray::new_err(format!(
            "keys must have shape ({n}, {}), got ({kn}, {kc})",
            aead::KEY_LEN
        )));
    }
    Ok(Zeroizing::new(keys))
}

/// Seal each row of `rows` (AAD, IV, plaintext, room for the ICV) under the key in the same
/// row of `keys`; returns the sealed rows.
#[pyfunction(name = "_aead_seal")]
#[pyo3(
    signature = (keys, rows, aad_len, /, *, threads = convert::Count::new(0)),
    text_signature = "(keys, rows, aad_len, /, *, threads=0)"
)]
pub fn aead_seal_py<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    rows: &Bound<'py, PyAny>,
    aad_len: usize,
    threads: convert::Count,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let threads = convert::threads(&threads)?;
    let (mut buf, n, cols) = matrix(rows, "rows")?;
    let keys = keys_for(keys, n)?;
    run_detached(py, n, || {
        aead::seal_rows(&keys, &mut buf, cols, aad_len, threads)
    })?;
    buf.into_pyarray(py).reshape([n, cols])
}

/// Open each row under its key; returns (rows with the plaintext in place, authenticated).
#[pyfunction(name = "_aead_open")]
#[pyo3(
    signature = (keys, rows, aad_len, /, *, threads = convert::Count::new(0)),
    text_signature = "(keys, rows, aad_len, /, *, threads=0)"
)]
pub fn aead_open_py<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    rows: &Bound<'py, PyAny>,
    aad_len: usize,
    threads: convert::Count,
) -> PyResult<Opened<'py>> {
    let threads = convert::threads(&threads)?;
    let (mut buf, n, cols) = matrix(rows, "rows")?;
    let keys = keys_for(keys, n)?;
    let mut ok = vec![false; n];
    run_detached(py, n, || {
        aead::open_rows(&keys, &mut buf, cols, aad_len, &mut ok, threads)
    })?;
    Ok((
        buf.into_pyarray(py).reshape([n, cols])?,
        ok.into_pyarray(py),
    ))
}
