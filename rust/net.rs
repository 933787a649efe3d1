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
//! The loops run for a bounded slice of time and return, so a caller (the Python layer) can
//! handle signals, print progress and stop cleanly between slices. Sockets come from
//! `std::net::UdpSocket` (IPv4 and IPv6); the only `unsafe` code, the `libc` calls, is in the
//! private `sys` module here.
#![deny(unsafe_op_in_unsafe_fn)]

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::error::{CoreError, CoreResult};
use crate::gate::MakerGate;
use crate::responder::{self, Reason};
use crate::table::SaTable;
use crate::token::TokenMaker;
use crate::wire::{self, RequestOptions};

#[path = "net_xfrm.rs"]
pub mod xfrm;

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

// ---------------------------------------------------------------------------------------------
// Serve
// ---------------------------------------------------------------------------------------------

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
    /// `recvmmsg` calls that returned datagrams.
    pub batches: AtomicU64,
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
    rx: Box<sys::RecvSlots>,
    out: Vec<u8>,
    segs: Vec<sys::Seg>,
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
            rx: sys::RecvSlots::new(),
            segs: Vec::with_capacity(BATCH),
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
    /// `gate` is locked and `live` read-locked once per batch, never across a blocking
    /// receive. Without a gate every candidate gets the full reply.
    ///
    /// # Errors
    /// Only an inconsistent maker (cannot happen); socket errors are counted, never fatal.
    pub fn run(
        &mut self,
        gate: Option<&Mutex<MakerGate>>,
        live: Option<&RwLock<SaTable>>,
        now: f64,
        budget: Duration,
        stop: &AtomicBool,
    ) -> CoreResult<()> {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < budget {
            let n = match sys::recv(&self.sock, &mut self.rx, BATCH, true) {
                Ok(n) => n,
                Err(_) => {
                    self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if n == 0 {
                continue;
            }
            let t = now + start.elapsed().as_secs_f64();
            self.answer_batch(n, gate, live, t)?;
        }
        Ok(())
    }

    fn answer_batch(
        &mut self,
        n: usize,
        gate: Option<&Mutex<MakerGate>>,
        live: Option<&RwLock<SaTable>>,
        now: f64,
    ) -> CoreResult<()> {
        let mut c = ServeSnapshot {
            batches: 1,
            ..ServeSnapshot::default()
        };
        self.out.clear();
        self.segs.clear();
        {
            let live = live.map(|l| l.read().unwrap_or_else(PoisonError::into_inner));
            let mut gate = gate.map(|g| g.lock().unwrap_or_else(PoisonError::into_inner));
            let (rx, out, segs, maker) = (&self.rx, &mut self.out, &mut self.segs, &self.maker);
            for k in 0..n {
                let truncated = rx.truncated(k);
                for d in rx.segments(k) {
                    c.datagrams_in += 1;
                    c.bytes_in += d.len() as u64;
                    let reason = match responder::classify(d, Some(self.nat_t)) {
                        _ if truncated => Reason::Malformed,
                        Err(r) => r,
                        Ok(cand) => {
                            let (a, b) = (cand.header.spi_i, cand.header.spi_r);
                            if live.as_ref().is_some_and(|t| t.contains(a, b)) {
                                Reason::LiveSa
                            } else {
                                let decision = match gate.as_mut() {
                                    Some(g) => g.decide(rx.source_key(k), now),
                                    None => Reason::Replied,
                                };
                                let at = out.len();
                                if decision == Reason::Replied {
                                    responder::write_reply(maker, &cand, out)?;
                                } else if decision.sends() {
                                    wire::write_invalid_ike_spi_reply(
                                        &cand.header,
                                        cand.nat_t,
                                        out,
                                    );
                                }
                                if out.len() > at {
                                    segs.push(sys::Seg {
                                        start: at,
                                        end: out.len(),
                                        to: k,
                                    });
                                }
                                decision
                            }
                        }
                    };
                    c.reasons[reason as usize] += 1;
                }
            }
        }
        if !self.segs.is_empty() {
            let r = sys::send(
                &self.sock,
                &self.out,
                &self.segs,
                Some(&self.rx),
                &mut self.gso,
            );
            c.datagrams_out = r.sent as u64;
            c.bytes_out = r.octets as u64;
            c.send_errors = r.errors as u64;
        }
        self.counters.add(&c);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------------------------

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Log-linear histogram of nanosecond values: 16 buckets per power of two (about 6 %
/// resolution), exact below 16 ns. Fixed size (976 counters), no allocation per value.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

fn bucket_low(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let g = (i / SUB) as u32; // >= 1
    ((SUB + i % SUB) as u64) << (g - 1)
}

impl Histogram {
    /// Count one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Values counted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Largest value counted.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The non-empty buckets as (middle of the bucket, count), in increasing order: a
    /// compact copy of the distribution (for Locust's statistics). The middles do not depend
    /// on the values counted, so two snapshots can be subtracted bucket by bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let lo = bucket_low(i);
                let hi = if i + 1 < BUCKETS {
                    bucket_low(i + 1)
                } else {
                    u64::MAX
                };
                (lo + (hi - lo) / 2, c)
            })
    }

    /// The `q`-quantile (0..=1), as the middle of its bucket (capped at the maximum); 0 when
    /// empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                let lo = bucket_low(i);
                let hi = if i + 1 < BUCKETS {
                    bucket_low(i + 1)
                } else {
                    u64::MAX
                };
                return (lo + (hi - lo) / 2).min(self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// Options of [`LoadDriver`].
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Requests per second; `0` or infinite = as fast as the window allows.
    pub rate: f64,
    /// Number of SPI pairs the requests are drawn from (uniformly at random).
    pub sas: usize,
    /// Seed of the SPI pairs and of the request bodies.
    pub seed: u64,
    /// Send with the non-ESP marker (the server listens as UDP/4500).
    pub nat_t: bool,
    /// Octets of random SK body per request (what would be IV, ciphertext and ICV).
    pub body_len: usize,
    /// Most requests in flight (sent, not yet answered or expired); at most [`RING`].
    pub window: usize,
    /// A request not answered within this many seconds is lost (a later reply is late).
    pub timeout: f64,
    /// Send each batch of requests as one segmented send (`UDP_SEGMENT`) and receive replies
    /// coalesced (`UDP_GRO`), where the kernel has them. Each request is still a datagram.
    pub gso: bool,
    /// Receive and check replies on a second thread instead of between sends.
    pub recv_thread: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            rate: 10_000.0,
            sas: 1000,
            seed: 0,
            nat_t: false,
            body_len: 32,
            window: RING,
            timeout: 1.0,
            gso: false,
            recv_thread: false,
        }
    }
}

/// Requests tracked at once (send time, SA, state), indexed by Message ID modulo this.
pub const RING: usize = 1 << 18;

/// Most requests the load driver sends per system call with GSO (64 without).
pub const SEND_MAX: usize = 4 * BATCH;

/// Largest random SK body of a load request.
pub const MAX_BODY: usize = 1200;

/// What the load driver counted. Every reply that parses and whose Message ID is in flight
/// is `answered`; `valid`, `bare`, `mismatched` and `bad_token` split the answered ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Requests sent.
    pub sent: u64,
    /// Requests the kernel refused to send (e.g. ICMP port unreachable on loopback).
    pub send_errors: u64,
    /// Replies matched to a request in flight (within the timeout).
    pub answered: u64,
    /// Full QCD replies with the request's SPIs and Message ID, R=1, INVALID_IKE_SPI and at
    /// least one token, every token verified (with the secret) or well-formed (without).
    pub valid: u64,
    /// Matched replies with INVALID_IKE_SPI and no token (policy: off, limited, window).
    pub bare: u64,
    /// Matched replies with a token that does not verify under the secret.
    pub bad_token: u64,
    /// Matched replies that are not a QCD reply for that request (wrong SPIs, R=0, no
    /// INVALID_IKE_SPI: an echo, say).
    pub mismatched: u64,
    /// Datagrams that do not parse as IKEv2.
    pub malformed: u64,
    /// Replies whose Message ID is not in flight (never sent, duplicate, or forgotten).
    pub unmatched: u64,
    /// Replies that came after the timeout.
    pub late: u64,
    /// Requests that expired without a reply.
    pub lost: u64,
    /// Receive calls that failed.
    pub recv_errors: u64,
}

#[derive(Clone, Copy, Default)]
struct Flight {
    mid: u32,
    sa: u32,
    sent_ns: u64,
    state: u8,
}

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const ANSWERED: u8 = 2;
const EXPIRED: u8 = 3;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SPI pairs a load run with `sas` pairs and `seed` uses (never zero).
#[must_use]
pub fn load_spis(sas: usize, seed: u64) -> Vec<(u64, u64)> {
    let mut st = seed ^ 0x6b65_7163_6400_0000;
    (0..sas)
        .map(|_| (splitmix(&mut st) | 1, splitmix(&mut st) | 1))
        .collect()
}

/// The requests in flight and what the replies showed: the checking half of [`LoadDriver`].
struct Tracker {
    nat_t: bool,
    maker: Option<TokenMaker>,
    spis: Vec<(u64, u64)>,
    ring: Vec<Flight>,
    next: u64,
    tail: u64,
    hist: Histogram,
    counts: LoadCounts,
}

impl Tracker {
    fn check(&mut self, d: &[u8], truncated: bool, now: u64) {
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

    fn expire(&mut self, now: u64, timeout: u64) {
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

/// The sending half of [`LoadDriver`].
struct SendSide {
    rng: u64,
    gso: bool,
    first_send: Option<u64>,
    last_send: u64,
    body: Vec<u8>,
    tx: Vec<u8>,
    segs: Vec<sys::Seg>,
}

impl SendSide {
    /// Build and send `n` requests stamped `now`; returns how many the kernel took.
    fn send_batch(
        &mut self,
        sock: &UdpSocket,
        nat_t: bool,
        track: &Mutex<Tracker>,
        n: usize,
        now: u64,
    ) -> usize {
        self.tx.clear();
        self.segs.clear();
        let mut t = track.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..n {
            let sa = (splitmix(&mut self.rng) % t.spis.len() as u64) as usize;
            for chunk in self.body.chunks_mut(8) {
                let r = splitmix(&mut self.rng).to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            let (a, b) = t.spis[sa];
            let k = self.segs.len();
            let mid = (t.next + k as u64) as u32;
            let opts = RequestOptions {
                message_id: mid,
                nat_t,
                ..RequestOptions::default()
            };
            // Cannot fail: body_len was checked against the SK payload limit.
            let Ok(req) = wire::build_request(a, b, &self.body, &opts) else {
                continue;
            };
            let at = self.tx.len();
            self.tx.extend_from_slice(&req);
            self.segs.push(sys::Seg {
                start: at,
                end: self.tx.len(),
                to: k,
            });
            t.ring[mid as usize % RING] = Flight {
                mid,
                sa: sa as u32,
                sent_ns: now,
                state: WAITING,
            };
        }
        let n = self.segs.len();
        let first = t.next;
        t.next += n as u64;
        // The lock is not held across the send: a receiving thread may check replies
        // meanwhile (a reply cannot come before its request is recorded above).
        drop(t);
        let r = sys::send(sock, &self.tx, &self.segs, None, &mut self.gso);
        let mut t = track.lock().unwrap_or_else(PoisonError::into_inner);
        // Requests the kernel refused are settled at once (never in flight); on a connected
        // socket they are the tail of the batch.
        for s in &self.segs[r.sent..] {
            let mid = (first + s.to as u64) as u32;
            t.ring[mid as usize % RING].state = EXPIRED;
        }
        t.counts.sent += r.sent as u64;
        t.counts.send_errors += (n - r.sent) as u64;
        self.first_send.get_or_insert(now);
        self.last_send = now;
        r.sent
    }
}

/// Receive what is pending (or, with `wait`, block up to the read timeout for the first
/// message) and check every datagram; returns how many.
fn receive(
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

/// Sends protected-looking requests (`HDR, SK{random}`, INFORMATIONAL, Message ID = sequence
/// number) for random SPI pairs to one target at a paced rate, and checks every reply with
/// the codec and, when it has the secret, [`TokenMaker::verify`]. Sending and receiving are
/// interleaved on one connected socket in one thread, or (`recv_thread`) the replies are
/// received and checked on a second thread.
pub struct LoadDriver {
    sock: UdpSocket,
    target: SocketAddr,
    cfg: LoadConfig,
    t0: Option<Instant>,
    send: SendSide,
    rx: Box<sys::RecvSlots>,
    track: Mutex<Tracker>,
}

impl std::fmt::Debug for LoadDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadDriver")
            .field("target", &self.target)
            .field("cfg", &self.cfg)
            .field("gso", &self.send.gso)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl LoadDriver {
    /// A connected socket towards `target` (bound to the unspecified address of its family).
    ///
    /// # Errors
    /// `InvalidArgument` for impossible options; `Network` when the socket cannot be made.
    pub fn connect(
        target: SocketAddr,
        cfg: LoadConfig,
        maker: Option<TokenMaker>,
    ) -> CoreResult<LoadDriver> {
        sys::supported()?;
        if cfg.rate.is_nan() || cfg.rate < 0.0 {
            return Err(CoreError::InvalidArgument(format!(
                "rate must be >= 0 requests per second (0 = as fast as possible), got {}",
                cfg.rate
            )));
        }
        if cfg.sas == 0 || cfg.sas > u32::MAX as usize {
            return Err(CoreError::InvalidArgument(format!(
                "sas must be 1..=4294967295 SPI pairs, got {}",
                cfg.sas
            )));
        }
        if cfg.window == 0 {
            return Err(CoreError::InvalidArgument(
                "window must be at least 1 request in flight".to_owned(),
            ));
        }
        if !(cfg.timeout > 0.0 && cfg.timeout.is_finite()) {
            return Err(CoreError::InvalidArgument(format!(
                "timeout must be a positive number of seconds, got {}",
                cfg.timeout
            )));
        }
        if cfg.body_len > MAX_BODY {
            return Err(CoreError::InvalidArgument(format!(
                "body_len must be 0..={MAX_BODY} octets, got {}",
                cfg.body_len
            )));
        }
        let bind: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).map_err(|e| net_err("cannot bind", &e))?;
        sock.connect(target)
            .map_err(|e| net_err(format_args!("cannot reach {target}"), &e))?;
        setup(&sock, "socket options")?;
        let cfg = LoadConfig {
            window: cfg.window.min(RING),
            ..cfg
        };
        let gso = cfg.gso && sys::enable_gso(&sock);
        Ok(LoadDriver {
            sock,
            target,
            t0: None,
            send: SendSide {
                rng: cfg.seed ^ 0x005e_ed0f_b0d1,
                gso,
                first_send: None,
                last_send: 0,
                body: vec![0; cfg.body_len],
                tx: Vec::with_capacity(SEND_MAX * (cfg.body_len + 64)),
                segs: Vec::with_capacity(SEND_MAX),
            },
            rx: sys::RecvSlots::new(),
            track: Mutex::new(Tracker {
                nat_t: cfg.nat_t,
                maker,
                spis: load_spis(cfg.sas, cfg.seed),
                ring: vec![Flight::default(); RING],
                next: 0,
                tail: 0,
                hist: Histogram::default(),
                counts: LoadCounts::default(),
            }),
            cfg,
        })
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.track.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The target.
    #[must_use]
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Whether UDP GSO/GRO is in use (asked for and available).
    #[must_use]
    pub fn gso(&self) -> bool {
        self.send.gso
    }

    /// The counts so far.
    #[must_use]
    pub fn counts(&self) -> LoadCounts {
        self.tracker().counts
    }

    /// Round-trip times of the answered requests (nanoseconds).
    #[must_use]
    pub fn latency(&self) -> Histogram {
        self.tracker().hist.clone()
    }

    /// Requests in flight (sent, neither answered nor expired, counting from the oldest).
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        let t = self.tracker();
        t.next - t.tail
    }

    /// Seconds since the first call to [`LoadDriver::run`].
    #[must_use]
    pub fn elapsed(&self) -> f64 {
        self.t0.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds from the first to the last send (the send phase).
    #[must_use]
    pub fn send_span(&self) -> f64 {
        self.send
            .first_send
            .map_or(0.0, |f| self.send.last_send.saturating_sub(f) as f64 * 1e-9)
    }

    fn timeout_ns(&self) -> u64 {
        (self.cfg.timeout * 1e9) as u64
    }

    /// Send paced requests while less than `send_for` has elapsed since the first call, and
    /// receive replies, until `until` has elapsed (both measured from the first call) or
    /// `stop` is set.
    pub fn run(&mut self, until: Duration, send_for: Duration, stop: &AtomicBool) {
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        let (until_ns, send_ns) = (until.as_nanos() as u64, send_for.as_nanos() as u64);
        let timeout = self.timeout_ns();
        let LoadDriver {
            sock,
            cfg,
            send,
            rx,
            track,
            ..
        } = self;
        let (sock, cfg) = (&*sock, *cfg);
        if !cfg.recv_thread {
            send_loop(sock, &cfg, send, track, t0, until_ns, send_ns, stop, || {
                let got = receive(sock, rx, track, t0, false);
                expire(track, t0, timeout);
                got
            });
            return;
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let track = &*track;
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if receive(sock, rx, track, t0, false) == 0 {
                        sys::wait_readable(sock, Duration::from_millis(1));
                    }
                    expire(track, t0, timeout);
                }
            });
            send_loop(sock, &cfg, send, track, t0, until_ns, send_ns, stop, || 0);
            done.store(true, Ordering::Relaxed);
        });
    }

    /// After the send phase: receive until nothing is in flight or `max` has passed.
    pub fn drain(&mut self, max: Duration, stop: &AtomicBool) {
        let start = Instant::now();
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        let timeout = self.timeout_ns();
        while self.in_flight() > 0 && start.elapsed() < max && !stop.load(Ordering::Relaxed) {
            if receive(&self.sock, &mut self.rx, &self.track, t0, false) == 0 {
                expire(&self.track, t0, timeout);
                if self.in_flight() > 0 {
                    sys::wait_readable(&self.sock, Duration::from_millis(5));
                }
            }
        }
        expire(&self.track, t0, timeout);
    }
}

fn expire(track: &Mutex<Tracker>, t0: Instant, timeout: u64) {
    let now = t0.elapsed().as_nanos() as u64;
    track
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expire(now, timeout);
}

/// The pacing loop: send what is due (at most [`SEND_MAX`] with GSO, [`BATCH`] without, and
/// within the window), call `poll` (receive in the same thread, or nothing), and wait when
/// idle.
#[allow(clippy::too_many_arguments)]
fn send_loop(
    sock: &UdpSocket,
    cfg: &LoadConfig,
    send: &mut SendSide,
    track: &Mutex<Tracker>,
    t0: Instant,
    until_ns: u64,
    send_ns: u64,
    stop: &AtomicBool,
    mut poll: impl FnMut() -> usize,
) {
    let paced = cfg.rate > 0.0 && cfg.rate.is_finite();
    let max = if send.gso { SEND_MAX } else { BATCH } as u64;
    loop {
        let now = t0.elapsed().as_nanos() as u64;
        if now >= until_ns || stop.load(Ordering::Relaxed) {
            break;
        }
        let (next, tail) = {
            let t = track.lock().unwrap_or_else(PoisonError::into_inner);
            (t.next, t.tail)
        };
        let mut sent = 0;
        if now < send_ns {
            let due = if paced {
                let target = (cfg.rate * now as f64 * 1e-9) as u64 + 1;
                target.saturating_sub(next)
            } else {
                max
            };
            let room = (cfg.window as u64).saturating_sub(next - tail);
            let n = due.min(room).min(max) as usize;
            if n > 0 {
                sent = send.send_batch(sock, cfg.nat_t, track, n, now);
            }
        }
        let got = poll();
        if sent == 0 && got == 0 {
            // Nothing to do: wait for a reply, or until the next request is due.
            let mut wait_ns = until_ns.saturating_sub(now);
            if now < send_ns && paced {
                let next_at = (next as f64 / cfg.rate * 1e9) as u64;
                wait_ns = wait_ns.min(next_at.saturating_sub(now));
            }
            wait_ns = wait_ns.min(READ_TIMEOUT.as_nanos() as u64);
            if wait_ns > 0 {
                if cfg.recv_thread {
                    std::thread::sleep(Duration::from_nanos(wait_ns.min(1_000_000)));
                } else {
                    sys::wait_readable(sock, Duration::from_nanos(wait_ns));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// System calls
// ---------------------------------------------------------------------------------------------

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

#[cfg(target_os = "linux")]
mod sys {
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
                    let sin = unsafe {
                        &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                    };
                    crate::srckey::v4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    // SAFETY: as above, for sockaddr_in6.
                    let sin6 = unsafe {
                        &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                    };
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
                    for (h, &(_, count)) in
                        hdr[done..].iter().zip(&chunk[done..]).take(sent as usize)
                    {
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
}

#[cfg(not(target_os = "linux"))]
mod sys {
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
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::gate::{Fallback, GateConfig};
    use crate::token::Algorithm;

    fn maker() -> TokenMaker {
        TokenMaker::new(&[&[9u8; 32], &[8u8; 32]], Algorithm::HmacSha256, None).unwrap()
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Run a server on a thread for the duration of `f`.
    fn with_server<R>(
        mut srv: Server,
        gate: Option<MakerGate>,
        live: Option<SaTable>,
        f: impl FnOnce(SocketAddr) -> R,
    ) -> (R, ServeSnapshot) {
        let addr = srv.local_addr();
        let counters = srv.counters();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let h = std::thread::spawn(move || {
            let gate = gate.map(Mutex::new);
            let live = live.map(RwLock::new);
            while !s2.load(Ordering::Relaxed) {
                srv.run(
                    gate.as_ref(),
                    live.as_ref(),
                    0.0,
                    Duration::from_millis(50),
                    &s2,
                )
                .unwrap();
            }
        });
        let r = f(addr);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        (r, counters.snapshot())
    }

    fn load(addr: SocketAddr, cfg: LoadConfig, maker: Option<TokenMaker>, secs: f64) -> LoadDriver {
        let mut d = LoadDriver::connect(addr, cfg, maker).unwrap();
        let stop = AtomicBool::new(false);
        let dur = Duration::from_secs_f64(secs);
        d.run(dur, dur, &stop);
        d.drain(Duration::from_secs(1), &stop);
        d
    }

    #[test]
    fn serve_and_load_on_loopback() {
        for (nat_t, gso, recv_thread) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (false, true, true),
            (false, false, true),
        ] {
            let srv = Server::bind(loopback(), maker(), nat_t, gso).unwrap();
            assert!(gso || !srv.gso()); // with gso, only kernels since 5.0 have it
            let cfg = LoadConfig {
                rate: 20_000.0,
                sas: 50,
                nat_t,
                gso,
                recv_thread,
                ..LoadConfig::default()
            };
            let (d, c) = with_server(srv, None, None, |a| load(a, cfg, Some(maker()), 0.2));
            let n = d.counts();
            assert!(n.sent >= 3000, "{n:?}");
            assert_eq!(n.answered, n.sent, "{n:?}");
            assert_eq!(n.valid, n.sent, "{n:?}");
            assert_eq!(n.bad_token + n.malformed + n.unmatched + n.lost, 0);
            assert_eq!(c.reasons[0], n.sent);
            assert_eq!(c.datagrams_in, n.sent);
            assert_eq!(c.datagrams_out, n.sent);
            assert!(d.latency().total() == n.answered && d.latency().quantile(0.5) > 0);
        }
    }

    #[test]
    fn wrong_secret_and_policy() {
        let srv = Server::bind(loopback(), maker(), false, true).unwrap();
        let other = TokenMaker::new(&[&[1u8; 32]], Algorithm::HmacSha256, None).unwrap();
        let gate = MakerGate::new(GateConfig {
            enabled: true,
            per_source: (0.0, 100.0),
            global: (f64::INFINITY, f64::INFINITY),
            bare_rate: f64::INFINITY,
            fallback: Fallback::Bare,
            window_end: None,
            max_sources: 16,
        })
        .unwrap();
        let cfg = LoadConfig {
            rate: 5_000.0,
            sas: 10,
            ..LoadConfig::default()
        };
        let (d, c) = with_server(srv, Some(gate), None, |a| load(a, cfg, Some(other), 0.1));
        let n = d.counts();
        assert_eq!(n.answered, n.sent);
        assert_eq!(n.bad_token, 100, "{n:?}"); // the per-source burst
        assert_eq!(n.bare, n.sent - 100);
        assert_eq!(c.reasons[Reason::RateLimitedBare as usize], n.sent - 100);
    }

    #[test]
    fn live_sa_and_garbage() {
        let srv = Server::bind(loopback(), maker(), false, true).unwrap();
        let spis = load_spis(2, 7);
        let mut table = SaTable::new(1, 0).unwrap();
        table.insert(spis[0].0, spis[0].1, &[0u8; 32], 0.0).unwrap();
        let cfg = LoadConfig {
            rate: 2_000.0,
            sas: 2,
            seed: 7,
            ..LoadConfig::default()
        };
        let (d, c) = with_server(srv, None, Some(table), |a| {
            let junk = UdpSocket::bind(loopback()).unwrap();
            for len in [0usize, 1, 27, 28, 100, 9000] {
                junk.send_to(&vec![0xab; len], a).unwrap();
            }
            load(a, cfg, Some(maker()), 0.2)
        });
        let n = d.counts();
        assert!(n.sent > 100);
        assert_eq!(n.valid + n.lost, n.sent);
        assert_eq!(c.reasons[Reason::LiveSa as usize], n.lost);
        assert!(n.lost > 20, "{n:?}");
        // 0, 1, 27 octets: malformed; 28, 100 and 9000 octets of 0xab: version 0xab is not
        // IKEv2.
        assert_eq!(c.reasons[Reason::Malformed as usize], 3);
        assert_eq!(c.reasons[Reason::NotIkev2 as usize], 3);
    }

    #[test]
    fn no_server_counts_errors_not_panics() {
        let free = UdpSocket::bind(loopback()).unwrap().local_addr().unwrap();
        let cfg = LoadConfig {
            rate: 1_000.0,
            timeout: 0.05,
            ..LoadConfig::default()
        };
        let d = load(free, cfg, None, 0.05);
        let n = d.counts();
        assert_eq!(n.answered, 0);
        assert!(n.sent + n.send_errors > 0);
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.07, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.07, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        for i in 0..BUCKETS - 1 {
            assert!(bucket_low(i) < bucket_low(i + 1));
            assert_eq!(bucket_of(bucket_low(i)), i);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn bad_options() {
        let a = loopback();
        for cfg in [
            LoadConfig {
                rate: -1.0,
                ..LoadConfig::default()
            },
            LoadConfig {
                sas: 0,
                ..LoadConfig::default()
            },
            LoadConfig {
                timeout: 0.0,
                ..LoadConfig::default()
            },
            LoadConfig {
                body_len: 100_000,
                ..LoadConfig::default()
            },
        ] {
            assert!(matches!(
                LoadDriver::connect(a, cfg, None),
                Err(CoreError::InvalidArgument(_))
            ));
        }
        assert!(resolve("nonsense").is_err());
        assert_eq!(resolve("[::1]:500").unwrap().port(), 500);
    }
}
