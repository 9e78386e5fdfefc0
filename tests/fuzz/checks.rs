//! What each fuzz target checks, shared by the fuzz targets (cargo fuzz, nightly) and by
//! tests/fuzz_corpus.rs, which runs the committed corpus on stable Rust.

use std::path::PathBuf;
use torchat::journal::Journal;
use torchat::onion::{self, OnionId};
use torchat::wire::{self, Command, Port, Request, Sendable, MAX_REPLY};

pub type Check = fn(&[u8]);

pub const TARGETS: [(&str, Check); 9] = [
    ("client_port", client_port),
    ("peer_port", peer_port),
    ("ack", ack),
    ("onion_id", onion_id),
    ("signature", signature),
    ("messages_log", messages_log),
    ("share_request", share_request),
    ("share_reply", share_reply),
    ("share_offer", share_offer),
];

/// The file program's parsers (`share`, PROTOCOL.md §10), as its binary uses them.
#[path = "../../src/share/wire.rs"]
mod share;

fn me() -> OnionId {
    OnionId::parse("fqgf7r4patubmetvwvlwbh4jj63wfsvt4xyhqatq62cdqkmd272tlpyd.onion").unwrap()
}

/// The client port's framing and parsing: any bytes, complete or not, give a request,
/// a refusal, or "not complete yet"; never a panic. A refusal always fits one reply,
/// and so does the notice of a SEND refused for its text, as UPDATE shows it.
pub fn client_port(data: &[u8]) {
    for ended in [false, true] {
        match wire::request(Port::Client, data, ended) {
            Some(Err(why)) => {
                assert!(why.len() <= 200, "an unbounded reason: {why}");
                assert!(wire::encode(&wire::refusal(&why)).len() <= MAX_REPLY);
            }
            Some(Ok(Request::Client(Command::Send { msg: Sendable(Err((why, start))), .. }))) => {
                let msg = format!("[not delivered: {why}] {start}");
                let notice =
                    serde_json::json!({"cmd": "UPDATE", "id": me(), "date": "00:00", "msg": msg, "error": why});
                assert!(wire::fits(&notice).is_some(), "a notice too large for one reply: {notice}");
            }
            _ => {}
        }
    }
}

/// The peer port: parsing a RECV, then checking its signature, as the daemon does with
/// whatever a peer sends.
pub fn peer_port(data: &[u8]) {
    match wire::request(Port::Peer, data, true) {
        Some(Ok(Request::Recv(recv))) => {
            if let (Some((ts, sig)), Some(mid)) = (&recv.signed, &recv.mid) {
                let _ = onion::verify(&me(), &recv.from, *ts, &mid.0, &recv.text.0, sig);
            }
        }
        Some(Ok(_)) => panic!("the peer port took a command other than RECV"),
        Some(Err(why)) => assert!(why.len() <= 200, "an unbounded reason: {why}"),
        None => {}
    }
}

/// A peer's reply to our RECV: an acknowledgement, a refusal with a bounded reason, or
/// not one; never a panic.
pub fn ack(data: &[u8]) {
    if let Err(why) = wire::ack(data, "0123456789abcdef0123456789abcdef") {
        assert!(why.len() <= 200, "an unbounded reason: {why}");
    }
}

/// Onion id parsing: whatever is accepted is canonical, parses again to itself, and
/// holds a key.
pub fn onion_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = OnionId::parse(text) {
        assert_eq!(OnionId::parse(id.as_str()).as_ref(), Ok(&id));
        assert_eq!(id.as_str().len(), 62);
        let _ = id.key();
        assert!(id.short().len() <= 26);
    }
}

/// Signature checks on hostile input: the `sig` field's decoding, and verification with
/// any claimed key (weak, torsion, not on the curve) and any signature bytes.
pub fn signature(data: &[u8]) {
    if data.len() < 96 {
        // As text: the `sig` field of a RECV.
        let sig = String::from_utf8_lossy(data);
        let _ = wire::request(Port::Peer, recv(&me(), &sig, "text").as_bytes(), true);
        return;
    }
    // As bytes: a claimed sender key, a signature, a message.
    let from = OnionId::parse(&onion_of(&data[..32])).unwrap();
    let text = String::from_utf8_lossy(&data[96..]);
    let Some(Ok(Request::Recv(recv))) =
        wire::request(Port::Peer, recv(&from, &base64(&data[32..96]), &text).as_bytes(), true)
    else {
        return; // an empty or too long text
    };
    let (ts, sig) = recv.signed.expect("64 bytes in base64 must decode");
    let mid = recv.mid.unwrap();
    assert!(onion::verify(&me(), &from, ts, &mid.0, &text, &sig).is_err(), "a random signature verified");
}

fn recv(from: &OnionId, sig: &str, text: &str) -> String {
    let mid = "0123456789abcdef0123456789abcdef";
    serde_json::json!({"cmd": "RECV", "id": from, "msg": text, "mid": mid, "ts": 0, "sig": sig}).to_string()
}

/// The messages log as the daemon reads it at start-up, then the reads UPDATE and
/// HISTORY make: a damaged or hostile file gives warnings, never a panic, a loop, or
/// unbounded memory.
pub fn messages_log(data: &[u8]) {
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir: PathBuf = tmp.join(format!("torchat-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("messages.log"), data).unwrap();
    // Whatever the file holds, the daemon starts: damaged lines are skipped.
    let (journal, _) = Journal::open(&dir).expect("the messages log opens");
    // Every line's start, as an unread offset or a `prev` may point there.
    let mut at = 0;
    for line in data.split(|&b| b == b'\n') {
        let _ = journal.read(at);
        let _ = journal.back(Some(at)).take(50).count();
        at += line.len() as u64 + 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The v3 onion id of any 32 bytes, valid key or not (the id only checks its checksum).
fn onion_of(key: &[u8]) -> String {
    use sha3::{Digest, Sha3_256};
    let sum = Sha3_256::new().chain_update(b".onion checksum").chain_update(key).chain_update([3u8]).finalize();
    let raw = [key, &sum[..2], &[3]].concat();
    let bits: Vec<u8> = raw.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1)).collect();
    let b32: String = bits
        .chunks(5)
        .map(|c| b"abcdefghijklmnopqrstuvwxyz234567"[c.iter().fold(0, |a, &b| a << 1 | b as usize)] as char)
        .collect();
    format!("{b32}.onion")
}

/// A request on onion port 81: a GET or a bounded reason, and never a byte read past
/// the 512 a request may take.
pub fn share_request(data: &[u8]) {
    let mut rest = data;
    if let Err(why) = share::request(&mut rest) {
        assert!(why.len() <= 200, "an unbounded reason: {why}");
    }
    assert!(data.len() - rest.len() <= 512, "read {} bytes", data.len() - rest.len());
}

/// The header line of the reply to our GET: sizes, or a bounded reason.
pub fn share_reply(data: &[u8]) {
    if let Err(why) = share::reply(data) {
        assert!(why.len() <= 200, "an unbounded reason: {why}");
    }
}

/// An offer line from a peer: whatever its name, the name it gives is one path
/// component, visible, not hidden, at most 100 characters.
pub fn share_offer(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(offer) = share::offer(line) else { return };
    let name = &offer.name;
    assert!(!name.is_empty() && name.chars().count() <= 100, "{name:?}");
    assert!(!name.starts_with('.') && !name.contains(['/', '\\']), "{name:?}");
    assert!(!name.chars().any(|c| c.is_control() || ('\u{2066}'..='\u{2069}').contains(&c)), "{name:?}");
    assert!(offer.token.0.len() == 32 && offer.sha256.len() == 64);
}
