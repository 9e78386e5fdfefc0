//! The wire (PROTOCOL.md): one JSON object per TCP connection, turned at the edge into a
//! typed `Request`; the replies, each one JSON object of at most 4096 bytes.

use crate::onion::OnionId;
use serde::Deserialize;
use serde_json::{json, Value};

/// The 2017 client reads a reply with one `recv(5000)`; 4096 leaves it margin.
pub const MAX_REPLY: usize = 4096;
/// The reply to UPDATE around a text of `max_text` bytes must fit in MAX_REPLY.
pub const MAX_TEXT_LIMIT: usize = 3500;

/// Every key is optional and unknown keys are ignored (PROTOCOL 1.2), but a key of the
/// wrong type is an error, not a crash as in the 2017 daemon.
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
    Recv(Incoming),
}

pub struct Incoming {
    pub from: OnionId,
    pub text: String,
    pub mid: Option<String>,
}

/// A refused request: the reason, and the peer it was about when that much was valid
/// (so that a SEND the 2017 client never reads a reply to can be reported in its queue).
pub struct Refused {
    pub why: String,
    pub peer: Option<OnionId>,
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused { why, peer: None }
    }
}

/// `None` while `buf` does not yet hold one complete JSON value; bytes after the first
/// value are ignored (PROTOCOL 1.1).
pub fn parse(buf: &[u8], max_text: usize) -> Option<Result<Request, Refused>> {
    match serde_json::Deserializer::from_slice(buf).into_iter::<Wire>().next()? {
        Err(e) if e.is_eof() => None,
        Err(e) => Some(Err(format!("bad request: {e}").into())),
        Ok(wire) => Some(wire.into_request(max_text)),
    }
}

fn required<'a>(v: &'a Option<String>, key: &str) -> Result<&'a str, String> {
    v.as_deref().ok_or_else(|| format!("missing key \"{key}\""))
}

fn onion(v: &Option<String>, key: &str) -> Result<OnionId, String> {
    OnionId::parse(required(v, key)?).map_err(|e| format!("\"{key}\": {e}"))
}

/// Text is limited by what it takes inside a reply: JSON-escaped, UTF-8.
pub fn check_text(text: &str, max_text: usize) -> Result<(), String> {
    let size = serde_json::to_string(text).map_or(usize::MAX, |s| s.len() - 2);
    match size {
        0 => Err("empty message".into()),
        n if n > max_text => Err(format!("message too long: {n} bytes, at most {max_text}")),
        _ => Ok(()),
    }
}

impl Wire {
    fn into_request(self, max_text: usize) -> Result<Request, Refused> {
        Ok(match required(&self.cmd, "cmd")? {
            "HOST" => Request::Host,
            "GET_PEERS" => Request::GetPeers,
            "EXIT" => Request::Exit,
            "UPDATE" => Request::Update(onion(&self.msg, "msg")?),
            "HISTORY" => {
                let peer = onion(&self.id, "id")?;
                let n = required(&self.msg, "msg")?.trim().parse::<usize>();
                let n = n.map_err(|_| "\"msg\": expected a number of lines".to_string())?;
                Request::History(peer, n)
            }
            "SEND" => {
                let peer = onion(&self.id, "id")?;
                let checked = (|| {
                    let text = required(&self.msg, "msg")?;
                    check_text(text, max_text)?;
                    match self.portno {
                        Some(p @ 1..=65535) => Ok((p as u16, text.to_string())),
                        _ => Err("\"portno\": expected the peer's port, 1 to 65535".to_string()),
                    }
                })();
                match checked {
                    Ok((port, text)) => Request::Send(peer, port, text),
                    Err(why) => return Err(Refused { why, peer: Some(peer) }),
                }
            }
            "RECV" => {
                let text = required(&self.msg, "msg")?;
                check_text(text, max_text)?;
                let mid = match self.mid {
                    Some(m) if !is_mid(&m) => {
                        return Err("\"mid\": expected 32 hex digits".to_string().into())
                    }
                    mid => mid,
                };
                Request::Recv(Incoming { from: onion(&self.id, "id")?, text: text.into(), mid })
            }
            other => {
                let shown: String = other.chars().take(20).collect();
                return Err(format!("unknown cmd {shown:?}").into());
            }
        })
    }
}

pub fn is_mid(m: &str) -> bool {
    m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `msg` is always present: the 2017 client reads it from HOST and GET_PEERS replies
/// without checking `cmd`.
pub fn refusal(why: &str) -> Value {
    json!({"cmd": "END", "msg": "", "error": why})
}

/// Serialised, and never more than MAX_REPLY bytes.
pub fn encode(reply: &Value) -> Vec<u8> {
    match serde_json::to_vec(reply) {
        Ok(bytes) if bytes.len() <= MAX_REPLY => bytes,
        _ => serde_json::to_vec(&refusal("reply too large")).unwrap_or_default(),
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
