//! The maker's hot path on any datagram: `classify`, `respond`, `build_one` for every
//! decision, and the two-pass batch (`classify_batch` + `build_batch`). No panic; a reply is
//! built only for a candidate; a full reply parses back as `N(INVALID_IKE_SPI), N(QCD_TOKEN)+`
//! with the request's SPIs and Message ID and tokens that verify under the maker.
//!
//! Input: octet 0 = framing (mod 3) and the live bit (bit 7); octet 1 = the decision code
//! for `build_batch`; the rest is the datagram.
#![no_main]

use std::sync::OnceLock;

use _core::responder::{self, Reason};
use _core::token::{Algorithm, TokenMaker};
use _core::wire;
use libfuzzer_sys::fuzz_target;

fn maker() -> &'static TokenMaker {
    static M: OnceLock<TokenMaker> = OnceLock::new();
    M.get_or_init(|| {
        TokenMaker::new(&[&[0x11; 32], &[0x22; 32]], Algorithm::HmacSha256, None)
            .expect("valid maker")
    })
}

fn check_full_reply(m: &TokenMaker, req: &wire::Header, reply: &[u8], nat_t: bool) {
    let r = wire::parse_qcd_reply(reply, Some(nat_t)).expect("our reply parses");
    assert_eq!((r.header.spi_i, r.header.spi_r), (req.spi_i, req.spi_r));
    assert_eq!(r.header.message_id, req.message_id);
    assert_eq!(r.header.exchange, req.exchange);
    assert!(r.header.is_response());
    assert!(r.invalid_ike_spi);
    assert_eq!(r.tokens().len(), m.generations());
    for t in r.tokens() {
        assert!(m.verify(req.spi_i, req.spi_r, t, &[]).expect("no address"));
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, decision, datagram @ ..] = data else {
        return;
    };
    let nat_t = match mode % 3 {
        0 => None,
        1 => Some(false),
        _ => Some(true),
    };
    let live = mode & 0x80 != 0;
    let m = maker();
    let class = responder::classify(datagram, nat_t);
    if let Err(r) = class {
        assert_ne!(r, Reason::Replied);
    }

    let mut out = Vec::new();
    let reason = responder::respond(m, datagram, nat_t, |_, _| live, &mut out).expect("respond");
    match class {
        Ok(_) if live => assert!(reason == Reason::LiveSa && out.is_empty()),
        Ok(c) => {
            assert_eq!(reason, Reason::Replied);
            assert_eq!(out.len(), responder::reply_len(m, c.nat_t));
            check_full_reply(m, &c.header, &out, c.nat_t);
        }
        Err(r) => assert!(reason == r && out.is_empty()),
    }

    for d in Reason::ALL {
        let mut out = Vec::new();
        let got = responder::build_one(m, datagram, nat_t, d, &mut out).expect("build_one");
        match class {
            Err(r) => assert!(got == r && out.is_empty(), "non-candidates get nothing"),
            Ok(c) => {
                assert_eq!(got, d);
                match d {
                    Reason::Replied => check_full_reply(m, &c.header, &out, c.nat_t),
                    Reason::RateLimitedBare | Reason::Disabled | Reason::OutsideWindow => {
                        let r = wire::parse_qcd_reply(&out, Some(c.nat_t)).expect("bare parses");
                        assert!(r.invalid_ike_spi && r.tokens().is_empty());
                    }
                    _ => assert!(out.is_empty()),
                }
            }
        }
    }

    // Two passes over a small batch: [datagram, datagram], the second with the fuzzed decision.
    let batch = [datagram, datagram];
    let (mut reasons, mut si, mut sr) = ([0i8; 2], [0u64; 2], [0u64; 2]);
    responder::classify_batch(&batch, nat_t, &mut reasons, &mut si, &mut sr).expect("shapes");
    assert_eq!(reasons[0], reasons[1]);
    assert_eq!(reasons[0] == Reason::Replied.code(), class.is_ok());
    reasons[1] = *decision as i8;
    let mut out = Vec::new();
    let mut ends = [0usize; 2];
    responder::build_batch(m, &batch, nat_t, &mut reasons, &mut out, &mut ends).expect("shapes");
    assert!(ends[0] <= ends[1] && ends[1] == out.len());
    if class.is_err() {
        assert!(out.is_empty(), "a wrong decision never creates a reply");
    }
    // Mismatched output lengths are an error, not a panic.
    assert!(responder::classify_batch(&batch, nat_t, &mut [0i8; 1], &mut si, &mut sr).is_err());
});
