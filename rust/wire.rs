//! IKEv2 codec for what QCD needs (RFC 7296 §3.1, §3.2, §3.10, §2.23; RFC 6290 §4.1, §4.5).
//!
//! - [`unframe`] finds the IKE message in a UDP payload: on UDP/4500 it starts after the
//!   four zero octets of the non-ESP marker; anything else on 4500 is ESP (or a NAT
//!   keepalive) and is not IKE.
//! - [`Header::read`], [`PayloadIter`] and [`decode_notify`] parse the 28-octet header, the
//!   chain of generic payloads and Notify payloads. Every length and bound is checked, the
//!   chain is walked at most [`MAX_PAYLOADS`] steps, and every failure is a
//!   `CoreError::Malformed` that says where and why. Nothing here panics on any input.
//! - [`parse_message`] and [`parse_qcd_reply`] are the two parsers the tools use.
//! - The builders write the unprotected QCD reply (`HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`),
//!   a bare INVALID_IKE_SPI reply, the §8.2 `N(INVALID_SPI), N(QCD_TOKEN)+` message, a single
//!   N(QCD_TOKEN) payload for a daemon to place inside SK, and a protected-looking request.
//!
//! All integers are big-endian; an SPI is the `u64` whose big-endian bytes are the wire octets.
#![forbid(unsafe_code)]

use crate::error::{CoreError, CoreResult};
use crate::token::{MAX_GENERATIONS, MAX_TOKEN_LEN, MIN_TOKEN_LEN};

/// Octets of the IKE header (RFC 7296 §3.1).
pub const HEADER_LEN: usize = 28;
/// Octets of the generic payload header (RFC 7296 §3.2).
pub const GENERIC_HEADER_LEN: usize = 4;
/// Octets of a Notify payload before its SPI and data (generic header + 4).
pub const NOTIFY_HEADER_LEN: usize = 8;
/// The non-ESP marker that precedes IKE on UDP/4500 (RFC 7296 §2.23, RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The version octet IKEv2 sends: major 2, minor 0.
pub const VERSION: u8 = 0x20;
/// Most payloads a chain may hold before the parser gives up (bounds the work per message;
/// real IKE messages carry a few dozen at most).
pub const MAX_PAYLOADS: usize = 512;
/// Most QCD_TOKENs [`parse_qcd_reply`] keeps from one message (RFC 6290 §4.5 requires 4).
pub const MAX_REPLY_TOKENS: usize = 8;

/// Flag bits of header octet 19.
pub const FLAG_I: u8 = 0x08;
/// Version flag: sent as 0, ignored on receipt.
pub const FLAG_V: u8 = 0x10;
/// Response flag.
pub const FLAG_R: u8 = 0x20;

/// Payload types (RFC 7296 §3.2, RFC 7383).
pub const PAYLOAD_NONE: u8 = 0;
/// Security Association.
pub const PAYLOAD_SA: u8 = 33;
/// Key Exchange.
pub const PAYLOAD_KE: u8 = 34;
/// Identification - Initiator.
pub const PAYLOAD_IDI: u8 = 35;
/// Identification - Responder.
pub const PAYLOAD_IDR: u8 = 36;
/// Certificate.
pub const PAYLOAD_CERT: u8 = 37;
/// Certificate Request.
pub const PAYLOAD_CERTREQ: u8 = 38;
/// Authentication.
pub const PAYLOAD_AUTH: u8 = 39;
/// Nonce.
pub const PAYLOAD_NONCE: u8 = 40;
/// Notify.
pub const PAYLOAD_NOTIFY: u8 = 41;
/// Delete.
pub const PAYLOAD_DELETE: u8 = 42;
/// Vendor ID.
pub const PAYLOAD_VENDOR_ID: u8 = 43;
/// Traffic Selector - Initiator.
pub const PAYLOAD_TSI: u8 = 44;
/// Traffic Selector - Responder.
pub const PAYLOAD_TSR: u8 = 45;
/// Encrypted and Authenticated (SK).
pub const PAYLOAD_SK: u8 = 46;
/// Configuration.
pub const PAYLOAD_CP: u8 = 47;
/// Extensible Authentication.
pub const PAYLOAD_EAP: u8 = 48;
/// Encrypted and Authenticated Fragment (SKF, RFC 7383).
pub const PAYLOAD_SKF: u8 = 53;

/// Exchange types (RFC 7296 §3.1, RFC 5723).
pub const EXCHANGE_IKE_SA_INIT: u8 = 34;
/// IKE_AUTH.
pub const EXCHANGE_IKE_AUTH: u8 = 35;
/// CREATE_CHILD_SA.
pub const EXCHANGE_CREATE_CHILD_SA: u8 = 36;
/// INFORMATIONAL.
pub const EXCHANGE_INFORMATIONAL: u8 = 37;
/// IKE_SESSION_RESUME (RFC 5723).
pub const EXCHANGE_IKE_SESSION_RESUME: u8 = 38;

/// Notify message types (RFC 7296 §3.10.1, RFC 6290 §10).
pub const NOTIFY_INVALID_IKE_SPI: u16 = 4;
/// INVALID_MAJOR_VERSION.
pub const NOTIFY_INVALID_MAJOR_VERSION: u16 = 5;
/// INVALID_SYNTAX.
pub const NOTIFY_INVALID_SYNTAX: u16 = 7;
/// INVALID_MESSAGE_ID.
pub const NOTIFY_INVALID_MESSAGE_ID: u16 = 9;
/// INVALID_SPI.
pub const NOTIFY_INVALID_SPI: u16 = 11;
/// INITIAL_CONTACT.
pub const NOTIFY_INITIAL_CONTACT: u16 = 16384;
/// COOKIE.
pub const NOTIFY_COOKIE: u16 = 16390;
/// QCD_TOKEN (IANA: QUICK_CRASH_DETECTION).
pub const NOTIFY_QCD_TOKEN: u16 = 16419;

/// Protocol ID of a notify that names no SA (erratum 3449: what QCD_TOKEN carries).
pub const PROTO_NONE: u8 = 0;
/// Protocol ID "IKE" (what pre-erratum QCD senders put in QCD_TOKEN).
pub const PROTO_IKE: u8 = 1;

fn malformed(msg: String) -> CoreError {
    CoreError::Malformed(msg)
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

#[inline]
fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

// ---------------------------------------------------------------------------------------------
// Framing (UDP/500 vs UDP/4500)
// ---------------------------------------------------------------------------------------------

/// Why a UDP payload is not an IKE message at the framing level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// On UDP/4500 and the first four octets are not zero: an ESP packet with this SPI.
    Esp(u32),
    /// The one-octet 0xFF NAT keepalive of RFC 3948 §2.2.
    Keepalive,
    /// Fewer octets than the non-ESP marker.
    Short(usize),
}

impl FrameError {
    /// The error as a `CoreError::Malformed` with an explanation.
    #[must_use]
    pub fn into_core(self) -> CoreError {
        match self {
            FrameError::Esp(spi) => malformed(format!(
                "not IKE: on UDP/4500 an IKE message starts with the 4 zero octets of the non-ESP \
                 marker, this datagram starts with 0x{spi:08x} (an ESP packet)"
            )),
            FrameError::Keepalive => {
                malformed("not IKE: a one-octet 0xFF NAT keepalive (RFC 3948)".to_owned())
            }
            FrameError::Short(n) => malformed(format!(
                "truncated: a UDP/4500 datagram of {n} octets cannot hold the 4-octet non-ESP marker"
            )),
        }
    }
}

/// Locate the IKE message in a UDP payload; returns it and whether a non-ESP marker was
/// stripped.
///
/// `nat_t`: `Some(false)` = UDP/500 (the whole payload is IKE), `Some(true)` = UDP/4500
/// (marker required), `None` = auto-detect: four leading zero octets are taken as the marker
/// unless only the unmarked reading has a consistent Length field (an SPI-I may start with
/// four zero octets on port 500). ESP cannot be recognised in auto mode.
///
/// # Errors
/// [`FrameError`] when the payload is not IKE at the framing level.
pub fn unframe(datagram: &[u8], nat_t: Option<bool>) -> Result<(&[u8], bool), FrameError> {
    match nat_t {
        Some(false) => Ok((datagram, false)),
        Some(true) => match datagram.get(..4) {
            Some(head) if head == NON_ESP_MARKER => Ok((&datagram[4..], true)),
            Some(head) => Err(FrameError::Esp(u32::from_be_bytes([
                head[0], head[1], head[2], head[3],
            ]))),
            None if datagram == [0xff] => Err(FrameError::Keepalive),
            None => Err(FrameError::Short(datagram.len())),
        },
        None => {
            let marked = datagram.get(..4) == Some(&NON_ESP_MARKER[..]);
            if !marked {
                return Ok((datagram, false));
            }
            let inner = &datagram[4..];
            let inner_ok = be32(inner, 24).map(|l| l as usize) == Some(inner.len());
            let plain_ok = be32(datagram, 24).map(|l| l as usize) == Some(datagram.len());
            if plain_ok && !inner_ok {
                Ok((datagram, false))
            } else {
                Ok((inner, true))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// The 28-octet IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI.
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: u8,
    /// Major version (high nibble) and minor version (low nibble).
    pub version: u8,
    /// Exchange type.
    pub exchange: u8,
    /// Flags octet (R = 0x20, V = 0x10, I = 0x08).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message (header and payloads, without a non-ESP marker).
    pub length: u32,
}

impl Header {
    /// Read the header fields from the first 28 octets of `msg`. Checks only the size: use
    /// [`Header::check`] for the version and the Length field.
    ///
    /// # Errors
    /// `Malformed` if `msg` is shorter than 28 octets.
    pub fn read(msg: &[u8]) -> CoreResult<Header> {
        let h = msg.get(..HEADER_LEN).ok_or_else(|| {
            malformed(format!(
                "truncated: an IKE header is {HEADER_LEN} octets, the message has {}",
                msg.len()
            ))
        })?;
        // In bounds: `h` is exactly 28 octets.
        Ok(Header {
            spi_i: be64(h, 0).unwrap_or(0),
            spi_r: be64(h, 8).unwrap_or(0),
            next_payload: h[16],
            version: h[17],
            exchange: h[18],
            flags: h[19],
            message_id: be32(h, 20).unwrap_or(0),
            length: be32(h, 24).unwrap_or(0),
        })
    }

    /// Major version (2 for IKEv2).
    #[must_use]
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// R flag: the message is a response.
    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_R != 0
    }

    /// I flag: sent by the original initiator of the IKE SA.
    #[must_use]
    pub fn is_initiator(&self) -> bool {
        self.flags & FLAG_I != 0
    }

    /// Check the major version (2) and that the Length field equals `msg_len`.
    ///
    /// # Errors
    /// `Malformed` naming the version or both lengths.
    pub fn check(&self, msg_len: usize) -> CoreResult<()> {
        if self.major_version() != 2 {
            return Err(malformed(format!(
                "not IKEv2: major version {} (version octet 0x{:02x}); IKEv2 sends 0x20",
                self.major_version(),
                self.version
            )));
        }
        if self.length as usize != msg_len {
            let what = if (self.length as usize) > msg_len {
                "truncated"
            } else {
                "trailing octets"
            };
            return Err(malformed(format!(
                "{what}: the header's Length field says {} octets, the message has {msg_len}",
                self.length
            )));
        }
        Ok(())
    }

    /// Append the 28 header octets to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.extend_from_slice(&[self.next_payload, self.version, self.exchange, self.flags]);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// Flags of an unprotected reply to a request with `request_flags`: R=1, V=0, and I the
/// inverse of the request's I (the replier is the other party; RFC 6290 leaves it open).
#[must_use]
pub fn reply_flags(request_flags: u8) -> u8 {
    if request_flags & FLAG_I != 0 {
        FLAG_R
    } else {
        FLAG_R | FLAG_I
    }
}

// ---------------------------------------------------------------------------------------------
// Payload chain
// ---------------------------------------------------------------------------------------------

/// One generic payload of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Payload type (from the previous payload's Next Payload, or the header's).
    pub kind: u8,
    /// This payload's Next Payload field (for SK/SKF: the type of the first inner payload).
    pub next: u8,
    /// The critical bit.
    pub critical: bool,
    /// Offset of the payload's generic header in the IKE message.
    pub offset: usize,
    /// The payload's content after the 4-octet generic header.
    pub body: &'a [u8],
}

/// Is this payload type Encrypted (SK) or Encrypted Fragment (SKF)?
#[must_use]
pub fn is_encrypted(kind: u8) -> bool {
    kind == PAYLOAD_SK || kind == PAYLOAD_SKF
}

/// Walks the payload chain of an IKE message, checking every bound. Yields at most
/// [`MAX_PAYLOADS`] payloads, then one error if the chain goes on; after an error it ends.
///
/// An SK or SKF payload must be the last one and end exactly at the end of the message; its
/// Next Payload names the first *inner* payload and is not followed. Otherwise the chain must
/// end (Next Payload 0) exactly at the end of the message.
#[derive(Debug, Clone)]
pub struct PayloadIter<'a> {
    msg: &'a [u8],
    pos: usize,
    next: u8,
    count: usize,
    done: bool,
}

impl<'a> PayloadIter<'a> {
    /// Start at `msg[HEADER_LEN..]` with the header's Next Payload `first`. `msg` is the whole
    /// IKE message (header included); its length should already have been checked against
    /// the Length field.
    #[must_use]
    pub fn new(msg: &'a [u8], first: u8) -> Self {
        PayloadIter {
            msg,
            pos: HEADER_LEN,
            next: first,
            count: 0,
            done: false,
        }
    }

    fn fail(&mut self, m: String) -> Option<CoreResult<Payload<'a>>> {
        self.done = true;
        Some(Err(malformed(m)))
    }
}

impl<'a> Iterator for PayloadIter<'a> {
    type Item = CoreResult<Payload<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let left = self.msg.len().saturating_sub(self.pos);
        if self.next == PAYLOAD_NONE {
            self.done = true;
            if left != 0 {
                return Some(Err(malformed(format!(
                    "trailing octets: the payload chain ends at offset {} but the message has {left} more octets",
                    self.pos
                ))));
            }
            return None;
        }
        let kind = self.next;
        let idx = self.count;
        if idx >= MAX_PAYLOADS {
            return self.fail(format!(
                "too many payloads: more than {MAX_PAYLOADS} in one message"
            ));
        }
        let at = self.pos;
        let Some(hdr) = self.msg.get(at..at + GENERIC_HEADER_LEN) else {
            return self.fail(format!(
                "truncated: payload #{idx} (type {kind}) at offset {at} needs a 4-octet generic header, {left} octets left"
            ));
        };
        let next = hdr[0];
        let critical = hdr[1] & 0x80 != 0;
        let plen = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        if plen < GENERIC_HEADER_LEN {
            return self.fail(format!(
                "payload #{idx} (type {kind}) at offset {at} has Payload Length {plen}, less than its 4-octet header"
            ));
        }
        if plen > left {
            return self.fail(format!(
                "payload #{idx} (type {kind}) at offset {at} has Payload Length {plen} and runs past the end of the message ({left} octets left)"
            ));
        }
        let body = &self.msg[at + GENERIC_HEADER_LEN..at + plen];
        self.pos = at + plen;
        self.count += 1;
        self.next = next;
        if is_encrypted(kind) {
            // The SK/SKF payload is last; its Next Payload belongs to the inner chain.
            self.done = true;
            if self.pos != self.msg.len() {
                return Some(Err(malformed(format!(
                    "payload #{idx} (type {kind}, Encrypted) at offset {at} must be the last payload, but {} octets follow it",
                    self.msg.len() - self.pos
                ))));
            }
        }
        Some(Ok(Payload {
            kind,
            next,
            critical,
            offset: at,
            body,
        }))
    }
}

/// A decoded Notify payload (RFC 7296 §3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify<'a> {
    /// Protocol ID (0 when no SA is named; QCD_TOKEN sends 0, old senders 1).
    pub protocol_id: u8,
    /// The SPI field (SPI Size octets; empty for QCD_TOKEN and INVALID_IKE_SPI).
    pub spi: &'a [u8],
    /// Notify Message Type.
    pub kind: u16,
    /// Notification data.
    pub data: &'a [u8],
}

/// Decode a Notify payload's body (the octets after its generic header).
///
/// # Errors
/// `Malformed` if the body is shorter than 4 octets or the SPI Size runs past its end.
pub fn decode_notify(body: &[u8]) -> CoreResult<Notify<'_>> {
    let (Some(&protocol_id), Some(&spi_size), Some(kind)) =
        (body.first(), body.get(1), be16(body, 2))
    else {
        return Err(malformed(format!(
            "Notify payload body is {} octets, needs at least 4 (Protocol ID, SPI Size, Notify Message Type)",
            body.len()
        )));
    };
    let spi_end = 4 + usize::from(spi_size);
    let Some(spi) = body.get(4..spi_end) else {
        return Err(malformed(format!(
            "Notify payload (type {kind}) has SPI Size {spi_size} but only {} octets follow the type",
            body.len() - 4
        )));
    };
    Ok(Notify {
        protocol_id,
        spi,
        kind,
        data: &body[spi_end..],
    })
}

/// The header of an IKE message, checked (version 2, Length matches). Returns the header.
///
/// # Errors
/// `Malformed` as [`Header::read`] and [`Header::check`].
pub fn checked_header(msg: &[u8]) -> CoreResult<Header> {
    let h = Header::read(msg)?;
    h.check(msg.len())?;
    Ok(h)
}

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

/// A parsed IKE message: the header and its (outer) payloads, all bounds checked, every
/// Notify payload decodable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header,
    /// Whether a non-ESP marker preceded the message.
    pub nat_t: bool,
    /// The outer payloads in order (an SK/SKF payload is one opaque payload).
    pub payloads: Vec<Payload<'a>>,
}

impl<'a> Message<'a> {
    /// The decoded Notify payloads with their index in `payloads`.
    pub fn notifies(&self) -> impl Iterator<Item = (usize, Notify<'a>)> + '_ {
        self.payloads
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == PAYLOAD_NOTIFY)
            .filter_map(|(i, p)| decode_notify(p.body).ok().map(|n| (i, n)))
    }
}

/// Parse an IKE message from a UDP payload (see [`unframe`] for `nat_t`).
///
/// # Errors
/// `Malformed` for anything that is not a well-formed IKEv2 message: not IKE on 4500,
/// truncated, a Length field that lies, a payload chain that runs past the end or leaves
/// trailing octets, a zero-length payload, more than [`MAX_PAYLOADS`] payloads, a Notify
/// whose SPI Size runs past its end, or a major version other than 2.
pub fn parse_message(datagram: &[u8], nat_t: Option<bool>) -> CoreResult<Message<'_>> {
    let (msg, marked) = unframe(datagram, nat_t).map_err(FrameError::into_core)?;
    let header = checked_header(msg)?;
    let mut payloads = Vec::new();
    for p in PayloadIter::new(msg, header.next_payload) {
        let p = p?;
        if p.kind == PAYLOAD_NOTIFY {
            decode_notify(p.body).map_err(|e| {
                malformed(format!(
                    "payload #{} at offset {}: {e}",
                    payloads.len(),
                    p.offset
                ))
            })?;
        }
        payloads.push(p);
    }
    Ok(Message {
        header,
        nat_t: marked,
        payloads,
    })
}

/// Why a QCD_TOKEN notify was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its data is outside 16..=128 octets (RFC 6290 §5).
    Length(usize),
    /// It carried an SPI (SPI Size must be 0, §4.1).
    HasSpi,
    /// More than [`MAX_REPLY_TOKENS`] usable tokens in one message.
    OverCap,
}

/// What a token taker needs from an unprotected reply (RFC 6290 §4.5, §8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QcdReply<'a> {
    /// The header.
    pub header: Header,
    /// Whether a non-ESP marker preceded the message.
    pub nat_t: bool,
    /// An INVALID_IKE_SPI notify was present.
    pub invalid_ike_spi: bool,
    /// An INVALID_SPI notify was present.
    pub invalid_spi: bool,
    /// The data of the first INVALID_SPI notify (the child SPI, normally 4 octets).
    pub invalid_spi_data: Option<&'a [u8]>,
    /// Whether the message also has an SK/SKF payload (its content is opaque here).
    pub encrypted: bool,
    /// Number of QCD_TOKEN notifies seen (taken + ignored).
    pub qcd_notifies: usize,
    tokens: [&'a [u8]; MAX_REPLY_TOKENS],
    n_tokens: usize,
    /// QCD_TOKEN notifies not taken: (their index among the QCD_TOKEN notifies, why).
    pub ignored: Vec<(usize, Ignored)>,
}

impl<'a> QcdReply<'a> {
    /// The usable tokens, in message order.
    #[must_use]
    pub fn tokens(&self) -> &[&'a [u8]] {
        &self.tokens[..self.n_tokens]
    }

    /// The child SPI of an INVALID_SPI notify whose data is 4 octets.
    #[must_use]
    pub fn child_spi(&self) -> Option<u32> {
        self.invalid_spi_data
            .and_then(|d| be32(d, 0).filter(|_| d.len() == 4))
    }
}

/// Parse a message that may carry QCD tokens (an unprotected `N(INVALID_IKE_SPI),
/// N(QCD_TOKEN)+` reply or a §8.2 `N(INVALID_SPI), N(QCD_TOKEN)+` message). Notifies may come
/// in any order; unknown payloads and notify types are skipped (RFC 7296 §2.5, §3.10.1); the
/// Protocol ID of QCD_TOKEN is ignored (0 per erratum 3449, 1 from older senders). Tokens
/// outside 16..=128 octets, with an SPI, or beyond [`MAX_REPLY_TOKENS`] are listed in
/// `ignored`. The message need not contain any token.
///
/// # Errors
/// `Malformed` as [`parse_message`].
pub fn parse_qcd_reply(datagram: &[u8], nat_t: Option<bool>) -> CoreResult<QcdReply<'_>> {
    let (msg, marked) = unframe(datagram, nat_t).map_err(FrameError::into_core)?;
    let header = checked_header(msg)?;
    let mut r = QcdReply {
        header,
        nat_t: marked,
        invalid_ike_spi: false,
        invalid_spi: false,
        invalid_spi_data: None,
        encrypted: false,
        qcd_notifies: 0,
        tokens: [&[]; MAX_REPLY_TOKENS],
        n_tokens: 0,
        ignored: Vec::new(),
    };
    for (i, p) in PayloadIter::new(msg, header.next_payload).enumerate() {
        let p = p?;
        if is_encrypted(p.kind) {
            r.encrypted = true;
            continue;
        }
        if p.kind != PAYLOAD_NOTIFY {
            continue;
        }
        let n = decode_notify(p.body)
            .map_err(|e| malformed(format!("payload #{i} at offset {}: {e}", p.offset)))?;
        match n.kind {
            NOTIFY_INVALID_IKE_SPI => r.invalid_ike_spi = true,
            NOTIFY_INVALID_SPI => {
                if !r.invalid_spi {
                    r.invalid_spi_data = Some(n.data);
                }
                r.invalid_spi = true;
            }
            NOTIFY_QCD_TOKEN => {
                let k = r.qcd_notifies;
                r.qcd_notifies += 1;
                let len = n.data.len();
                if !n.spi.is_empty() {
                    r.ignored.push((k, Ignored::HasSpi));
                } else if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&len) {
                    r.ignored.push((k, Ignored::Length(len)));
                } else if r.n_tokens == MAX_REPLY_TOKENS {
                    r.ignored.push((k, Ignored::OverCap));
                } else {
                    r.tokens[r.n_tokens] = n.data;
                    r.n_tokens += 1;
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Column-wise result of [`parse_qcd_batch`]: row k describes datagram k. Rows that did not
/// parse have `ok[k] == false` and zeros elsewhere. The tokens are stored flat: datagram k
/// owns token numbers `token_index[k]..token_index[k + 1]`, and token number j is
/// `token_data[token_offsets[j]..token_offsets[j + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QcdBatch {
    /// The datagram parsed.
    pub ok: Vec<bool>,
    /// Header SPI-I.
    pub spi_i: Vec<u64>,
    /// Header SPI-R.
    pub spi_r: Vec<u64>,
    /// Header Message ID.
    pub message_id: Vec<u32>,
    /// Header Exchange Type.
    pub exchange: Vec<u8>,
    /// Header flags.
    pub flags: Vec<u8>,
    /// A non-ESP marker preceded the message.
    pub nat_t: Vec<bool>,
    /// INVALID_IKE_SPI present.
    pub invalid_ike_spi: Vec<bool>,
    /// INVALID_SPI present.
    pub invalid_spi: Vec<bool>,
    /// The 4-octet child SPI of INVALID_SPI (0 when absent or not 4 octets).
    pub child_spi: Vec<u32>,
    /// An SK/SKF payload is present.
    pub encrypted: Vec<bool>,
    /// QCD_TOKEN notifies not taken (out of range, with an SPI, over the cap).
    pub ignored: Vec<u16>,
    /// Per-datagram start into the token list (`n + 1` entries).
    pub token_index: Vec<i64>,
    /// Per-token start into `token_data` (`tokens + 1` entries).
    pub token_offsets: Vec<i64>,
    /// All taken tokens, concatenated.
    pub token_data: Vec<u8>,
}

impl QcdBatch {
    fn with_capacity(n: usize) -> Self {
        QcdBatch {
            ok: Vec::with_capacity(n),
            spi_i: Vec::with_capacity(n),
            spi_r: Vec::with_capacity(n),
            message_id: Vec::with_capacity(n),
            exchange: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            nat_t: Vec::with_capacity(n),
            invalid_ike_spi: Vec::with_capacity(n),
            invalid_spi: Vec::with_capacity(n),
            child_spi: Vec::with_capacity(n),
            encrypted: Vec::with_capacity(n),
            ignored: Vec::with_capacity(n),
            token_index: Vec::with_capacity(n + 1),
            token_offsets: Vec::with_capacity(n + 1),
            token_data: Vec::with_capacity(n * 32),
        }
    }

    /// Number of datagrams described.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ok.len()
    }

    /// True when no datagram is described.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ok.is_empty()
    }
}

/// [`parse_qcd_reply`] over many datagrams, into columns (see [`QcdBatch`]). Malformed
/// datagrams are marked, not errors.
#[must_use]
pub fn parse_qcd_batch<D: AsRef<[u8]>>(datagrams: &[D], nat_t: Option<bool>) -> QcdBatch {
    let mut b = QcdBatch::with_capacity(datagrams.len());
    b.token_index.push(0);
    b.token_offsets.push(0);
    let mut n_tokens: i64 = 0;
    for d in datagrams {
        match parse_qcd_reply(d.as_ref(), nat_t) {
            Ok(r) => {
                b.ok.push(true);
                b.spi_i.push(r.header.spi_i);
                b.spi_r.push(r.header.spi_r);
                b.message_id.push(r.header.message_id);
                b.exchange.push(r.header.exchange);
                b.flags.push(r.header.flags);
                b.nat_t.push(r.nat_t);
                b.invalid_ike_spi.push(r.invalid_ike_spi);
                b.invalid_spi.push(r.invalid_spi);
                b.child_spi.push(r.child_spi().unwrap_or(0));
                b.encrypted.push(r.encrypted);
                b.ignored
                    .push(u16::try_from(r.ignored.len()).unwrap_or(u16::MAX));
                for t in r.tokens() {
                    b.token_data.extend_from_slice(t);
                    b.token_offsets.push(b.token_data.len() as i64);
                    n_tokens += 1;
                }
            }
            Err(_) => {
                b.ok.push(false);
                b.spi_i.push(0);
                b.spi_r.push(0);
                b.message_id.push(0);
                b.exchange.push(0);
                b.flags.push(0);
                b.nat_t.push(false);
                b.invalid_ike_spi.push(false);
                b.invalid_spi.push(false);
                b.child_spi.push(0);
                b.encrypted.push(false);
                b.ignored.push(0);
            }
        }
        b.token_index.push(n_tokens);
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

fn check_tokens(tokens: &[&[u8]], min: usize) -> CoreResult<()> {
    if tokens.len() < min || tokens.len() > MAX_GENERATIONS {
        return Err(CoreError::InvalidToken(format!(
            "give {min} to {MAX_GENERATIONS} tokens (one per secret generation), got {}",
            tokens.len()
        )));
    }
    for (i, t) in tokens.iter().enumerate() {
        check_token(t).map_err(|e| CoreError::InvalidToken(format!("token {i}: {e}")))?;
    }
    Ok(())
}

fn check_token(t: &[u8]) -> CoreResult<()> {
    if (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len()) {
        Ok(())
    } else {
        Err(CoreError::InvalidToken(format!(
            "a QCD token must be {MIN_TOKEN_LEN}..={MAX_TOKEN_LEN} octets (RFC 6290 §5), got {}",
            t.len()
        )))
    }
}

fn to_u32(n: usize, what: &str) -> CoreResult<u32> {
    u32::try_from(n).map_err(|_| {
        CoreError::CapacityExceeded(format!("{what} of {n} octets does not fit a 32-bit Length"))
    })
}

fn to_u16(n: usize, what: &str) -> CoreResult<u16> {
    u16::try_from(n).map_err(|_| {
        CoreError::CapacityExceeded(format!(
            "{what}: a payload of {n} octets does not fit the 16-bit Payload Length (max 65535)"
        ))
    })
}

/// Append `N(QCD_TOKEN)` for each token, chained, the last with Next Payload 0.
///
/// # Errors
/// As [`write_notify`].
fn write_token_notifies<T: AsRef<[u8]>>(out: &mut Vec<u8>, tokens: &[T]) -> CoreResult<()> {
    for (k, t) in tokens.iter().enumerate() {
        let next = if k + 1 == tokens.len() {
            PAYLOAD_NONE
        } else {
            PAYLOAD_NOTIFY
        };
        write_notify(out, next, PROTO_NONE, NOTIFY_QCD_TOKEN, t.as_ref())?;
    }
    Ok(())
}

/// Append a Notify payload with an empty SPI (Protocol ID as given) to `out`.
///
/// # Errors
/// `CapacityExceeded` if the payload would exceed 65 535 octets.
pub fn write_notify(
    out: &mut Vec<u8>,
    next: u8,
    protocol_id: u8,
    kind: u16,
    data: &[u8],
) -> CoreResult<()> {
    let len = to_u16(NOTIFY_HEADER_LEN + data.len(), "notify data")?;
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[protocol_id, 0]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Length of a QCD reply with `n` tokens of `token_len` octets, without the marker.
#[must_use]
pub fn qcd_reply_len(n: usize, token_len: usize) -> usize {
    HEADER_LEN + NOTIFY_HEADER_LEN + n * (NOTIFY_HEADER_LEN + token_len)
}

/// The N(QCD_TOKEN) payload a daemon places inside SK (IKE_AUTH, CREATE_CHILD_SA,
/// INFORMATIONAL): Protocol ID 0 (erratum 3449), SPI Size 0, type 16419, the token as data.
/// `next` is the Next Payload of this payload (the caller's chain).
///
/// # Errors
/// `InvalidToken` for a token outside 16..=128 octets.
pub fn build_qcd_notify(token: &[u8], next: u8) -> CoreResult<Vec<u8>> {
    check_token(token)?;
    let mut out = Vec::with_capacity(NOTIFY_HEADER_LEN + token.len());
    write_notify(&mut out, next, PROTO_NONE, NOTIFY_QCD_TOKEN, token)?;
    Ok(out)
}

fn reply_header(req: &Header, length: usize) -> CoreResult<Header> {
    Ok(Header {
        spi_i: req.spi_i,
        spi_r: req.spi_r,
        next_payload: PAYLOAD_NOTIFY,
        version: VERSION,
        exchange: req.exchange,
        flags: reply_flags(req.flags),
        message_id: req.message_id,
        length: to_u32(length, "reply")?,
    })
}

/// The unprotected reply `HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+` to the request with header
/// `req` (RFC 6290 §4.5): SPIs, Message ID and Exchange Type copied, version 0x20, R=1, I the
/// inverse of the request's, Protocol ID 0 and SPI Size 0 in every notify. `nat_t` prefixes
/// the non-ESP marker.
///
/// # Errors
/// `InvalidToken` for 0 or more than 4 tokens, or a token outside 16..=128 octets.
pub fn build_qcd_reply(req: &Header, tokens: &[&[u8]], nat_t: bool) -> CoreResult<Vec<u8>> {
    check_tokens(tokens, 1)?;
    let body: usize = tokens.iter().map(|t| NOTIFY_HEADER_LEN + t.len()).sum();
    let length = HEADER_LEN + NOTIFY_HEADER_LEN + body;
    let mut out = Vec::with_capacity(length + 4);
    if nat_t {
        out.extend_from_slice(&NON_ESP_MARKER);
    }
    reply_header(req, length)?.write(&mut out);
    write_notify(
        &mut out,
        PAYLOAD_NOTIFY,
        PROTO_NONE,
        NOTIFY_INVALID_IKE_SPI,
        &[],
    )?;
    write_token_notifies(&mut out, tokens)?;
    Ok(out)
}

/// A bare `HDR, N(INVALID_IKE_SPI)` reply (RFC 7296 §1.5, §2.21.4): what a maker sends when
/// QCD is off or rate-limited.
#[must_use]
pub fn build_invalid_ike_spi_reply(req: &Header, nat_t: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + NOTIFY_HEADER_LEN + 4);
    write_invalid_ike_spi_reply(req, nat_t, &mut out);
    out
}

/// Append a bare INVALID_IKE_SPI reply to `out` (see [`build_invalid_ike_spi_reply`]).
pub fn write_invalid_ike_spi_reply(req: &Header, nat_t: bool, out: &mut Vec<u8>) {
    if nat_t {
        out.extend_from_slice(&NON_ESP_MARKER);
    }
    let h = Header {
        spi_i: req.spi_i,
        spi_r: req.spi_r,
        next_payload: PAYLOAD_NOTIFY,
        version: VERSION,
        exchange: req.exchange,
        flags: reply_flags(req.flags),
        message_id: req.message_id,
        length: (HEADER_LEN + NOTIFY_HEADER_LEN) as u32,
    };
    h.write(out);
    out.extend_from_slice(&[PAYLOAD_NONE, 0, 0, NOTIFY_HEADER_LEN as u8]);
    out.extend_from_slice(&[PROTO_NONE, 0, 0, NOTIFY_INVALID_IKE_SPI as u8]);
}

/// Options of the §8.2 message (everything RFC 6290 and RFC 7296 leave open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSpiOptions {
    /// IKE SPI-I in the header ("zero or random", RFC 7296 §1.5).
    pub spi_i: u64,
    /// IKE SPI-R in the header.
    pub spi_r: u64,
    /// Exchange type (INFORMATIONAL is the plausible choice).
    pub exchange: u8,
    /// Message ID (0 is the plausible choice).
    pub message_id: u32,
    /// Prefix the non-ESP marker.
    pub nat_t: bool,
}

impl Default for InvalidSpiOptions {
    fn default() -> Self {
        InvalidSpiOptions {
            spi_i: 0,
            spi_r: 0,
            exchange: EXCHANGE_INFORMATIONAL,
            message_id: 0,
            nat_t: false,
        }
    }
}

/// The unprotected `HDR, N(INVALID_SPI), N(QCD_TOKEN)*` message of RFC 6290 §8.2 / RFC 7296
/// §1.5: I=1, R=0, INVALID_SPI with the 4-octet child SPI as data, then 0..=4 QCD_TOKENs.
///
/// # Errors
/// `InvalidToken` for more than 4 tokens or a token outside 16..=128 octets.
pub fn build_invalid_spi_message(
    child_spi: u32,
    tokens: &[&[u8]],
    opts: &InvalidSpiOptions,
) -> CoreResult<Vec<u8>> {
    check_tokens(tokens, 0)?;
    let body: usize = tokens.iter().map(|t| NOTIFY_HEADER_LEN + t.len()).sum();
    let length = HEADER_LEN + NOTIFY_HEADER_LEN + 4 + body;
    let mut out = Vec::with_capacity(length + 4);
    if opts.nat_t {
        out.extend_from_slice(&NON_ESP_MARKER);
    }
    Header {
        spi_i: opts.spi_i,
        spi_r: opts.spi_r,
        next_payload: PAYLOAD_NOTIFY,
        version: VERSION,
        exchange: opts.exchange,
        flags: FLAG_I,
        message_id: opts.message_id,
        length: to_u32(length, "message")?,
    }
    .write(&mut out);
    let first_next = if tokens.is_empty() {
        PAYLOAD_NONE
    } else {
        PAYLOAD_NOTIFY
    };
    write_notify(
        &mut out,
        first_next,
        PROTO_NONE,
        NOTIFY_INVALID_SPI,
        &child_spi.to_be_bytes(),
    )?;
    write_token_notifies(&mut out, tokens)?;
    Ok(out)
}

/// Options of [`build_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// Exchange type (INFORMATIONAL by default).
    pub exchange: u8,
    /// Message ID.
    pub message_id: u32,
    /// Set the I flag (sent by the original initiator).
    pub initiator: bool,
    /// Set the R flag (build a response instead; for tests).
    pub response: bool,
    /// The SK payload's Next Payload (type of the first inner payload; 0 = empty SK).
    pub inner_next: u8,
    /// Prefix the non-ESP marker.
    pub nat_t: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            exchange: EXCHANGE_INFORMATIONAL,
            message_id: 0,
            initiator: true,
            response: false,
            inner_next: PAYLOAD_NONE,
            nat_t: false,
        }
    }
}

/// A protected-looking message `HDR, SK{...}` whose SK payload carries `sk_body` as opaque
/// octets (IV, ciphertext, ICV: the codec never looks inside). With an empty body and
/// INFORMATIONAL this is the shape of a liveness check (RFC 7296 §1.4).
///
/// # Errors
/// `CapacityExceeded` if the SK payload would exceed 65 535 octets.
pub fn build_request(
    spi_i: u64,
    spi_r: u64,
    sk_body: &[u8],
    opts: &RequestOptions,
) -> CoreResult<Vec<u8>> {
    let sk_len = to_u16(GENERIC_HEADER_LEN + sk_body.len(), "sk_body")?;
    let length = HEADER_LEN + usize::from(sk_len);
    let mut out = Vec::with_capacity(length + 4);
    if opts.nat_t {
        out.extend_from_slice(&NON_ESP_MARKER);
    }
    let mut flags = 0;
    if opts.initiator {
        flags |= FLAG_I;
    }
    if opts.response {
        flags |= FLAG_R;
    }
    Header {
        spi_i,
        spi_r,
        next_payload: PAYLOAD_SK,
        version: VERSION,
        exchange: opts.exchange,
        flags,
        message_id: opts.message_id,
        length: to_u32(length, "message")?,
    }
    .write(&mut out);
    out.extend_from_slice(&[opts.inner_next, 0]);
    out.extend_from_slice(&sk_len.to_be_bytes());
    out.extend_from_slice(sk_body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(exchange: u8, flags: u8) -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: PAYLOAD_SK,
            version: VERSION,
            exchange,
            flags,
            message_id: 0xdead_beef,
            length: 0,
        }
    }

    #[test]
    fn reply_layout_digest_2_4() {
        let tok = [0xabu8; 32];
        let r = build_qcd_reply(&req(EXCHANGE_INFORMATIONAL, FLAG_I), &[&tok], false).unwrap();
        assert_eq!(r.len(), 76);
        assert_eq!(&r[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&r[8..16], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(&r[16..20], &[0x29, 0x20, 0x25, 0x20]);
        assert_eq!(&r[20..24], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&r[24..28], &[0, 0, 0, 76]);
        assert_eq!(&r[28..36], &[0x29, 0, 0, 8, 0, 0, 0, 4]);
        assert_eq!(&r[36..44], &[0, 0, 0, 0x28, 0, 0, 0x40, 0x23]);
        assert_eq!(&r[44..], &tok[..]);
        let p = parse_qcd_reply(&r, Some(false)).unwrap();
        assert!(p.invalid_ike_spi && !p.invalid_spi && !p.encrypted);
        assert_eq!(p.tokens(), &[&tok[..]]);
        // I flag inverted; 4500 adds the marker outside Length.
        let r2 = build_qcd_reply(&req(36, 0), &[&tok, &tok], true).unwrap();
        assert_eq!(&r2[..4], &NON_ESP_MARKER);
        assert_eq!(r2[4 + 19], FLAG_R | FLAG_I);
        assert_eq!(be32(&r2, 4 + 24), Some(76 + 40));
        assert_eq!(r2.len(), 4 + 116);
        // Maximum from the digest: four 128-octet tokens -> 580.
        let big = [1u8; 128];
        let r4 = build_qcd_reply(&req(37, 0), &[&big[..]; 4], false).unwrap();
        assert_eq!(r4.len(), 580);
        assert_eq!(r4.len(), qcd_reply_len(4, 128));
    }

    #[test]
    fn builders_reject_bad_tokens() {
        let h = req(37, 0);
        assert!(matches!(
            build_qcd_reply(&h, &[], false),
            Err(CoreError::InvalidToken(_))
        ));
        let t = [0u8; 16];
        assert!(build_qcd_reply(&h, &[&t[..]; 5], false).is_err());
        assert!(build_qcd_reply(&h, &[&t[..15]], false).is_err());
        assert!(build_qcd_notify(&[0u8; 129], 0).is_err());
        assert_eq!(
            build_qcd_notify(&t, 41).unwrap()[..8],
            [41, 0, 0, 24, 0, 0, 0x40, 0x23]
        );
    }

    #[test]
    fn invalid_spi_message_and_request_round_trip() {
        let t = [7u8; 20];
        let m =
            build_invalid_spi_message(0x1234_5678, &[&t], &InvalidSpiOptions::default()).unwrap();
        let p = parse_qcd_reply(&m, None).unwrap();
        assert!(p.invalid_spi && !p.invalid_ike_spi);
        assert_eq!(p.child_spi(), Some(0x1234_5678));
        assert_eq!(p.header.flags, FLAG_I);
        assert_eq!(p.tokens(), &[&t[..]]);
        let r = build_request(
            5,
            6,
            b"opaque",
            &RequestOptions {
                nat_t: true,
                ..Default::default()
            },
        )
        .unwrap();
        let msg = parse_message(&r, None).unwrap();
        assert!(msg.nat_t);
        assert_eq!(msg.payloads.len(), 1);
        assert_eq!(msg.payloads[0].kind, PAYLOAD_SK);
        assert_eq!(msg.payloads[0].body, b"opaque");
        assert!(parse_message(&r, Some(false)).is_err());
        assert!(parse_message(&r[4..], Some(true)).is_err()); // ESP on 4500
        assert_eq!(unframe(&[0xff], Some(true)), Err(FrameError::Keepalive));
    }

    #[test]
    fn malformed_inputs() {
        let t = [9u8; 16];
        let good = build_qcd_reply(&req(37, 8), &[&t], false).unwrap();
        for n in 0..good.len() {
            assert!(parse_qcd_reply(&good[..n], Some(false)).is_err(), "{n}");
            assert!(parse_message(&good[..n], Some(false)).is_err(), "{n}");
        }
        // Zero-length payload.
        let mut z = good.clone();
        z[30..32].copy_from_slice(&[0, 0]);
        assert!(parse_message(&z, Some(false))
            .unwrap_err()
            .to_string()
            .contains("less than"));
        // Payload runs past the end.
        let mut z = good.clone();
        z[30..32].copy_from_slice(&[0, 200]);
        assert!(parse_message(&z, Some(false))
            .unwrap_err()
            .to_string()
            .contains("past the end"));
        // Version 1.
        let mut z = good.clone();
        z[17] = 0x10;
        assert!(parse_message(&z, Some(false))
            .unwrap_err()
            .to_string()
            .contains("not IKEv2"));
        // 65 535 empty notify-like payloads: bounded.
        let n = 65_535usize;
        let mut big = Vec::with_capacity(28 + 4 * n);
        let mut h = req(37, 0);
        h.next_payload = PAYLOAD_VENDOR_ID;
        h.length = (28 + 4 * n) as u32;
        h.write(&mut big);
        for k in 0..n {
            let next = if k + 1 == n { 0 } else { PAYLOAD_VENDOR_ID };
            big.extend_from_slice(&[next, 0, 0, 4]);
        }
        assert!(parse_message(&big, Some(false))
            .unwrap_err()
            .to_string()
            .contains("too many"));
    }

    #[test]
    fn batch_matches_single() {
        let t1 = [1u8; 16];
        let t2 = [2u8; 40];
        let a = build_qcd_reply(&req(37, 8), &[&t1, &t2], false).unwrap();
        let b = build_invalid_spi_message(9, &[], &InvalidSpiOptions::default()).unwrap();
        let ds: Vec<&[u8]> = vec![&a, b"junk", &b, &a[..40]];
        let r = parse_qcd_batch(&ds, None);
        assert_eq!(r.len(), 4);
        assert_eq!(r.ok, vec![true, false, true, false]);
        assert_eq!(r.token_index, vec![0, 2, 2, 2, 2]);
        assert_eq!(r.token_offsets, vec![0, 16, 56]);
        assert_eq!(&r.token_data[..16], &t1);
        assert_eq!(r.child_spi, vec![0, 0, 9, 0]);
        assert!(r.invalid_ike_spi[0] && r.invalid_spi[2]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), mode in 0u8..3) {
            let nat_t = match mode { 0 => None, 1 => Some(false), _ => Some(true) };
            let _ = parse_message(&data, nat_t);
            let _ = parse_qcd_reply(&data, nat_t);
            let _ = unframe(&data, nat_t);
            if let Ok(h) = Header::read(&data) {
                let _ = h.check(data.len());
                let walked = PayloadIter::new(&data, h.next_payload).take(MAX_PAYLOADS + 2);
                for p in walked.flatten() {
                    let _ = decode_notify(p.body);
                }
            }
        }

        #[test]
        fn mutated_replies_never_panic(flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..6), cut in 0usize..130) {
            let t = [3u8; 32];
            let mut m = build_qcd_reply(&req(37, 8), &[&t, &t], false).unwrap();
            for (at, v) in flips { if at < m.len() { m[at] = v; } }
            m.truncate(cut.max(1));
            let _ = parse_qcd_reply(&m, None);
            let _ = parse_message(&m, Some(true));
        }
    }
}
