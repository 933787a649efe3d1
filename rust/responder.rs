//! The token maker's hot path after a reboot (RFC 6290 §3, §4.5, §9.2; RFC 7296 §2.21.4):
//! a protected IKE request for an SA we no longer know gets `HDR, N(INVALID_IKE_SPI),
//! N(QCD_TOKEN)+` in the clear, one token per secret generation (current first).
//!
//! [`classify`] decides whether a datagram is a candidate for that reply; everything else gets
//! a [`Reason`]. A candidate is a well-formed IKEv2 request (R=0) whose first payload is
//! Encrypted (SK, or SKF of RFC 7383) with a body no shorter than the smallest real one
//! ([`MIN_SK_BODY`]), whose exchange type is neither IKE_SA_INIT nor IKE_SESSION_RESUME,
//! whose SPI-R is not zero, and whose SPI-I is not zero.
//!
//! Reflection bound: an unprotected reply goes to an address nobody has authenticated, so it
//! must not be a much larger packet than the request that caused it. [`write_reply`] keeps a
//! reply within [`MAX_AMPLIFICATION`] times its request *on the wire* (IPv4 + UDP headers, 28
//! octets, counted on both sides: the tighter case; IPv6 adds 20 octets to both and only
//! lowers the factor) by dropping the oldest secret generations first. The current generation
//! always fits: the shortest candidate request is 28 + 4 + [`MIN_SK_BODY`] = 49 octets and the
//! longest single-token reply (64-octet HMAC-SHA-512 tokens) is 108. Whether the SPI
//! pair is live (RFC 6290 §9.2 MUST NOT) is the caller's knowledge: [`respond_batch`] takes it
//! as a closure; the Python layer can also run the two passes separately
//! ([`classify_batch`], then [`build_batch`]) and ask its own live set and policy in between.
#![forbid(unsafe_code)]

use crate::error::CoreResult;
use crate::token::TokenMaker;
use crate::wire::{
    self, is_encrypted, unframe, FrameError, Header, PayloadIter, EXCHANGE_IKE_SA_INIT,
    EXCHANGE_IKE_SESSION_RESUME, NON_ESP_MARKER, NOTIFY_HEADER_LEN, NOTIFY_INVALID_IKE_SPI,
    NOTIFY_QCD_TOKEN, PAYLOAD_NONE, PAYLOAD_NOTIFY, PAYLOAD_SKF, PROTO_NONE, VERSION,
};

/// What happened to one datagram. The numbering is stable (the Python `Reason` mirrors it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum Reason {
    /// A QCD reply was built (after [`classify`]: a candidate for one).
    Replied = 0,
    /// Not a well-formed IKE message (truncated, lying lengths, bad payload chain, zero SPI-I).
    Malformed = 1,
    /// The major version is not 2.
    NotIkev2 = 2,
    /// Not IKE on UDP/4500: ESP (non-zero first four octets) or a NAT keepalive.
    Esp = 3,
    /// A response (R=1): RFC 7296 §2.21.4 MUST NOT respond.
    Response = 4,
    /// A request whose first payload is not Encrypted: not protected, no token.
    Unprotected = 5,
    /// IKE_SA_INIT (exchange 34, or SPI-R zero): a new SA, never a token.
    IkeSaInit = 6,
    /// IKE_SESSION_RESUME (exchange 38, RFC 5723): unprotected, never a token.
    SessionResume = 7,
    /// The SPI pair belongs to a live SA (here or in the cluster): §9.2 MUST NOT.
    LiveSa = 8,
    /// QCD is switched off (policy, §8.1): plain RFC 7296, a bare INVALID_IKE_SPI was sent.
    Disabled = 9,
    /// Rate-limited: a bare INVALID_IKE_SPI was sent instead (policy, §8.1).
    RateLimitedBare = 10,
    /// Rate-limited: nothing was sent (policy, §8.1).
    RateLimitedDrop = 11,
    /// Outside the window after start in which tokens are answered (policy, §9.3): a bare
    /// INVALID_IKE_SPI was sent.
    OutsideWindow = 12,
    /// The cluster's live-SA store could not answer for this batch (unreachable, past its
    /// deadline, an error, or this node's secret differs from the cluster's): fail closed,
    /// nothing was sent (RFC 6290 §9.2 cannot be checked, so no token is revealed).
    ClusterUnavailable = 13,
}

impl Reason {
    /// Every reason in code order.
    pub const ALL: [Reason; 14] = [
        Reason::Replied,
        Reason::Malformed,
        Reason::NotIkev2,
        Reason::Esp,
        Reason::Response,
        Reason::Unprotected,
        Reason::IkeSaInit,
        Reason::SessionResume,
        Reason::LiveSa,
        Reason::Disabled,
        Reason::RateLimitedBare,
        Reason::RateLimitedDrop,
        Reason::OutsideWindow,
        Reason::ClusterUnavailable,
    ];

    /// The numeric code.
    #[must_use]
    pub fn code(self) -> i8 {
        self as i8
    }

    /// The reason with this code.
    #[must_use]
    pub fn from_code(code: i8) -> Option<Reason> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The upper-case name the Python enum uses.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Reason::Replied => "REPLIED",
            Reason::Malformed => "MALFORMED",
            Reason::NotIkev2 => "NOT_IKEV2",
            Reason::Esp => "ESP",
            Reason::Response => "RESPONSE",
            Reason::Unprotected => "UNPROTECTED",
            Reason::IkeSaInit => "IKE_SA_INIT",
            Reason::SessionResume => "SESSION_RESUME",
            Reason::LiveSa => "LIVE_SA",
            Reason::Disabled => "DISABLED",
            Reason::RateLimitedBare => "RATE_LIMITED_BARE",
            Reason::RateLimitedDrop => "RATE_LIMITED_DROP",
            Reason::OutsideWindow => "OUTSIDE_WINDOW",
            Reason::ClusterUnavailable => "CLUSTER_UNAVAILABLE",
        }
    }

    /// Does a datagram with this reason get a reply datagram (full or bare)?
    #[must_use]
    pub fn sends(self) -> bool {
        matches!(
            self,
            Reason::Replied | Reason::RateLimitedBare | Reason::Disabled | Reason::OutsideWindow
        )
    }
}

/// The shortest Encrypted payload body (after its 4-octet generic header) of a real protected
/// request: the 8-octet IV, the Pad Length octet and the 8-octet ICV of the smallest
/// transform an IKE SA can use, AES-GCM with an 8-octet ICV (RFC 5282; every other IKEv2
/// transform is longer: AES-GCM-16 and ChaCha20-Poly1305 need 25, AES-CBC with
/// HMAC-SHA1-96 44). ENCR_NULL is not allowed for IKE SAs (RFC 7296 §3.3.3). An SKF fragment
/// (RFC 7383) has 4 more octets (Fragment Number, Total Fragments). A shorter body cannot
/// come from a peer that holds the SA: it is refused as `Unprotected`, which also keeps
/// 32-octet "header + empty SK" probes from drawing replies 10 times their size.
pub const MIN_SK_BODY: usize = 8 + 1 + 8;

/// The largest reply / request size ratio on the wire (see the module docs).
pub const MAX_AMPLIFICATION: usize = 2;

/// IPv4 + UDP header octets, counted on both sides of the amplification bound.
const WIRE_OVERHEAD: usize = 20 + 8;

/// A request that qualifies for an unprotected reply (before the live check and policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The request's header.
    pub header: Header,
    /// Whether the request came with a non-ESP marker (the reply gets one too).
    pub nat_t: bool,
    /// The request datagram's length in octets (the non-ESP marker included).
    pub request_len: usize,
}

/// Decide whether `datagram` is a candidate for a QCD reply (see the module docs), or why not.
/// Never panics; the payload chain is walked with every bound checked, at most
/// `wire::MAX_PAYLOADS` steps.
///
/// # Errors
/// The [`Reason`] for not replying (never `Replied`).
pub fn classify(datagram: &[u8], nat_t: Option<bool>) -> Result<Candidate, Reason> {
    let (msg, marked) = unframe(datagram, nat_t).map_err(|e| match e {
        FrameError::Esp(_) | FrameError::Keepalive => Reason::Esp,
        FrameError::Short(_) => Reason::Malformed,
    })?;
    let header = Header::read(msg).map_err(|_| Reason::Malformed)?;
    if header.major_version() != 2 {
        return Err(Reason::NotIkev2);
    }
    if header.length as usize != msg.len() || header.spi_i == 0 {
        return Err(Reason::Malformed);
    }
    for p in PayloadIter::new(msg, header.next_payload) {
        p.map_err(|_| Reason::Malformed)?;
    }
    if header.is_response() {
        return Err(Reason::Response);
    }
    if header.exchange == EXCHANGE_IKE_SESSION_RESUME {
        return Err(Reason::SessionResume);
    }
    if header.exchange == EXCHANGE_IKE_SA_INIT || header.spi_r == 0 {
        return Err(Reason::IkeSaInit);
    }
    if !is_encrypted(header.next_payload) {
        return Err(Reason::Unprotected);
    }
    let min_body = MIN_SK_BODY
        + if header.next_payload == PAYLOAD_SKF {
            4
        } else {
            0
        };
    match PayloadIter::new(msg, header.next_payload).next() {
        Some(Ok(p)) if p.body.len() >= min_body => {}
        _ => return Err(Reason::Unprotected),
    }
    Ok(Candidate {
        header,
        nat_t: marked,
        request_len: datagram.len(),
    })
}

/// How many secret generations (newest first) the reply to `c` carries: all of `maker`'s,
/// less the oldest ones while the reply would exceed [`MAX_AMPLIFICATION`] times the request
/// on the wire; never fewer than one.
#[must_use]
pub fn reply_generations(maker: &TokenMaker, c: &Candidate) -> usize {
    let budget = MAX_AMPLIFICATION * (WIRE_OVERHEAD + c.request_len);
    let marker = usize::from(c.nat_t) * NON_ESP_MARKER.len();
    let tl = maker.token_len();
    (1..=maker.generations())
        .rev()
        .find(|&g| WIRE_OVERHEAD + marker + wire::qcd_reply_len(g, tl) <= budget)
        .unwrap_or(1)
}

/// Octets of the largest reply a maker writes for one candidate (every generation).
#[must_use]
pub fn reply_len(maker: &TokenMaker, nat_t: bool) -> usize {
    usize::from(nat_t) * NON_ESP_MARKER.len()
        + wire::qcd_reply_len(maker.generations(), maker.token_len())
}

/// Append the full reply for `c` to `out`, deriving one token per generation of `maker`
/// straight into the output (current generation first; as many as the amplification bound
/// allows, see [`reply_generations`]).
///
/// # Errors
/// Only if the maker is inconsistent (cannot happen with a `TokenMaker` built by `new`).
pub fn write_reply(maker: &TokenMaker, c: &Candidate, out: &mut Vec<u8>) -> CoreResult<()> {
    let gens = reply_generations(maker, c);
    let tl = maker.token_len();
    let length = wire::qcd_reply_len(gens, tl);
    if c.nat_t {
        out.extend_from_slice(&NON_ESP_MARKER);
    }
    Header {
        spi_i: c.header.spi_i,
        spi_r: c.header.spi_r,
        next_payload: PAYLOAD_NOTIFY,
        version: VERSION,
        exchange: c.header.exchange,
        flags: wire::reply_flags(c.header.flags),
        message_id: c.header.message_id,
        // At most 28 + 8 + 4 * 136 octets: always fits.
        length: u32::try_from(length).unwrap_or(u32::MAX),
    }
    .write(out);
    let inv = NOTIFY_INVALID_IKE_SPI.to_be_bytes();
    out.extend_from_slice(&[PAYLOAD_NOTIFY, 0, 0, NOTIFY_HEADER_LEN as u8, PROTO_NONE, 0]);
    out.extend_from_slice(&inv);
    let plen = u16::try_from(NOTIFY_HEADER_LEN + tl)
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    let qcd = NOTIFY_QCD_TOKEN.to_be_bytes();
    for g in 0..gens {
        let next = if g + 1 == gens {
            PAYLOAD_NONE
        } else {
            PAYLOAD_NOTIFY
        };
        out.extend_from_slice(&[next, 0, plen[0], plen[1], PROTO_NONE, 0, qcd[0], qcd[1]]);
        let start = out.len();
        out.resize(start + tl, 0);
        maker.derive_into(g, c.header.spi_i, c.header.spi_r, &[], &mut out[start..])?;
    }
    Ok(())
}

/// Classify one datagram and, for a candidate whose pair is not live, append the reply to
/// `out`. Returns what happened.
///
/// # Errors
/// As [`write_reply`].
pub fn respond<L>(
    maker: &TokenMaker,
    datagram: &[u8],
    nat_t: Option<bool>,
    live: L,
    out: &mut Vec<u8>,
) -> CoreResult<Reason>
where
    L: FnOnce(u64, u64) -> bool,
{
    match classify(datagram, nat_t) {
        Err(r) => Ok(r),
        Ok(c) if live(c.header.spi_i, c.header.spi_r) => Ok(Reason::LiveSa),
        Ok(c) => {
            write_reply(maker, &c, out)?;
            Ok(Reason::Replied)
        }
    }
}

/// Build the datagram `decision` asks for: `Replied` = the full QCD reply,
/// `RateLimitedBare` = a bare INVALID_IKE_SPI reply, anything else = nothing. The datagram is
/// classified again, and nothing is built unless it really is a candidate: a wrong `decision`
/// can suppress a reply but never create one. Returns the final reason.
///
/// # Errors
/// As [`write_reply`].
pub fn build_one(
    maker: &TokenMaker,
    datagram: &[u8],
    nat_t: Option<bool>,
    decision: Reason,
    out: &mut Vec<u8>,
) -> CoreResult<Reason> {
    let c = match classify(datagram, nat_t) {
        Err(r) => return Ok(r),
        Ok(c) => c,
    };
    match decision {
        Reason::Replied => write_reply(maker, &c, out)?,
        Reason::RateLimitedBare | Reason::Disabled | Reason::OutsideWindow => {
            wire::write_invalid_ike_spi_reply(&c.header, c.nat_t, out);
        }
        _ => {}
    }
    Ok(decision)
}

/// Pass 1 over a batch: `reasons[k]` = `Replied` for a candidate, else why not; for every
/// datagram whose header could be read, `spi_i[k]`/`spi_r[k]` hold its SPIs (0 otherwise).
///
/// # Errors
/// `ShapeMismatch` if the output slices differ in length from `datagrams`.
pub fn classify_batch<D: AsRef<[u8]>>(
    datagrams: &[D],
    nat_t: Option<bool>,
    reasons: &mut [i8],
    spi_i: &mut [u64],
    spi_r: &mut [u64],
) -> CoreResult<()> {
    check_lens(datagrams.len(), &[reasons.len(), spi_i.len(), spi_r.len()])?;
    for (k, d) in datagrams.iter().enumerate() {
        let d = d.as_ref();
        match classify(d, nat_t) {
            Ok(c) => {
                reasons[k] = Reason::Replied.code();
                spi_i[k] = c.header.spi_i;
                spi_r[k] = c.header.spi_r;
            }
            Err(r) => {
                reasons[k] = r.code();
                let h = unframe(d, nat_t)
                    .ok()
                    .and_then(|(m, _)| Header::read(m).ok());
                spi_i[k] = h.map_or(0, |h| h.spi_i);
                spi_r[k] = h.map_or(0, |h| h.spi_r);
            }
        }
    }
    Ok(())
}

fn check_lens(n: usize, others: &[usize]) -> CoreResult<()> {
    if others.iter().all(|&m| m == n) {
        Ok(())
    } else {
        Err(crate::error::CoreError::ShapeMismatch(format!(
            "{n} datagrams but output arrays of lengths {others:?}"
        )))
    }
}

/// Pass 2 over a batch: for each datagram, build what `reasons[k]` asks for (see
/// [`build_one`]; unknown codes build nothing) and append it to `out`; `ends[k]` is the end
/// offset of datagram k's reply in `out` (equal to the previous end when nothing was built).
/// `reasons` is updated to the final reasons.
///
/// # Errors
/// `ShapeMismatch` for inconsistent lengths; as [`write_reply`].
pub fn build_batch<D: AsRef<[u8]>>(
    maker: &TokenMaker,
    datagrams: &[D],
    nat_t: Option<bool>,
    reasons: &mut [i8],
    out: &mut Vec<u8>,
    ends: &mut [usize],
) -> CoreResult<()> {
    check_lens(datagrams.len(), &[reasons.len(), ends.len()])?;
    for (k, d) in datagrams.iter().enumerate() {
        let decision = Reason::from_code(reasons[k]);
        reasons[k] = match decision {
            Some(dec) if dec.sends() => build_one(maker, d.as_ref(), nat_t, dec, out)?.code(),
            _ => reasons[k],
        };
        ends[k] = out.len();
    }
    Ok(())
}

/// Both passes in one: classify, ask `live` for each candidate, build the replies. `out` and
/// `ends` as in [`build_batch`].
///
/// # Errors
/// `ShapeMismatch` for inconsistent lengths; as [`write_reply`].
pub fn respond_batch<D, L>(
    maker: &TokenMaker,
    datagrams: &[D],
    nat_t: Option<bool>,
    mut live: L,
    reasons: &mut [i8],
    out: &mut Vec<u8>,
    ends: &mut [usize],
) -> CoreResult<()>
where
    D: AsRef<[u8]>,
    L: FnMut(u64, u64) -> bool,
{
    check_lens(datagrams.len(), &[reasons.len(), ends.len()])?;
    for (k, d) in datagrams.iter().enumerate() {
        reasons[k] = respond(maker, d.as_ref(), nat_t, &mut live, out)?.code();
        ends[k] = out.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Algorithm;
    use crate::wire::{build_request, parse_qcd_reply, RequestOptions, FLAG_I, FLAG_R};
    use proptest::prelude::*;

    fn maker(gens: usize) -> TokenMaker {
        let secrets: Vec<[u8; 32]> = (0..gens).map(|g| [g as u8 + 1; 32]).collect();
        let refs: Vec<&[u8]> = secrets.iter().map(|s| &s[..]).collect();
        TokenMaker::new(&refs, Algorithm::HmacSha256, None).unwrap()
    }

    fn request(opts: RequestOptions) -> Vec<u8> {
        // large enough that the reflection bound keeps every generation
        build_request(
            0xaaaa_0000_0000_aaaa,
            0xbbbb_0000_0000_bbbb,
            &[0u8; 160],
            &opts,
        )
        .unwrap()
    }

    #[test]
    fn short_sk_bodies_are_not_candidates() {
        for (kind, min) in [
            (wire::PAYLOAD_SK, MIN_SK_BODY),
            (PAYLOAD_SKF, MIN_SK_BODY + 4),
        ] {
            for len in 0..=min {
                let mut req =
                    build_request(1, 2, &vec![0u8; len], &RequestOptions::default()).unwrap();
                req[16] = kind;
                let got = classify(&req, Some(false));
                if len < min {
                    assert_eq!(got, Err(Reason::Unprotected), "{kind} {len}");
                } else {
                    assert_eq!(got.unwrap().request_len, 28 + 4 + len);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn replies_stay_within_twice_the_request_on_the_wire(
            gens in 1usize..=4,
            alg in prop::sample::select(vec![Algorithm::HmacSha256, Algorithm::HmacSha512, Algorithm::HmacSha1]),
            body in MIN_SK_BODY..400,
            nat_t: bool,
        ) {
            let secrets: Vec<[u8; 32]> = (0..gens).map(|g| [g as u8 + 1; 32]).collect();
            let refs: Vec<&[u8]> = secrets.iter().map(|s| &s[..]).collect();
            let m = TokenMaker::new(&refs, alg, None).unwrap();
            let req = build_request(1, 2, &vec![0u8; body], &RequestOptions { nat_t, ..Default::default() }).unwrap();
            let mut out = Vec::new();
            prop_assert_eq!(respond(&m, &req, None, |_, _| false, &mut out).unwrap(), Reason::Replied);
            prop_assert!(28 + out.len() <= 2 * (28 + req.len()));
            let p = parse_qcd_reply(&out, Some(nat_t)).unwrap();
            let n = p.tokens().len();
            prop_assert!(n >= 1 && n <= gens);
            // no generation dropped that would have fitted
            if n < gens {
                prop_assert!(28 + out.len() + 8 + m.token_len() > 2 * (28 + req.len()));
            }
        }
    }

    #[test]
    fn reply_carries_every_generation() {
        for gens in 1..=4 {
            let m = maker(gens);
            for nat_t in [false, true] {
                let req = request(RequestOptions {
                    nat_t,
                    message_id: 7,
                    ..Default::default()
                });
                let mut out = Vec::new();
                let r = respond(&m, &req, None, |_, _| false, &mut out).unwrap();
                assert_eq!(r, Reason::Replied);
                assert_eq!(out.len(), reply_len(&m, nat_t));
                let p = parse_qcd_reply(&out, Some(nat_t)).unwrap();
                assert_eq!(p.header.flags, FLAG_R); // request had I=1
                assert_eq!(p.header.message_id, 7);
                assert!(p.invalid_ike_spi);
                assert_eq!(p.tokens().len(), gens);
                for (g, t) in p.tokens().iter().enumerate() {
                    assert_eq!(
                        *t,
                        &m.derive(g, 0xaaaa_0000_0000_aaaa, 0xbbbb_0000_0000_bbbb, &[])
                            .unwrap()[..]
                    );
                }
                let mut again = Vec::new();
                let c = classify(&req, None).unwrap();
                let tokens = m
                    .derive_all(0xaaaa_0000_0000_aaaa, 0xbbbb_0000_0000_bbbb, &[])
                    .unwrap();
                let refs: Vec<&[u8]> = tokens.iter().map(|t| &t[..]).collect();
                again.extend(wire::build_qcd_reply(&c.header, &refs, nat_t).unwrap());
                assert_eq!(again, out);
            }
        }
    }

    #[test]
    fn reasons() {
        let m = maker(1);
        let ok = request(RequestOptions::default());
        let cases: Vec<(Vec<u8>, Option<bool>, Reason)> = vec![
            (ok.clone(), Some(false), Reason::Replied),
            (ok[..27].to_vec(), Some(false), Reason::Malformed),
            (ok.clone(), Some(true), Reason::Esp),
            (vec![0xff], Some(true), Reason::Esp),
            (vec![0, 0], Some(true), Reason::Malformed),
            (
                request(RequestOptions {
                    response: true,
                    ..Default::default()
                }),
                None,
                Reason::Response,
            ),
            (
                request(RequestOptions {
                    exchange: 34,
                    ..Default::default()
                }),
                None,
                Reason::IkeSaInit,
            ),
            (
                build_request(1, 0, b"", &RequestOptions::default()).unwrap(),
                None,
                Reason::IkeSaInit,
            ),
            (
                request(RequestOptions {
                    exchange: 38,
                    ..Default::default()
                }),
                None,
                Reason::SessionResume,
            ),
            (
                build_request(0, 5, b"", &RequestOptions::default()).unwrap(),
                Some(false),
                Reason::Malformed,
            ),
        ];
        for (d, nat_t, want) in cases {
            let mut out = Vec::new();
            let got = respond(&m, &d, nat_t, |_, _| false, &mut out).unwrap();
            assert_eq!(got, want, "{d:?}");
            assert_eq!(out.is_empty(), want != Reason::Replied);
        }
        let mut v1 = ok.clone();
        v1[17] = 0x10;
        assert_eq!(classify(&v1, None).unwrap_err(), Reason::NotIkev2);
        let mut unprot = ok.clone();
        unprot[16] = 41; // the same octets as one Notify payload instead of SK
        assert_eq!(classify(&unprot, None).unwrap_err(), Reason::Unprotected);
        let mut out = Vec::new();
        assert_eq!(
            respond(
                &m,
                &ok,
                None,
                |a, b| a == 0xaaaa_0000_0000_aaaa && b == 0xbbbb_0000_0000_bbbb,
                &mut out
            )
            .unwrap(),
            Reason::LiveSa
        );
        assert!(out.is_empty());
        assert_eq!(classify(&ok, None).unwrap().header.flags & FLAG_I, FLAG_I);
    }

    #[test]
    fn batch_equals_single_and_decisions_cannot_forge() {
        let m = maker(2);
        let ok = request(RequestOptions::default());
        let mut resp = ok.clone();
        resp[19] |= FLAG_R;
        let ds = vec![ok.clone(), resp.clone(), ok[..10].to_vec(), ok.clone()];
        let mut reasons = vec![0i8; 4];
        let (mut a, mut b) = (vec![0u64; 4], vec![0u64; 4]);
        classify_batch(&ds, None, &mut reasons, &mut a, &mut b).unwrap();
        assert_eq!(reasons, vec![0, 4, 1, 0]);
        assert_eq!((a[1], b[1]), (0xaaaa_0000_0000_aaaa, 0xbbbb_0000_0000_bbbb));
        // The caller downgrades #3 to a bare reply and (wrongly) asks to reply to #1.
        let mut decisions = vec![0i8, 0, 0, Reason::RateLimitedBare.code()];
        let mut out = Vec::new();
        let mut ends = vec![0usize; 4];
        build_batch(&m, &ds, None, &mut decisions, &mut out, &mut ends).unwrap();
        assert_eq!(decisions, vec![0, 4, 1, 10]);
        let full = reply_len(&m, false);
        assert_eq!(ends, vec![full, full, full, full + 36]);
        let bare = parse_qcd_reply(&out[full..], Some(false)).unwrap();
        assert!(bare.invalid_ike_spi && bare.tokens().is_empty());
        let mut r2 = vec![0i8; 4];
        let mut out2 = Vec::new();
        let mut ends2 = vec![0usize; 4];
        respond_batch(&m, &ds, None, |_, _| false, &mut r2, &mut out2, &mut ends2).unwrap();
        assert_eq!(r2, vec![0, 4, 1, 0]);
        assert_eq!(&out2[..full], &out[..full]);
        assert!(classify_batch(&ds, None, &mut [0i8; 3], &mut a, &mut b).is_err());
    }

    #[test]
    fn reason_codes_are_stable() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.code() as usize, i);
            assert_eq!(Reason::from_code(r.code()), Some(*r));
        }
        assert_eq!(Reason::from_code(-1), None);
        assert_eq!(Reason::from_code(13), Some(Reason::ClusterUnavailable));
        assert!(!Reason::ClusterUnavailable.sends());
        assert_eq!(Reason::from_code(14), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), mode in 0u8..3) {
            let m = maker(2);
            let nat_t = match mode { 0 => None, 1 => Some(false), _ => Some(true) };
            let mut out = Vec::new();
            let r = respond(&m, &data, nat_t, |_, _| false, &mut out).unwrap();
            prop_assert_eq!(out.is_empty(), r != Reason::Replied);
            if r == Reason::Replied {
                let p = parse_qcd_reply(&out, None).unwrap();
                prop_assert_eq!(p.tokens().len(), 2);
            }
        }

        #[test]
        fn mutated_requests_never_panic(flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..5), cut in 0usize..90, nat in any::<bool>()) {
            let m = maker(1);
            let mut d = request(RequestOptions { nat_t: nat, ..Default::default() });
            for (at, v) in flips { if at < d.len() { d[at] = v; } }
            d.truncate(cut);
            let mut out = Vec::new();
            let _ = respond(&m, &d, None, |_, _| false, &mut out).unwrap();
        }
    }

    #[test]
    fn header_len_constant() {
        assert_eq!(wire::HEADER_LEN, 28);
    }
}
