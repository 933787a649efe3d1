//! The single mapping from `CoreError` to the exception classes of `ikeqcd.errors`.

use pyo3::PyErr;

use crate::error::CoreError;

pyo3::import_exception!(ikeqcd.errors, InvalidSecret);
pyo3::import_exception!(ikeqcd.errors, InvalidAlgorithm);
pyo3::import_exception!(ikeqcd.errors, InvalidTokenLength);
pyo3::import_exception!(ikeqcd.errors, InvalidGeneration);
pyo3::import_exception!(ikeqcd.errors, InvalidArray);
pyo3::import_exception!(ikeqcd.errors, InvalidSpi);
pyo3::import_exception!(ikeqcd.errors, InvalidAddress);
pyo3::import_exception!(ikeqcd.errors, InvalidToken);
pyo3::import_exception!(ikeqcd.errors, MalformedMessage);
pyo3::import_exception!(ikeqcd.errors, CapacityError);
pyo3::import_exception!(ikeqcd.errors, InvalidPolicy);
pyo3::import_exception!(ikeqcd.errors, InvalidArgument);
pyo3::import_exception!(ikeqcd.errors, NetworkError);

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e {
            CoreError::InvalidSecret(m) => InvalidSecret::new_err(m),
            CoreError::InvalidAlgorithm(m) => InvalidAlgorithm::new_err(m),
            CoreError::InvalidTokenLength(m) => InvalidTokenLength::new_err(m),
            CoreError::InvalidGeneration(m) => InvalidGeneration::new_err(m),
            CoreError::ShapeMismatch(m) => InvalidArray::new_err(m),
            CoreError::InvalidSpi(m) => InvalidSpi::new_err(m),
            CoreError::InvalidAddress(m) => InvalidAddress::new_err(m),
            CoreError::InvalidToken(m) => InvalidToken::new_err(m),
            CoreError::Malformed(m) => MalformedMessage::new_err(m),
            CoreError::CapacityExceeded(m) => CapacityError::new_err(m),
            CoreError::InvalidPolicy(m) => InvalidPolicy::new_err(m),
            CoreError::InvalidArgument(m) => InvalidArgument::new_err(m),
            CoreError::Network(m) => NetworkError::new_err(m),
        }
    }
}
