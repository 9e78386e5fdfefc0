//! Every parser of the file program's untrusted bytes (AUDIT.md, "The file program"): a
//! request on onion port 81, the header line of the reply to ours, and an offer line in
//! a chat message (PROTOCOL.md §10). Each gives a typed value or a bounded reason.

use serde::Deserialize;
use torchat::wire::reason;
/// An offer's capability: 128 random bits, shaped as a message id (32 lower-case hex
/// digits), and so also a safe file name.
pub use torchat::wire::Mid as Token;

/// The one request: the offer `token`, from byte `from`.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "UPPERCASE")]
pub enum Request {
    Get { token: Token, from: u64 },
}

/// The request that `bytes` start with, read up to 512 bytes; bytes after it are
/// never read.
pub fn request(bytes: impl std::io::Read) -> Result<Request, String> {
    let mut json = serde_json::Deserializer::from_reader(bytes.take(512));
    Request::deserialize(&mut json).map_err(|e| reason(&format!("bad request: {e}")))
}

/// The header line of the reply to our request.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "UPPERCASE")]
enum Reply {
    File { size: u64, from: u64 },
    End { error: String },
}

/// The file's size and where the bytes that follow start; Err: the refusal, or why
/// the line is not a reply.
pub fn reply(line: &[u8]) -> Result<(u64, u64), String> {
    match serde_json::from_slice(line) {
        Ok(Reply::File { size, from }) => Ok((size, from)),
        Ok(Reply::End { error }) => Err(reason(&format!("refused: {error}"))),
        Err(e) => Err(reason(&format!("not a reply: {e}"))),
    }
}

/// An offer line: `[file TOKEN SIZE SHA256] NAME`.
pub struct Offer {
    pub token: Token,
    pub size: u64,
    pub sha256: String,
    /// Safe to save under (`safe`).
    pub name: String,
}

pub fn offer(line: &str) -> Result<Offer, String> {
    let bad = || "not an offer line".to_string();
    let line = line.strip_prefix("[file ").and_then(|l| l.split_once("] "));
    let (head, name) = line.ok_or_else(bad)?;
    let fields: Vec<&str> = head.split(' ').collect();
    let [id, size, sha256] = fields[..] else { return Err(bad()) };
    let hex = |b| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let hex = sha256.len() == 64 && sha256.bytes().all(hex);
    let size = size.parse().ok().filter(|_| hex).ok_or_else(bad)?;
    let token = serde_json::from_value(id.into()).map_err(|_| bad())?;
    Ok(Offer { token, size, sha256: sha256.into(), name: safe(name) })
}

/// A name to save a file under: its last path component, of letters, digits and a
/// few signs (so no control or direction-changing characters), without leading dots;
/// at most 100 characters; "file" if none is left.
pub fn safe(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let shown = |c: &char| c.is_alphanumeric() || " .,_-+=()[]@#&'!~".contains(*c);
    let kept: String = last.chars().filter(shown).take(100).collect();
    match kept.trim_start_matches(['.', ' ']).trim_end() {
        "" => "file".into(),
        kept => kept.into(),
    }
}
