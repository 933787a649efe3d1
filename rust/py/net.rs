//! Bindings for `net/`: the private `_UdpServer` and `_LoadDriver` used by `ikeqcd.net`.
//!
//! Each call runs one bounded slice of the batch loop with the GIL released (nothing
//! Python-side per packet) and returns, so the Python layer handles signals, progress and
//! stopping between slices.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::detach::run_detached;
use super::errors::InvalidArgument;
use super::gate::PyMakerGate;
use super::live::LiveSource;
use super::token::PyTokenMaker;
use crate::net::{self, LoadConfig, LoadDriver, ServeCounters, Server};
use crate::responder::Reason;

/// A blocking loop always runs detached, whatever its size.
const ALWAYS: usize = usize::MAX;

fn seconds(v: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        InvalidArgument::new_err(format!(
            "{name} must be a finite number of seconds >= 0, got {v}"
        ))
    })
}

fn host_port(a: SocketAddr) -> (String, u16) {
    (a.ip().to_string(), a.port())
}

/// A rebooted gateway on one UDP socket (`ikeqcd serve`). Use `ikeqcd.net.Server`.
#[pyclass(frozen, name = "_UdpServer", module = "ikeqcd._core")]
pub struct PyUdpServer {
    server: Mutex<Server>,
    counters: Arc<ServeCounters>,
    stop: AtomicBool,
    addr: SocketAddr,
    gate: Option<Py<PyMakerGate>>,
    live: Option<LiveSource>,
    xfrm_bypass: Option<Result<(), String>>,
}

#[pymethods]
impl PyUdpServer {
    #[new]
    #[pyo3(signature = (listen, maker, /, *, nat_t = false, gso = true, gate = None, live = None, xfrm_bypass = false))]
    fn new(
        listen: &str,
        maker: &Bound<'_, PyTokenMaker>,
        nat_t: bool,
        gso: bool,
        gate: Option<Bound<'_, PyMakerGate>>,
        live: Option<Bound<'_, PyAny>>,
        xfrm_bypass: bool,
    ) -> PyResult<Self> {
        let live = live.as_ref().map(LiveSource::new).transpose()?;
        let at = net::resolve(listen)?;
        let server = Server::bind(at, maker.get().inner.clone(), nat_t, gso)?;
        let xfrm_bypass = xfrm_bypass.then(|| server.xfrm_bypass().map_err(|e| e.to_string()));
        Ok(PyUdpServer {
            xfrm_bypass,
            counters: server.counters(),
            addr: server.local_addr(),
            server: Mutex::new(server),
            stop: AtomicBool::new(false),
            gate: gate.map(Bound::unbind),
            live,
        })
    }

    /// The bound (host, port).
    #[getter]
    fn address(&self) -> (String, u16) {
        host_port(self.addr)
    }

    /// Whether the per-socket XFRM bypass policies are set (asked for and permitted).
    #[getter]
    fn xfrm_bypass(&self) -> bool {
        matches!(self.xfrm_bypass, Some(Ok(())))
    }

    /// Why the XFRM bypass asked for could not be set (`None`: set, or not asked for).
    #[getter]
    fn xfrm_bypass_error(&self) -> Option<String> {
        match &self.xfrm_bypass {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Whether UDP GSO/GRO is in use (asked for, available, and never refused).
    #[getter]
    fn gso(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gso()
    }

    /// Serve for up to `seconds` (or until `stop()`), the GIL released; `now` is the policy
    /// clock (`time.monotonic()`) at the call. Returns whether the server is stopped.
    #[pyo3(signature = (now, seconds, /))]
    fn run(&self, py: Python<'_>, now: f64, seconds: f64) -> PyResult<bool> {
        let budget = self::seconds(seconds, "seconds")?;
        crate::clock::check_time(now, "now")?;
        let gate = self.gate.as_ref().map(|g| &g.get().inner);
        let live = self.live.as_ref().map(LiveSource::check);
        run_detached(py, ALWAYS, || {
            let mut s = self.server.lock().unwrap_or_else(PoisonError::into_inner);
            s.run(gate, live, now, budget, &self.stop)
        })?;
        Ok(self.stop.load(Ordering::Relaxed))
    }

    /// Ask a running (or the next) `run` to return at once; from any thread.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether `stop()` was called.
    #[getter]
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The counters: one entry per reason name (``"REPLIED"``, ...) and ``datagrams_in``,
    /// ``bytes_in``, ``datagrams_out``, ``bytes_out``, ``send_errors``, ``recv_errors``,
    /// ``batches``. Lock-free: callable while another thread runs the server.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.counters.snapshot();
        let d = PyDict::new(py);
        for (r, v) in Reason::ALL.iter().zip(s.reasons) {
            d.set_item(r.name(), v)?;
        }
        d.set_item("datagrams_in", s.datagrams_in)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("datagrams_out", s.datagrams_out)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item("send_errors", s.send_errors)?;
        d.set_item("recv_errors", s.recv_errors)?;
        d.set_item("batches", s.batches)?;
        Ok(d)
    }

    /// Time to answer each received batch: (upper bounds in seconds, counts per bucket, not
    /// cumulative, with one more bucket above the largest bound, sum in seconds). Lock-free.
    fn batch_times(&self) -> (Vec<f64>, Vec<u64>, f64) {
        let (counts, sum_ns) = self.counters.batch_times.snapshot();
        let bounds = net::BATCH_TIME_BOUNDS_NS.iter().map(|&b| b as f64 / 1e9);
        (bounds.collect(), counts.to_vec(), sum_ns as f64 * 1e-9)
    }

    fn __repr__(&self) -> String {
        format!(
            "_UdpServer({}, live={}, gate={})",
            self.addr,
            match &self.live {
                None => "none",
                Some(l) if l.is_object() => "object",
                Some(_) => "table",
            },
            self.gate.is_some()
        )
    }
}

/// The load driver (`ikeqcd load`). Use `ikeqcd.net.load`.
#[pyclass(frozen, name = "_LoadDriver", module = "ikeqcd._core")]
pub struct PyLoadDriver {
    inner: Mutex<LoadDriver>,
    stop: AtomicBool,
    target: SocketAddr,
}

impl PyLoadDriver {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadDriver> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl PyLoadDriver {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (target, /, *, rate, sas = 1000, seed = 0, nat_t = false, maker = None, body_len = 32, window = 262144, timeout = 1.0, gso = true, recv_thread = false))]
    fn new(
        target: &str,
        rate: f64,
        sas: usize,
        seed: u64,
        nat_t: bool,
        maker: Option<Bound<'_, PyTokenMaker>>,
        body_len: usize,
        window: usize,
        timeout: f64,
        gso: bool,
        recv_thread: bool,
    ) -> PyResult<Self> {
        // The signature's window default is net::RING, written out for the text signature.
        debug_assert_eq!(net::RING, 262_144);
        let at = net::resolve(target)?;
        let cfg = LoadConfig {
            rate,
            sas,
            seed,
            nat_t,
            body_len,
            window,
            timeout,
            gso,
            recv_thread,
        };
        let d = LoadDriver::connect(at, cfg, maker.map(|m| m.get().inner.clone()))?;
        Ok(PyLoadDriver {
            target: d.target(),
            inner: Mutex::new(d),
            stop: AtomicBool::new(false),
        })
    }

    /// The target (host, port).
    #[getter]
    fn target(&self) -> (String, u16) {
        host_port(self.target)
    }

    /// Whether UDP GSO/GRO is in use (asked for, available, and never refused).
    #[getter]
    fn gso(&self) -> bool {
        self.lock().gso()
    }

    /// Send paced requests while less than `send_for` seconds have passed since the first
    /// call, and check replies, until `until` seconds have passed (or `stop()`); GIL released.
    #[pyo3(signature = (until, send_for, /))]
    fn run(&self, py: Python<'_>, until: f64, send_for: f64) -> PyResult<()> {
        let until = seconds(until, "until")?;
        let send_for = seconds(send_for, "send_for")?;
        run_detached(py, ALWAYS, || {
            self.lock().run(until, send_for, &self.stop);
        });
        Ok(())
    }

    /// Receive until nothing is in flight or `max` seconds pass; GIL released.
    #[pyo3(signature = (max, /))]
    fn drain(&self, py: Python<'_>, max: f64) -> PyResult<()> {
        let max = seconds(max, "max")?;
        run_detached(py, ALWAYS, || self.lock().drain(max, &self.stop));
        Ok(())
    }

    /// The latency distribution so far: (bucket middles in ns, counts), both uint64, only
    /// the non-empty buckets of the log-linear histogram (about 6 % resolution).
    #[allow(clippy::type_complexity)]
    fn latency_buckets<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>) {
        let h = self.lock().latency();
        let (mids, counts): (Vec<u64>, Vec<u64>) = h.buckets().unzip();
        (mids.into_pyarray(py), counts.into_pyarray(py))
    }

    /// Make a running `run`/`drain` return at once; from any thread.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Counts, times (seconds) and latency quantiles (microseconds) so far.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.lock();
        let c = d.counts();
        let out = PyDict::new(py);
        for (k, v) in [
            ("sent", c.sent),
            ("send_errors", c.send_errors),
            ("answered", c.answered),
            ("valid", c.valid),
            ("bare", c.bare),
            ("bad_token", c.bad_token),
            ("mismatched", c.mismatched),
            ("malformed", c.malformed),
            ("unmatched", c.unmatched),
            ("late", c.late),
            ("lost", c.lost),
            ("recv_errors", c.recv_errors),
            ("in_flight", d.in_flight()),
        ] {
            out.set_item(k, v)?;
        }
        out.set_item("elapsed", d.elapsed())?;
        out.set_item("send_span", d.send_span())?;
        let h = d.latency();
        for (k, q) in [
            ("p50_us", 0.5),
            ("p90_us", 0.9),
            ("p99_us", 0.99),
            ("p999_us", 0.999),
        ] {
            out.set_item(k, h.quantile(q) as f64 / 1e3)?;
        }
        out.set_item("max_us", h.max() as f64 / 1e3)?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!("_LoadDriver({})", self.target)
    }
}

/// (SPI-I, SPI-R) arrays.
type SpiArrays<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>);

/// The SPI pairs a load run with `sas` pairs and `seed` draws from: (SPI-I, SPI-R) arrays.
#[pyfunction(name = "_load_spis")]
#[pyo3(signature = (sas, seed, /))]
pub fn load_spis_py(py: Python<'_>, sas: usize, seed: u64) -> PyResult<SpiArrays<'_>> {
    let (a, b): (Vec<u64>, Vec<u64>) = net::load_spis(sas, seed)?.into_iter().unzip();
    Ok((a.into_pyarray(py), b.into_pyarray(py)))
}
