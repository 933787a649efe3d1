//! ikeqcd's core: IKEv2 Quick Crash Detection (RFC 6290) without any Python in it.
//!
//! - [`token`]: HMAC token derivation (RFC 6290 §5.1/§5.2) and constant-time verification,
//!   single and in batches, with up to four secret generations;
//! - [`kernel`]: HMAC with precomputed pad states over the `sha2`/`sha1` compression functions;
//! - [`shani`]: interleaved SHA-NI compression for the HMAC-SHA-256 batch path (with
//!   [`net`]'s system calls and [`avx2`], the only `unsafe` in the crate);
//! - [`select`]: which SHA-256 kernel (SHA-NI interleave width, AVX2, `sha2`, portable) runs, chosen
//!   per CPU at first use or by `IKEQCD_KERNEL`; [`soft256`]: the portable compression;
//! - [`avx2`]: 8-lane AVX2 SHA-256 compression (the batch path's alternative to SHA-NI);
//! - [`aead`]: batch AES-128-GCM over fixed-length rows, one SA key per row (the simulator's
//!   protected messages);
//! - [`ct`]: the one place where secret-dependent bytes are compared;
//! - [`par`]: the rayon helper the batch paths share;
//! - [`ratelimit`]: keyed token buckets with bounded memory (reply and verification limits);
//! - [`wire`]: the IKEv2 codec (header, payload chain, Notify, QCD reply build/parse, NAT-T);
//! - [`responder`]: the maker's unknown-SPI hot path (classify, reply, reason codes);
//! - [`gate`]: the maker's reply policy (switch, rate limits, flood fallback, window);
//! - [`live`]: the serve loop's per-batch live-SA check (local table or cluster store);
//! - [`table`]: the token taker's SA table (tokens and traffic times per SPI pair);
//! - [`net`]: batch UDP I/O (`recvmmsg`/`sendmmsg`) for `ikeqcd serve` and `ikeqcd load`, one
//!   file per part under `rust/net/`: `serve.rs` (the server and its counters), `load.rs` (the
//!   paced load driver), `track.rs` (its requests in flight and reply checks), `histogram.rs`
//!   (latency), `sys_linux.rs`/`sys_other.rs` (the system calls), [`net::xfrm`] (the
//!   per-socket IPsec bypass), `mod.rs` (shared constants, address resolution, re-exports).
//!
//! ```
//! use _core::token::{Algorithm, TokenMaker};
//! let maker = TokenMaker::new(&[&[7u8; 32]], Algorithm::HmacSha256, None).unwrap();
//! let token = maker.derive(0, 0x1111, 0x2222, &[]).unwrap();
//! assert_eq!(token.len(), 32);
//! assert!(maker.verify(0x1111, 0x2222, &token, &[]).unwrap());
//! assert!(!maker.verify(0x2222, 0x1111, &token, &[]).unwrap());
//! ```
#![deny(rust_2018_idioms, clippy::undocumented_unsafe_blocks)]

pub mod aead;
pub mod avx2;
pub mod clock;
pub mod cpu;
pub mod ct;
pub mod error;
pub mod gate;
pub mod kernel;
pub mod live;
pub mod net;
pub mod pairmap;
pub mod par;
pub mod ratelimit;
pub mod responder;
pub mod select;
pub mod shani;
pub mod soft256;
pub mod srckey;
pub mod table;
pub mod token;
pub mod wire;

#[cfg(feature = "python")]
mod py;
