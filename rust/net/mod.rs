//! Batch UDP I/O for the load-test tools: [`Server`] (`ikeqcd serve`, a rebooted gateway that
//! answers protected requests for unknown SAs) and [`LoadDriver`] (`ikeqcd load`, which sends
//! protected-looking requests at a paced rate and checks every reply).
//!
//! Both move up to [`BATCH`] datagrams per system call with `recvmmsg`/`sendmmsg` (Linux
//! only; elsewhere the constructors return `CoreError::Network`). The per-packet work reuses
//! the codec and the maker's hot path: [`responder::classify`], the live-SA check against an
//! [`SaTable`], [`MakerGate::decide`], [`responder::write_reply`] or a bare INVALID_IKE_SPI;
//! on the load side [`wire::build_request`], [`wire::parse_qcd_reply`] and
//! [`TokenMaker::verify`] (constant time).
//!
//! [`responder::classify`]: crate::responder::classify
//! [`responder::write_reply`]: crate::responder::write_reply
//! [`SaTable`]: crate::table::SaTable
//! [`MakerGate::decide`]: crate::gate::MakerGate::decide
//! [`wire::build_request`]: crate::wire::build_request
//! [`wire::parse_qcd_reply`]: crate::wire::parse_qcd_reply
//! [`TokenMaker::verify`]: crate::token::TokenMaker::verify
//!
//! The loops run for a bounded slice of time and return, so a caller (the Python layer) can
//! handle signals, print progress and stop cleanly between slices. Sockets come from
//! `std::net::UdpSocket` (IPv4 and IPv6); the only `unsafe` code, the `libc` calls, is in the
//! private `sys` module here.
//!
//! One file per part:
//! - `mod.rs` (this file): the shared constants, [`resolve`], socket setup and re-exports;
//! - `serve.rs`: [`Server`], its [`ServeCounters`] and the serve loop;
//! - `load.rs`: [`LoadDriver`], its [`LoadConfig`] and [`LoadCounts`], the paced send loop;
//! - `track.rs`: the load driver's requests in flight and the check of every reply;
//! - `histogram.rs`: the latency histograms ([`Histogram`] of load, [`BatchTimes`] of serve);
//! - `sys_linux.rs` / `sys_other.rs`: the `recvmmsg`/`sendmmsg` layer (Linux; a refusing
//!   placeholder elsewhere);
//! - [`xfrm`]: the per-socket IPsec bypass of `ikeqcd serve`;
//! - `tests.rs`: serve and load against each other on loopback.
#![deny(unsafe_op_in_unsafe_fn)]

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use crate::error::{CoreError, CoreResult};

mod histogram;
mod load;
mod round;
mod serve;
#[cfg(target_os = "linux")]
#[path = "sys_linux.rs"]
mod sys;
#[cfg(not(target_os = "linux"))]
#[path = "sys_other.rs"]
mod sys;
#[cfg(all(test, target_os = "linux"))]
mod tests;
mod track;
pub mod xfrm;

pub use histogram::{BatchTimes, Histogram, BATCH_TIME_BOUNDS_NS};
pub use load::{load_spis, LoadConfig, LoadCounts, LoadDriver, MAX_BODY, RING, SEND_MAX};
pub use serve::{ServeCounters, ServeSnapshot, Server};

/// Most datagrams moved by one `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Receive buffer per `recvmmsg` slot: the largest UDP payload, so nothing is ever truncated
/// (with GRO, one slot holds a run of coalesced datagrams of up to this size).
pub const SLOT: usize = 65_536;
/// How long one blocking receive waits, so that loops notice their deadline and stop flag.
pub const READ_TIMEOUT: Duration = Duration::from_millis(20);
/// Socket buffer size asked for (the kernel caps it at `net.core.[rw]mem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

fn net_err(what: impl std::fmt::Display, e: &std::io::Error) -> CoreError {
    CoreError::Network(format!("{what}: {e}"))
}

/// Resolve `HOST:PORT` (`127.0.0.1:500`, `[::1]:4500`, `localhost:500`) to one address.
///
/// # Errors
/// `InvalidArgument` when it is not an address with a port or does not resolve.
pub fn resolve(addr: &str) -> CoreResult<SocketAddr> {
    let bad = |why: String| {
        CoreError::InvalidArgument(format!(
            "{addr:?} is not a usable HOST:PORT ({why}); write e.g. 127.0.0.1:500 or [::1]:4500"
        ))
    };
    addr.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no address".to_owned()))
}

fn setup(sock: &UdpSocket, what: &str) -> CoreResult<()> {
    sock.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| net_err(what, &e))?;
    sys::set_buffers(sock, SOCKET_BUFFER);
    Ok(())
}

/// A datagram to send: `buf[start..end]`, to the source of received slot `to` (server).
#[derive(Debug, Clone, Copy)]
struct Seg {
    start: usize,
    end: usize,
    to: usize,
}

/// What a send did.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// Datagrams the kernel took, a prefix of the segments given when `dest` is None.
    sent: usize,
    /// Their octets.
    octets: usize,
    /// Datagrams refused.
    errors: usize,
}
