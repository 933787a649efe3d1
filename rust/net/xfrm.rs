//! Per-socket IPsec bypass for `ikeqcd serve` (Linux `IP_XFRM_POLICY` / `IPV6_XFRM_POLICY`).
//!
//! When an IKE daemon dies without a reboot, the kernel keeps the XFRM policies it installed.
//! A transport-mode host-to-host policy (`dir in|out ... tmpl proto esp mode transport`) then
//! covers the peer's IKE datagrams too: inbound plaintext is dropped by the policy check
//! before any socket sees it, and outbound replies wait for an SA that will never come. IKE
//! daemons exempt their own sockets with a per-socket policy whose action is ALLOW, one per
//! direction (strongSwan's kernel-netlink `bypass_socket`, libreswan's kernel_xfrm); a socket
//! policy is looked up before the global ones. This module sets the same two policies.
//!
//! Setting a socket policy needs `CAP_NET_ADMIN` (EPERM otherwise): the caller decides how
//! to fail soft.

use std::net::UdpSocket;

/// Set ALLOW policies for both directions on `sock`, so that no global XFRM policy applies
/// to its datagrams.
///
/// # Errors
/// The OS error of the refused `setsockopt` (EPERM without `CAP_NET_ADMIN`; ENOPROTOOPT or
/// EOPNOTSUPP on a kernel without XFRM), or `Unsupported` off Linux.
pub fn bypass(sock: &UdpSocket) -> std::io::Result<()> {
    sys::bypass(sock)
}

#[cfg(target_os = "linux")]
mod sys {
    use std::mem;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// `XFRM_INF` from `<linux/xfrm.h>`: no lifetime limit.
    const XFRM_INF: u64 = u64::MAX;
    /// `XFRM_POLICY_IN` / `XFRM_POLICY_OUT` (`enum { XFRM_POLICY_IN = 0, XFRM_POLICY_OUT = 1 }`).
    const XFRM_POLICY_IN: u8 = 0;
    const XFRM_POLICY_OUT: u8 = 1;
    /// `XFRM_POLICY_ALLOW`.
    const XFRM_POLICY_ALLOW: u8 = 0;

    /// `struct xfrm_selector` (`<linux/xfrm.h>`); all zeroes but the family selects everything.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct XfrmSelector {
        daddr: [u32; 4],
        saddr: [u32; 4],
        dport: u16,
        dport_mask: u16,
        sport: u16,
        sport_mask: u16,
        family: u16,
        prefixlen_d: u8,
        prefixlen_s: u8,
        proto: u8,
        ifindex: libc::c_int,
        user: u32,
    }

    /// `struct xfrm_lifetime_cfg`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct XfrmLifetimeCfg {
        soft_byte_limit: u64,
        hard_byte_limit: u64,
        soft_packet_limit: u64,
        hard_packet_limit: u64,
        soft_add_expires_seconds: u64,
        hard_add_expires_seconds: u64,
        soft_use_expires_seconds: u64,
        hard_use_expires_seconds: u64,
    }

    /// `struct xfrm_lifetime_cur`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct XfrmLifetimeCur {
        bytes: u64,
        packets: u64,
        add_time: u64,
        use_time: u64,
    }

    /// `struct xfrm_userpolicy_info`: what `IP_XFRM_POLICY` takes (168 octets on 64-bit).
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct XfrmUserpolicyInfo {
        sel: XfrmSelector,
        lft: XfrmLifetimeCfg,
        curlft: XfrmLifetimeCur,
        priority: u32,
        index: u32,
        dir: u8,
        action: u8,
        flags: u8,
        share: u8,
    }

    const _: () = assert!(mem::size_of::<XfrmSelector>() == 56);
    const _: () = assert!(mem::size_of::<XfrmUserpolicyInfo>() == 168);

    fn policy(family: u16, dir: u8) -> XfrmUserpolicyInfo {
        XfrmUserpolicyInfo {
            sel: XfrmSelector {
                daddr: [0; 4],
                saddr: [0; 4],
                dport: 0,
                dport_mask: 0,
                sport: 0,
                sport_mask: 0,
                family,
                prefixlen_d: 0,
                prefixlen_s: 0,
                proto: 0,
                ifindex: 0,
                user: 0,
            },
            lft: XfrmLifetimeCfg {
                soft_byte_limit: XFRM_INF,
                hard_byte_limit: XFRM_INF,
                soft_packet_limit: XFRM_INF,
                hard_packet_limit: XFRM_INF,
                soft_add_expires_seconds: 0,
                hard_add_expires_seconds: 0,
                soft_use_expires_seconds: 0,
                hard_use_expires_seconds: 0,
            },
            curlft: XfrmLifetimeCur {
                bytes: 0,
                packets: 0,
                add_time: 0,
                use_time: 0,
            },
            priority: 0,
            index: 0,
            dir,
            action: XFRM_POLICY_ALLOW,
            flags: 0,
            share: 0,
        }
    }

    pub(super) fn bypass(sock: &UdpSocket) -> std::io::Result<()> {
        let (level, opt, family) = if sock.local_addr()?.is_ipv4() {
            (libc::SOL_IP, libc::IP_XFRM_POLICY, libc::AF_INET)
        } else {
            (libc::SOL_IPV6, libc::IPV6_XFRM_POLICY, libc::AF_INET6)
        };
        let family = u16::try_from(family).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        for dir in [XFRM_POLICY_OUT, XFRM_POLICY_IN] {
            let p = policy(family, dir);
            // SAFETY: a valid fd; the pointer is to a live `xfrm_userpolicy_info` laid out as
            // the kernel's (`repr(C)`, sizes asserted above) and the length given is its size.
            // Padding bytes are not read by the kernel (it copies the fields it checks).
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    opt,
                    (&p as *const XfrmUserpolicyInfo).cast(),
                    mem::size_of::<XfrmUserpolicyInfo>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::net::UdpSocket;

    pub(super) fn bypass(_sock: &UdpSocket) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "per-socket XFRM bypass policies exist only on Linux",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::bypass;
    use std::net::UdpSocket;

    #[test]
    fn bypass_is_set_or_refused_for_want_of_privilege() {
        for at in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(sock) = UdpSocket::bind(at) else {
                continue; // no IPv6 on this host
            };
            match bypass(&sock) {
                Ok(()) => {}
                Err(e) => {
                    let code = e.raw_os_error();
                    assert!(
                        code == Some(libc::EPERM)
                            || code == Some(libc::ENOPROTOOPT)
                            || code == Some(libc::EOPNOTSUPP),
                        "{at}: unexpected error {e}"
                    );
                }
            }
        }
    }
}
