//! `wire::parse_qcd_reply` and its batch form on any octets: no panic, the single and batch
//! parsers agree, every taken token is 16..=128 octets, at most `MAX_REPLY_TOKENS` are taken,
//! and taken + ignored = QCD_TOKEN notifies seen.
#![no_main]

use _core::wire::{self, MAX_REPLY_TOKENS};
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
    let single = wire::parse_qcd_reply(datagram, nat_t);
    let batch = wire::parse_qcd_batch(&[datagram, datagram], nat_t);
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.token_index.len(), 3);
    match single {
        Ok(r) => {
            assert!(batch.ok[0] && batch.ok[1]);
            assert!(r.tokens().len() <= MAX_REPLY_TOKENS);
            assert_eq!(r.tokens().len() + r.ignored.len(), r.qcd_notifies);
            for t in r.tokens() {
                assert!((16..=128).contains(&t.len()));
            }
            assert_eq!(batch.spi_i[0], r.header.spi_i);
            assert_eq!(batch.spi_r[0], r.header.spi_r);
            assert_eq!(batch.message_id[0], r.header.message_id);
            assert_eq!(batch.invalid_ike_spi[0], r.invalid_ike_spi);
            assert_eq!(batch.encrypted[0], r.encrypted);
            let (lo, hi) = (batch.token_index[0] as usize, batch.token_index[1] as usize);
            assert_eq!(hi - lo, r.tokens().len());
            for (j, t) in (lo..hi).zip(r.tokens()) {
                let (a, b) = (
                    batch.token_offsets[j] as usize,
                    batch.token_offsets[j + 1] as usize,
                );
                assert_eq!(&batch.token_data[a..b], *t);
            }
            if let Some(spi) = r.child_spi() {
                assert!(r.invalid_spi);
                assert_eq!(batch.child_spi[0], spi);
            }
        }
        Err(e) => {
            assert!(!batch.ok[0] && !batch.ok[1]);
            assert!(!e.to_string().is_empty());
        }
    }
});
