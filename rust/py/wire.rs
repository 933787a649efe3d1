//! Bindings for `wire.rs`: parsers returning plain tuples (the typed dataclasses live in
//! `python/ikeqcd/wire.py`) and the builders, which are public as they are.

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyTuple};

use super::convert;
use super::detach::run_detached;
use super::errors::InvalidToken;
use crate::wire::{self, Header, Ignored, InvalidSpiOptions, RequestOptions};

pyo3::import_exception!(ikeqcd.errors, InvalidArgument);

/// A datagram taken from Python: `bytes` without a copy, anything else copied.
pub enum Datagram {
    /// Immutable `bytes`, shared.
    Shared(PyBackedBytes),
    /// A copy of a `bytearray` or `memoryview`.
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Datagram {
    fn as_ref(&self) -> &[u8] {
        match self {
            Datagram::Shared(b) => b,
            Datagram::Owned(v) => v,
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// One datagram (`bytes`, `bytearray` or `memoryview`) for a single call.
pub fn datagram_arg<'a>(obj: &'a Bound<'_, PyAny>, name: &str) -> PyResult<DatagramRef<'a>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(DatagramRef::Borrowed(b.as_bytes()));
    }
    convert::bytes_like(obj)
        .map(DatagramRef::Owned)
        .ok_or_else(|| {
            InvalidArgument::new_err(format!(
                "{name} must be bytes, bytearray or memoryview, got {}",
                type_name(obj)
            ))
        })
}

/// A datagram for a single call: borrowed from `bytes` or copied.
pub enum DatagramRef<'a> {
    /// Borrowed from an immutable `bytes` object.
    Borrowed(&'a [u8]),
    /// Copied from a mutable buffer.
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for DatagramRef<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            DatagramRef::Borrowed(b) => b,
            DatagramRef::Owned(v) => v,
        }
    }
}

/// A sequence of datagrams (`bytes` are shared, other buffers copied).
pub fn datagrams_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Datagram>> {
    let one = |k: usize, item: Bound<'_, PyAny>| -> PyResult<Datagram> {
        match item.cast_into::<PyBytes>() {
            Ok(b) => Ok(Datagram::Shared(PyBackedBytes::from(b))),
            Err(e) => {
                let item = e.into_inner();
                if let Ok(ba) = item.cast::<PyByteArray>() {
                    return Ok(Datagram::Owned(ba.to_vec()));
                }
                convert::bytes_like(&item)
                    .map(Datagram::Owned)
                    .ok_or_else(|| {
                        InvalidArgument::new_err(format!(
                            "datagrams[{k}] must be bytes, bytearray or memoryview, got {}",
                            type_name(&item)
                        ))
                    })
            }
        }
    };
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (k, item) in list.iter().enumerate() {
            out.push(one(k, item)?);
        }
        return Ok(out);
    }
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
        return Err(InvalidArgument::new_err(
            "datagrams must be a sequence of datagrams, not one bytes object; wrap it in a list",
        ));
    }
    let iter = obj.try_iter().map_err(|_| {
        InvalidArgument::new_err(format!(
            "datagrams must be a sequence of bytes objects, got {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for (k, item) in iter.enumerate() {
        out.push(one(k, item?)?);
    }
    Ok(out)
}

/// Tokens: a sequence of bytes-like objects.
fn tokens_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
        return Err(InvalidToken::new_err(
            "tokens must be a sequence of bytes (one per generation), not one bytes object; wrap it in a list",
        ));
    }
    let iter = obj
        .try_iter()
        .map_err(|_| InvalidToken::new_err("tokens must be a sequence of bytes objects"))?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        let b = convert::bytes_like(&item)
            .ok_or_else(|| InvalidToken::new_err(format!("token {i} must be bytes")))?;
        out.push(b);
        if out.len() > crate::token::MAX_GENERATIONS {
            break; // the core reports the count
        }
    }
    Ok(out)
}

fn int_err(obj: &Bound<'_, PyAny>, name: &str, max: &str) -> PyErr {
    let shown = obj
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    InvalidArgument::new_err(format!("{name} must be an int in 0..{max}, got {shown}"))
}

/// An int argument that must fit one octet (a header or payload type field).
pub fn u8_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u8> {
    obj.extract::<u8>().map_err(|_| int_err(obj, name, "255"))
}

/// An int argument that must fit 32 bits (a Message ID, a child SPI).
pub fn u32_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u32> {
    obj.extract::<u32>()
        .map_err(|_| int_err(obj, name, "2**32-1"))
}

type HeaderTuple = (u64, u64, u8, u8, u8, u8, u32, u32);

fn header_tuple(h: &Header) -> HeaderTuple {
    (
        h.spi_i,
        h.spi_r,
        h.next_payload,
        h.version,
        h.exchange,
        h.flags,
        h.message_id,
        h.length,
    )
}

/// Parse an IKE message: (header tuple, nat_t, payloads, notifies).
#[pyfunction(name = "_parse_message")]
#[pyo3(signature = (datagram, /, *, nat_t = None))]
pub fn parse_message_py<'py>(
    py: Python<'py>,
    datagram: &Bound<'py, PyAny>,
    nat_t: Option<bool>,
) -> PyResult<Bound<'py, PyTuple>> {
    let d = datagram_arg(datagram, "datagram")?;
    let m = wire::parse_message(d.as_ref(), nat_t)?;
    let payloads = PyList::empty(py);
    let notifies = PyList::empty(py);
    for (i, p) in m.payloads.iter().enumerate() {
        payloads.append((
            p.kind,
            p.next,
            p.critical,
            p.offset,
            PyBytes::new(py, p.body),
        ))?;
        if p.kind == wire::PAYLOAD_NOTIFY {
            let n = wire::decode_notify(p.body)?;
            notifies.append((
                i,
                n.protocol_id,
                PyBytes::new(py, n.spi),
                n.kind,
                PyBytes::new(py, n.data),
            ))?;
        }
    }
    (header_tuple(&m.header), m.nat_t, payloads, notifies).into_pyobject(py)
}

/// Read the 28-octet header of an IKEv2 message (version checked, Length not).
#[pyfunction(name = "_parse_header")]
#[pyo3(signature = (datagram, /, *, nat_t = None))]
pub fn parse_header_py(
    datagram: &Bound<'_, PyAny>,
    nat_t: Option<bool>,
) -> PyResult<(HeaderTuple, bool)> {
    let d = datagram_arg(datagram, "request")?;
    let (msg, marked) = wire::unframe(d.as_ref(), nat_t).map_err(wire::FrameError::into_core)?;
    let h = Header::read(msg)?;
    if h.major_version() != 2 {
        h.check(msg.len())?; // reports the version
    }
    Ok((header_tuple(&h), marked))
}

fn ignored_name(i: Ignored) -> String {
    match i {
        Ignored::Length(n) => format!("length {n} outside 16..128"),
        Ignored::HasSpi => "SPI Size is not 0".to_owned(),
        Ignored::OverCap => format!("more than {} tokens", wire::MAX_REPLY_TOKENS),
    }
}

/// Parse a QCD reply: (header tuple, nat_t, invalid_ike_spi, invalid_spi, invalid_spi_data,
/// encrypted, tokens, ignored).
#[pyfunction(name = "_parse_qcd_reply")]
#[pyo3(signature = (datagram, /, *, nat_t = None))]
pub fn parse_qcd_reply_py<'py>(
    py: Python<'py>,
    datagram: &Bound<'py, PyAny>,
    nat_t: Option<bool>,
) -> PyResult<Bound<'py, PyTuple>> {
    let d = datagram_arg(datagram, "datagram")?;
    let r = wire::parse_qcd_reply(d.as_ref(), nat_t)?;
    let tokens = PyList::new(py, r.tokens().iter().map(|t| PyBytes::new(py, t)))?;
    let ignored = PyList::new(
        py,
        r.ignored.iter().map(|(k, why)| (*k, ignored_name(*why))),
    )?;
    (
        header_tuple(&r.header),
        r.nat_t,
        r.invalid_ike_spi,
        r.invalid_spi,
        r.invalid_spi_data.map(|d| PyBytes::new(py, d)),
        r.encrypted,
        tokens,
        ignored,
    )
        .into_pyobject(py)
}

/// Parse many QCD replies into columns (see `wire::QcdBatch`), in the order of the stub.
#[pyfunction(name = "_parse_qcd_replies")]
#[pyo3(signature = (datagrams, /, *, nat_t = None))]
pub fn parse_qcd_replies_py<'py>(
    py: Python<'py>,
    datagrams: &Bound<'py, PyAny>,
    nat_t: Option<bool>,
) -> PyResult<Bound<'py, PyTuple>> {
    let ds = datagrams_arg(datagrams)?;
    let b = run_detached(py, ds.len(), || wire::parse_qcd_batch(&ds, nat_t));
    drop(ds);
    let arrays: Vec<Bound<'py, PyAny>> = vec![
        b.ok.into_pyarray(py).into_any(),
        b.spi_i.into_pyarray(py).into_any(),
        b.spi_r.into_pyarray(py).into_any(),
        b.message_id.into_pyarray(py).into_any(),
        b.exchange.into_pyarray(py).into_any(),
        b.flags.into_pyarray(py).into_any(),
        b.nat_t.into_pyarray(py).into_any(),
        b.invalid_ike_spi.into_pyarray(py).into_any(),
        b.invalid_spi.into_pyarray(py).into_any(),
        b.child_spi.into_pyarray(py).into_any(),
        b.encrypted.into_pyarray(py).into_any(),
        b.ignored.into_pyarray(py).into_any(),
        b.token_index.into_pyarray(py).into_any(),
        b.token_offsets.into_pyarray(py).into_any(),
        b.token_data.into_pyarray(py).into_any(),
    ];
    PyTuple::new(py, arrays)
}

fn request_header(spi_i: u64, spi_r: u64, exchange: u8, flags: u8, message_id: u32) -> Header {
    Header {
        spi_i,
        spi_r,
        next_payload: wire::PAYLOAD_SK,
        version: wire::VERSION,
        exchange,
        flags,
        message_id,
        length: 0,
    }
}

/// The unprotected QCD reply to a request with the given header fields.
#[pyfunction(name = "_build_qcd_reply")]
#[pyo3(signature = (spi_i, spi_r, exchange, flags, message_id, tokens, nat_t, /))]
#[allow(clippy::too_many_arguments)]
pub fn build_qcd_reply_py<'py>(
    py: Python<'py>,
    spi_i: &Bound<'py, PyAny>,
    spi_r: &Bound<'py, PyAny>,
    exchange: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
    message_id: &Bound<'py, PyAny>,
    tokens: &Bound<'py, PyAny>,
    nat_t: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let (spi_i, spi_r) = (convert::spi(spi_i, "spi_i")?, convert::spi(spi_r, "spi_r")?);
    let exchange = u8_arg(exchange, "exchange")?;
    let flags = u8_arg(flags, "flags")?;
    let message_id = u32_arg(message_id, "message_id")?;
    let toks = tokens_arg(tokens)?;
    let refs: Vec<&[u8]> = toks.iter().map(Vec::as_slice).collect();
    let h = request_header(spi_i, spi_r, exchange, flags, message_id);
    Ok(PyBytes::new(py, &wire::build_qcd_reply(&h, &refs, nat_t)?))
}

/// A bare INVALID_IKE_SPI reply to a request with the given header fields.
#[pyfunction(name = "_build_invalid_ike_spi_reply")]
#[pyo3(signature = (spi_i, spi_r, exchange, flags, message_id, nat_t, /))]
pub fn build_invalid_ike_spi_reply_py<'py>(
    py: Python<'py>,
    spi_i: &Bound<'py, PyAny>,
    spi_r: &Bound<'py, PyAny>,
    exchange: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
    message_id: &Bound<'py, PyAny>,
    nat_t: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let h = request_header(
        convert::spi(spi_i, "spi_i")?,
        convert::spi(spi_r, "spi_r")?,
        u8_arg(exchange, "exchange")?,
        u8_arg(flags, "flags")?,
        u32_arg(message_id, "message_id")?,
    );
    Ok(PyBytes::new(
        py,
        &wire::build_invalid_ike_spi_reply(&h, nat_t),
    ))
}

/// The N(QCD_TOKEN) payload a daemon places inside SK (see `ikeqcd.wire.build_qcd_notify`).
#[pyfunction(name = "_build_qcd_notify")]
#[pyo3(signature = (token, next_payload, /))]
pub fn build_qcd_notify_py<'py>(
    py: Python<'py>,
    token: &Bound<'py, PyAny>,
    next_payload: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let next_payload = u8_arg(next_payload, "next_payload")?;
    let t = convert::bytes_like(token)
        .ok_or_else(|| InvalidToken::new_err("token must be bytes, bytearray or memoryview"))?;
    Ok(PyBytes::new(py, &wire::build_qcd_notify(&t, next_payload)?))
}

/// The §8.2 `HDR, N(INVALID_SPI), N(QCD_TOKEN)*` message.
#[pyfunction(name = "_build_invalid_spi_message")]
#[pyo3(signature = (child_spi, tokens, spi_i, spi_r, exchange, message_id, nat_t, /))]
#[allow(clippy::too_many_arguments)]
pub fn build_invalid_spi_message_py<'py>(
    py: Python<'py>,
    child_spi: &Bound<'py, PyAny>,
    tokens: &Bound<'py, PyAny>,
    spi_i: &Bound<'py, PyAny>,
    spi_r: &Bound<'py, PyAny>,
    exchange: &Bound<'py, PyAny>,
    message_id: &Bound<'py, PyAny>,
    nat_t: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let exchange = u8_arg(exchange, "exchange")?;
    let message_id = u32_arg(message_id, "message_id")?;
    let child = u32_arg(child_spi, "child_spi")?;
    let opts = InvalidSpiOptions {
        spi_i: convert::spi(spi_i, "spi_i")?,
        spi_r: convert::spi(spi_r, "spi_r")?,
        exchange,
        message_id,
        nat_t,
    };
    let toks = tokens_arg(tokens)?;
    let refs: Vec<&[u8]> = toks.iter().map(Vec::as_slice).collect();
    Ok(PyBytes::new(
        py,
        &wire::build_invalid_spi_message(child, &refs, &opts)?,
    ))
}

/// A protected-looking request `HDR, SK{sk_body}`.
#[pyfunction(name = "_build_request")]
#[pyo3(signature = (spi_i, spi_r, exchange, message_id, initiator, response, inner_next, sk_body, nat_t, /))]
#[allow(clippy::too_many_arguments)]
pub fn build_request_py<'py>(
    py: Python<'py>,
    spi_i: &Bound<'py, PyAny>,
    spi_r: &Bound<'py, PyAny>,
    exchange: &Bound<'py, PyAny>,
    message_id: &Bound<'py, PyAny>,
    initiator: bool,
    response: bool,
    inner_next: &Bound<'py, PyAny>,
    sk_body: &Bound<'py, PyAny>,
    nat_t: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let exchange = u8_arg(exchange, "exchange")?;
    let message_id = u32_arg(message_id, "message_id")?;
    let inner_next = u8_arg(inner_next, "inner_next")?;
    let body = convert::bytes_like(sk_body).ok_or_else(|| {
        InvalidArgument::new_err("sk_body must be bytes, bytearray or memoryview")
    })?;
    let opts = RequestOptions {
        exchange,
        message_id,
        initiator,
        response,
        inner_next,
        nat_t,
    };
    let a = convert::spi(spi_i, "spi_i")?;
    let b = convert::spi(spi_r, "spi_r")?;
    Ok(PyBytes::new(py, &wire::build_request(a, b, &body, &opts)?))
}
