//! Bindings for `token.rs`: `ikeqcd.TokenMaker` and the `_hmac` known-answer hook.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use zeroize::Zeroizing;

use super::convert;
use super::detach::run_detached;
use super::errors::{InvalidGeneration, InvalidSecret, InvalidToken, InvalidTokenLength};
use crate::token::{Algorithm, TokenMaker};

/// Derives and verifies QCD tokens (RFC 6290 §5.1): HMAC of SPI-I || SPI-R [|| address]
/// under a secret, one secret per generation (index 0 current, up to 3 older ones).
#[pyclass(frozen, name = "TokenMaker", module = "ikeqcd._core")]
pub struct PyTokenMaker {
    pub(crate) inner: TokenMaker,
}

fn secrets_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Zeroizing<Vec<u8>>>> {
    if let Some(one) = convert::bytes_like(obj) {
        return Ok(vec![Zeroizing::new(one)]);
    }
    if obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(InvalidSecret::new_err(
            "secrets must be bytes (or a sequence of bytes), not str",
        ));
    }
    let iter = obj.try_iter().map_err(|_| {
        InvalidSecret::new_err("secrets must be bytes or a sequence of 1 to 4 bytes objects")
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        let b = convert::bytes_like(&item)
            .ok_or_else(|| InvalidSecret::new_err(format!("secret {i} must be bytes")))?;
        out.push(Zeroizing::new(b));
        if out.len() > crate::token::MAX_GENERATIONS {
            break; // the core reports the count
        }
    }
    Ok(out)
}

impl PyTokenMaker {
    fn generation(&self, g: &convert::Count) -> PyResult<usize> {
        let n = self.inner.generations();
        g.value.filter(|&v| v < n).ok_or_else(|| {
            InvalidGeneration::new_err(format!(
                "generation {} does not exist: this maker has {n} (0..={})",
                g.shown(),
                n - 1
            ))
        })
    }
}

#[pymethods]
impl PyTokenMaker {
    #[new]
    #[pyo3(signature = (secrets, /, *, algorithm = "hmac-sha256", token_len = None))]
    fn new(
        secrets: &Bound<'_, PyAny>,
        algorithm: &str,
        token_len: Option<convert::Count>,
    ) -> PyResult<Self> {
        let alg = Algorithm::parse(algorithm)?;
        let token_len = match token_len {
            None => None,
            Some(c) => Some(c.value.ok_or_else(|| {
                InvalidTokenLength::new_err(format!(
                    "token_len {} is not possible for {}: use 16..={}",
                    c.shown(),
                    alg.name(),
                    alg.digest_len()
                ))
            })?),
        };
        let owned = secrets_from(secrets)?;
        let refs: Vec<&[u8]> = owned.iter().map(|s| s.as_slice()).collect();
        Ok(PyTokenMaker {
            inner: TokenMaker::new(&refs, alg, token_len)?,
        })
    }

    /// The HMAC algorithm name.
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    /// Token length in octets.
    #[getter]
    fn token_len(&self) -> usize {
        self.inner.token_len()
    }

    /// Number of secret generations (1..4).
    #[getter]
    fn generations(&self) -> usize {
        self.inner.generations()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenMaker(algorithm='{}', token_len={}, generations={})",
            self.inner.algorithm().name(),
            self.inner.token_len(),
            self.inner.generations()
        )
    }

    /// One token for one SPI pair.
    #[pyo3(
        signature = (spi_i, spi_r, /, *, generation = convert::Count::new(0), address = None),
        text_signature = "($self, spi_i, spi_r, /, *, generation=0, address=None)"
    )]
    fn token<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        generation: convert::Count,
        address: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let generation = self.generation(&generation)?;
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        let addr = convert::address(address)?;
        PyBytes::new_with(py, self.inner.token_len(), |buf| {
            self.inner
                .derive_into(generation, a, b, &addr, buf)
                .map_err(PyErr::from)
        })
    }

    /// One token per generation, current first (what an unprotected reply carries).
    #[pyo3(signature = (spi_i, spi_r, /, *, address = None))]
    fn all_tokens<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        address: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        let addr = convert::address(address)?;
        let all = self.inner.derive_all(a, b, &addr)?;
        PyList::new(py, all.iter().map(|t| PyBytes::new(py, t)))
    }

    /// Tokens for arrays of SPI pairs: an (n, token_len) uint8 array.
    #[pyo3(
        signature = (spi_i, spi_r, /, *, generation = convert::Count::new(0), threads = convert::Count::new(0)),
        text_signature = "($self, spi_i, spi_r, /, *, generation=0, threads=0)"
    )]
    fn tokens<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        generation: convert::Count,
        threads: convert::Count,
    ) -> PyResult<Bound<'py, PyArray2<u8>>> {
        let generation = self.generation(&generation)?;
        let threads = convert::threads(&threads)?;
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let n = a.len();
        let tl = self.inner.token_len();
        let inner = &self.inner;
        let out = run_detached(py, n, || {
            let mut out = vec![0u8; n * tl];
            inner
                .derive_batch(generation, &a, &b, &mut out, threads)
                .map(|()| out)
        })?;
        out.into_pyarray(py).reshape([n, tl])
    }

    /// Does `token` match this SPI pair under any generation? Constant time in the token.
    #[pyo3(signature = (spi_i, spi_r, token, /, *, address = None))]
    fn verify(
        &self,
        spi_i: &Bound<'_, PyAny>,
        spi_r: &Bound<'_, PyAny>,
        token: &Bound<'_, PyAny>,
        address: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let a = convert::spi(spi_i, "spi_i")?;
        let b = convert::spi(spi_r, "spi_r")?;
        let tok = Zeroizing::new(convert::bytes_like(token).ok_or_else(|| {
            InvalidToken::new_err("token must be bytes, bytearray or memoryview")
        })?);
        let addr = convert::address(address)?;
        Ok(self.inner.verify(a, b, &tok, &addr)?)
    }

    /// Batch verification: a bool array, True where row k of `tokens` matches pair k.
    #[pyo3(
        signature = (spi_i, spi_r, tokens, /, *, threads = convert::Count::new(0)),
        text_signature = "($self, spi_i, spi_r, tokens, /, *, threads=0)"
    )]
    fn verify_many<'py>(
        &self,
        py: Python<'py>,
        spi_i: &Bound<'py, PyAny>,
        spi_r: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        threads: convert::Count,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let threads = convert::threads(&threads)?;
        let (a, b) = convert::spi_pair(spi_i, spi_r)?;
        let n = a.len();
        let (toks, cols) = convert::u8_matrix(tokens, "tokens", n)?;
        let toks = Zeroizing::new(toks);
        if cols != self.inner.token_len() {
            return Err(InvalidToken::new_err(format!(
                "tokens has rows of {cols} octets but this maker's token_len is {}",
                self.inner.token_len()
            )));
        }
        let inner = &self.inner;
        let out = run_detached(py, n, || {
            let mut out = vec![false; n];
            inner
                .verify_batch(&a, &b, &toks, &mut out, threads)
                .map(|()| out)
        })?;
        Ok(out.into_pyarray(py))
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "TokenMaker holds secrets and cannot be pickled; rebuild it from a SecretStore",
        ))
    }
}

/// HMAC of `data` under `key` (full digest); the known-answer-test hook, any key length.
#[pyfunction(name = "_hmac")]
#[pyo3(signature = (algorithm, key, data, /))]
pub fn hmac_py<'py>(
    py: Python<'py>,
    algorithm: &str,
    key: &[u8],
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let alg = Algorithm::parse(algorithm)?;
    Ok(PyBytes::new(py, &crate::token::hmac(alg, key, data)))
}
