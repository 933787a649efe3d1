//! `ikeqcd load`'s core: [`LoadDriver`] sends protected-looking requests at a paced rate
//! ([`LoadConfig`]) and counts what the replies showed ([`LoadCounts`]); the pacing loop
//! `send_loop` and the sending half live here, the checking half in `track.rs`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::histogram::Histogram;
use super::track::{expire, receive, Flight, Tracker, EXPIRED, WAITING};
use super::{net_err, setup, sys, BATCH, READ_TIMEOUT};
use crate::error::{CoreError, CoreResult};
use crate::token::TokenMaker;
use crate::wire::{self, RequestOptions};

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

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SPI pairs a load run with `sas` pairs and `seed` uses (never zero).
///
/// # Errors
/// `InvalidArgument` unless `sas` is 1..=2^32-1; `CapacityExceeded` when that many pairs do
/// not fit in memory.
pub fn load_spis(sas: usize, seed: u64) -> CoreResult<Vec<(u64, u64)>> {
    if sas == 0 || sas > u32::MAX as usize {
        return Err(CoreError::InvalidArgument(format!(
            "sas must be 1..=4294967295 SPI pairs, got {sas}"
        )));
    }
    let mut out = Vec::new();
    // 16 octets a pair: a count the machine cannot hold is an error, not an abort
    out.try_reserve_exact(sas).map_err(|_| {
        CoreError::CapacityExceeded(format!("{sas} SPI pairs do not fit in memory"))
    })?;
    let mut st = seed ^ 0x6b65_7163_6400_0000;
    out.extend((0..sas).map(|_| (splitmix(&mut st) | 1, splitmix(&mut st) | 1)));
    Ok(out)
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
                spis: load_spis(cfg.sas, cfg.seed)?,
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
