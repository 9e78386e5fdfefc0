//! The wire (PROTOCOL.md): one JSON object per TCP connection, parsed at the edge into a
//! typed `Request` (serde checks each key's type, and an `OnionId` cannot hold an invalid
//! address); the replies, each one JSON object of at most 4096 bytes.

use crate::onion::{self, OnionId};
use ed25519_dalek::Signature;
use serde::Deserialize;
use serde_json::{json, Value};

/// The 2017 client reads a reply with one `recv(5000)`; 4096 leaves it a margin.
pub const MAX_REPLY: usize = 4096;
/// The largest `--max-text` whose UPDATE reply still fits in MAX_REPLY.
pub const MAX_TEXT_LIMIT: usize = 3500;

/// The client port's commands. Keys are named as on the wire; unknown ones are ignored.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Request {
    Host,
    GetPeers,
    Exit,
    Update {
        msg: OnionId,
    },
    History {
        id: OnionId,
        #[serde(rename = "msg", deserialize_with = "lines")]
        n: usize,
    },
    Send {
        id: OnionId,
        portno: u16,
        msg: String,
    },
    #[serde(skip)]
    Recv(Incoming),
}

/// The peer port's only command (PROTOCOL 2.1): anything else is an unknown variant.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
enum PeerRequest {
    Recv(Incoming),
}

/// A peer's message: `id` is who it claims to be from. A 2017 peer sends neither `mid`
/// nor `ts` nor `sig`.
#[derive(Deserialize)]
pub struct Incoming {
    pub id: OnionId,
    pub msg: String,
    pub mid: Option<String>,
    pub ts: Option<u64>,
    #[serde(default, deserialize_with = "onion::signature")]
    pub sig: Option<Signature>,
}

/// How far a signed time stamp may be from our clock (PROTOCOL 2.3).
const SKEW: u64 = 10 * 60;

impl Incoming {
    /// Ok(true): signed by `id` for `me`, lately; Ok(false): unsigned (a 2017 peer).
    pub fn verified(&self, me: &OnionId, now: u64) -> Result<bool, String> {
        let (Some(sig), Some(ts), Some(mid)) = (&self.sig, self.ts, &self.mid) else { return Ok(false) };
        if ts.abs_diff(now) > SKEW {
            return Err(format!("\"ts\" is {}s away from this node's clock (at most {SKEW}s)", ts.abs_diff(now)));
        }
        onion::verify(me, &self.id, ts, mid, &self.msg, sig).map(|()| true)
    }
}

/// Why a request was refused, and the peer it concerned when that much was valid: a
/// refused SEND is reported in that peer's unread queue too, since the 2017 client
/// never reads the reply to a SEND.
pub struct Refused {
    pub why: String,
    pub peer: Option<OnionId>,
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused { why, peer: None }
    }
}

/// Where a refused SEND was going, if that much was valid.
#[derive(Deserialize)]
struct Addressed {
    cmd: String,
    id: OnionId,
}

/// The first JSON value in `buf`, `None` while it is incomplete. Parsed straight into
/// the typed request, so that a key given twice is refused, not silently overwritten.
fn first<T: serde::de::DeserializeOwned>(buf: &[u8]) -> Option<Result<T, serde_json::Error>> {
    serde_json::Deserializer::from_slice(buf).into_iter().next().filter(|r| !r.as_ref().is_err_and(|e| e.is_eof()))
}

/// `None` while `buf` does not hold one complete JSON value yet; bytes after the first
/// value are ignored (PROTOCOL 1.1).
pub fn parse(buf: &[u8], max_text: usize, peer_port: bool) -> Option<Result<Request, Refused>> {
    // serde would also take ["EXIT"] for {"cmd": "EXIT"}; the protocol is objects only.
    if buf.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Some(Err("bad request: expected a JSON object".to_string().into()));
    }
    let request = match peer_port {
        true => first(buf)?.map(|PeerRequest::Recv(incoming)| Request::Recv(incoming)),
        false => first(buf)?,
    };
    let checked = request.map_err(|e| format!("bad request: {e}")).and_then(|r| check(r, max_text));
    let send_to = || first::<Addressed>(buf)?.ok().filter(|a| !peer_port && a.cmd == "SEND").map(|a| a.id);
    Some(checked.map_err(|why| Refused { why, peer: send_to() }))
}

/// HISTORY's count comes as a decimal string.
fn lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| serde::de::Error::custom(format!("expected a number of lines, not {text:?}")))
}

/// What types cannot say: a text is measured as it stands in a reply, JSON-escaped.
fn check(request: Request, max_text: usize) -> Result<Request, String> {
    let (text, mid) = match &request {
        Request::Send { portno: 0, .. } => return Err("\"portno\": expected the peer's port, 1 to 65535".into()),
        Request::Send { msg, .. } => (msg, None),
        Request::Recv(Incoming { sig: Some(_), ts: None, .. } | Incoming { sig: Some(_), mid: None, .. }) => {
            return Err("a signed message needs \"ts\" and \"mid\"".into())
        }
        Request::Recv(Incoming { msg, mid, .. }) => (msg, mid.as_deref()),
        _ => return Ok(request),
    };
    match serde_json::to_string(text).map_or(usize::MAX, |s| s.len() - 2) {
        0 => Err("empty message".into()),
        n if n > max_text => Err(format!("message too long: {n} bytes, at most {max_text}")),
        _ if mid.is_some_and(|m| m.len() != 32 || !m.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) => {
            Err("\"mid\": expected 32 hex digits".into())
        }
        _ => Ok(request),
    }
}

/// A fresh message id (PROTOCOL 2.3): 16 random bytes from the kernel, in hex.
pub fn new_mid() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, 16, "the kernel's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `msg` is always there: the 2017 client reads it from HOST and GET_PEERS replies
/// without looking at `cmd`.
pub fn refusal(why: &str) -> Value {
    json!({"cmd": "END", "msg": "", "error": why})
}

/// Never more than MAX_REPLY bytes.
pub fn encode(reply: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(reply).unwrap_or_default();
    if bytes.len() <= MAX_REPLY {
        bytes
    } else {
        encode(&refusal("reply too large"))
    }
}
