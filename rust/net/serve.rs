//! `ikeqcd serve`'s core: [`Server`], a rebooted gateway on one UDP socket, its shared
//! [`ServeCounters`] and the serve loop (receive a round of batches, classify every datagram,
//! ask the live check once, answer, send the replies in one batch per receive batch; see
//! [`super::round`]).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::histogram::BatchTimes;
use super::round::Round;
use super::{net_err, setup, sys, xfrm, BATCH};
use crate::error::CoreResult;
use crate::gate::MakerGate;
use crate::live::{Batch, LiveCheck};
use crate::responder::{self, Reason};
use crate::token::TokenMaker;
use crate::wire;

/// Counters of a [`Server`], updated once per batch (readable from any thread while it runs).
#[derive(Debug, Default)]
pub struct ServeCounters {
    /// Datagrams per [`Reason`], indexed by the reason code.
    pub reasons: [AtomicU64; Reason::ALL.len()],
    /// Datagrams received.
    pub datagrams_in: AtomicU64,
    /// UDP payload octets received.
    pub bytes_in: AtomicU64,
    /// Reply datagrams sent.
    pub datagrams_out: AtomicU64,
    /// Reply octets sent.
    pub bytes_out: AtomicU64,
    /// Replies the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Receive calls that failed (other than timeouts and interruptions).
    pub recv_errors: AtomicU64,
    /// `recvmmsg` calls that returned datagrams (receive batches; with a live check, several
    /// of them may share one check round, see [`super::round`]).
    pub batches: AtomicU64,
    /// Time to answer each round (one receive batch without a live check; with one, the
    /// batches that shared a check): from the round's receives returning to the replies'
    /// sends returning (classify, live check, policy, tokens, replies, `sendmmsg`).
    pub batch_times: BatchTimes,
}

/// A plain copy of [`ServeCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeSnapshot {
    /// Datagrams per reason code.
    pub reasons: [u64; Reason::ALL.len()],
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Octets received.
    pub bytes_in: u64,
    /// Replies sent.
    pub datagrams_out: u64,
    /// Octets sent.
    pub bytes_out: u64,
    /// Send failures.
    pub send_errors: u64,
    /// Receive failures.
    pub recv_errors: u64,
    /// Receive batches.
    pub batches: u64,
}

impl ServeCounters {
    /// A consistent-enough copy (each field read atomically).
    #[must_use]
    pub fn snapshot(&self) -> ServeSnapshot {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut reasons = [0u64; Reason::ALL.len()];
        for (r, a) in reasons.iter_mut().zip(&self.reasons) {
            *r = ld(a);
        }
        ServeSnapshot {
            reasons,
            datagrams_in: ld(&self.datagrams_in),
            bytes_in: ld(&self.bytes_in),
            datagrams_out: ld(&self.datagrams_out),
            bytes_out: ld(&self.bytes_out),
            send_errors: ld(&self.send_errors),
            recv_errors: ld(&self.recv_errors),
            batches: ld(&self.batches),
        }
    }

    fn add(&self, s: &ServeSnapshot) {
        let add = |a: &AtomicU64, v: u64| {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        for (a, &v) in self.reasons.iter().zip(&s.reasons) {
            add(a, v);
        }
        add(&self.datagrams_in, s.datagrams_in);
        add(&self.bytes_in, s.bytes_in);
        add(&self.datagrams_out, s.datagrams_out);
        add(&self.bytes_out, s.bytes_out);
        add(&self.send_errors, s.send_errors);
        add(&self.recv_errors, s.recv_errors);
        add(&self.batches, s.batches);
    }
}

/// A rebooted gateway on one UDP socket: every datagram is classified, checked against the
/// live SAs and the reply policy, and answered with a full QCD reply, a bare INVALID_IKE_SPI
/// or nothing, back to its source.
pub struct Server {
    sock: UdpSocket,
    addr: SocketAddr,
    maker: TokenMaker,
    nat_t: bool,
    gso: bool,
    round: Round,
    out: Vec<u8>,
    segs: Vec<sys::Seg>,
    batch: Batch,
    counters: Arc<ServeCounters>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("maker", &self.maker)
            .field("nat_t", &self.nat_t)
            .field("gso", &self.gso)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Bind a UDP socket on `listen` (port 0 = an ephemeral port, see [`Server::local_addr`]).
    /// `nat_t`: the socket is UDP/4500 (non-ESP marker required, ESP counted and ignored).
    /// `gso`: use UDP segmentation offload where the kernel has it (see [`Server::gso`]).
    ///
    /// # Errors
    /// `Network` when the socket cannot be bound (or off Linux).
    pub fn bind(
        listen: SocketAddr,
        maker: TokenMaker,
        nat_t: bool,
        gso: bool,
    ) -> CoreResult<Server> {
        sys::supported()?;
        let sock = UdpSocket::bind(listen)
            .map_err(|e| net_err(format_args!("cannot listen on {listen}"), &e))?;
        setup(&sock, "socket options")?;
        let addr = sock
            .local_addr()
            .map_err(|e| net_err("local address", &e))?;
        let gso = gso && sys::enable_gso(&sock);
        Ok(Server {
            sock,
            addr,
            out: Vec::with_capacity(BATCH * responder::reply_len(&maker, true)),
            maker,
            nat_t,
            gso,
            round: Round::new(),
            segs: Vec::with_capacity(BATCH),
            batch: Batch::default(),
            counters: Arc::new(ServeCounters::default()),
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Exempt this socket from the kernel's IPsec (XFRM) policies, as IKE daemons do for
    /// their own sockets: a crashed daemon's leftover transport-mode policies would otherwise
    /// swallow the peer's requests before this socket sees them (see [`xfrm`]).
    ///
    /// # Errors
    /// The OS error (EPERM without `CAP_NET_ADMIN`, `Unsupported` off Linux); the socket is
    /// unchanged and still serves.
    pub fn xfrm_bypass(&self) -> std::io::Result<()> {
        xfrm::bypass(&self.sock)
    }

    /// Whether UDP GSO/GRO is in use: requests that a peer sent as one segmented batch
    /// (`UDP_SEGMENT`) are received as one buffer and split here (`UDP_GRO`), and runs of
    /// equal-sized replies to one source leave as one segmented send. Every request is still
    /// its own datagram with its own reply; the kernel moves fewer buffers. Off when the
    /// kernel lacks it or a send with it failed.
    #[must_use]
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// The counters (shared: they keep counting while the server runs).
    #[must_use]
    pub fn counters(&self) -> Arc<ServeCounters> {
        Arc::clone(&self.counters)
    }

    /// Serve until `budget` has elapsed or `stop` is set. `now` is the policy clock at the
    /// start of the slice (the gate's time scale); it advances with the monotonic clock.
    /// `live` is asked once per round, with every candidate of the round: after the blocking
    /// receive, what is already queued is taken too (up to [`super::round::ROUND_SLOTS`]
    /// receive batches), so a cluster store's round trip is shared by up to ~1 000 requests.
    /// `gate` is locked once per round after the check; neither is held across a blocking
    /// receive. When `live` cannot answer, every candidate of the round is
    /// `Reason::ClusterUnavailable` and gets nothing (fail closed). Without `live` a round is
    /// one receive batch. Without a gate every candidate gets the full reply.
    ///
    /// # Errors
    /// Only an inconsistent maker (cannot happen); socket errors are counted, never fatal.
    pub fn run(
        &mut self,
        gate: Option<&Mutex<MakerGate>>,
        live: Option<&dyn LiveCheck>,
        now: f64,
        budget: Duration,
        stop: &AtomicBool,
    ) -> CoreResult<()> {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < budget {
            match self.round.receive(&self.sock) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(_) => {
                    self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            if live.is_some() {
                let errors = self.round.receive_queued(&self.sock);
                if errors > 0 {
                    self.counters
                        .recv_errors
                        .fetch_add(errors, Ordering::Relaxed);
                }
            }
            let t = now + start.elapsed().as_secs_f64();
            self.answer_round(gate, live, t)?;
        }
        Ok(())
    }

    fn answer_round(
        &mut self,
        gate: Option<&Mutex<MakerGate>>,
        live: Option<&dyn LiveCheck>,
        now: f64,
    ) -> CoreResult<()> {
        let began = Instant::now();
        let mut c = ServeSnapshot {
            batches: self.round.batches() as u64,
            ..ServeSnapshot::default()
        };
        let Server {
            round,
            out,
            segs,
            maker,
            nat_t,
            batch,
            ..
        } = self;
        out.clear();
        segs.clear();
        batch.clear();
        // Pass 1: classify every datagram; collect the candidates' SPI pairs (with their
        // round-wide slot numbers).
        for (at, rx, k) in round.messages() {
            let truncated = rx.truncated(k);
            for d in rx.segments(k) {
                c.datagrams_in += 1;
                c.bytes_in += d.len() as u64;
                match responder::classify(d, Some(*nat_t)) {
                    _ if truncated => batch.fail(Reason::Malformed),
                    Err(r) => batch.fail(r),
                    Ok(cand) => batch.candidate(at, cand),
                }
            }
        }
        // The live check, once for the whole round.
        let unavailable = batch.check(live);
        // Pass 2: the policy and the replies, in arrival order.
        {
            let mut gate = gate.map(|g| g.lock().unwrap_or_else(PoisonError::into_inner));
            for (slot, is_live) in batch.outcomes() {
                let reason = match slot {
                    Err(r) => r,
                    Ok(_) if unavailable => Reason::ClusterUnavailable,
                    Ok(_) if is_live => Reason::LiveSa,
                    Ok((at, cand)) => {
                        let decision = match gate.as_mut() {
                            Some(g) => {
                                let (rx, k) = round.slot(at);
                                g.decide(rx.source_key(k), now)
                            }
                            None => Reason::Replied,
                        };
                        let start = out.len();
                        if decision == Reason::Replied {
                            responder::write_reply(maker, &cand, out)?;
                        } else if decision.sends() {
                            wire::write_invalid_ike_spi_reply(&cand.header, cand.nat_t, out);
                        }
                        if out.len() > start {
                            segs.push(sys::Seg {
                                start,
                                end: out.len(),
                                to: at,
                            });
                        }
                        decision
                    }
                };
                c.reasons[reason as usize] += 1;
            }
        }
        if !self.segs.is_empty() {
            let r = self
                .round
                .send(&self.sock, &self.out, &mut self.segs, &mut self.gso);
            c.datagrams_out = r.sent as u64;
            c.bytes_out = r.octets as u64;
            c.send_errors = r.errors as u64;
        }
        self.counters.add(&c);
        self.counters.batch_times.record(began.elapsed());
        Ok(())
    }
}
