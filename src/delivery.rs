//! Delivery to peers. A peer's oldest waiting message is handed to a thread of its own,
//! because the SOCKS5 connect through Tor blocks; the thread retries with backoff until
//! it has an outcome, and reports to the reactor through a channel and the reactor's
//! Waker. The threads share nothing else with the reactor, which owns state and logs.

use crate::{clock, onion::Identity, onion::OnionId, store::Outgoing};
use mio::Waker;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::{sync::mpsc::Sender, sync::Arc, thread, time::Duration};

/// Tor's own SocksTimeout: an onion connect can legitimately take this long.
const CONNECT: Duration = Duration::from_secs(120);
/// How long a receiver gets to acknowledge a complete RECV (PROTOCOL 2.2).
const ACK: Duration = Duration::from_secs(30);
/// RFC 1928 section 6 (codes 1 to 8), then Tor's extended codes 0xF0 to 0xF7, which a
/// SocksPort with the ExtendedErrors flag sends.
const REASONS: &str = "general SOCKS server failure|connection not allowed by ruleset|network unreachable|\
    host unreachable|connection refused|TTL expired|command not supported|address type not supported|\
    onion service descriptor not found|onion service descriptor is invalid|onion service introduction failed|\
    onion service rendezvous failed|onion service client authorization missing|\
    onion service client authorization wrong|invalid onion address|onion service introduction timed out";

pub enum Outcome {
    Delivered,
    /// Written in full, then EOF or silence from a peer that never acknowledges (2017).
    Unconfirmed,
    /// One attempt failed; another follows.
    Retrying(String),
    GaveUp(String),
}

pub struct Report {
    pub peer: OnionId,
    pub mid: String,
    pub outcome: Outcome,
}

pub struct Courier {
    pub me: Arc<Identity>,
    pub proxy: SocketAddr,
    pub give_up: Duration,
    pub reports: Sender<Report>,
    pub waker: Arc<Waker>,
}

impl Courier {
    /// `acker`: the peer has acknowledged before, so its silence is a lost acknowledgement.
    pub fn send(&self, to: OnionId, next: Outgoing, acker: bool) -> io::Result<()> {
        let (me, proxy, give_up) = (self.me.clone(), self.proxy, self.give_up.as_secs());
        let (reports, waker) = (self.reports.clone(), self.waker.clone());
        let (peer, mid) = (to.clone(), next.mid.clone());
        let report = move |outcome| {
            // Both fail only once the reactor is gone, and then nobody is left to tell.
            let _ = reports.send(Report { peer: peer.clone(), mid: mid.clone(), outcome });
            let _ = waker.wake();
        };
        let mut backoff = Duration::from_secs(1);
        thread::Builder::new().name("delivery".into()).spawn(move || loop {
            // Signed anew at each attempt, with a time stamp to the minute (PROTOCOL 2.3).
            let ts = clock::now() / 60 * 60;
            let sig = me.sign(&to, ts, &next.mid, &next.text);
            let (id, port) = (&me.id, next.port);
            let request = json!({"cmd": "RECV", "id": id, "msg": next.text, "portno": port, "mid": next.mid, "ts": ts, "sig": sig});
            let why = match attempt(proxy, &to, &next, request.to_string().as_bytes()) {
                Ok(true) => return report(Outcome::Delivered),
                Ok(false) if !acker => return report(Outcome::Unconfirmed),
                Ok(false) => "no acknowledgement".to_string(),
                Err(why) => why,
            };
            if clock::now().saturating_sub(next.t) >= give_up {
                return report(Outcome::GaveUp(why));
            }
            report(Outcome::Retrying(format!("{why}; next try in {}s", backoff.as_secs())));
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(60));
        })?;
        Ok(())
    }
}

/// Ok(true): acknowledged; Ok(false): written in full but not acknowledged; Err: not
/// delivered, with the reason.
fn attempt(proxy: SocketAddr, to: &OnionId, next: &Outgoing, request: &[u8]) -> Result<bool, String> {
    let mut stream = socks_connect(proxy, to.as_str(), next.port)?;
    // No shutdown(SHUT_WR) after it: Tor would end the whole stream (TORNET.md).
    stream.set_write_timeout(Some(ACK)).and_then(|_| stream.write_all(request)).map_err(|e| words("sending", e))?;
    let _ = stream.set_read_timeout(Some(ACK));
    let (mut reply, mut chunk) = (Vec::new(), [0u8; 1024]);
    while reply.len() <= 4096 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Ok(false),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
        match serde_json::Deserializer::from_slice(&reply).into_iter::<Value>().next() {
            Some(Err(e)) if e.is_eof() => continue,
            Some(Ok(ack)) => match ack["error"].as_str() {
                // Bounded: it ends up in a notice, which must fit in one reply.
                Some(why) => return Err(format!("refused by the peer: {}", why.chars().take(200).collect::<String>())),
                None => return Ok(ack["cmd"] == "END" && ack["msg"] == next.mid.as_str()),
            },
            _ => break,
        }
    }
    Err("the peer's reply is not an acknowledgement".into())
}

/// SOCKS5 CONNECT to a domain name without authentication (RFC 1928), bounded in time.
fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, String> {
    let fail = |e| words(&format!("Tor's SOCKS port {proxy}"), e);
    let mut s = TcpStream::connect_timeout(&proxy, CONNECT).map_err(fail)?;
    s.set_read_timeout(Some(CONNECT)).and_then(|_| s.set_write_timeout(Some(CONNECT))).map_err(fail)?;
    let mut request = vec![5, 1, 0, 5, 1, 0, 3, host.len() as u8];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    // Greeting and request in one write, as Tor accepts: one round trip less.
    s.write_all(&request).map_err(fail)?;
    let mut head = [0u8; 6];
    s.read_exact(&mut head).map_err(fail)?;
    if head[..2] != [5, 0] {
        return Err(format!("Tor's SOCKS port {proxy}: not a SOCKS5 proxy without authentication"));
    }
    let reason = match head[3] {
        0 => None,
        code @ 1..=8 => REASONS.split('|').nth(code as usize - 1),
        code @ 0xf0..=0xf7 => REASONS.split('|').nth(code as usize - 0xf0 + 8),
        _ => Some("unknown SOCKS error"),
    };
    if let Some(reason) = reason {
        return Err(reason.into());
    }
    // Tor reports the bound address as IPv4 or IPv6; nobody needs it.
    let bound = match head[5] {
        1 => 4,
        4 => 16,
        _ => return Err("malformed SOCKS reply".into()),
    };
    s.read_exact(&mut vec![0; bound + 2]).map_err(fail)?;
    Ok(s)
}

fn words(what: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("{what}: timed out"),
        _ => format!("{what}: {e}"),
    }
}
