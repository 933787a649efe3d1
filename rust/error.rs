//! The one error type of the core. Every fallible core function returns
//! `Result<T, CoreError>`; `rust/py/errors.rs` maps each variant to a Python exception class
//! defined in `python/ikeqcd/errors.py`. Messages never contain secret bytes.

use std::fmt;

/// Everything that can go wrong in the core, with enough context to say what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A secret is too short, too long, or there are too many / too few generations.
    InvalidSecret(String),
    /// The algorithm name is not one of the supported ones.
    InvalidAlgorithm(String),
    /// A token length is outside what the algorithm or the RFC allows.
    InvalidTokenLength(String),
    /// A secret generation index is out of range.
    InvalidGeneration(String),
    /// Input arrays have unequal lengths or the wrong shape.
    ShapeMismatch(String),
    /// An SPI value is not acceptable (for example zero where the RFC forbids it).
    InvalidSpi(String),
    /// An address is not 4 (IPv4) or 16 (IPv6) octets.
    InvalidAddress(String),
    /// A token (received or to be stored) has an unusable length.
    InvalidToken(String),
    /// A datagram or payload does not parse; the message says where and why.
    Malformed(String),
    /// A configured capacity would be exceeded.
    CapacityExceeded(String),
    /// A policy or limiter option has an impossible value.
    InvalidPolicy(String),
    /// Any other argument with an impossible value (a time that is not finite, a history
    /// depth out of range).
    InvalidArgument(String),
    /// A socket could not be opened, bound or used (the message names the address and the
    /// operating system's reason).
    Network(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidSecret(m)
            | CoreError::InvalidAlgorithm(m)
            | CoreError::InvalidTokenLength(m)
            | CoreError::InvalidGeneration(m)
            | CoreError::ShapeMismatch(m)
            | CoreError::InvalidSpi(m)
            | CoreError::InvalidAddress(m)
            | CoreError::InvalidToken(m)
            | CoreError::Malformed(m)
            | CoreError::CapacityExceeded(m)
            | CoreError::InvalidPolicy(m) => f.write_str(m),
            CoreError::InvalidArgument(m) => f.write_str(m),
            CoreError::Network(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CoreError {}

/// Result alias used throughout the core.
pub type CoreResult<T> = Result<T, CoreError>;
