//! Delivery to peers. A peer's oldest waiting message goes to a thread of its own,
//! because the SOCKS5 connect through Tor blocks; the thread retries with backoff until
//! the message has an outcome, which it reports as the event to record, through a
//! channel and the reactor's Waker. The threads share nothing else with the reactor.

use crate::onion::{Identity, OnionId};
use crate::wire::{self, Event, MAX_REPLY};
use crate::{node::state::Outgoing, sys};
use log::warn;
use mio::Waker;
use serde_json::json;
use socks::Socks5Stream;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError::Timeout, Sender, SyncSender};
use std::{net::SocketAddr, sync::Arc, thread, time::Duration};

/// How long a receiver gets to acknowledge a complete RECV (PROTOCOL.md §6).
const ACK: Duration = Duration::from_secs(30);

/// A delivery's outcome: delivered, unconfirmed or failed.
pub type Report = (OnionId, Event);

#[derive(Clone)]
pub struct Courier {
    pub me: Arc<Identity>,
    /// Tor's SOCKS5 port.
    pub proxy: SocketAddr,
    /// Seconds to keep retrying a delivery.
    pub give_up: u64,
    pub reports: Sender<Report>,
    pub waker: Arc<Waker>,
}

impl Courier {
    /// `acker`: the peer has acknowledged before, so its silence is a lost
    /// acknowledgement and the message is sent again (PROTOCOL.md §6). What it returns
    /// wakes the delivery while it waits between tries; dropped, it ends the delivery
    /// there, with no report.
    pub fn send(&self, peer: OnionId, next: Outgoing, acker: bool) -> io::Result<SyncSender<()>> {
        let courier = self.clone();
        // One wake-up pending at most: a second one says nothing new.
        let (wake, woken) = mpsc::sync_channel(1);
        let thread = thread::Builder::new().name("delivery".into());
        thread.spawn(move || courier.deliver(peer, next, acker, woken)).map(|_| wake)
    }

    fn deliver(self, peer: OnionId, next: Outgoing, acker: bool, woken: Receiver<()>) {
        let mut backoff = 1;
        let outcome = loop {
            let why = match self.attempt(&peer, &next) {
                Ok(true) => break Event::Delivered { mid: next.mid },
                Ok(false) if !acker => break Event::Unconfirmed { mid: next.mid },
                Ok(false) => "no acknowledgement".to_string(),
                Err(why) => why,
            };
            if sys::now().saturating_sub(next.t) >= self.give_up {
                break Event::Failed { mid: next.mid, why, msg: next.text };
            }
            warn!("to {}: {why}; next try in {backoff}s", peer.as_str());
            // Woken, the peer has just shown it is online: try now, and start the backoff
            // over (PROTOCOL.md §6).
            let woken = woken.recv_timeout(Duration::from_secs(backoff));
            // The node dropped the other end: its peer is blocked (PROTOCOL.md §12).
            let (Ok(()) | Err(Timeout)) = woken else { return };
            backoff = if woken.is_ok() { 1 } else { (backoff * 2).min(60) };
        };
        // Both fail only once the reactor is gone, and then nobody is left to tell.
        let _ = self.reports.send((peer, outcome));
        let _ = self.waker.wake();
    }

    /// Ok(true): acknowledged; Ok(false): written in full but not acknowledged; Err:
    /// not delivered, with the reason.
    fn attempt(&self, to: &OnionId, next: &Outgoing) -> Result<bool, String> {
        // Signed anew at each attempt, with a time stamp to the minute (PROTOCOL.md §4).
        let ts = sys::now() / 60 * 60;
        let sig = self.me.sign(to, ts, &next.mid, &next.text);
        let request = json!({"cmd": "RECV", "id": self.me.id, "msg": next.text,
            "portno": next.port, "mid": next.mid, "ts": ts, "sig": sig});
        // No timeout of ours on the handshake: Tor bounds it (SocksTimeout; AUDIT.md).
        let mut stream = match Socks5Stream::connect(self.proxy, (to.as_str(), next.port.get())) {
            Ok(socks) => socks.into_inner(),
            // A SOCKS reply's failure, in RFC 1928's words as the socks crate gives them.
            Err(e) if e.kind() == io::ErrorKind::Other => return Err(e.to_string()),
            Err(e) => return Err(format!("Tor's SOCKS port {}: {e}", self.proxy)),
        };
        // No shutdown(SHUT_WR) after it: Tor would end the whole stream (TORNET.md).
        let sending = |e: io::Error| format!("sending: {e}");
        stream.set_write_timeout(Some(ACK)).map_err(sending)?;
        stream.write_all(request.to_string().as_bytes()).map_err(sending)?;
        stream.set_read_timeout(Some(ACK)).map_err(sending)?;
        // Until the peer closes, or the timeout: a 2017 daemon never answers.
        let mut reply = Vec::new();
        let _ = stream.take(MAX_REPLY as u64).read_to_end(&mut reply);
        wire::ack(&reply, &next.mid)
    }
}
