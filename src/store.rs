//! The daemon's state: unread messages per peer and messages waiting for delivery. It
//! changes only by `apply`ing an event that is already in the messages log, so replaying
//! the log (from a checkpoint) rebuilds exactly the state the daemon had.

use crate::onion::OnionId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};

/// One line of the messages log: when, and what happened.
#[derive(Serialize, Deserialize)]
pub struct Record {
    pub t: u64,
    #[serde(flatten)]
    pub ev: Event,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// A peer's message, stored as unread.
    Recv {
        peer: OnionId,
        msg: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
    },
    /// The client took the oldest unread item of this peer.
    Read { peer: OnionId },
    /// The client's message, waiting for delivery.
    Queued { peer: OnionId, mid: String, port: u16, msg: String },
    /// The peer acknowledged it.
    Delivered { peer: OnionId, mid: String },
    /// Written to the peer, which never acknowledges (a 2017 daemon).
    Unconfirmed { peer: OnionId, mid: String },
    /// Given up, or refused before it could be sent: a notice goes to the unread queue.
    Failed {
        peer: OnionId,
        mid: String,
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Item {
    pub t: u64,
    pub text: Box<str>,
    /// Set on a notice that a message of ours was not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<str>>,
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
    unread: HashMap<OnionId, VecDeque<Item>>,
    /// Peers with unread items, in the order of their first unread arrival (GET_PEERS).
    order: Vec<OnionId>,
    outbox: HashMap<OnionId, VecDeque<Outgoing>>,
    /// Peers that have acknowledged a message: they speak PROTOCOL 2.2.
    ackers: HashSet<OnionId>,
}

impl State {
    pub fn apply(&mut self, t: u64, ev: Event) {
        match ev {
            Event::Recv { peer, msg, .. } => self.push_unread(peer, t, msg, None),
            Event::Read { peer } => {
                let queue = self.unread.get_mut(&peer);
                if queue.is_some_and(|q| q.pop_front().is_some() && q.is_empty()) {
                    self.unread.remove(&peer);
                    self.order.retain(|p| *p != peer);
                }
            }
            Event::Queued { peer, mid, port, msg } => {
                let item = Outgoing { mid, port, text: msg, t };
                self.outbox.entry(peer).or_default().push_back(item);
            }
            Event::Delivered { peer, mid } => {
                self.take_outgoing(&peer, &mid);
                self.ackers.insert(peer);
            }
            Event::Unconfirmed { peer, mid } => {
                self.take_outgoing(&peer, &mid);
            }
            Event::Failed { peer, mid, why, msg } => {
                let text = self.take_outgoing(&peer, &mid).map(|o| o.text).or(msg);
                let notice = format!("[not delivered: {why}] {}", text.unwrap_or_default());
                self.push_unread(peer, t, notice, Some(why));
            }
        }
    }

    fn push_unread(&mut self, peer: OnionId, t: u64, text: String, error: Option<String>) {
        let item = Item { t, text: text.into(), error: error.map(Into::into) };
        let queue = self.unread.entry(peer.clone()).or_default();
        if queue.is_empty() {
            self.order.push(peer);
        }
        queue.push_back(item);
    }

    fn take_outgoing(&mut self, peer: &OnionId, mid: &str) -> Option<Outgoing> {
        let queue = self.outbox.get_mut(peer)?;
        let item = queue.remove(queue.iter().position(|o| o.mid == mid)?);
        if queue.is_empty() {
            self.outbox.remove(peer);
        }
        item
    }

    /// PROTOCOL 2.4: a peer may hold `per_peer` unread items, and `peers` peers may.
    pub fn admit(&self, peer: &OnionId, per_peer: usize, peers: usize) -> Result<(), String> {
        match self.unread.get(peer) {
            Some(q) if q.len() >= per_peer => Err(format!("{per_peer} unread messages from you already")),
            None if self.order.len() >= peers => Err("too many peers with unread messages".into()),
            _ => Ok(()),
        }
    }

    pub fn oldest_unread(&self, peer: &OnionId) -> Option<&Item> {
        self.unread.get(peer)?.front()
    }

    pub fn peers(&self) -> &[OnionId] {
        &self.order
    }

    pub fn outbox(&self) -> &HashMap<OnionId, VecDeque<Outgoing>> {
        &self.outbox
    }

    pub fn queued(&self, peer: &OnionId) -> usize {
        self.outbox.get(peer).map_or(0, VecDeque::len)
    }

    pub fn acknowledges(&self, peer: &OnionId) -> bool {
        self.ackers.contains(peer)
    }
}
