//! The wire (PROTOCOL.md): one JSON object per TCP connection, turned at the edge into a
//! typed `Request`; the replies, each one JSON object of at most 4096 bytes.

use crate::onion::OnionId;
use serde::Deserialize;
use serde_json::{json, Value};

/// The 2017 client reads a reply with one `recv(5000)`; 4096 leaves it a margin.
pub const MAX_REPLY: usize = 4096;
/// The largest `--max-text` whose UPDATE reply still fits in MAX_REPLY.
pub const MAX_TEXT_LIMIT: usize = 3500;

/// Every key is optional and unknown keys are ignored (PROTOCOL 1.2); a key of the
/// wrong type is refused, where the 2017 daemon crashed.
#[derive(Deserialize)]
struct Wire {
    cmd: Option<String>,
    id: Option<String>,
    portno: Option<u64>,
    msg: Option<String>,
    mid: Option<String>,
}

pub enum Request {
    Host,
    GetPeers,
    Exit,
    Update(OnionId),
    History(OnionId, usize),
    Send(OnionId, u16, String),
    Recv { from: OnionId, text: String, mid: Option<String> },
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

/// `None` while `buf` does not hold one complete JSON value yet; bytes after the first
/// value are ignored (PROTOCOL 1.1). The peer port takes RECV only, and only it does
/// (PROTOCOL 2.1).
pub fn parse(buf: &[u8], max_text: usize, peer_port: bool) -> Option<Result<Request, Refused>> {
    match serde_json::Deserializer::from_slice(buf).into_iter::<Wire>().next()? {
        Err(e) if e.is_eof() => None,
        Err(e) => Some(Err(format!("bad request: {e}").into())),
        Ok(wire) => Some(wire.into_request(max_text, peer_port)),
    }
}

fn required<'a>(value: &'a Option<String>, key: &str) -> Result<&'a str, String> {
    value.as_deref().ok_or_else(|| format!("missing key \"{key}\""))
}

fn onion(value: &Option<String>, key: &str) -> Result<OnionId, String> {
    OnionId::parse(required(value, key)?).map_err(|e| format!("\"{key}\": {e}"))
}

/// A text is measured as it stands in a reply: JSON-escaped UTF-8.
fn text(value: &Option<String>, max_text: usize) -> Result<String, String> {
    let text = required(value, "msg")?;
    match serde_json::to_string(text).map_or(usize::MAX, |s| s.len() - 2) {
        0 => Err("empty message".into()),
        n if n > max_text => Err(format!("message too long: {n} bytes, at most {max_text}")),
        _ => Ok(text.into()),
    }
}

impl Wire {
    fn into_request(self, max_text: usize, peer_port: bool) -> Result<Request, Refused> {
        let cmd = required(&self.cmd, "cmd")?;
        if (cmd == "RECV") != peer_port {
            let why = if peer_port { "this port takes RECV only" } else { "RECV belongs on the peer port" };
            return Err(why.to_string().into());
        }
        Ok(match cmd {
            "HOST" => Request::Host,
            "GET_PEERS" => Request::GetPeers,
            "EXIT" => Request::Exit,
            "UPDATE" => Request::Update(onion(&self.msg, "msg")?),
            "HISTORY" => {
                let n = required(&self.msg, "msg")?.trim().parse();
                Request::History(onion(&self.id, "id")?, n.map_err(|_| "\"msg\": expected a number".to_string())?)
            }
            "SEND" => {
                let peer = onion(&self.id, "id")?;
                let port = match self.portno {
                    Some(port @ 1..=65535) => Ok(port as u16),
                    _ => Err("\"portno\": expected the peer's port, 1 to 65535".to_string()),
                };
                match text(&self.msg, max_text).and_then(|text| Ok(Request::Send(peer.clone(), port?, text))) {
                    Err(why) => return Err(Refused { why, peer: Some(peer) }),
                    Ok(send) => send,
                }
            }
            "RECV" => match self.mid {
                Some(mid) if !is_mid(&mid) => return Err("\"mid\": expected 32 hex digits".to_string().into()),
                mid => Request::Recv { from: onion(&self.id, "id")?, text: text(&self.msg, max_text)?, mid },
            },
            other => return Err(format!("unknown cmd {:?}", other.chars().take(20).collect::<String>()).into()),
        })
    }
}

fn is_mid(mid: &str) -> bool {
    mid.len() == 32 && mid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
