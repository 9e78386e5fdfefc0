//! The daemon's state: unread messages per peer and messages waiting for delivery. It
//! changes only by `apply`ing an event that is already in the messages log, so replaying
//! the log (from a checkpoint) rebuilds exactly the state the daemon had. An unread
//! message is kept as the offset of its line in the log: 8 bytes, not its text.

use crate::onion::OnionId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};

/// One line of the messages log: when (UNIX seconds), and what happened. `carried`
/// marks the copies a new log file starts with after a rotation (see `Journal::reopen`).
/// `prev` is where the same peer's previous record (reads aside) stands, so that HISTORY
/// walks a conversation backwards in one read a line, however large the log.
#[derive(Serialize, Deserialize)]
pub struct Record {
    pub t: u64,
    #[serde(flatten)]
    pub ev: Event,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<u64>,
}

/// recv: a peer's message, now unread; `verified` if signed by `peer` (PROTOCOL 2.3),
/// which a 2017 peer never does. read: the client was shown the oldest unread
/// item of that peer. queued: the client's message, waiting for delivery. unconfirmed:
/// written in full to a peer that never acknowledges (a 2017 daemon). failed: not
/// delivered (given up, or refused at once); the record is itself an unread notice.
#[derive(Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    Recv { peer: OnionId, msg: String, mid: Option<String>, verified: bool },
    Read { peer: OnionId },
    Queued { peer: OnionId, mid: String, port: u16, msg: String },
    Delivered { peer: OnionId, mid: String },
    Unconfirmed { peer: OnionId, mid: String },
    Failed { peer: OnionId, mid: String, why: String, msg: String },
}

impl Event {
    pub fn peer(&self) -> &OnionId {
        match self {
            Event::Recv { peer, .. } | Event::Read { peer } | Event::Queued { peer, .. } => peer,
            Event::Delivered { peer, .. } | Event::Unconfirmed { peer, .. } | Event::Failed { peer, .. } => peer,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Outgoing {
    pub mid: String,
    pub port: u16,
    pub text: String,
    pub t: u64,
}

#[derive(Serialize, Deserialize, Default)]
pub struct State {
    /// Offsets in the messages log of unread `recv` and `failed` records, oldest first.
    unread: HashMap<OnionId, VecDeque<u64>>,
    /// Peers with unread items, in the order of their first unread arrival (GET_PEERS).
    order: Vec<OnionId>,
    outbox: HashMap<OnionId, VecDeque<Outgoing>>,
    /// Peers that have acknowledged a message: they speak PROTOCOL 2.2.
    ackers: HashSet<OnionId>,
    /// Each peer's latest record in this log file (reads and carried copies aside).
    last: HashMap<OnionId, u64>,
    /// The mids of messages accepted in the last MID_MEMORY seconds, and when: a retry
    /// whose acknowledgement was lost is acknowledged again but stored once.
    mids: HashMap<String, u64>,
    #[serde(skip)]
    mids_seen: u64,
    #[serde(skip)]
    mids_pruned: u64,
}

/// Twice the 10 minutes a signed time stamp may be off (PROTOCOL 2.3).
const MID_MEMORY: u64 = 20 * 60;
/// About 24 MiB at most. Beyond it, messages with a mid are refused for a while (see
/// `mids_room`).
const MAX_MIDS: usize = 1 << 18;

impl State {
    /// `at`: where the record stands in the messages log.
    pub fn apply(&mut self, at: u64, Record { t, ev, carried, .. }: Record) {
        if !carried && !matches!(ev, Event::Read { .. }) {
            self.last.insert(ev.peer().clone(), at);
        }
        match ev {
            Event::Recv { peer, mid, .. } => {
                if let Some(mid) = mid {
                    self.mids_seen += 1;
                    if self.mids_seen.is_multiple_of(4096) {
                        self.mids.retain(|_, seen| *seen + MID_MEMORY > t);
                    }
                    if self.mids.len() < MAX_MIDS {
                        self.mids.insert(mid, t);
                    }
                }
                self.push_unread(peer, at);
            }
            Event::Read { peer } => {
                if self.unread.get_mut(&peer).is_some_and(|q| q.pop_front().is_some() && q.is_empty()) {
                    self.unread.remove(&peer);
                    self.order.retain(|p| *p != peer);
                }
            }
            Event::Queued { peer, mid, port, msg } => {
                self.outbox.entry(peer).or_default().push_back(Outgoing { mid, port, text: msg, t })
            }
            Event::Delivered { peer, mid } => {
                self.take_outgoing(&peer, &mid);
                self.ackers.insert(peer);
            }
            Event::Unconfirmed { peer, mid } => self.take_outgoing(&peer, &mid),
            Event::Failed { peer, mid, .. } => {
                self.take_outgoing(&peer, &mid);
                self.push_unread(peer, at);
            }
        }
    }

    fn push_unread(&mut self, peer: OnionId, at: u64) {
        let queue = self.unread.entry(peer.clone()).or_default();
        if queue.is_empty() {
            self.order.push(peer);
        }
        queue.push_back(at);
    }

    fn take_outgoing(&mut self, peer: &OnionId, mid: &str) {
        if let Some(queue) = self.outbox.get_mut(peer) {
            queue.retain(|o| o.mid != mid);
            if queue.is_empty() {
                self.outbox.remove(peer);
            }
        }
    }

    /// PROTOCOL 2.4: room for one more message from `peer` (or, `outgoing`, to it)?
    pub fn admit(&self, peer: &OnionId, outgoing: bool, per_peer: usize, peers: usize) -> Result<(), &'static str> {
        let (queued, waiting) = match outgoing {
            true => (self.outbox.get(peer).map(VecDeque::len), self.outbox.len()),
            false => (self.unread.get(peer).map(VecDeque::len), self.unread.len()),
        };
        match queued {
            Some(n) if n >= per_peer => Err("too many messages waiting for this peer"),
            None if waiting >= peers => Err("too many peers with messages waiting"),
            _ => Ok(()),
        }
    }

    /// A mid that cannot be remembered cannot be accepted, or its replay would be stored
    /// twice. Pruning a full set costs milliseconds, so it runs at most once a second.
    pub fn mids_room(&mut self, now: u64) -> bool {
        if self.mids.len() >= MAX_MIDS && self.mids_pruned < now {
            self.mids_pruned = now;
            self.mids.retain(|_, seen| *seen + MID_MEMORY > now);
        }
        self.mids.len() < MAX_MIDS
    }

    pub fn accepted(&self, mid: &str, now: u64) -> bool {
        self.mids.get(mid).is_some_and(|seen| seen + MID_MEMORY > now)
    }

    pub fn last(&self, peer: &OnionId) -> Option<u64> {
        self.last.get(peer).copied()
    }

    /// Where a new record of `ev` links back to.
    pub fn prev(&self, ev: &Event) -> Option<u64> {
        self.last.get(ev.peer()).copied().filter(|_| !matches!(ev, Event::Read { .. }))
    }

    pub fn oldest_unread(&self, peer: &OnionId) -> Option<u64> {
        self.unread.get(peer)?.front().copied()
    }

    /// Moves every unread item, peers in GET_PEERS order and each oldest first, to where
    /// `to` copied its record. Conversations (HISTORY) start afresh in the new file.
    pub fn relocate(&mut self, mut to: impl FnMut(u64) -> Result<u64, String>) -> Result<(), String> {
        self.last.clear();
        for peer in &self.order {
            for at in self.unread.get_mut(peer).into_iter().flatten() {
                *at = to(*at)?;
            }
        }
        Ok(())
    }

    pub fn peers(&self) -> &[OnionId] {
        &self.order
    }

    pub fn unread(&self, peer: &OnionId) -> usize {
        self.unread.get(peer).map_or(0, VecDeque::len)
    }

    /// The `n` latest conversations in this log file, the latest first: a selection, not
    /// a sort of every peer ever seen, since clients ask twice a second.
    pub fn talked(&self, n: usize) -> Vec<&OnionId> {
        let mut peers: Vec<(&OnionId, std::cmp::Reverse<u64>)> =
            self.last.iter().map(|(p, at)| (p, std::cmp::Reverse(*at))).collect();
        if peers.len() > n {
            peers.select_nth_unstable_by_key(n, |p| p.1);
            peers.truncate(n);
        }
        peers.sort_unstable_by_key(|p| p.1);
        peers.into_iter().map(|(peer, _)| peer).collect()
    }

    pub fn outbox(&self) -> &HashMap<OnionId, VecDeque<Outgoing>> {
        &self.outbox
    }

    pub fn acknowledges(&self, peer: &OnionId) -> bool {
        self.ackers.contains(peer)
    }
}
