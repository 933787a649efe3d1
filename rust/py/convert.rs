//! Conversions at the Python boundary. Strict and dull: numpy arrays must already have the
//! right dtype, dimensionality and C-contiguity (the Python layer does friendly coercion), and
//! every failure names the argument and says what to pass instead.
//!
//! Array inputs are *copied* into Rust vectors before the GIL is released, so another Python
//! thread writing to the same array during a call cannot race the computation.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::errors::{InvalidAddress, InvalidArray, InvalidSpi};

fn describe(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    match obj.getattr("dtype") {
        Ok(dt) => format!("{ty} of dtype {dt}"),
        Err(_) => ty,
    }
}

/// An SPI given as a Python int in `0..2**64`.
pub fn spi(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    obj.extract::<u64>().map_err(|_| {
        let shown = obj
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string());
        InvalidSpi::new_err(format!(
            "{name} must be an int in 0..2**64-1 (the SPI's 8 octets read big-endian), got {shown}"
        ))
    })
}

/// A 1-D C-contiguous `uint64` array, copied.
pub fn u64_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u64>> {
    let arr: PyReadonlyArray1<'_, u64> = obj.extract().map_err(|_| {
        InvalidArray::new_err(format!(
            "{name} must be a 1-D numpy array of dtype uint64, got {}; convert with np.asarray({name}, dtype=np.uint64)",
            describe(obj)
        ))
    })?;
    let slice = arr.as_slice().map_err(|_| {
        InvalidArray::new_err(format!(
            "{name} is not C-contiguous; pass np.ascontiguousarray({name})"
        ))
    })?;
    Ok(slice.to_vec())
}

/// Two equal-length SPI arrays.
pub fn spi_pair(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<(Vec<u64>, Vec<u64>)> {
    let a = u64_vec(a, "spi_i")?;
    let b = u64_vec(b, "spi_r")?;
    if a.len() != b.len() {
        return Err(InvalidArray::new_err(format!(
            "spi_i and spi_r must have the same length, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    Ok((a, b))
}

/// A 2-D C-contiguous `uint8` array of `rows` rows, copied; returns (data, columns).
pub fn u8_matrix(obj: &Bound<'_, PyAny>, name: &str, rows: usize) -> PyResult<(Vec<u8>, usize)> {
    let arr: PyReadonlyArray2<'_, u8> = obj.extract().map_err(|_| {
        InvalidArray::new_err(format!(
            "{name} must be a 2-D numpy array of dtype uint8 (one token per row), got {}",
            describe(obj)
        ))
    })?;
    let shape = arr.shape();
    if shape[0] != rows {
        return Err(InvalidArray::new_err(format!(
            "{name} has {} rows but the SPI arrays have {rows} entries",
            shape[0]
        )));
    }
    let cols = shape[1];
    // `as_slice` accepts Fortran order too, which would scramble the rows: demand C order.
    let slice = arr
        .as_slice()
        .ok()
        .filter(|_| arr.is_c_contiguous())
        .ok_or_else(|| {
            InvalidArray::new_err(format!(
                "{name} is not C-contiguous; pass np.ascontiguousarray({name})"
            ))
        })?;
    Ok((slice.to_vec(), cols))
}

/// Octets from `bytes`, `bytearray` or `memoryview`.
pub fn bytes_like(obj: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Some(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Some(b.to_vec());
    }
    if obj.is_instance_of::<PyMemoryView>() {
        return obj
            .call_method0("tobytes")
            .ok()?
            .cast::<PyBytes>()
            .ok()
            .map(|b| b.as_bytes().to_vec());
    }
    None
}

/// A §5.2 taker address: `None`, an `ipaddress` object, or its 4/16 packed octets.
pub fn address(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u8>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    let raw = match bytes_like(obj) {
        Some(b) => Some(b),
        None => obj.getattr("packed").ok().and_then(|p| bytes_like(&p)),
    };
    match raw {
        Some(b) if b.len() == 4 || b.len() == 16 => Ok(b),
        Some(b) => Err(InvalidAddress::new_err(format!(
            "address must be 4 octets (IPv4) or 16 octets (IPv6), got {}",
            b.len()
        ))),
        None => Err(InvalidAddress::new_err(format!(
            "address must be an ipaddress.IPv4Address/IPv6Address or its packed bytes, got {}",
            describe(obj)
        ))),
    }
}

/// A non-negative int argument (an index, a count, a length) that never raises
/// `OverflowError`: an int outside `0..=usize::MAX` (negative, or huge) arrives as
/// `value == None`, and the method rejects it with the argument's documented error class.
/// Anything that is not an int raises `TypeError`, as a plain `usize` parameter would.
pub struct Count {
    /// The value, or `None` when it is out of range.
    pub value: Option<usize>,
    shown: String,
}

impl Count {
    /// A default value.
    pub const fn new(v: usize) -> Self {
        Count {
            value: Some(v),
            shown: String::new(),
        }
    }

    /// The value as Python showed it (for error messages).
    pub fn shown(&self) -> String {
        self.value
            .map_or_else(|| self.shown.clone(), |v| v.to_string())
    }

    /// The value if it lies in `lo..=hi`, else `err(message)`.
    pub fn within(
        &self,
        lo: usize,
        hi: usize,
        err: impl FnOnce(String) -> PyErr,
        what: &str,
    ) -> PyResult<usize> {
        match self.value {
            Some(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(err(format!(
                "{what} must be {lo}..={hi}, got {}",
                self.shown()
            ))),
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Count {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<usize>() {
            Ok(v) => Ok(Count::new(v)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => {
                Ok(Count {
                    value: None,
                    shown: obj
                        .repr()
                        .map_or_else(|_| "?".to_owned(), |r| r.to_string()),
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// The `threads` option of the batch methods: 0 (all cores) ..= `par::MAX_THREADS`.
pub fn threads(c: &Count) -> PyResult<usize> {
    c.within(
        0,
        crate::par::MAX_THREADS,
        super::errors::InvalidArgument::new_err,
        "threads (0 = all cores)",
    )
}
