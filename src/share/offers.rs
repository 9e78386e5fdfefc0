//! The offers: recording one, serving them, fetching one (PROTOCOL.md §10).
//! - An offer is a JSON record, DIR/TOKEN.json: a client lists them there, with what
//!   `serve` printed of each (a line a transfer), and removes one to withdraw it.
//! - `serve`: the offers on 127.0.0.1:PORT, where Tor maps onion port 81. A thread a
//!   connection reads the request (20 s, 512 bytes), checks the offer and sends the file
//!   with sendfile(2): the kernel copies, and memory does not grow with the file.
//! - `get`: fetches what an offer line offers, from the peer it came from, through
//!   Tor's SOCKS port. It appends to a partial file named after the token, hashing as
//!   it receives, so the SHA-256 check costs no second pass. A broken stream leaves the
//!   partial file, and the next fetch asks from its length; a refusal leaves nothing.
//!   Only a verified file takes its name, never over one that exists.

use crate::wire::{self, Token};
use nix::sys::sendfile::sendfile;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::ErrorKind::{AlreadyExists, InvalidData};
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime};
use std::{fs, fs::File, fs::Permissions, path::Path, path::PathBuf, sync::Arc, sync::Mutex};
use torchat::{onion::OnionId, sys::now};

/// An offer, as `share offer` records it.
#[derive(Serialize, Deserialize)]
struct Record {
    path: PathBuf,
    size: u64,
    /// The file must not change after the offer: same size, same time.
    mtime: SystemTime,
    sha256: String,
    peer: OnionId,
    /// UNIX seconds.
    expires: u64,
}

/// Records the offer of `file` to `peer`, and prints the line that carries it.
pub fn offer(dir: &Path, peer: OnionId, file: &str, days: u64) -> io::Result<()> {
    let path = fs::canonicalize(file)?;
    // Before the hash: a change while hashing shows as a change.
    let meta = fs::metadata(&path)?;
    let mut sha256 = Sha256::new();
    let mut bytes = File::open(&path)?;
    io::copy(&mut bytes, &mut sha256)?;
    let mut random = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token = Token(format!("{:032x}", u128::from_be_bytes(random)));
    let sha256 = format!("{:x}", sha256.finalize());
    let name = wire::safe(file);
    let size = meta.len();
    let line = format!("[file {} {size} {sha256}] {name}", token.0);
    let mtime = meta.modified()?;
    let expires = now() + days * 86400;
    let rec = Record { path, size, mtime, sha256, peer, expires };
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    let json = record(dir, &token);
    fs::write(&json, serde_json::to_vec(&rec)?)?;
    fs::set_permissions(json, Permissions::from_mode(0o600))?;
    writeln!(io::stdout(), "{line}")
}

/// DIR/TOKEN.json.
fn record(dir: &Path, token: &Token) -> PathBuf {
    dir.join(format!("{}.json", token.0))
}

fn load(dir: &Path, token: &Token) -> io::Result<Record> {
    let bytes = fs::read(record(dir, token))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Transfers at once; then "busy".
const TRANSFERS: usize = 16;
/// The connections kept open for their request. A newer one closes the oldest, so
/// that idle and half-sent ones never keep a request out.
const WAITING: usize = 256;
const REQUEST: Duration = Duration::from_secs(20);
/// A transfer that makes no progress for this long ends, at either end.
const STALL: Duration = Duration::from_secs(60);

static SENDING: AtomicUsize = AtomicUsize::new(0);
/// The newest connections. Shutting one down for reading ends its wait for a request,
/// and does nothing to a transfer.
static NEWEST: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

pub fn serve(dir: PathBuf, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    writeln!(io::stdout(), "share: serving on {}", listener.local_addr()?)?;
    for sock in listener.incoming() {
        let Ok(sock) = sock else { continue };
        let Ok(handle) = sock.try_clone() else { continue };
        let mut newest = NEWEST.lock().expect("never poisoned");
        if newest.len() == WAITING {
            let _ = newest.remove(0).shutdown(Shutdown::Read);
        }
        newest.push(handle);
        drop(newest);
        let dir = dir.clone();
        std::thread::spawn(move || serve_one(sock, &dir));
    }
    Ok(())
}

fn serve_one(mut sock: TcpStream, dir: &Path) {
    let _ = sock.set_write_timeout(Some(STALL));
    match transfer(&mut sock, dir) {
        // Not println: a full disk under the log must not end the server.
        Ok(sent) => _ = writeln!(io::stdout(), "{sent}"),
        Err(why) => {
            let end = json!({"cmd": "END", "msg": "", "error": why});
            _ = sock.write_all(format!("{end}\n").as_bytes());
        }
    }
    // Its handle in NEWEST keeps the socket, not the connection, open.
    let _ = sock.shutdown(Shutdown::Both);
}

/// The request, checked: a known offer, not expired, its file unchanged, `from` within
/// it. Then the header line and the bytes from `from`, and how far they got is noted.
fn transfer(sock: &mut TcpStream, dir: &Path) -> Result<String, String> {
    let deadline = Deadline(sock, Instant::now() + REQUEST);
    let reader = BufReader::new(deadline);
    let wire::Request::Get { token, from } = wire::request(reader)?;
    let rec = load(dir, &token).map_err(|_| "unknown token")?;
    if rec.expires <= now() {
        return Err("offer expired".into());
    }
    let gone = |_| "file gone";
    let file = File::open(&rec.path).map_err(gone)?;
    let meta = file.metadata().map_err(gone)?;
    if meta.len() != rec.size || meta.modified().ok() != Some(rec.mtime) {
        return Err("file changed".into());
    }
    if from > rec.size {
        return Err("past the end".into());
    }
    if SENDING.fetch_add(1, SeqCst) >= TRANSFERS {
        SENDING.fetch_sub(1, SeqCst);
        return Err("busy, try later".into());
    }
    let header = json!({"cmd": "FILE", "size": rec.size, "from": from});
    let mut at = from as i64;
    // A line in one write, as every reply.
    if sock.write_all(format!("{header}\n").as_bytes()).is_ok() {
        // The kernel copies: until the end, an error, or a write stalled for STALL.
        while let Ok(1..) = sendfile(&*sock, &file, Some(&mut at), 1 << 30) {}
    }
    SENDING.fetch_sub(1, SeqCst);
    // How far it got: what became of the offer.
    Ok(format!("sent {} {from} {at} {}", token.0, rec.size))
}

/// A socket whose reads end at a deadline, however slowly the bytes come.
struct Deadline<'a>(&'a TcpStream, Instant);

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.1.saturating_duration_since(Instant::now());
        self.0.set_read_timeout(Some(left.max(Duration::new(0, 1))))?;
        (&mut self.0).read(buf)
    }
}

/// Why nothing of the fetch may stay.
fn refused(why: String) -> io::Error {
    io::Error::new(InvalidData, why)
}

pub fn get(peer: &OnionId, offer: &wire::Offer, socks: SocketAddr, into: &Path) -> io::Result<()> {
    let part = into.join(format!(".{}.part", offer.token.0));
    let fetched = fetch(peer, offer, socks, &part);
    let kept = fs::metadata(&part).is_ok_and(|m| m.len() > 0);
    match fetched {
        Ok(()) => save(&part, into, &offer.name),
        Err(e) if e.kind() != InvalidData && kept => {
            let why = format!("{e}; run again to resume");
            Err(io::Error::other(why))
        }
        Err(e) => fs::remove_file(&part).or(Ok(())).and(Err(e)),
    }
}

/// Appends to `part` what the peer sends from its length on, and checks the whole.
fn fetch(peer: &OnionId, offer: &wire::Offer, socks: SocketAddr, part: &Path) -> io::Result<()> {
    // Past a file size limit a write fails, and says so, instead of killing us.
    signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::default())?;
    let mut file = File::options().create(true).append(true).read(true).open(part)?;
    // What an earlier fetch left is hashed once, now.
    let mut sha256 = Sha256::new();
    let have = io::copy(&mut file, &mut sha256)?;
    let stream = socks::Socks5Stream::connect(socks, (peer.as_str(), 81));
    let stream = stream.map_err(io::Error::other)?.into_inner();
    stream.set_read_timeout(Some(STALL))?;
    let request = json!({"cmd": "GET", "token": offer.token.0, "from": have});
    (&stream).write_all(request.to_string().as_bytes())?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut header = vec![];
    (&mut reader).take(512).read_until(b'\n', &mut header)?;
    let (size, from) = wire::reply(&header).map_err(refused)?;
    if (size, from) != (offer.size, have) {
        return Err(refused("reply unlike the offer".into()));
    }
    let (mut done, started, mut shown) = (have, Instant::now(), Instant::now());
    while done < size {
        let bytes = reader.fill_buf()?;
        if bytes.is_empty() {
            return Err(io::Error::other(format!("cut at {done} bytes")));
        }
        let n = bytes.len().min((size - done) as usize);
        file.write_all(&bytes[..n])?;
        sha256.update(&bytes[..n]);
        reader.consume(n);
        done += n as u64;
        shown = progress(done, have, size, started, shown);
    }
    match format!("{:x}", sha256.finalize()) == offer.sha256 {
        true => Ok(()),
        false => Err(refused("not the offer's SHA-256".into())),
    }
}

/// On stderr: a bar on a terminal, ten times a second, else a line a second;
/// when it was last shown.
fn progress(done: u64, have: u64, size: u64, started: Instant, shown: Instant) -> Instant {
    let tty = io::stderr().is_terminal();
    if shown.elapsed().as_millis() < if tty { 100 } else { 1000 } && done < size {
        return shown;
    }
    let mb = |n: u64| n as f64 / 1e6;
    let rate = mb(done - have) / started.elapsed().as_secs_f64();
    let left = mb(size - done) / rate;
    let bar = "#".repeat((done * 20 / size) as usize);
    let end = if tty && done < size { "\r" } else { "\n" };
    let (done, size) = (mb(done), mb(size));
    let line = format!("[{bar:20}] {done:.1}/{size:.1} MB {rate:.1} MB/s {left:.0}s left{end}");
    let _ = io::stderr().write_all(line.as_bytes());
    Instant::now()
}

/// The verified file takes `name` in `into`, or "name (N).ext" while that exists: a
/// hard link fails rather than replace. Prints where it went.
fn save(part: &Path, into: &Path, name: &str) -> io::Result<()> {
    let split = name.rsplit_once('.').filter(|s| !s.0.is_empty());
    let (stem, ext) = split.map_or((name, String::new()), |(s, e)| (s, format!(".{e}")));
    for n in 0..1000 {
        let to = into.join(if n == 0 { name.into() } else { format!("{stem} ({n}){ext}") });
        match fs::hard_link(part, &to) {
            Err(e) if e.kind() == AlreadyExists => continue,
            linked => linked?,
        }
        writeln!(io::stdout(), "{}", to.display())?;
        return fs::remove_file(part);
    }
    Err(io::Error::other("no free name"))
}
