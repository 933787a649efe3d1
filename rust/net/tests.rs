//! Serve and load against each other on loopback (real sockets), and the option checks.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::*;
use crate::error::CoreError;
use crate::gate::{Fallback, GateConfig, MakerGate};
use crate::live::{LiveCheck, Unavailable};
use crate::responder::Reason;
use crate::table::SaTable;
use crate::token::{Algorithm, TokenMaker};

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
    live: Option<Box<dyn LiveCheck + Send>>,
    f: impl FnOnce(SocketAddr) -> R,
) -> (R, ServeSnapshot) {
    let addr = srv.local_addr();
    let counters = srv.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let h = std::thread::spawn(move || {
        let gate = gate.map(Mutex::new);
        while !s2.load(Ordering::Relaxed) {
            srv.run(
                gate.as_ref(),
                live.as_deref().map(|l| l as &dyn LiveCheck),
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
    let spis = load_spis(2, 7).unwrap();
    let mut table = SaTable::new(1, 0).unwrap();
    table.insert(spis[0].0, spis[0].1, &[0u8; 32], 0.0).unwrap();
    let cfg = LoadConfig {
        rate: 2_000.0,
        sas: 2,
        seed: 7,
        ..LoadConfig::default()
    };
    let (d, c) = with_server(srv, None, Some(Box::new(RwLock::new(table))), |a| {
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

/// A cluster store that cannot answer: every candidate fails closed, nothing is sent.
struct StoreDown;

impl LiveCheck for StoreDown {
    fn contains_batch(&self, _: &[u64], _: &[u64], _: &mut [bool]) -> Result<(), Unavailable> {
        Err(Unavailable)
    }
}

#[test]
fn live_check_unavailable_fails_closed() {
    let srv = Server::bind(loopback(), maker(), false, true).unwrap();
    let cfg = LoadConfig {
        rate: 2_000.0,
        sas: 4,
        ..LoadConfig::default()
    };
    let (d, c) = with_server(srv, None, Some(Box::new(StoreDown)), |a| {
        load(a, cfg, Some(maker()), 0.2)
    });
    let n = d.counts();
    assert!(n.sent > 100);
    assert_eq!(n.answered, 0, "{n:?}");
    assert_eq!(c.reasons[Reason::ClusterUnavailable as usize], n.sent);
    assert_eq!(c.reasons[Reason::Replied as usize], 0);
    assert_eq!(c.datagrams_out, 0);
}

/// A live check that counts its calls and the most pairs asked in one call (nothing live).
#[derive(Default)]
struct Counting(Mutex<(usize, usize, usize)>);

impl LiveCheck for Counting {
    fn contains_batch(&self, a: &[u64], _: &[u64], _: &mut [bool]) -> Result<(), Unavailable> {
        let mut c = self.0.lock().unwrap();
        c.0 += 1;
        c.1 += a.len();
        c.2 = c.2.max(a.len());
        Ok(())
    }
}

#[test]
fn queued_batches_share_one_live_check() {
    // Without GSO/GRO every request is its own message: 1 000 of them are 16 receive batches.
    let mut srv = Server::bind(loopback(), maker(), false, false).unwrap();
    let to = srv.local_addr();
    let peer = UdpSocket::bind(loopback()).unwrap();
    let opts = crate::wire::RequestOptions::default();
    let n = 1_000u64;
    for i in 0..n {
        let d = crate::wire::build_request(i + 1, i + 2, &[0u8; 32], &opts).unwrap();
        peer.send_to(&d, to).unwrap();
    }
    let check = Counting::default();
    let stop = AtomicBool::new(false);
    srv.run(None, Some(&check), 0.0, Duration::from_millis(100), &stop)
        .unwrap();
    let c = srv.counters().snapshot();
    let (calls, pairs, most) = *check.0.lock().unwrap();
    assert_eq!(c.datagrams_in, n, "{c:?}");
    assert_eq!(pairs as u64, n);
    assert_eq!(c.reasons[Reason::Replied as usize], n);
    assert_eq!(c.datagrams_out, n, "{c:?}");
    assert!(c.batches >= 16, "{c:?}");
    assert!(most > BATCH, "{calls} calls, at most {most} pairs");
    assert!(
        (calls as u64) < c.batches,
        "{calls} calls for {} batches",
        c.batches
    );
}
