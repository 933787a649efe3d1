//! `recvmmsg`/`sendmmsg`/`ppoll`, UDP GSO/GRO and socket options through `libc`: with the
//! SHA-NI kernel, the only unsafe code of the crate.
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{BATCH, SLOT};
use crate::error::CoreResult;

/// `UDP_SEGMENT` / `UDP_GRO` socket options and control messages (Linux 4.18 / 5.0).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 before 5.5).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most octets in one GSO send (a UDP payload, with room for the headers).
const GSO_MAX_OCTETS: usize = 65_000;
/// Control buffer per message: room for one `int` or `u16` control message.
const CTRL_WORDS: usize = 8;

pub(super) fn supported() -> CoreResult<()> {
    Ok(())
}

pub(super) use super::{Seg, Sent};

/// Receive buffers and source addresses for one batch.
pub(super) struct RecvSlots {
    buf: Vec<u8>,
    len: [usize; BATCH],
    seg: [usize; BATCH],
    trunc: [bool; BATCH],
    addr: [libc::sockaddr_storage; BATCH],
    addr_len: [libc::socklen_t; BATCH],
    ctrl: [[u64; CTRL_WORDS]; BATCH],
}

fn zeroed_addr() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a C struct of integers; all zeroes is a valid value
    // (family AF_UNSPEC).
    unsafe { mem::zeroed() }
}

impl RecvSlots {
    pub(super) fn new() -> Box<RecvSlots> {
        Box::new(RecvSlots {
            buf: vec![0; BATCH * SLOT],
            len: [0; BATCH],
            seg: [0; BATCH],
            trunc: [false; BATCH],
            addr: [zeroed_addr(); BATCH],
            addr_len: [0; BATCH],
            ctrl: [[0; CTRL_WORDS]; BATCH],
        })
    }

    /// The datagrams of slot k: one, or the run a GRO receive coalesced (segments of
    /// equal size, the last one possibly shorter). An empty datagram is one empty slice.
    pub(super) fn segments(&self, k: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let d = &self.buf[k * SLOT..k * SLOT + self.len[k]];
        let step = match self.seg[k] {
            0 => d.len(),
            g => g.min(d.len()),
        };
        let count = if step == 0 { 1 } else { d.len().div_ceil(step) };
        (0..count).map(move |i| &d[i * step..((i + 1) * step).min(d.len())])
    }

    pub(super) fn truncated(&self, k: usize) -> bool {
        self.trunc[k]
    }

    /// The rate-limit key of slot k's source ([`crate::srckey`]: IPv4 and IPv4-mapped
    /// IPv6 by host, other IPv6 by /64, the same keys as `ikeqcd._keys.source_key`).
    pub(super) fn source_key(&self, k: usize) -> u64 {
        let a = &self.addr[k];
        match i32::from(a.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which is
                // smaller than sockaddr_storage and has no stricter alignment.
                let sin =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                crate::srckey::v4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                crate::srckey::v6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => crate::srckey::UNKNOWN,
        }
    }

    fn same_source(&self, a: usize, b: usize) -> bool {
        let n = self.addr_len[a] as usize;
        n == self.addr_len[b] as usize
            && addr_bytes(&self.addr[a])[..n] == addr_bytes(&self.addr[b])[..n]
    }
}

fn addr_bytes(a: &libc::sockaddr_storage) -> &[u8] {
    // SAFETY: sockaddr_storage is plain data without padding-dependent invariants; any
    // initialised value may be viewed as its bytes (it was zeroed at creation).
    unsafe {
        std::slice::from_raw_parts(
            (a as *const libc::sockaddr_storage).cast::<u8>(),
            mem::size_of::<libc::sockaddr_storage>(),
        )
    }
}

fn zeroed_hdrs() -> [libc::mmsghdr; BATCH] {
    // SAFETY: mmsghdr is a C struct of integers and pointers; all zeroes (null pointers,
    // zero lengths) is a valid value.
    unsafe { mem::zeroed() }
}

fn zeroed_iovs() -> [libc::iovec; BATCH] {
    // SAFETY: as above: null base, zero length.
    unsafe { mem::zeroed() }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

fn set_int(sock: &UdpSocket, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: a valid fd and a pointer to a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Turn on GRO receives and check that GSO sends exist; false if the kernel lacks either.
pub(super) fn enable_gso(sock: &UdpSocket) -> bool {
    // UDP_SEGMENT 0 as a socket option means "no default segment size": a probe.
    set_int(sock, libc::SOL_UDP, UDP_SEGMENT, 0) && set_int(sock, libc::SOL_UDP, UDP_GRO, 1)
}

/// Receive up to `max` messages into `s`; `wait`: block (up to the socket's read timeout)
/// for the first one. Returns 0 on timeout, interruption or nothing pending.
pub(super) fn recv(
    sock: &UdpSocket,
    s: &mut RecvSlots,
    max: usize,
    wait: bool,
) -> std::io::Result<usize> {
    let max = max.min(BATCH);
    let mut iov = zeroed_iovs();
    let mut hdr = zeroed_hdrs();
    let base = s.buf.as_mut_ptr();
    for k in 0..max {
        // In bounds: buf holds BATCH * SLOT octets and k < BATCH.
        iov[k].iov_base = base.wrapping_add(k * SLOT).cast();
        iov[k].iov_len = SLOT;
        let h = &mut hdr[k].msg_hdr;
        h.msg_name = (&mut s.addr[k] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iov[k];
        h.msg_iovlen = 1;
        h.msg_control = s.ctrl[k].as_mut_ptr().cast();
        h.msg_controllen = mem::size_of::<[u64; CTRL_WORDS]>() as _;
    }
    let flags = if wait {
        libc::MSG_WAITFORONE
    } else {
        libc::MSG_DONTWAIT
    };
    // SAFETY: hdr[..max] point at iov[..max], s.addr[..max] and s.ctrl[..max], which
    // point into buffers of the sizes given that stay alive and unaliased for the call;
    // the kernel writes at most iov_len / msg_namelen / msg_controllen octets. A null
    // timeout is allowed.
    let r = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            hdr.as_mut_ptr(),
            max as libc::c_uint,
            flags as _,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return if transient(&e) { Ok(0) } else { Err(e) };
    }
    let n = r as usize;
    for (k, h) in hdr[..n].iter().enumerate() {
        s.len[k] = (h.msg_len as usize).min(SLOT);
        s.trunc[k] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        s.addr_len[k] = h.msg_hdr.msg_namelen;
        s.seg[k] = if h.msg_hdr.msg_controllen == 0 {
            0
        } else {
            gro_size(&h.msg_hdr)
        };
    }
    Ok(n)
}

/// The segment size of a GRO receive, from its control messages (0 if none).
fn gro_size(h: &libc::msghdr) -> usize {
    let mut size = 0;
    // SAFETY: `h` is a msghdr the kernel filled; its msg_control points at our control
    // buffer and msg_controllen bounds what the kernel wrote. CMSG_FIRSTHDR/NXTHDR stay
    // within that length (returning null at the end), and a UDP_GRO message carries an
    // int, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                size = usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    size
}

/// Group `segs` into messages: with `gso`, a run of consecutive, contiguous, equal-sized
/// datagrams to one destination becomes one segmented message. Returns (first seg, count)
/// per message.
fn groups(segs: &[Seg], dest: Option<&RecvSlots>, gso: bool) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(segs.len().min(BATCH));
    for (i, s) in segs.iter().enumerate() {
        if let Some(g) = out.last_mut() {
            let first = &segs[g.0];
            let prev = &segs[g.0 + g.1 - 1];
            let len = first.end - first.start;
            if gso
                && s.start == prev.end
                && s.end - s.start == len
                && g.1 < GSO_MAX_SEGMENTS
                && (g.1 + 1) * len <= GSO_MAX_OCTETS
                && dest.is_none_or(|d| d.same_source(first.to, s.to))
            {
                g.1 += 1;
                continue;
            }
        }
        out.push((i, 1));
    }
    out
}

/// Send `segs` from `buf`: to the sources in `dest` (by slot) or, when `dest` is None, on
/// the connected socket. With `*gso`, equal-sized runs go as segmented sends; if the
/// kernel refuses one, `*gso` is turned off and the rest go one by one. A datagram the
/// kernel refuses is skipped and counted; on a connected socket the rest of the batch is
/// counted refused too.
pub(super) fn send(
    sock: &UdpSocket,
    buf: &[u8],
    segs: &[Seg],
    dest: Option<&RecvSlots>,
    gso: &mut bool,
) -> Sent {
    let mut total = Sent::default();
    let mut from = 0;
    while from < segs.len() {
        let rest = &segs[from..];
        let groups = groups(rest, dest, *gso);
        let (r, stop) = send_groups(sock, buf, rest, &groups, dest);
        total.sent += r.sent;
        total.octets += r.octets;
        total.errors += r.errors;
        match stop {
            Stop::Done => break,
            Stop::GsoRefused(at) => {
                *gso = false;
                from += at;
            }
            Stop::Connected(at) => {
                total.errors += rest.len() - at;
                break;
            }
        }
    }
    total
}

enum Stop {
    Done,
    /// A segmented send failed at this segment index: retry from there without GSO.
    GsoRefused(usize),
    /// A send on the connected socket failed at this segment index.
    Connected(usize),
}

fn send_groups(
    sock: &UdpSocket,
    buf: &[u8],
    segs: &[Seg],
    groups: &[(usize, usize)],
    dest: Option<&RecvSlots>,
) -> (Sent, Stop) {
    let mut r = Sent::default();
    let mut iov = zeroed_iovs();
    let mut hdr = zeroed_hdrs();
    let mut ctrl = [[0u64; CTRL_WORDS]; BATCH];
    for chunk in groups.chunks(BATCH) {
        for (k, &(first, count)) in chunk.iter().enumerate() {
            let (a, b) = (segs[first].start, segs[first + count - 1].end);
            let part = &buf[a..b];
            iov[k].iov_base = part.as_ptr().cast_mut().cast();
            iov[k].iov_len = part.len();
            let h = &mut hdr[k].msg_hdr;
            *h = {
                // SAFETY: msghdr is plain data; all zeroes is valid (reset per message).
                unsafe { mem::zeroed() }
            };
            if let Some(d) = dest {
                let to = segs[first].to;
                h.msg_name = (&d.addr[to] as *const libc::sockaddr_storage)
                    .cast_mut()
                    .cast();
                h.msg_namelen = d.addr_len[to];
            }
            h.msg_iov = &mut iov[k];
            h.msg_iovlen = 1;
            if count > 1 {
                let size = (segs[first].end - segs[first].start) as u16;
                // SAFETY: CMSG_SPACE/LEN are arithmetic; ctrl[k] is 64 octets, more than
                // CMSG_SPACE(2) = 24, 8-aligned, and the header written is inside it.
                unsafe {
                    let space = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                    h.msg_control = ctrl[k].as_mut_ptr().cast();
                    h.msg_controllen = space as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
                }
            }
        }
        let n = chunk.len();
        let mut done = 0;
        let mut retries = 0;
        while done < n {
            // SAFETY: hdr[done..n] point at iov entries that point into `buf` (borrowed
            // for the call), at addresses in `dest` (borrowed) and at `ctrl`; the kernel
            // only reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdr.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if sent > 0 {
                for (h, &(_, count)) in hdr[done..].iter().zip(&chunk[done..]).take(sent as usize) {
                    r.octets += h.msg_len as usize;
                    r.sent += count;
                }
                done += sent as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            if transient(&e) && retries < 1000 {
                retries += 1;
                continue;
            }
            let (first, count) = chunk[done];
            if count > 1
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                )
            {
                return (r, Stop::GsoRefused(first));
            }
            if dest.is_none() {
                return (r, Stop::Connected(first));
            }
            // These datagrams cannot go: skip them.
            r.errors += count;
            done += 1;
        }
    }
    (r, Stop::Done)
}

/// Block until the socket is readable or `timeout` passes (or a signal arrives).
pub(super) fn wait_readable(sock: &UdpSocket, timeout: Duration) {
    let mut fd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, a null signal mask (keep the current).
    unsafe {
        libc::ppoll(&mut fd, 1, &ts, std::ptr::null());
    }
}

/// Ask for bigger socket buffers (best effort: capped by net.core.[rw]mem_max).
pub(super) fn set_buffers(sock: &UdpSocket, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(sock, libc::SOL_SOCKET, libc::SO_RCVBUF, v);
    set_int(sock, libc::SOL_SOCKET, libc::SO_SNDBUF, v);
}
