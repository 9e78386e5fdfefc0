//! What each request means. The node owns the state and the messages log and never
//! sees a socket: the reactor hands it a request's bytes and writes back the reply it
//! returns, once the records of that poll round are on disk (`sync`). Deliveries go to
//! the courier, whose threads report back through a channel that the reactor has the
//! node drain when they wake it (`delivered`).

use crate::delivery::{Courier, Report};
use crate::onion::{self, OnionId};
use crate::wire::{self, Command, Event, Port, Record, Recv, Request, Sendable};
use crate::{journal::Journal, sys};
use log::{error, warn};
use serde_json::{json, Value};
use state::{Limits, Outgoing, State};
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender};
use std::{fs::File, io::Read, num::NonZeroU16};

pub mod state;

/// How far a signed time stamp may be from our clock (PROTOCOL.md §4).
const SKEW: u64 = 10 * 60;
/// Refusals written to the errors log in a minute; then one line says the rest are not
/// (PROTOCOL.md §5).
const LOGGED: usize = 100;

pub struct Node {
    state: State,
    journal: Journal,
    limits: Limits,
    courier: Courier,
    /// Peers whose oldest waiting message is with a delivery thread (one at a time, so
    /// that a peer's messages arrive in order), and how to wake it.
    busy: HashMap<OnionId, SyncSender<()>>,
    /// The minute of the latest refusal, and how many that minute has had.
    refusals: (u64, usize),
    /// EXIT, SIGINT or SIGTERM.
    pub exit: bool,
}

impl Node {
    pub fn new(journal: Journal, state: State, limits: Limits, courier: Courier) -> Node {
        let (busy, refusals) = (HashMap::new(), (0, 0));
        let mut node = Node { state, journal, limits, courier, busy, refusals, exit: false };
        for peer in node.state.outbox.keys().cloned().collect::<Vec<_>>() {
            node.dispatch(&peer);
        }
        node
    }

    /// The reply to the request in `buf`; None while it is not complete and the sender
    /// has not `ended`.
    pub fn serve(&mut self, port: Port, buf: &[u8], ended: bool) -> Option<Vec<u8>> {
        let me = self.courier.me.clone();
        let reply = match wire::request(port, buf, ended)? {
            Err(why) => self.refuse(&why),
            Ok(Request::Recv(recv)) => self.receive(recv),
            Ok(Request::Client(cmd)) => match cmd {
                Command::Send { id, portno, msg } => self.queue(id, portno, msg),
                Command::Update { msg: peer } => self.update(peer),
                Command::History { id, msg: n } => self.history(id, n.0),
                Command::GetPeers => self.peers(),
                Command::Host => json!({"cmd": "HOST", "id": me.id, "msg": me.id.short()}),
                Command::Block { id } => self.block(id, Event::Block, "BLOCK"),
                Command::Unblock { id } => self.block(id, Event::Unblock, "UNBLOCK"),
                Command::Exit => {
                    self.exit = true;
                    json!({"cmd": "EXIT", "msg": ""})
                }
            },
        };
        Some(wire::encode(&reply))
    }

    /// Puts the records of this poll round on disk; on failure, the reply that goes out
    /// instead of any that depends on them.
    pub fn sync(&mut self) -> Option<Vec<u8>> {
        let e = self.journal.sync().err()?;
        Some(wire::encode(&self.failure(e)))
    }

    /// The delivery threads' outcomes: delivered, unconfirmed or failed.
    pub fn delivered(&mut self, reports: &Receiver<Report>) {
        for (peer, outcome) in reports.try_iter() {
            self.busy.remove(&peer);
            // If the outcome cannot be logged, the message stays queued for the next start.
            match self.record(peer.clone(), outcome) {
                Ok(()) => self.dispatch(&peer),
                Err(e) => error!("{e}"),
            }
        }
    }

    /// Logged, LOGGED a minute at most, so that a flood cannot fill the disk.
    pub fn refuse(&mut self, why: &str) -> Value {
        let minute = sys::now() / 60;
        let n = if self.refusals.0 == minute { self.refusals.1 + 1 } else { 1 };
        self.refusals = (minute, n);
        match n {
            ..LOGGED => warn!("refused: {why}"),
            LOGGED => warn!("refused: {why}; not logging them until the next minute"),
            _ => {}
        }
        wire::refusal(why)
    }

    /// The messages log cannot be used: say so, and acknowledge nothing.
    fn failure(&self, e: String) -> Value {
        error!("{e}");
        wire::refusal("cannot use the messages log now, try later")
    }

    /// Appends to the messages log, then applies: nothing counts before it is logged.
    fn record(&mut self, peer: OnionId, ev: Event) -> Result<(), String> {
        let prev = self.state.last.get(&peer).copied();
        let rec = Record { t: sys::now(), peer, ev, prev };
        let at = self.journal.append(&rec)?;
        self.state.apply(at, rec);
        Ok(())
    }

    /// `reply`, once `ev` is logged; else the failure.
    fn reply_after(&mut self, peer: OnionId, ev: Event, reply: Value) -> Value {
        match self.record(peer, ev) {
            Ok(()) => reply,
            Err(e) => self.failure(e),
        }
    }

    fn receive(&mut self, recv: Recv) -> Value {
        let acked = recv.mid.as_ref().map_or("", |m| &m.0);
        let ack = json!({"cmd": "END", "id": self.courier.me.id, "msg": acked});
        match self.admit(&recv, acked) {
            Err(why) => return self.refuse(&format!("RECV from {}: {why}", recv.from.as_str())),
            Ok(false) => return ack,
            Ok(true) => {}
        }
        // A message its sender signed shows it is online now: a delivery to it waiting
        // between tries goes at once (PROTOCOL.md §6). Anyone can claim an unsigned id.
        let verified = recv.signed.is_some();
        if let Some(wake) = self.busy.get(&recv.from).filter(|_| verified) {
            let _ = wake.try_send(());
        }
        let ev = Event::Recv { msg: recv.text.0, mid: recv.mid.map(|m| m.0), verified };
        self.reply_after(recv.from, ev, ack)
    }

    /// Whether to store `recv`, whose mid is `mid` ("" if none): false for a retry of
    /// the last message stored from its sender, and for a blocked sender's, which is
    /// acknowledged all the same so that it learns nothing (PROTOCOL.md §12). Cheap
    /// checks first, the signature last (PROTOCOL.md §5), so that a flood which a bound
    /// refuses costs little.
    fn admit(&self, recv: &Recv, mid: &str) -> Result<bool, String> {
        let from = &recv.from;
        let retry = self.state.mids.get(from).is_some_and(|last| last == mid);
        if retry || self.state.blocked.contains(from) {
            return Ok(false);
        }
        let skew = recv.signed.map_or(0, |(ts, _)| ts.abs_diff(sys::now()));
        if skew > SKEW {
            return Err(format!("\"ts\" is {skew}s away from this node's clock (at most {SKEW}s)"));
        }
        if recv.signed.is_none() && self.state.signers.contains(from) {
            return Err("this peer signs its messages".into());
        }
        self.state.admit(from, &self.limits)?;
        if let Some((ts, sig)) = &recv.signed {
            onion::verify(&self.courier.me.id, from, *ts, mid, &recv.text.0, sig)?;
        }
        Ok(true)
    }

    fn queue(&mut self, peer: OnionId, port: NonZeroU16, msg: Sendable) -> Value {
        let msg = match (msg.0, self.state.admit_send(&peer, &self.limits)) {
            (Ok(text), Ok(())) => text.0,
            (Ok(text), Err(why)) => return self.unsent(peer, why.into(), text.0),
            (Err((why, start)), _) => return self.unsent(peer, why, start),
        };
        // A message id (PROTOCOL.md §4): 16 random bytes from the kernel, in hex.
        let mut bytes = [0u8; 16];
        if let Err(e) = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
            return self.failure(format!("no random message id: {e}"));
        }
        let mid = format!("{:032x}", u128::from_be_bytes(bytes));
        let queued = json!({"cmd": "SEND", "id": peer, "msg": mid});
        let ev = Event::Queued { mid, port, msg };
        let reply = self.reply_after(peer.clone(), ev, queued);
        self.dispatch(&peer);
        reply
    }

    /// A refused SEND is also a notice in the peer's unread queue, within that queue's
    /// bound: the 2017 client never reads the reply to a SEND (PROTOCOL.md §9).
    fn unsent(&mut self, peer: OnionId, why: String, msg: String) -> Value {
        let refusal = self.refuse(&format!("SEND to {}: {why}", peer.as_str()));
        if self.state.admit(&peer, &self.limits).is_ok() {
            let notice = Event::Failed { mid: String::new(), why, msg };
            self.record(peer, notice).unwrap_or_else(|e| error!("{e}"));
        }
        refusal
    }

    /// BLOCK or UNBLOCK `peer`, recorded as `ev` (PROTOCOL.md §12). What waits for a peer
    /// being blocked fails first, so that HISTORY says so, and its delivery, dropped
    /// from `busy`, is not tried again; an unblocked peer has neither.
    fn block(&mut self, peer: OnionId, ev: Event, cmd: &str) -> Value {
        self.busy.remove(&peer);
        let queued = self.state.outbox.get(&peer).cloned().unwrap_or_default();
        let failed = |o: Outgoing| Event::Failed { mid: o.mid, why: "blocked".into(), msg: o.text };
        let mut events = queued.into_iter().map(failed).chain([ev]);
        match events.try_for_each(|ev| self.record(peer.clone(), ev)) {
            Ok(()) => json!({"cmd": cmd, "id": peer, "msg": ""}),
            Err(e) => self.failure(e),
        }
    }

    /// Hands the peer's oldest waiting message to a delivery thread, unless one has it.
    fn dispatch(&mut self, peer: &OnionId) {
        let next = self.state.outbox.get(peer).and_then(VecDeque::front);
        let Some(next) = next.filter(|_| !self.busy.contains_key(peer)) else { return };
        let acker = self.state.ackers.contains(peer);
        match self.courier.send(peer.clone(), next.clone(), acker) {
            Ok(wake) => _ = self.busy.insert(peer.clone(), wake),
            Err(e) => error!("cannot start a delivery thread: {e}"),
        }
    }

    /// The peer's oldest unread item. It counts as read (logged) before its reply goes
    /// out, so that a crash in between cannot show it twice, and only if that reply
    /// fits, so that nothing counts as read that was not shown.
    fn update(&mut self, peer: OnionId) -> Value {
        let Some(&at) = self.state.unread.get(&peer).and_then(VecDeque::front) else {
            return json!({"cmd": "END", "id": peer, "msg": ""});
        };
        let reply = match self.journal.read(at).and_then(|rec| shown(&peer, rec)) {
            Ok(reply) if wire::fits(&reply).is_none() => return self.refuse("reply too large"),
            Ok(reply) => reply,
            Err(e) => return self.failure(e),
        };
        self.reply_after(peer, Event::Read, reply)
    }

    /// The last `n` lines with `peer`, newest first along `prev`, until one does not fit
    /// in the reply; `cut` counts the older ones left out. Our messages show their
    /// delivery state, which later records hold.
    fn history(&self, peer: OnionId, n: usize) -> Value {
        let (mut lines, mut cut) = (VecDeque::new(), 0);
        let (mut room, mut outcome) = (wire::MAX_REPLY - 200, HashMap::new());
        let latest = self.state.last.get(&peer).copied();
        for Record { t, ev, .. } in self.journal.back(latest) {
            if lines.len() + cut >= n.min(1000) {
                break;
            }
            let line = match ev {
                Event::Recv { msg, verified, .. } => {
                    json!({"t": t, "dir": "in", "msg": msg, "verified": verified})
                }
                Event::Queued { msg, mid, .. } => {
                    let state = outcome.remove(&mid).unwrap_or("queued".into());
                    json!({"t": t, "dir": "out", "msg": msg, "state": state})
                }
                // An outcome: what became of our message with that mid.
                ev => {
                    let (mid, state) = match ev {
                        Event::Delivered { mid } => (mid, "delivered".into()),
                        Event::Unconfirmed { mid } => (mid, "unconfirmed".into()),
                        Event::Failed { mid, why, .. } => (mid, format!("failed: {why}")),
                        _ => continue,
                    };
                    outcome.entry(mid).or_insert(state);
                    continue;
                }
            };
            let size = line.to_string().len() + 1;
            if cut > 0 || size > room {
                cut += 1;
                continue;
            }
            room -= size;
            lines.push_front(line);
        }
        json!({"cmd": "HISTORY", "id": peer, "msg": "", "lines": lines, "cut": cut,
            "blocked": self.state.blocked.contains(&peer)})
    }

    /// 40 peers with unread messages, contacts first so that the 2017 client, which
    /// shows the first ones, sees them under a flood of strangers (PROTOCOL.md §5);
    /// `contacts` counts the contacts among them, `unread` their messages, `cut` the
    /// peers left out: 3 KB at most.
    fn peers(&self) -> Value {
        let (unread, contacts) = (&self.state.unread, &self.state.contacts);
        let mut waiting: Vec<&OnionId> = unread.keys().collect();
        waiting.sort_unstable_by_key(|p| (!contacts.contains(*p), unread[*p][0]));
        let shown = &waiting[..waiting.len().min(40)];
        let ids: Vec<&str> = shown.iter().map(|p| p.as_str()).collect();
        let counts: Vec<usize> = shown.iter().map(|p| unread[*p].len()).collect();
        let contacts = shown.iter().filter(|p| contacts.contains(*p)).count();
        json!({"cmd": "GET_PEERS", "msg": ids.join(","), "cut": waiting.len() - shown.len(),
            "unread": counts, "contacts": contacts})
    }
}

/// An unread record as UPDATE shows it. The 2017 client shows only `date` and `msg`,
/// so an unsigned message is marked in the text too.
fn shown(peer: &OnionId, Record { t, ev, .. }: Record) -> Result<Value, String> {
    let mut reply = json!({"cmd": "UPDATE", "id": peer, "date": sys::hhmm(t)});
    match ev {
        Event::Recv { msg, verified, .. } => {
            let mark = if verified { "" } else { "[unverified] " };
            reply["msg"] = json!(format!("{mark}{msg}"));
            reply["verified"] = json!(verified);
        }
        Event::Failed { why, msg, .. } => {
            // Bounded again: logs of earlier versions hold reasons of any length.
            let why = wire::reason(&why);
            reply["msg"] = json!(format!("[not delivered: {why}] {msg}"));
            reply["error"] = json!(why);
        }
        _ => return Err("the state does not match the messages log".into()),
    }
    Ok(reply)
}
