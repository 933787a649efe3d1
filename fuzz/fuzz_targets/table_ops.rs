//! `SaTable` driven by a fuzzed sequence of operations and compared with a plain model after
//! every step: membership, stored tokens (newest first, `history` kept), check results,
//! traffic times, due-liveness lists, errors for bad input (and no change after an error).
//!
//! Input: octet 0 = history (1..=4); then operations of up to 4 octets each. SPIs come from a
//! domain of 8 x 8 pairs (so operations collide); tokens are `len` copies of one of four
//! octets, `len` in 14..=131 so that some are out of range.
#![no_main]

use std::collections::HashMap;

use _core::error::CoreError;
use _core::table::{Check, SaTable};
use libfuzzer_sys::fuzz_target;

#[derive(Clone)]
struct Sa {
    tokens: Vec<Vec<u8>>, // newest first
    t_in: u64,
    t_out: u64,
}

#[derive(Default)]
struct Model {
    history: usize,
    sas: HashMap<(u64, u64), Sa>,
    epoch: Option<u64>, // whole seconds
}

impl Model {
    fn tick(&mut self, now: u64) -> u64 {
        let e = *self.epoch.get_or_insert(now);
        now.saturating_sub(e) * 1000
    }
    fn insert(&mut self, k: (u64, u64), tok: &[u8], tick: u64) -> bool {
        match self.sas.get_mut(&k) {
            Some(sa) => {
                sa.tokens.insert(0, tok.to_vec());
                sa.tokens.truncate(self.history);
                false
            }
            None => {
                self.sas.insert(
                    k,
                    Sa {
                        tokens: vec![tok.to_vec()],
                        t_in: tick,
                        t_out: tick,
                    },
                );
                true
            }
        }
    }
    fn check(&self, k: (u64, u64), received: &[Vec<u8>]) -> Check {
        match self.sas.get(&k) {
            None => Check::NoSa,
            Some(sa) if received.iter().any(|r| sa.tokens.contains(r)) => Check::Match,
            Some(_) => Check::Mismatch,
        }
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn key(&mut self) -> (u64, u64) {
        let b = self.byte();
        // Large SPIs too: the top octets differ, the low ones collide.
        (u64::from(b & 7) << 56 | 1, u64::from(b >> 3 & 7))
    }
    fn token(&mut self) -> Vec<u8> {
        let b = self.byte();
        let len = 14 + usize::from(self.byte() % 118); // 14..=131
        vec![b & 3; len]
    }
}

fn valid(tok: &[u8]) -> bool {
    (16..=128).contains(&tok.len())
}

fn compare(t: &SaTable, m: &Model) {
    assert_eq!(t.len(), m.sas.len());
    let e = t.export();
    assert_eq!(e.spi_i.len(), m.sas.len());
    let h = t.history();
    for k in 0..e.spi_i.len() {
        let sa = &m.sas[&(e.spi_i[k], e.spi_r[k])];
        for j in 0..h {
            let l = usize::from(e.token_len[k * h + j]);
            match sa.tokens.get(j) {
                Some(tok) => {
                    assert_eq!(l, tok.len());
                    let at = (k * h + j) * e.width;
                    assert_eq!(&e.tokens[at..at + l], &tok[..]);
                }
                None => assert_eq!(l, 0),
            }
        }
        let epoch = m.epoch.unwrap_or(0) as f64;
        assert_eq!(e.last_in[k], epoch + sa.t_in as f64 / 1000.0);
        assert_eq!(e.last_out[k], epoch + sa.t_out as f64 / 1000.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let history = 1 + usize::from(inp.byte() % 4);
    let mut t = SaTable::new(history, 0).expect("history 1..=4");
    let mut m = Model {
        history,
        ..Model::default()
    };
    let mut steps = 0;
    while !inp.0.is_empty() && steps < 200 {
        steps += 1;
        let op = inp.byte();
        let now = u64::from(op >> 4); // whole seconds 0..=15
        match op % 10 {
            0 | 1 => {
                let k = inp.key();
                let tok = inp.token();
                let r = t.insert(k.0, k.1, &tok, now as f64);
                if valid(&tok) {
                    let tick = m.tick(now);
                    assert_eq!(r, Ok(m.insert(k, &tok, tick)));
                } else {
                    assert!(matches!(r, Err(CoreError::InvalidToken(_))));
                }
            }
            2 => {
                let k = inp.key();
                assert_eq!(t.remove(k.0, k.1), m.sas.remove(&k).is_some());
            }
            3 => {
                let k = inp.key();
                let n = usize::from(inp.byte() % 5); // 0 (an error) ..= 4
                let received: Vec<Vec<u8>> = (0..n).map(|_| inp.token()).collect();
                let refs: Vec<&[u8]> = received.iter().map(Vec::as_slice).collect();
                let r = t.check(k.0, k.1, &refs);
                if n == 0 || !received.iter().all(|x| valid(x)) {
                    assert!(matches!(r, Err(CoreError::InvalidToken(_))));
                } else {
                    assert_eq!(r, Ok(m.check(k, &received)));
                }
                assert_eq!(t.contains(k.0, k.1), m.sas.contains_key(&k));
            }
            4 => {
                // insert_batch: up to 5 rows of one width (all rows valid, or the width not).
                let n = usize::from(inp.byte() % 6);
                let tok = inp.token();
                let keys: Vec<(u64, u64)> = (0..n).map(|_| inp.key()).collect();
                let (a, b): (Vec<u64>, Vec<u64>) = keys.iter().copied().unzip();
                let mut rows = Vec::new();
                for (k, _) in keys.iter().enumerate() {
                    let mut row = tok.clone();
                    row[0] ^= k as u8 & 1;
                    rows.push(row);
                }
                let flat: Vec<u8> = rows.concat();
                let r = t.insert_batch(&a, &b, &flat, tok.len(), now as f64);
                if !valid(&tok) {
                    assert!(matches!(r, Err(CoreError::InvalidToken(_))));
                } else {
                    let tick = if n > 0 { m.tick(now) } else { 0 };
                    let added = keys
                        .iter()
                        .zip(&rows)
                        .filter(|(k, row)| m.insert(**k, row, tick))
                        .count();
                    assert_eq!(r, Ok(added));
                }
                // Shape errors change nothing.
                if n > 0 {
                    assert!(matches!(
                        t.insert_batch(&a, &b[1..], &flat, tok.len(), 1.0),
                        Err(CoreError::ShapeMismatch(_))
                    ));
                    assert!(t.insert_batch(&a, &b, &flat[1..], tok.len(), 1.0).is_err());
                    assert!(matches!(
                        t.insert_batch(&a, &b, &flat, tok.len(), f64::NAN),
                        Err(_)
                    ));
                }
            }
            5 => {
                // check_batch and contains_batch over up to 6 pairs.
                let n = usize::from(inp.byte() % 7);
                let tok = inp.token();
                let keys: Vec<(u64, u64)> = (0..n).map(|_| inp.key()).collect();
                let (a, b): (Vec<u64>, Vec<u64>) = keys.iter().copied().unzip();
                let flat: Vec<u8> = keys.iter().flat_map(|_| tok.clone()).collect();
                let mut out = vec![-1i8; n];
                let r = t.check_batch(&a, &b, &flat, tok.len(), &mut out, 1);
                if valid(&tok) {
                    r.expect("valid batch");
                    for (k, o) in keys.iter().zip(&out) {
                        assert_eq!(*o, m.check(*k, &[tok.clone()]) as i8);
                    }
                } else {
                    assert!(matches!(r, Err(CoreError::InvalidToken(_))));
                }
                let mut present = vec![false; n];
                t.contains_batch(&a, &b, &mut present, 0).expect("shapes");
                for (k, p) in keys.iter().zip(&present) {
                    assert_eq!(*p, m.sas.contains_key(k));
                }
                assert!(t.contains_batch(&a, &b, &mut vec![false; n + 1], 1).is_err());
            }
            6 => {
                let n = usize::from(inp.byte() % 6);
                let keys: Vec<(u64, u64)> = (0..n).map(|_| inp.key()).collect();
                let (a, b): (Vec<u64>, Vec<u64>) = keys.iter().copied().unzip();
                let mut out = vec![false; n];
                let removed = t.remove_batch(&a, &b, &mut out).expect("shapes");
                let mut want = 0;
                for (k, o) in keys.iter().zip(&out) {
                    let was = m.sas.remove(k).is_some();
                    assert_eq!(*o, was);
                    want += usize::from(was);
                }
                assert_eq!(removed, want);
            }
            7 | 8 => {
                let k = inp.key();
                let inbound = op & 1 == 0;
                let found = t.touch(k.0, k.1, now as f64, inbound).expect("finite now");
                let tick = m.tick(now);
                assert_eq!(found, m.sas.contains_key(&k));
                if let Some(sa) = m.sas.get_mut(&k) {
                    let f = if inbound { &mut sa.t_in } else { &mut sa.t_out };
                    *f = (*f).max(tick);
                }
                assert!(t.touch(k.0, k.1, f64::INFINITY, inbound).is_err());
            }
            _ => {
                let sub = inp.byte();
                if sub == 0 {
                    t.clear();
                    m.sas.clear();
                } else {
                    let idle = f64::from(sub % 8);
                    let (a, b) = t.due_liveness(now as f64, idle).expect("finite");
                    let now_t = match m.epoch {
                        Some(e) => (now as i64 - e as i64) * 1000,
                        None => 0,
                    };
                    let mut want: Vec<(u64, u64)> = m
                        .sas
                        .iter()
                        .filter(|(_, sa)| {
                            sa.t_out > sa.t_in && now_t - sa.t_in as i64 >= (idle * 1000.0) as i64
                        })
                        .map(|(k, _)| *k)
                        .collect();
                    let mut got: Vec<(u64, u64)> = a.into_iter().zip(b).collect();
                    want.sort_unstable();
                    got.sort_unstable();
                    assert_eq!(got, want);
                    assert!(t.due_liveness(now as f64, -1.0).is_err());
                }
            }
        }
        compare(&t, &m);
    }
});
