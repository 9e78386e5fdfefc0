//! Every parser of untrusted bytes (AUDIT.md, "Entry points"): the client port's
//! requests, the peer port's RECV, a peer's acknowledgement, and the records of the
//! messages log. Each gives a typed value or a bounded reason, so
//! the rest of the daemon never handles a raw string from outside. Replies are encoded
//! here too, never longer than MAX_REPLY (PROTOCOL.md §2).

use crate::onion::OnionId;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::Signature;
use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use std::io::{self, Read};

/// The 2017 client reads a reply with one `recv(5000)`; 4096 leaves it a margin.
pub const MAX_REPLY: usize = 4096;
/// A text's bytes, JSON-escaped: a notice quoting one and its reason twice still fits
/// in one reply (PROTOCOL.md §3).
pub const MAX_TEXT: usize = 3000;
/// Bytes a request may take: the 2017 client's `\uXXXX` escapes make a text's bytes
/// on the wire up to three times its bytes in a reply.
pub const MAX_REQUEST: usize = 16384;
/// No input makes a reply or a log line much longer than this (PROTOCOL.md §5).
const MAX_REASON: usize = 160;

/// The listener a request came in on (PROTOCOL.md §1).
#[derive(Clone, Copy)]
pub enum Port {
    Client,
    Peer,
}

/// A message's text: not empty, at most MAX_TEXT bytes as it stands in a reply.
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        let text = String::deserialize(d)?;
        let escaped = serde_json::to_string(&text).map_err(D::Error::custom)?;
        let n = escaped.len() - 2;
        if n == 0 {
            return Err(D::Error::custom("empty message"));
        }
        if n > MAX_TEXT {
            let why = format!("message too long: {n} bytes, at most {MAX_TEXT}");
            return Err(D::Error::custom(why));
        }
        Ok(Text(text))
    }
}

/// A message id (PROTOCOL.md §4): 32 lower-case hex digits.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Mid(String);

impl Mid {
    /// 16 random bytes from the kernel.
    pub fn new() -> io::Result<Mid> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Mid(hex.concat()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Mid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mid, D::Error> {
        let mid = String::deserialize(d)?;
        let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        if mid.len() != 32 || !mid.bytes().all(hex) {
            return Err(D::Error::custom("\"mid\": expected 32 hex digits"));
        }
        Ok(Mid(mid))
    }
}

/// The client port's commands. Keys are named as on the wire; unknown ones are ignored.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Request {
    Host,
    GetPeers,
    Exit,
    Update {
        #[serde(rename = "msg")]
        peer: OnionId,
    },
    History {
        #[serde(rename = "id")]
        peer: OnionId,
        #[serde(rename = "msg", deserialize_with = "lines")]
        n: usize,
    },
    Send {
        #[serde(rename = "id")]
        peer: OnionId,
        #[serde(deserialize_with = "port")]
        portno: u16,
        msg: Text,
    },
    #[serde(skip)]
    Recv(Recv),
}

/// The peer port's only command (PROTOCOL.md §1): anything else is an unknown variant.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
enum PeerRequest {
    Recv(Recv),
}

/// A peer's message; `from` is who it claims to be from. A 2017 peer does not sign.
#[derive(Deserialize)]
#[serde(try_from = "RawRecv")]
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

impl TryFrom<RawRecv> for Recv {
    type Error = &'static str;

    fn try_from(raw: RawRecv) -> Result<Recv, Self::Error> {
        let signed = match (raw.sig, raw.ts, &raw.mid) {
            (None, ..) => None,
            (Some(sig), Some(ts), Some(_)) => Some((ts, sig)),
            _ => return Err("a signed message needs \"ts\" and \"mid\""),
        };
        let (from, text, mid) = (raw.id, raw.msg, raw.mid);
        Ok(Recv { from, text, mid, signed })
    }
}

/// `sig` on the wire: 64 bytes in standard base64, padded, canonical.
fn signature<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signature>, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = STANDARD.decode(&text).ok();
    let array = bytes.and_then(|b| <[u8; 64]>::try_from(b).ok());
    let why = "\"sig\": expected 64 bytes in base64";
    let sig = array.ok_or_else(|| D::Error::custom(why))?;
    Ok(Some(Signature::from_bytes(&sig)))
}

/// A peer's virtual port: 0 is not one.
fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let port = u16::deserialize(d);
    let why = "\"portno\": expected the peer's port, 1 to 65535";
    port.ok().filter(|&p| p > 0).ok_or_else(|| D::Error::custom(why))
}

/// HISTORY's count comes as a decimal string.
fn lines<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let text = String::deserialize(d)?;
    let n = text.trim().parse();
    n.map_err(|_| D::Error::custom("expected a number of lines"))
}

/// Why a request was refused, and the peer a refused SEND was for: the 2017 client
/// never reads the reply to a SEND, so the reason goes to that peer's unread queue.
pub struct Refused {
    pub why: String,
    pub peer: Option<OnionId>,
}

/// Where a refused SEND was going, if that much was valid.
#[derive(Deserialize)]
struct Addressed {
    cmd: String,
    id: OnionId,
}

/// The first JSON value in `buf`, `None` while it is incomplete. Parsed straight into
/// the type, so that a key given twice is refused, not silently overwritten.
fn first<T: DeserializeOwned>(buf: &[u8]) -> Option<serde_json::Result<T>> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter();
    let value = values.next()?;
    let incomplete = value.as_ref().is_err_and(|e| e.is_eof());
    (!incomplete).then_some(value)
}

/// `None` while `buf` does not hold one complete JSON value yet; bytes after the first
/// value are ignored (PROTOCOL.md §2).
pub fn request(port: Port, buf: &[u8]) -> Option<Result<Request, Refused>> {
    // serde would also take ["EXIT"] for {"cmd": "EXIT"}; the protocol is objects only.
    let start = buf.iter().find(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|&b| b != b'{') {
        let why = "bad request: expected a JSON object".into();
        return Some(Err(Refused { why, peer: None }));
    }
    let parsed = match port {
        Port::Client => first(buf)?,
        Port::Peer => first(buf)?.map(|PeerRequest::Recv(recv)| Request::Recv(recv)),
    };
    let e = match parsed {
        Ok(request) => return Some(Ok(request)),
        Err(e) => e,
    };
    let why = reason(&format!("bad request: {e}"));
    let addressed = first::<Addressed>(buf)?.ok();
    let send = addressed.filter(|a| matches!(port, Port::Client) && a.cmd == "SEND");
    Some(Err(Refused { why, peer: send.map(|a| a.id) }))
}

/// A reason fit for a reply and a log line: printable ASCII (the 2017 client measures
/// widths with `len()`), at most MAX_REASON characters.
pub fn reason(text: &str) -> String {
    let shown = |c: char| if c == ' ' || c.is_ascii_graphic() { c } else { '?' };
    let mut why: String = text.chars().take(MAX_REASON).map(shown).collect();
    if text.chars().nth(MAX_REASON).is_some() {
        why.push_str("...");
    }
    why
}

#[derive(Deserialize)]
struct Ack {
    #[serde(default)]
    cmd: String,
    #[serde(default)]
    msg: String,
    error: Option<String>,
}

/// A peer's reply to our RECV (PROTOCOL.md §6), `None` while incomplete. Ok(true): it
/// acknowledges `mid`; Ok(false): it does not; Err: the peer refused the message.
pub fn ack(buf: &[u8], mid: &str) -> Option<Result<bool, String>> {
    let Ok(ack) = first::<Ack>(buf)? else {
        return Some(Err("the peer's reply is not an acknowledgement".into()));
    };
    if let Some(why) = ack.error {
        return Some(Err(reason(&format!("refused by the peer: {why}"))));
    }
    Some(Ok(ack.cmd == "END" && ack.msg == mid))
}

/// One line of the messages log: when (UNIX seconds), with whom, what happened, and
/// where the same peer's previous record (reads aside) stands, so that HISTORY walks a
/// conversation backwards one line at a time. Logs of earlier versions also hold
/// `"carried":true` copies of records, which read as the records they copy.
#[derive(Serialize, Deserialize)]
pub struct Record {
    pub t: u64,
    pub peer: OnionId,
    #[serde(flatten)]
    pub ev: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<u64>,
}

/// PROTOCOL.md §7. recv: a peer's message, now unread; `verified` if signed by the
/// peer. read: the client was shown the peer's oldest unread item. queued: the user's
/// message, waiting for delivery. unconfirmed: written in full to a peer that never
/// acknowledges (a 2017 daemon). failed: not delivered (given up, or a SEND refused
/// at once); the record is itself an unread notice.
#[derive(Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    Recv { msg: String, mid: Option<String>, verified: bool },
    Read,
    Queued { mid: String, port: u16, msg: String },
    Delivered { mid: String },
    Unconfirmed { mid: String },
    Failed { mid: String, why: String, msg: String },
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
    let too_large = || encode(&refusal("reply too large"));
    fits(reply).unwrap_or_else(too_large)
}
