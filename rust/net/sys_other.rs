//! Placeholder off Linux: the constructors refuse, so nothing below is ever reached.
use std::net::UdpSocket;
use std::time::Duration;

use crate::error::{CoreError, CoreResult};

pub(super) fn supported() -> CoreResult<()> {
    Err(CoreError::Network(
        "ikeqcd serve and load need Linux (recvmmsg/sendmmsg); this platform is not supported"
            .to_owned(),
    ))
}

pub(super) use super::{Seg, Sent};

pub(super) struct RecvSlots;

impl RecvSlots {
    pub(super) fn new() -> Box<RecvSlots> {
        Box::new(RecvSlots)
    }
    pub(super) fn segments(&self, _k: usize) -> impl Iterator<Item = &[u8]> + '_ {
        std::iter::empty()
    }
    pub(super) fn truncated(&self, _k: usize) -> bool {
        false
    }
    pub(super) fn source_key(&self, _k: usize) -> u64 {
        crate::srckey::UNKNOWN
    }
}

pub(super) fn enable_gso(_sock: &UdpSocket) -> bool {
    false
}

pub(super) fn recv(
    _sock: &UdpSocket,
    _s: &mut RecvSlots,
    _max: usize,
    _wait: bool,
) -> std::io::Result<usize> {
    Err(std::io::ErrorKind::Unsupported.into())
}

pub(super) fn send(
    _sock: &UdpSocket,
    _buf: &[u8],
    segs: &[Seg],
    _dest: Option<&RecvSlots>,
    _gso: &mut bool,
) -> Sent {
    Sent {
        errors: segs.len(),
        ..Sent::default()
    }
}

pub(super) fn wait_readable(_sock: &UdpSocket, _timeout: Duration) {}

pub(super) fn set_buffers(_sock: &UdpSocket, _bytes: usize) {}
