//! Every parser of untrusted bytes (AUDIT.md, "Entry points"): the client port's
//! requests, the peer port's RECV, a peer's acknowledgement, and the records of the
//! messages log. Each gives a typed value or a bounded reason, so the rest of the
//! daemon never handles a raw string from outside. Replies are encoded here too, never
//! longer than MAX_REPLY (PROTOCOL.md §2).

use crate::onion::OnionId;
use data_encoding::BASE64;
use ed25519_dalek::Signature;
use serde::de::{Deserializer, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::num::NonZeroU16;

/// The 2017 client reads a reply with one `recv(5000)`; 4096 leaves it a margin.
pub const MAX_REPLY: usize = 4096;
/// A text's bytes, JSON-escaped: a notice quoting one and its reason twice still fits
/// in one reply (PROTOCOL.md §3).
pub const MAX_TEXT: usize = 3000;
/// Bytes a request may take: the 2017 client's `\uXXXX` escapes make a text's bytes
/// on the wire up to three times its bytes in a reply.
pub const MAX_REQUEST: usize = 16384;

/// The listener a request came in on (PROTOCOL.md §1).
#[derive(Clone, Copy)]
pub enum Port {
    Client,
    Peer,
}

/// A message's text: not empty, at most MAX_TEXT bytes as it stands in a reply.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct Text(pub String);

impl TryFrom<String> for Text {
    type Error = String;

    /// Err: why `text` cannot be a message.
    fn try_from(text: String) -> Result<Text, String> {
        match serde_json::to_string(&text).map_or(0, |s| s.len() - 2) {
            0 => Err("empty message".into()),
            n if n > MAX_TEXT => Err(format!("message too long: {n} bytes, at most {MAX_TEXT}")),
            _ => Ok(Text(text)),
        }
    }
}

/// A SEND's text, or what its notice says (PROTOCOL.md §9), since the 2017 client never
/// reads the refusal: why the text cannot be sent, and its start, which the notice quotes.
pub struct Sendable(pub Result<Text, (String, String)>);

impl<'de> Deserialize<'de> for Sendable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sendable, D::Error> {
        let text = String::deserialize(d)?;
        // At most 6 bytes a character once escaped: the start fits where a text does.
        let start = text.chars().take(MAX_TEXT / 6).collect();
        Ok(Sendable(Text::try_from(text).map_err(|why| (why, start))))
    }
}

/// HISTORY's count of lines, which comes as a decimal string.
pub struct Lines(pub usize);

impl<'de> Deserialize<'de> for Lines {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lines, D::Error> {
        let n = String::deserialize(d)?.trim().parse();
        n.map(Lines).map_err(|_| D::Error::custom("expected a number of lines"))
    }
}

/// A message id (PROTOCOL.md §4): 32 lower-case hex digits.
pub struct Mid(pub String);

impl<'de> Deserialize<'de> for Mid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mid, D::Error> {
        let mid = String::deserialize(d)?;
        let hex = |b| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        let valid = mid.len() == 32 && mid.bytes().all(hex);
        valid.then_some(Mid(mid)).ok_or_else(|| D::Error::custom("\"mid\": expected 32 hex digits"))
    }
}

/// A request, as the port it came in on allows it (PROTOCOL.md §1): parsed as this
/// type, it is the peer port's only command, RECV, and anything else is an unknown
/// variant; the client port's are parsed as `Command`s.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Request {
    Recv(Recv),
    #[serde(skip)]
    Client(Command),
}

/// The client port's commands, keys named as on the wire; unknown keys are ignored.
/// UPDATE's `msg` is the peer; HISTORY's, how many lines with peer `id`; SEND's
/// `portno`, a peer's virtual port, is never 0. BLOCK and UNBLOCK: whether peer `id` is
/// heard (PROTOCOL.md §12).
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Command {
    Host,
    GetPeers,
    Exit,
    Update { msg: OnionId },
    History { id: OnionId, msg: Lines },
    Send { id: OnionId, portno: NonZeroU16, msg: Sendable },
    Block { id: OnionId },
    Unblock { id: OnionId },
}

/// A peer's message; `from` is who it claims to be from. A 2017 peer does not sign.
pub struct Recv {
    pub from: OnionId,
    pub text: Text,
    pub mid: Option<Mid>,
    /// The time stamp and the signature (PROTOCOL.md §4); a signed RECV has a mid.
    pub signed: Option<(u64, Signature)>,
}

#[derive(Deserialize)]
struct RawRecv {
    id: OnionId,
    msg: Text,
    mid: Option<Mid>,
    ts: Option<u64>,
    #[serde(default, deserialize_with = "signature")]
    sig: Option<Signature>,
}

impl<'de> Deserialize<'de> for Recv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Recv, D::Error> {
        let raw = RawRecv::deserialize(d)?;
        let signed = match (raw.sig, raw.ts, &raw.mid) {
            (None, ..) => None,
            (Some(sig), Some(ts), Some(_)) => Some((ts, sig)),
            _ => return Err(D::Error::custom("a signed message needs \"ts\" and \"mid\"")),
        };
        Ok(Recv { from: raw.id, text: raw.msg, mid: raw.mid, signed })
    }
}

/// `sig`: 64 bytes in standard base64, padded, canonical.
fn signature<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signature>, D::Error> {
    let bytes = BASE64.decode(String::deserialize(d)?.as_bytes()).ok();
    let sig = bytes.and_then(|b| <[u8; 64]>::try_from(b).ok());
    let sig = sig.ok_or_else(|| D::Error::custom("\"sig\": expected 64 bytes in base64"))?;
    Ok(Some(Signature::from_bytes(&sig)))
}

/// The request in `buf`; `None` while it is incomplete and more may come (the sender
/// has not `ended`, and MAX_REQUEST is not reached). Bytes after the first JSON value
/// are ignored (PROTOCOL.md §2). Err: why it is refused.
pub fn request(port: Port, buf: &[u8], ended: bool) -> Option<Result<Request, String>> {
    // Parsed straight into the type, so that a key given twice is refused.
    let mut json = serde_json::Deserializer::from_slice(buf);
    // serde would also take ["EXIT"] for {"cmd": "EXIT"}; the protocol is objects only.
    let start = buf.iter().find(|b| !b.is_ascii_whitespace());
    let parsed = match port {
        _ if start.is_some_and(|&b| b != b'{') => Err(Error::custom("expected a JSON object")),
        Port::Client => Command::deserialize(&mut json).map(Request::Client),
        Port::Peer => Request::deserialize(&mut json),
    };
    match parsed {
        Err(e) if e.is_eof() && buf.len() > MAX_REQUEST => {
            Some(Err(format!("request larger than {MAX_REQUEST} bytes")))
        }
        Err(e) if e.is_eof() && !ended => None,
        parsed => Some(parsed.map_err(|e| reason(&format!("bad request: {e}")))),
    }
}

/// A reason fit for a reply and a log line (PROTOCOL.md §5): printable ASCII (the 2017
/// client measures widths with `len()`), at most 160 characters.
pub fn reason(text: &str) -> String {
    let shown = |c: char| if c == ' ' || c.is_ascii_graphic() { c } else { '?' };
    text.chars().take(160).map(shown).collect()
}

/// A peer's whole reply to our RECV (PROTOCOL.md §6). Ok(true): it acknowledges
/// `mid`; Ok(false): it does not (a 2017 daemon says nothing); Err: the peer refused
/// the message.
pub fn ack(buf: &[u8], mid: &str) -> Result<bool, String> {
    let mut json = serde_json::Deserializer::from_slice(buf);
    // Bytes that are not JSON read as null, which acknowledges nothing.
    let ack = Value::deserialize(&mut json).unwrap_or_default();
    match ack["error"].as_str() {
        Some(why) => Err(reason(&format!("refused by the peer: {why}"))),
        None => Ok(ack["cmd"] == "END" && ack["msg"] == mid),
    }
}

/// One line of the messages log: when (UNIX seconds), with whom, what happened, and
/// where the same peer's previous record stands, so that HISTORY walks a
/// conversation backwards one line at a time. Logs of earlier versions also hold
/// `"carried":true` copies of records, which read as the records they copy.
#[derive(Serialize, Deserialize)]
pub struct Record {
    pub t: u64,
    pub peer: OnionId,
    #[serde(flatten)]
    pub ev: Event,
    pub prev: Option<u64>,
}

/// PROTOCOL.md §7. recv: a peer's message, now unread; `verified` if signed by the
/// peer. read: the client was shown the peer's oldest unread item. queued: the user's
/// message, waiting for delivery. unconfirmed: written in full to a peer that never
/// acknowledges (a 2017 daemon). failed: not delivered (given up, or a SEND refused
/// at once); the record is itself an unread notice. block, unblock: whether the peer
/// is heard (PROTOCOL.md §12).
#[derive(Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    Recv { msg: String, mid: Option<String>, verified: bool },
    Read,
    Queued { mid: String, port: NonZeroU16, msg: String },
    Delivered { mid: String },
    Unconfirmed { mid: String },
    Failed { mid: String, why: String, msg: String },
    Block,
    Unblock,
}

/// A line of the messages log: `STAMP JSON`.
pub fn record(line: &[u8]) -> Option<Record> {
    let json = line.splitn(2, |&b| b == b' ').nth(1)?;
    serde_json::from_slice(json).ok()
}

/// `msg` is always there: the 2017 client reads it from HOST and GET_PEERS replies
/// without looking at `cmd`.
pub fn refusal(why: &str) -> Value {
    json!({"cmd": "END", "msg": "", "error": why})
}

/// The reply's bytes, if they fit in one.
pub fn fits(reply: &Value) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(reply).ok()?;
    (bytes.len() <= MAX_REPLY).then_some(bytes)
}

/// Never more than MAX_REPLY bytes.
pub fn encode(reply: &Value) -> Vec<u8> {
    fits(reply).unwrap_or_else(|| encode(&refusal("reply too large")))
}
