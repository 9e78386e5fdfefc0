//! Delivery to peers. Each attempt runs on a thread of its own, because the SOCKS5
//! connect through Tor blocks, and reports its outcome to the reactor through a channel
//! and the reactor's Waker. The threads share nothing else with the reactor.

use crate::onion::OnionId;
use mio::Waker;
use serde::Deserialize;
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Tor's own SocksTimeout: an onion connect can legitimately take this long.
const CONNECT: Duration = Duration::from_secs(120);
/// How long a receiver gets to acknowledge a complete RECV (PROTOCOL 2.2).
const ACK: Duration = Duration::from_secs(30);

pub struct Job {
    pub peer: OnionId,
    pub port: u16,
    pub mid: String,
    pub text: String,
}

pub enum Outcome {
    Delivered,
    /// Written in full, then EOF or silence: a 2017 peer, or a lost acknowledgement.
    NoAck,
    /// Not delivered (SOCKS error, timeout, or the receiver refused it): worth a retry.
    Failed(String),
}

pub struct Report {
    pub peer: OnionId,
    pub mid: String,
    pub outcome: Outcome,
}

pub struct Courier {
    pub me: OnionId,
    pub proxy: SocketAddr,
    pub reports: Sender<Report>,
    pub waker: Arc<Waker>,
}

impl Courier {
    pub fn send(&self, job: Job) -> io::Result<()> {
        let request =
            json!({"cmd": "RECV", "id": self.me, "msg": job.text, "portno": job.port, "mid": job.mid});
        let (proxy, reports, waker) = (self.proxy, self.reports.clone(), self.waker.clone());
        thread::Builder::new().name("delivery".into()).spawn(move || {
            let outcome = attempt(proxy, &job, request.to_string().as_bytes());
            let report = Report { peer: job.peer, mid: job.mid, outcome };
            // Both fail only when the reactor is gone, and then nobody is left to tell.
            let _ = reports.send(report);
            let _ = waker.wake();
        })?;
        Ok(())
    }
}

fn attempt(proxy: SocketAddr, job: &Job, request: &[u8]) -> Outcome {
    let mut stream = match socks_connect(proxy, job.peer.as_str(), job.port) {
        Ok(stream) => stream,
        Err(why) => return Outcome::Failed(why),
    };
    // No shutdown(SHUT_WR) after it: Tor would end the whole stream (TORNET.md).
    let sent = stream.set_write_timeout(Some(ACK)).and_then(|_| stream.write_all(request));
    if let Err(e) = sent {
        return Outcome::Failed(format!("sending failed: {}", words(&e)));
    }
    let _ = stream.set_read_timeout(Some(ACK));
    let (mut reply, mut chunk) = (Vec::new(), [0u8; 1024]);
    while reply.len() <= 4096 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Outcome::NoAck,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
        match serde_json::Deserializer::from_slice(&reply).into_iter::<Ack>().next() {
            Some(Err(e)) if e.is_eof() => continue,
            Some(Ok(Ack { error: Some(why), .. })) => {
                return Outcome::Failed(format!("refused by the peer: {why}"))
            }
            Some(Ok(Ack { cmd: Some(c), msg: Some(m), .. })) if c == "END" && m == job.mid => {
                return Outcome::Delivered
            }
            _ => break,
        }
    }
    Outcome::Failed("the peer sent an unreadable acknowledgement".into())
}

#[derive(Deserialize)]
struct Ack {
    cmd: Option<String>,
    msg: Option<String>,
    error: Option<String>,
}

/// SOCKS5 CONNECT to a domain name, no authentication (RFC 1928), bounded in time.
fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, String> {
    let fail = |e: io::Error| format!("Tor's SOCKS port {proxy}: {}", words(&e));
    let mut s = TcpStream::connect_timeout(&proxy, CONNECT).map_err(fail)?;
    s.set_read_timeout(Some(CONNECT)).map_err(fail)?;
    s.set_write_timeout(Some(CONNECT)).map_err(fail)?;
    s.write_all(&[5, 1, 0]).map_err(fail)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).map_err(fail)?;
    if choice != [5, 0] {
        return Err(format!("Tor's SOCKS port {proxy}: not a SOCKS5 proxy without authentication"));
    }
    let mut request = vec![5, 1, 0, 3, host.len() as u8];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    s.write_all(&request).map_err(fail)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).map_err(fail)?;
    if head[1] != 0 {
        return Err(reason(head[1]).into());
    }
    let bound = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8];
            s.read_exact(&mut n).map_err(fail)?;
            n[0] as usize
        }
        _ => return Err("malformed SOCKS reply".into()),
    };
    s.read_exact(&mut vec![0; bound + 2]).map_err(fail)?;
    Ok(s)
}

fn words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// RFC 1928 section 6, then Tor's extended codes (SocksPort flag ExtendedErrors).
fn reason(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        0xf0 => "onion service descriptor not found",
        0xf1 => "onion service descriptor is invalid",
        0xf2 => "onion service introduction failed",
        0xf3 => "onion service rendezvous failed",
        0xf4 => "onion service client authorization missing",
        0xf5 => "onion service client authorization wrong",
        0xf6 => "invalid onion address",
        0xf7 => "onion service introduction timed out",
        _ => "unknown SOCKS error",
    }
}
