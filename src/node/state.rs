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

/// A queue per peer.
type Queues<T> = HashMap<OnionId, VecDeque<T>>;

#[derive(Default)]
pub struct State {
    /// Offsets of unread `recv` and `failed` records, oldest first.
    pub(super) unread: Queues<u64>,
    pub(super) outbox: Queues<Outgoing>,
    /// Peers that have acknowledged a message: they speak PROTOCOL.md §6.
    pub(super) ackers: HashSet<OnionId>,
    /// Peers the user has written to (PROTOCOL.md §5).
    pub(super) contacts: HashSet<OnionId>,
    /// Peers that have sent a verified message: they must sign (PROTOCOL.md §4).
    pub(super) signers: HashSet<OnionId>,
    /// The mid of the last message stored from each peer: a RECV that repeats it is a
    /// retry whose acknowledgement was lost (PROTOCOL.md §4).
    pub(super) mids: HashMap<OnionId, String>,
    /// Peers the user no longer hears (PROTOCOL.md §12): no contacts, never unread.
    pub(super) blocked: HashSet<OnionId>,
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
        // Outcomes: a peer that acknowledged speaks PROTOCOL.md §6, and a failure is an
        // unread notice, but not of a blocked peer (a late report from its delivery, or
        // a SEND refused).
        if let Event::Delivered { .. } = ev {
            self.ackers.insert(peer.clone());
        }
        let unread = matches!(ev, Event::Recv { .. } | Event::Failed { .. });
        if unread && !self.blocked.contains(&peer) {
            self.unread.entry(peer.clone()).or_default().push_back(at);
        }
        let mid = match ev {
            Event::Recv { mid, verified, .. } => {
                // A verified message makes its sender a signer; a mid, its last.
                self.signers.extend(verified.then(|| peer.clone()));
                return self.mids.extend(mid.map(|mid| (peer, mid)));
            }
            Event::Read => return shrink(&mut self.unread, &peer, |queue| _ = queue.pop_front()),
            Event::Queued { mid, port, msg } => {
                self.contacts.insert(peer.clone());
                let out = Outgoing { mid, port, text: msg, t };
                return self.outbox.entry(peer).or_default().push_back(out);
            }
            Event::Delivered { mid } | Event::Unconfirmed { mid } => mid,
            Event::Failed { mid, .. } => mid,
            // What was queued for it has failed already (`Node::block`).
            Event::Block => {
                self.contacts.remove(&peer);
                self.unread.remove(&peer);
                return self.blocked.extend([peer]);
            }
            Event::Unblock => return self.blocked.retain(|p| *p != peer),
        };
        // The message has an outcome: it waits no more.
        shrink(&mut self.outbox, &peer, |queue| queue.retain(|o| o.mid != mid));
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
            _ if self.blocked.contains(peer) => Err("this peer is blocked: UNBLOCK it first"),
            Some(n) if n >= limits.max_unread => Err(FULL),
            None if self.outbox.len() >= MAX_PEERS => Err("too many peers with messages waiting"),
            _ => Ok(()),
        }
    }
}

/// Changes `peer`'s queue in `map`, and drops it once empty: the keys of `unread` and
/// `outbox` are the peers that have something in them.
fn shrink<T>(map: &mut Queues<T>, peer: &OnionId, change: impl FnOnce(&mut VecDeque<T>)) {
    let Some(queue) = map.get_mut(peer) else { return };
    change(queue);
    if queue.is_empty() {
        map.remove(peer);
    }
}
