//! `wire::parse_message` (and the framing and header reads under it) on any octets: no panic,
//! and whatever parses is self-consistent. The first input octet picks the framing
//! (UDP/500, UDP/4500, auto-detect); the rest is the datagram.
#![no_main]

use _core::wire::{self, HEADER_LEN, PAYLOAD_NOTIFY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, datagram)) = data.split_first() else {
        return;
    };
    let nat_t = match mode % 3 {
        0 => None,
        1 => Some(false),
        _ => Some(true),
    };
    let framed = wire::unframe(datagram, nat_t);
    match wire::parse_message(datagram, nat_t) {
        Ok(m) => {
            let (msg, marked) = framed.expect("a parsed message unframes");
            assert_eq!(marked, m.nat_t);
            assert_eq!(m.header.length as usize, msg.len());
            assert_eq!(m.header.major_version(), 2);
            assert_eq!(wire::checked_header(msg).expect("header re-reads"), m.header);
            assert!(m.payloads.len() <= wire::MAX_PAYLOADS);
            let mut end = HEADER_LEN;
            for p in &m.payloads {
                assert_eq!(p.offset, end, "payloads are contiguous");
                end = p.offset + 4 + p.body.len();
                assert!(end <= msg.len());
                if p.kind == PAYLOAD_NOTIFY {
                    wire::decode_notify(p.body).expect("parse_message checked every notify");
                }
            }
            assert_eq!(end, msg.len(), "the chain covers the message");
            assert_eq!(
                m.notifies().count(),
                m.payloads.iter().filter(|p| p.kind == PAYLOAD_NOTIFY).count()
            );
            // A well-formed message also parses as a (possibly token-less) QCD reply.
            let r = wire::parse_qcd_reply(datagram, nat_t).expect("parse_qcd_reply agrees");
            assert_eq!(r.header, m.header);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
