//! The checking half of the load driver: the requests in flight (a ring indexed by Message
//! ID), the check of every reply against its request (codec, SPIs, constant-time token
//! verification), the expiry of unanswered requests and the receive step.

use std::net::UdpSocket;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::histogram::Histogram;
use super::load::{LoadCounts, RING};
use super::{sys, BATCH};
use crate::token::TokenMaker;
use crate::wire;

#[derive(Clone, Copy, Default)]
pub(super) struct Flight {
    pub(super) mid: u32,
    pub(super) sa: u32,
    pub(super) sent_ns: u64,
    pub(super) state: u8,
}

const EMPTY: u8 = 0;
pub(super) const WAITING: u8 = 1;
const ANSWERED: u8 = 2;
pub(super) const EXPIRED: u8 = 3;

/// The requests in flight and what the replies showed: the checking half of
/// [`LoadDriver`](super::LoadDriver).
pub(super) struct Tracker {
    pub(super) nat_t: bool,
    pub(super) maker: Option<TokenMaker>,
    pub(super) spis: Vec<(u64, u64)>,
    pub(super) ring: Vec<Flight>,
    pub(super) next: u64,
    pub(super) tail: u64,
    pub(super) hist: Histogram,
    pub(super) counts: LoadCounts,
}

impl Tracker {
    pub(super) fn check(&mut self, d: &[u8], truncated: bool, now: u64) {
        let c = &mut self.counts;
        let parsed = if truncated {
            None
        } else {
            wire::parse_qcd_reply(d, Some(self.nat_t)).ok()
        };
        let Some(r) = parsed else {
            c.malformed += 1;
            return;
        };
        let mid = r.header.message_id;
        let f = &mut self.ring[mid as usize % RING];
        if f.mid != mid || f.state == EMPTY || f.state == ANSWERED {
            c.unmatched += 1;
            return;
        }
        if f.state == EXPIRED {
            c.late += 1;
            f.state = ANSWERED;
            return;
        }
        f.state = ANSWERED;
        c.answered += 1;
        self.hist.record(now.saturating_sub(f.sent_ns));
        let (a, b) = self.spis[f.sa as usize];
        if r.header.spi_i != a
            || r.header.spi_r != b
            || !r.header.is_response()
            || !r.invalid_ike_spi
            || r.nat_t != self.nat_t
        {
            c.mismatched += 1;
            return;
        }
        let tokens = r.tokens();
        if tokens.is_empty() {
            c.bare += 1;
            return;
        }
        let ok = match &self.maker {
            None => true,
            Some(m) => {
                // Every token is checked (no early exit): constant work per reply.
                let mut all = true;
                for t in tokens {
                    all &= m.verify(a, b, t, &[]).unwrap_or(false);
                }
                all
            }
        };
        if ok {
            c.valid += 1;
        } else {
            c.bad_token += 1;
        }
    }

    pub(super) fn expire(&mut self, now: u64, timeout: u64) {
        while self.tail < self.next {
            let f = &mut self.ring[self.tail as u32 as usize % RING];
            match f.state {
                WAITING if now.saturating_sub(f.sent_ns) >= timeout => {
                    f.state = EXPIRED;
                    self.counts.lost += 1;
                }
                WAITING => break,
                _ => {}
            }
            self.tail += 1;
        }
    }
}

/// Receive what is pending (or, with `wait`, block up to the read timeout for the first
/// message) and check every datagram; returns how many.
pub(super) fn receive(
    sock: &UdpSocket,
    rx: &mut sys::RecvSlots,
    track: &Mutex<Tracker>,
    t0: Instant,
    wait: bool,
) -> usize {
    let mut total = 0;
    let mut wait = wait;
    loop {
        let n = sys::recv(sock, rx, BATCH, wait);
        wait = false;
        let mut t = track.lock().unwrap_or_else(PoisonError::into_inner);
        let n = match n {
            Ok(n) => n,
            Err(_) => {
                // ICMP errors of earlier sends surface here on a connected socket.
                t.counts.recv_errors += 1;
                0
            }
        };
        if n == 0 {
            return total;
        }
        let now = t0.elapsed().as_nanos() as u64;
        for k in 0..n {
            let truncated = rx.truncated(k);
            for d in rx.segments(k) {
                t.check(d, truncated, now);
                total += 1;
            }
        }
        if n < BATCH {
            return total;
        }
    }
}

pub(super) fn expire(track: &Mutex<Tracker>, t0: Instant, timeout: u64) {
    let now = t0.elapsed().as_nanos() as u64;
    track
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expire(now, timeout);
}
