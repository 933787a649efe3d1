//! One round of the serve loop: the receive batches answered together, with one live check.
//!
//! Without a live check a round is one `recvmmsg` batch, as it always was. With one (a cluster
//! store costs a network round trip, ~100 µs on loopback, whatever the batch size), the round
//! takes, after the blocking receive, whatever is already queued on the socket without
//! waiting, up to [`ROUND_SLOTS`] batches or [`ROUND_DATAGRAMS`] datagrams, so the store is
//! asked once for all of them.

use std::net::UdpSocket;

use super::{sys, BATCH};

/// Most `recvmmsg` batches in one round (16 × [`BATCH`] = 1 024 messages): enough to share a
/// store round trip across a thousand requests under load, small enough that a round's
/// replies leave within a fraction of a millisecond. Receive buffers beyond the first are
/// allocated on first use.
pub(super) const ROUND_SLOTS: usize = 16;
/// A round stops taking more batches once it holds this many datagrams (with GRO one message
/// can carry up to 64), so one live check never grows past about this plus one batch.
pub(super) const ROUND_DATAGRAMS: usize = 1_024;

/// The receive buffers of one round and how many messages each holds.
pub(super) struct Round {
    rx: Vec<Box<sys::RecvSlots>>,
    filled: Vec<usize>,
}

impl Round {
    pub(super) fn new() -> Round {
        Round {
            rx: vec![sys::RecvSlots::new()],
            filled: Vec::with_capacity(ROUND_SLOTS),
        }
    }

    /// Start a round: one receive that waits (up to the socket's read timeout). Returns the
    /// messages received (0: nothing came), or the receive error.
    pub(super) fn receive(&mut self, sock: &UdpSocket) -> std::io::Result<usize> {
        self.filled.clear();
        let n = sys::recv(sock, &mut self.rx[0], BATCH, true)?;
        if n > 0 {
            self.filled.push(n);
        }
        Ok(n)
    }

    /// Add what is already queued, without waiting, up to the round's bounds. Returns the
    /// receive errors (the round keeps what it has).
    pub(super) fn receive_queued(&mut self, sock: &UdpSocket) -> u64 {
        let mut datagrams: usize = (0..self.filled.len()).map(|j| self.datagrams(j)).sum();
        while self.filled.len() < ROUND_SLOTS && datagrams < ROUND_DATAGRAMS {
            let j = self.filled.len();
            if self.rx.len() == j {
                self.rx.push(sys::RecvSlots::new());
            }
            match sys::recv(sock, &mut self.rx[j], BATCH, false) {
                Ok(0) => break, // drained (EAGAIN is reported as 0)
                Ok(n) => {
                    self.filled.push(n);
                    datagrams += self.datagrams(j);
                }
                Err(_) => return 1,
            }
        }
        0
    }

    fn datagrams(&self, j: usize) -> usize {
        (0..self.filled[j])
            .map(|k| self.rx[j].segments(k).count())
            .sum()
    }

    /// The receive batches of this round.
    pub(super) fn batches(&self) -> usize {
        self.filled.len()
    }

    /// Every received message of the round in arrival order: its round-wide slot number
    /// (see [`Round::slot`]) and the receive batch holding it.
    pub(super) fn messages(&self) -> impl Iterator<Item = (usize, &sys::RecvSlots, usize)> + '_ {
        self.filled
            .iter()
            .enumerate()
            .flat_map(move |(j, &n)| (0..n).map(move |k| (j * BATCH + k, &*self.rx[j], k)))
    }

    /// The receive batch and message index of a round-wide slot number.
    pub(super) fn slot(&self, at: usize) -> (&sys::RecvSlots, usize) {
        (&self.rx[at / BATCH], at % BATCH)
    }

    /// Send the replies `segs` (whose `to` is a round-wide slot number, in arrival order)
    /// from `out`, each receive batch's with its own `sendmmsg` to its sources.
    pub(super) fn send(
        &self,
        sock: &UdpSocket,
        out: &[u8],
        segs: &mut [sys::Seg],
        gso: &mut bool,
    ) -> sys::Sent {
        let mut total = sys::Sent::default();
        let mut rest = segs;
        while let Some(first) = rest.first() {
            let j = first.to / BATCH;
            let len = rest.iter().take_while(|s| s.to / BATCH == j).count();
            let (now, later) = rest.split_at_mut(len);
            for s in now.iter_mut() {
                s.to %= BATCH;
            }
            let r = sys::send(sock, out, now, Some(&self.rx[j]), gso);
            total.sent += r.sent;
            total.octets += r.octets;
            total.errors += r.errors;
            rest = later;
        }
        total
    }
}
