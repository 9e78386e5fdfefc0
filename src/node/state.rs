//! The daemon's state, a function of the messages log: it changes only by `apply`ing a
//! record already in the log, so replaying the log at start-up rebuilds exactly the
//! state the daemon had. An unread message is kept as the offset of its record: 8
//! bytes, not its text. The fields are `pub(super)`: the node reads them, and nothing
//! outside `node` sees them at all.

use crate::onion::OnionId;
use crate::wire::{Event, Record};
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU16;

/// PROTOCOL.md §5.
pub struct Limits {
    /// Unread messages from a contact; unsent messages to a peer.
    pub max_unread: usize,
    /// Strangers with unread messages.
    pub max_strangers: usize,
    /// Unread messages from a stranger.
    pub stranger_unread: usize,
}

/// A message waiting for delivery, as the courier sends it; `t`: when it was queued.
#[derive(Clone)]
pub struct Outgoing {
    pub mid: String,
    pub port: NonZeroU16,
    pub text: String,
    pub t: u64,
}

#[derive(Default)]
pub struct State {
    /// Offsets of unread `recv` and `failed` records, oldest first.
    pub(super) unread: HashMap<OnionId, VecDeque<u64>>,
    pub(super) outbox: HashMap<OnionId, VecDeque<Outgoing>>,
    /// Peers that have acknowledged a message: they speak PROTOCOL.md §6.
    pub(super) ackers: HashSet<OnionId>,
    /// Peers the user has written to (PROTOCOL.md §5).
    pub(super) contacts: HashSet<OnionId>,
    /// Peers that have sent a verified message: they must sign (PROTOCOL.md §4).
    pub(super) signers: HashSet<OnionId>,
    /// The mid of the last message stored from each peer: a RECV that repeats it is a
    /// retry whose acknowledgement was lost (PROTOCOL.md §4).
    pub(super) mids: HashMap<OnionId, String>,
    /// Each peer's latest record: where its HISTORY starts.
    pub(super) last: HashMap<OnionId, u64>,
}

const FULL: &str = "too many messages waiting for this peer";
/// Peers with unsent messages: each has a delivery thread, and a connection to Tor.
pub const MAX_PEERS: usize = 1000;

impl State {
    /// `at`: where the record stands in the messages log.
    pub fn apply(&mut self, at: u64, Record { t, peer, ev, .. }: Record) {
        self.last.insert(peer.clone(), at);
        let mid = match ev {
            Event::Recv { mid, verified, .. } => {
                if verified {
                    self.signers.insert(peer.clone());
                }
                if let Some(mid) = mid {
                    self.mids.insert(peer.clone(), mid);
                }
                return self.unread.entry(peer).or_default().push_back(at);
            }
            Event::Read => {
                let Some(queue) = self.unread.get_mut(&peer) else { return };
                queue.pop_front();
                if queue.is_empty() {
                    self.unread.remove(&peer);
                }
                return;
            }
            Event::Queued { mid, port, msg } => {
                self.contacts.insert(peer.clone());
                let out = Outgoing { mid, port, text: msg, t };
                return self.outbox.entry(peer).or_default().push_back(out);
            }
            Event::Failed { mid, .. } => {
                self.unread.entry(peer.clone()).or_default().push_back(at);
                mid
            }
            Event::Delivered { mid } => {
                self.ackers.insert(peer.clone());
                mid
            }
            Event::Unconfirmed { mid } => mid,
        };
        // The message has an outcome: it waits no more.
        let Some(queue) = self.outbox.get_mut(&peer) else { return };
        queue.retain(|o| o.mid != mid);
        if queue.is_empty() {
            self.outbox.remove(&peer);
        }
    }

    /// Room for one more message from `peer`? Strangers share a small area of their
    /// own, so that a flood of made-up ids never takes a contact's room (PROTOCOL.md §5).
    pub fn admit(&self, peer: &OnionId, limits: &Limits) -> Result<(), &'static str> {
        let waiting = self.unread.get(peer).map_or(0, VecDeque::len);
        // Counted only for a new stranger: a flood from known ones costs no scan.
        let strangers = || self.unread.keys().filter(|p| !self.contacts.contains(*p)).count();
        match (self.contacts.contains(peer), waiting) {
            (true, n) if n < limits.max_unread => Ok(()),
            (true, _) => Err(FULL),
            (false, 0) if strangers() < limits.max_strangers => Ok(()),
            (false, n) if n > 0 && n < limits.stranger_unread => Ok(()),
            _ => Err("busy: too many messages from unknown senders, try later"),
        }
    }

    /// Room for one more message to `peer`?
    pub fn admit_send(&self, peer: &OnionId, limits: &Limits) -> Result<(), &'static str> {
        match self.outbox.get(peer).map(VecDeque::len) {
            Some(n) if n >= limits.max_unread => Err(FULL),
            None if self.outbox.len() >= MAX_PEERS => Err("too many peers with messages waiting"),
            _ => Ok(()),
        }
    }
}
