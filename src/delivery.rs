//! Delivery to peers. A peer's oldest waiting message goes to a thread of its own,
//! because the SOCKS5 connect through Tor blocks; the thread retries with backoff until
//! the message has an outcome, which it reports as the event to record, through a
//! channel and the reactor's Waker. The threads share nothing else with the reactor.

use crate::clock;
use crate::node::Job;
use crate::onion::{Identity, OnionId};
use crate::state::Outgoing;
use crate::wire::{self, Event, MAX_REPLY};
use log::warn;
use mio::Waker;
use serde_json::json;
use socks::Socks5Stream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{mpsc::Sender, Arc};
use std::{thread, time::Duration};

/// How long a receiver gets to acknowledge a complete RECV (PROTOCOL.md §6).
const ACK: Duration = Duration::from_secs(30);

/// A delivery's outcome: delivered, unconfirmed or failed.
pub type Report = (OnionId, Event);

#[derive(Clone)]
pub struct Courier {
    pub me: Arc<Identity>,
    pub proxy: SocketAddr,
    pub give_up: u64,
    pub reports: Sender<Report>,
    pub waker: Arc<Waker>,
}

impl Courier {
    pub fn send(&self, job: Job) -> io::Result<()> {
        let courier = self.clone();
        let thread = thread::Builder::new().name("delivery".into());
        thread.spawn(move || courier.deliver(job))?;
        Ok(())
    }

    fn deliver(self, Job { peer, next, acker }: Job) {
        let mut backoff = 1;
        let outcome = loop {
            let why = match self.attempt(&peer, &next) {
                Ok(true) => break Event::Delivered { mid: next.mid },
                Ok(false) if !acker => break Event::Unconfirmed { mid: next.mid },
                Ok(false) => "no acknowledgement".to_string(),
                Err(why) => why,
            };
            if clock::now().saturating_sub(next.t) >= self.give_up {
                warn!("to {peer}: gave up: {why}");
                break Event::Failed { mid: next.mid, why, msg: next.text };
            }
            warn!("to {peer}: {why}; next try in {backoff}s");
            thread::sleep(Duration::from_secs(backoff));
            backoff = (backoff * 2).min(60);
        };
        // Both fail only once the reactor is gone, and then nobody is left to tell.
        let _ = self.reports.send((peer, outcome));
        let _ = self.waker.wake();
    }

    /// Ok(true): acknowledged; Ok(false): written in full but not acknowledged; Err:
    /// not delivered, with the reason.
    fn attempt(&self, to: &OnionId, next: &Outgoing) -> Result<bool, String> {
        // Signed anew at each attempt, with a time stamp to the minute (PROTOCOL.md §4).
        let ts = clock::now() / 60 * 60;
        let sig = self.me.sign(to, ts, &next.mid, &next.text);
        let (id, msg, mid) = (&self.me.id, &next.text, &next.mid);
        let port = next.port;
        let request = json!({"cmd": "RECV", "id": id, "msg": msg, "portno": port,
            "mid": mid, "ts": ts, "sig": sig});
        // No timeout of ours on the handshake: Tor bounds it (SocksTimeout, AUDIT.md).
        let target = (to.as_str(), next.port);
        let socks = Socks5Stream::connect(self.proxy, target);
        let mut stream = socks.map_err(|e| self.socks_error(e))?.into_inner();
        // No shutdown(SHUT_WR) after it: Tor would end the whole stream (TORNET.md).
        let bytes = request.to_string();
        let timed = stream.set_write_timeout(Some(ACK));
        let sent = timed.and_then(|()| stream.write_all(bytes.as_bytes()));
        sent.map_err(|e| words("sending", e))?;
        let _ = stream.set_read_timeout(Some(ACK));
        let mut reply = Vec::new();
        let mut chunk = [0u8; 1024];
        while reply.len() <= MAX_REPLY {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return Ok(false),
                Ok(n) => n,
            };
            reply.extend_from_slice(&chunk[..n]);
            if let Some(ack) = wire::ack(&reply, mid) {
                return ack;
            }
        }
        Err("the peer's reply is not an acknowledgement".into())
    }

    /// The proxy's refusal comes in RFC 1928's words; anything else is about reaching it.
    fn socks_error(&self, e: io::Error) -> String {
        if e.kind() == io::ErrorKind::Other {
            return e.to_string();
        }
        words(&format!("Tor's SOCKS port {}", self.proxy), e)
    }
}

fn words(what: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("{what}: timed out"),
        _ => format!("{what}: {e}"),
    }
}
