//! What each request means. The node owns the state and the messages log and never
//! sees a socket: the reactor hands it a request's bytes and writes back the reply it
//! returns, once the records that reply depends on are on disk (`sync`). Deliveries it
//! decides on wait in `jobs` for the reactor to hand to the courier.

use crate::onion::{self, Identity, OnionId};
use crate::state::{Limits, Outgoing, State};
use crate::wire::{self, Event, Mid, Port, Record, Recv, Refused, Request, Text};
use crate::{clock, journal::Journal};
use log::{error, warn};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// How far a signed time stamp may be from our clock (PROTOCOL.md §4).
const SKEW: u64 = 10 * 60;
/// Refusals written to the errors log in a minute; the rest are counted (PROTOCOL.md §5).
const LOGGED: usize = 100;

/// A peer's oldest waiting message, for a delivery thread. `acker`: the peer has
/// acknowledged before, so its silence is a lost acknowledgement (PROTOCOL.md §6).
pub struct Job {
    pub peer: OnionId,
    pub next: Outgoing,
    pub acker: bool,
}

pub struct Node {
    pub me: Arc<Identity>,
    state: State,
    journal: Journal,
    limits: Limits,
    /// Peers whose oldest waiting message is with a delivery thread: one at a time, so
    /// that a peer's messages arrive in order.
    busy: HashSet<OnionId>,
    jobs: Vec<Job>,
    /// The minute of the last refusal, and how many refusals it has had.
    refusals: (u64, usize),
    /// EXIT, SIGINT or SIGTERM.
    pub exit: bool,
}

impl Node {
    pub fn new(me: Identity, journal: Journal, state: State, limits: Limits) -> Node {
        let me = Arc::new(me);
        let (busy, jobs, refusals) = (HashSet::new(), Vec::new(), (0, 0));
        let mut node = Node { me, state, journal, limits, busy, jobs, refusals, exit: false };
        for peer in node.state.senders() {
            node.dispatch(&peer);
        }
        node
    }

    /// The reply to the request in `buf`; None while it is not complete.
    pub fn serve(&mut self, port: Port, buf: &[u8]) -> Option<Vec<u8>> {
        let reply = match wire::request(port, buf)? {
            Err(refused) => self.refused(refused),
            Ok(Request::Recv(recv)) => self.receive(recv),
            Ok(Request::Send { peer, portno, msg }) => self.queue(peer, portno, msg),
            Ok(Request::Update { peer }) => return Some(self.update(peer)),
            Ok(Request::History { peer, n }) => self.history(peer, n),
            Ok(Request::GetPeers) => self.peers(),
            Ok(Request::Host) => {
                let me = &self.me.id;
                json!({"cmd": "HOST", "id": me, "msg": me.short()})
            }
            Ok(Request::Exit) => {
                self.exit = true;
                json!({"cmd": "EXIT", "msg": ""})
            }
        };
        Some(wire::encode(&reply))
    }

    /// Writes the records of this poll round to disk. On failure, the reply that must
    /// go out instead of any that depends on them.
    pub fn sync(&mut self) -> Option<Vec<u8>> {
        let e = self.journal.sync().err()?;
        Some(wire::encode(&self.failure(e)))
    }

    /// The deliveries to start.
    pub fn jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// A delivery thread's outcome: delivered, unconfirmed or failed; None when no
    /// thread could be started, and the message waits for the next dispatch.
    pub fn delivered(&mut self, peer: OnionId, outcome: Option<Event>) {
        self.busy.remove(&peer);
        let Some(ev) = outcome else { return };
        // If the outcome cannot be logged, the message stays queued for the next start.
        match self.record(peer.clone(), ev) {
            Ok(()) => self.dispatch(&peer),
            Err(e) => error!("{e}"),
        }
    }

    /// SIGHUP.
    pub fn reopen_errors_log(&mut self) {
        let done = self.journal.reopen_errors();
        done.unwrap_or_else(|e| error!("SIGHUP: {e}"));
    }

    /// Logged, with at most LOGGED lines a minute: the rest are counted, and the count
    /// is logged with the first refusal of a later minute.
    pub fn refuse(&mut self, why: &str) -> Value {
        let minute = clock::now() / 60;
        let (since, count) = self.refusals;
        if minute != since {
            if count > LOGGED {
                warn!("{} more refusals in the minute before", count - LOGGED);
            }
            self.refusals = (minute, 0);
        }
        self.refusals.1 += 1;
        if self.refusals.1 <= LOGGED {
            warn!("refused: {why}");
        }
        wire::refusal(why)
    }

    /// A refused SEND is also reported in the peer's unread queue, since the 2017
    /// client never reads the reply to a SEND.
    fn refused(&mut self, Refused { why, peer }: Refused) -> Value {
        let notify = peer.filter(|p| self.state.admit(p, &self.limits).is_ok());
        if let Some(peer) = notify {
            let notice = Event::Failed { mid: String::new(), why: why.clone(), msg: String::new() };
            self.record(peer, notice).unwrap_or_else(|e| error!("{e}"));
        }
        self.refuse(&why)
    }

    /// The messages log cannot be used: say so, and acknowledge nothing.
    fn failure(&self, e: String) -> Value {
        error!("{e}");
        wire::refusal("cannot use the messages log now, try later")
    }

    /// Appends to the messages log, then applies: nothing counts before it is logged.
    fn record(&mut self, peer: OnionId, ev: Event) -> Result<(), String> {
        let prev = self.state.prev(&peer, &ev);
        let rec = Record { t: clock::now(), peer, ev, prev };
        let at = self.journal.append(&rec)?;
        self.state.apply(at, rec);
        Ok(())
    }

    fn receive(&mut self, recv: Recv) -> Value {
        let mid = recv.mid.as_ref().map(|m| m.as_str().to_string());
        let acked = mid.as_deref().unwrap_or_default();
        let ack = json!({"cmd": "END", "id": self.me.id, "msg": acked});
        let store = match self.admit(&recv) {
            Ok(store) => store,
            Err(why) => return self.refuse(&format!("RECV from {}: {why}", recv.from)),
        };
        if !store {
            return ack;
        }
        let verified = recv.signed.is_some();
        let ev = Event::Recv { msg: recv.text.0, mid, verified };
        match self.record(recv.from, ev) {
            Ok(()) => ack,
            Err(e) => self.failure(e),
        }
    }

    /// Whether to store `recv`: false for a retry of the last message stored from its
    /// sender. Cheap checks come first, the signature last (PROTOCOL.md §5), so a flood
    /// that a bound refuses costs little.
    fn admit(&self, recv: &Recv) -> Result<bool, String> {
        let from = &recv.from;
        let mid = recv.mid.as_ref().map_or("", |m| m.as_str());
        match recv.signed {
            None if self.state.signs(from) => return Err("this peer signs its messages".into()),
            Some((ts, _)) if ts.abs_diff(clock::now()) > SKEW => {
                let skew = ts.abs_diff(clock::now());
                return Err(format!("\"ts\" is {skew}s away from this node's clock (at most {SKEW}s)"));
            }
            _ => {}
        }
        if self.state.is_retry(from, mid) {
            return Ok(false);
        }
        self.state.admit(from, &self.limits)?;
        if let Some((ts, sig)) = &recv.signed {
            onion::verify(&self.me.id, from, *ts, mid, &recv.text.0, sig)?;
        }
        Ok(true)
    }

    fn queue(&mut self, peer: OnionId, port: u16, text: Text) -> Value {
        if let Err(why) = self.state.admit_send(&peer, &self.limits) {
            let why = format!("SEND to {peer}: {why}");
            return self.refused(Refused { why, peer: Some(peer) });
        }
        let mid = match Mid::new() {
            Ok(mid) => mid.as_str().to_string(),
            Err(e) => return self.failure(format!("no random message id: {e}")),
        };
        let ev = Event::Queued { mid: mid.clone(), port, msg: text.0 };
        if let Err(e) = self.record(peer.clone(), ev) {
            return self.failure(e);
        }
        self.dispatch(&peer);
        json!({"cmd": "SEND", "id": peer, "msg": mid})
    }

    /// Hands the peer's oldest waiting message to a delivery thread, unless one has it.
    fn dispatch(&mut self, peer: &OnionId) {
        if self.busy.contains(peer) {
            return;
        }
        let Some(next) = self.state.next_out(peer) else { return };
        let acker = self.state.acknowledges(peer);
        let job = Job { peer: peer.clone(), next: next.clone(), acker };
        self.busy.insert(peer.clone());
        self.jobs.push(job);
    }

    /// The peer's oldest unread item. It counts as read (logged) before its reply goes
    /// out, so that a crash in between cannot show it twice, and only if that reply
    /// fits, so that nothing counts as read that was not shown.
    fn update(&mut self, peer: OnionId) -> Vec<u8> {
        let Some(at) = self.state.oldest_unread(&peer) else {
            return wire::encode(&json!({"cmd": "END", "id": peer, "msg": ""}));
        };
        let ev = match self.journal.read(at) {
            Ok(Record { t, ev, .. }) => (t, ev),
            Err(e) => return wire::encode(&self.failure(e)),
        };
        let mut reply = json!({"cmd": "UPDATE", "id": peer, "date": clock::hhmm(ev.0)});
        match ev.1 {
            Event::Failed { why, msg, .. } => {
                reply["msg"] = json!(format!("[not delivered: {why}] {msg}"));
                reply["error"] = json!(why);
            }
            // The 2017 client shows only `date` and `msg`.
            Event::Recv { msg, verified, .. } => {
                let marked = if verified { msg } else { format!("[unverified] {msg}") };
                reply["msg"] = json!(marked);
                reply["verified"] = json!(verified);
            }
            _ => return wire::encode(&self.failure("the state does not match the log".into())),
        }
        let Some(bytes) = wire::fits(&reply) else {
            return wire::encode(&self.refuse("reply too large"));
        };
        match self.record(peer, Event::Read) {
            Ok(()) => bytes,
            Err(e) => wire::encode(&self.failure(e)),
        }
    }

    /// The newest lines that fit in one reply; `cut` counts the older ones left out.
    fn history(&self, peer: OnionId, n: usize) -> Value {
        let lines = self.journal.history(self.state.last(&peer), n.min(1000));
        let mut room = wire::MAX_REPLY - 200;
        let mut cut = lines.len();
        while cut > 0 {
            let size = lines[cut - 1].to_string().len() + 1;
            if size > room {
                break;
            }
            room -= size;
            cut -= 1;
        }
        json!({"cmd": "HISTORY", "id": peer, "msg": "", "lines": lines[cut..], "cut": cut})
    }

    /// 40 peers with unread messages, contacts first so that the 2017 client, which
    /// shows the first ones, sees them under a flood of strangers (PROTOCOL.md §5);
    /// `contacts` says how many of them are contacts, `unread` their counts, `cut` how
    /// many were left out; then up to 10 other peers last talked to. About 3.5 KB at
    /// most, which fits in one reply.
    fn peers(&self) -> Value {
        let waiting = self.state.waiting();
        let shown = &waiting[..waiting.len().min(40)];
        let ids: Vec<&str> = shown.iter().map(|p| p.as_str()).collect();
        let unread: Vec<usize> = shown.iter().map(|p| self.state.unread(p)).collect();
        let contacts = shown.iter().filter(|p| self.state.is_contact(p)).count();
        let cut = waiting.len() - shown.len();
        let recent = self.state.talked(50).into_iter();
        let talked: Vec<&OnionId> = recent.filter(|p| !shown.contains(p)).take(10).collect();
        json!({"cmd": "GET_PEERS", "msg": ids.join(","), "cut": cut, "unread": unread,
            "contacts": contacts, "talked": talked})
    }
}
