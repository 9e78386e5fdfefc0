//! The reactor: one thread and one mio poll loop own every socket and all state (the
//! 2017 daemon's `mg_mgr_poll` loop). Delivery threads only report back, through a
//! channel and the Waker. The only timers are connection deadlines: the poll timeout is
//! the nearest one.

use crate::delivery::{Courier, Outcome, Report};
use crate::protocol::{self, Incoming, Refused, Request, MAX_REPLY};
use crate::{clock, logs::Journal, onion::Identity, onion::OnionId, store::Event, store::Record, store::State};
use log::{error, info, warn};
use mio::{net::TcpListener, net::TcpStream, Events, Interest, Poll, Token, Waker};
use serde_json::{json, Value};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::{sync::mpsc, sync::Arc, time::Duration, time::Instant};

/// Tokens 0 and 1 are the client and peer listeners; connections count up from 4.
const WAKE: Token = Token(2);
const SIGNALS: Token = Token(3);

/// PROTOCOL 2.4, and how long delivery keeps trying.
pub struct Limits {
    pub max_text: usize,
    pub max_buffer: usize,
    pub max_conns: usize,
    pub idle: Duration,
    pub max_unread: usize,
    pub max_peers: usize,
    pub give_up: Duration,
}

/// A connection is Reading until one complete request is in. Its reply then goes out
/// in a single write(2), because a reply in pieces crashes the 2017 client (PROTOCOL
/// 1.1), and the connection is closed: dropped from the map.
struct Conn {
    sock: TcpStream,
    peer_port: bool,
    buf: Vec<u8>,
}

pub struct Reactor {
    poll: Poll,
    listeners: [TcpListener; 2],
    signals: Signals,
    conns: HashMap<Token, Conn>,
    /// Open connections on the client port and on the peer port.
    open: [usize; 2],
    next_token: usize,
    /// In accept order. A connection gets `idle` seconds in all, which also ends one
    /// that trickles a byte at a time.
    deadlines: VecDeque<(Instant, Token)>,
    /// Peers whose oldest waiting message is with a delivery thread.
    busy: HashSet<OnionId>,
    reports: mpsc::Receiver<Report>,
    /// Holds this node's identity (`courier.me`) for the delivery threads.
    courier: Courier,
    state: State,
    journal: Journal,
    limits: Limits,
    running: bool,
}

impl Reactor {
    pub fn new(
        listeners: [std::net::TcpListener; 2], proxy: std::net::SocketAddr, me: Identity, journal: Journal,
        state: State, limits: Limits,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listeners = listeners.map(TcpListener::from_std);
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener, Token(i), Interest::READABLE)?;
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (reports_to, reports) = mpsc::channel();
        let me = Arc::new(me);
        let courier = Courier { me: me.clone(), proxy, give_up: limits.give_up, reports: reports_to, waker };
        Ok(Reactor {
            poll,
            listeners,
            signals,
            conns: HashMap::new(),
            open: [0, 0],
            next_token: 4,
            deadlines: VecDeque::new(),
            busy: HashSet::new(),
            reports,
            courier,
            state,
            journal,
            limits,
            running: true,
        })
    }

    pub fn run(mut self) -> Result<(), String> {
        let waiting: Vec<OnionId> = self.state.outbox().keys().cloned().collect();
        waiting.iter().for_each(|peer| self.dispatch(peer));
        let mut events = Events::with_capacity(1024);
        while self.running {
            let timeout = self.deadlines.front().map(|d| d.0.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
            for event in events.iter() {
                match event.token() {
                    Token(listener @ 0..=1) => self.accept(listener == 1),
                    WAKE => {
                        while let Ok(report) = self.reports.try_recv() {
                            self.delivered(report);
                        }
                    }
                    // SIGINT and SIGTERM stop the loop; SIGHUP reopens the logs (logrotate).
                    SIGNALS => {
                        for signal in self.signals.pending() {
                            if signal != SIGHUP {
                                self.running = false;
                            } else if let Err(e) = self.journal.reopen(&mut self.state) {
                                error!("SIGHUP: {e}");
                            }
                        }
                    }
                    token => self.readable(token),
                }
            }
            self.expire();
            if self.journal.checkpoint_due() {
                self.journal.checkpoint(&self.state).unwrap_or_else(|e| error!("{e}"));
            }
        }
        info!("shutting down");
        self.journal.checkpoint(&self.state)
    }

    fn accept(&mut self, peer_port: bool) {
        loop {
            let (mut sock, _) = match self.listeners[peer_port as usize].accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return error!("accept: {e}"),
            };
            if self.open[peer_port as usize] >= self.limits.max_conns {
                warn!("refused a connection: {} open on that port", self.limits.max_conns);
                let _ = sock.write(&protocol::encode(&protocol::refusal("too many connections, try later")));
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            match self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                Err(e) => error!("register: {e}"),
                Ok(()) => {
                    self.conns.insert(token, Conn { sock, peer_port, buf: Vec::new() });
                    self.open[peer_port as usize] += 1;
                    self.deadlines.push_back((Instant::now() + self.limits.idle, token));
                }
            }
        }
    }

    fn close(&mut self, token: Token) -> Option<Conn> {
        let conn = self.conns.remove(&token)?;
        self.open[conn.peer_port as usize] -= 1;
        Some(conn)
    }

    fn expire(&mut self) {
        let (now, mut expired) = (Instant::now(), 0);
        while let Some(&(_, token)) = self.deadlines.front().filter(|d| d.0 <= now) {
            self.deadlines.pop_front();
            expired += self.close(token).is_some() as usize;
        }
        if expired > 0 {
            warn!("closed {expired} connections open for {:?}", self.limits.idle);
        }
    }

    fn readable(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let (mut chunk, mut eof) = ([0u8; 4096], false);
        while conn.buf.len() <= self.limits.max_buffer {
            match conn.sock.read(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => eof = e.kind() != io::ErrorKind::WouldBlock,
            }
            break;
        }
        let too_big = conn.buf.len() > self.limits.max_buffer;
        let request = protocol::parse(&conn.buf, self.limits.max_text, conn.peer_port);
        if request.is_none() && !too_big && !eof {
            return;
        }
        let Some(mut conn) = self.close(token) else { return };
        let (reply, shown) = match request {
            Some(request) => self.serve(request),
            None if too_big => {
                (self.refuse(format!("request larger than {} bytes", self.limits.max_buffer).into()), None)
            }
            None => {
                return if !conn.buf.is_empty() {
                    warn!("connection closed before a complete request")
                }
            }
        };
        // An UPDATE's message counts as read before its reply goes out, so that a crash
        // in between cannot show it twice. A client that resets the connection before
        // that write loses the message from its unread queue, but not from HISTORY.
        let logged = shown.map_or(Ok(()), |peer| self.record(Event::Read { peer }));
        let reply = logged.map_or_else(|e| self.failure(e), |()| reply);
        let _ = conn.sock.write(&protocol::encode(&reply));
    }

    /// The reply, and the peer whose oldest unread message it shows.
    fn serve(&mut self, request: Result<Request, Refused>) -> (Value, Option<OnionId>) {
        let me = &self.courier.me.id;
        let reply = match request {
            Err(refused) => self.refuse(refused),
            Ok(Request::Recv(incoming)) => self.receive(incoming),
            Ok(Request::Send { id, portno, msg }) => self.queue(id, portno, msg),
            Ok(Request::Host) => json!({"cmd": "HOST", "id": me, "msg": me.short()}),
            Ok(Request::Exit) => {
                self.running = false;
                json!({"cmd": "EXIT", "msg": ""})
            }
            // 40 peers with unread messages and their counts (`cut` counts the others), and the
            // 10 others last talked to: about 3.5 KB at most, which fits in one reply.
            Ok(Request::GetPeers) => {
                let unread = &self.state.peers()[..self.state.peers().len().min(40)];
                let ids: Vec<&str> = unread.iter().map(OnionId::as_str).collect();
                let counts: Vec<usize> = unread.iter().map(|p| self.state.unread(p)).collect();
                let talked: Vec<_> =
                    self.state.talked(50).into_iter().filter(|p| !unread.contains(p)).take(10).collect();
                let cut = self.state.peers().len() - unread.len();
                json!({"cmd": "GET_PEERS", "msg": ids.join(","), "cut": cut, "unread": counts, "talked": talked})
            }
            // The newest lines that fit in one reply; `cut` counts the older ones left out.
            Ok(Request::History { id, n }) => {
                let lines = self.journal.history(self.state.last(&id), n.min(1000));
                let (mut cut, mut room) = (lines.len(), MAX_REPLY - 200);
                while let Some(size) = cut.checked_sub(1).map(|i| lines[i].to_string().len() + 1).filter(|&s| s <= room)
                {
                    (cut, room) = (cut - 1, room - size);
                }
                json!({"cmd": "HISTORY", "id": id, "msg": "", "lines": lines[cut..], "cut": cut})
            }
            Ok(Request::Update { msg: peer }) => {
                match self.state.oldest_unread(&peer).map(|at| self.journal.read(at)) {
                    None => json!({"cmd": "END", "id": peer, "msg": ""}),
                    Some(Err(e)) => self.failure(e),
                    Some(Ok(Record { t, ev, .. })) => {
                        let mut reply = json!({"cmd": "UPDATE", "id": peer, "date": clock::hhmm(t)});
                        match ev {
                            Event::Failed { why, msg, .. } => {
                                reply["msg"] = json!(format!("[not delivered: {why}] {msg}"));
                                reply["error"] = json!(why);
                            }
                            // The 2017 client shows only `date` and `msg`.
                            Event::Recv { msg, verified, .. } => {
                                reply["msg"] = json!(if verified { msg } else { format!("[unverified] {msg}") });
                                reply["verified"] = json!(verified);
                            }
                            _ => return (self.failure("the messages log does not match the state".into()), None),
                        }
                        return (reply, Some(peer));
                    }
                }
            }
        };
        (reply, None)
    }

    /// Logged, and put in the peer's unread queue when the refusal concerns a SEND,
    /// whose reply the 2017 client never reads.
    fn refuse(&mut self, Refused { why, peer }: Refused) -> Value {
        warn!("refused: {why}");
        let reply = protocol::refusal(&why);
        if let Some(peer) = peer.filter(|p| self.admit(p, false).is_ok()) {
            let notice = Event::Failed { peer, mid: String::new(), why, msg: String::new() };
            self.record(notice).unwrap_or_else(|e| error!("{e}"));
        }
        reply
    }

    /// The messages log cannot be used: say so, and acknowledge nothing.
    fn failure(&self, e: String) -> Value {
        error!("{e}");
        protocol::refusal("cannot use the messages log now, try later")
    }

    /// Appends to the messages log, then applies: nothing counts before it is logged.
    fn record(&mut self, ev: Event) -> Result<(), String> {
        let rec = Record { t: clock::now(), prev: self.state.prev(&ev), ev, carried: false };
        let at = self.journal.append(&rec)?;
        self.state.apply(at, rec);
        Ok(())
    }

    fn admit(&self, peer: &OnionId, outgoing: bool) -> Result<(), &'static str> {
        self.state.admit(peer, outgoing, self.limits.max_unread, self.limits.max_peers)
    }

    fn receive(&mut self, incoming: Incoming) -> Value {
        let now = clock::now();
        let verified = match incoming.verified(&self.courier.me.id, now) {
            Ok(verified) => verified,
            Err(why) => return self.refuse(format!("RECV from {}: {why}", incoming.id).into()),
        };
        let Incoming { id: from, msg, mid, .. } = incoming;
        let ack = json!({"cmd": "END", "id": self.courier.me.id, "msg": mid.as_deref().unwrap_or_default()});
        if mid.as_ref().is_some_and(|mid| self.state.accepted(mid, now)) {
            return ack;
        }
        let room = mid.is_none() || self.state.mids_room(now);
        let admitted = if room { self.admit(&from, false) } else { Err("too many messages lately, try later") };
        if let Err(why) = admitted {
            return self.refuse(format!("RECV from {from}: {why}").into());
        }
        self.record(Event::Recv { peer: from, msg, mid, verified }).map_or_else(|e| self.failure(e), |()| ack)
    }

    fn queue(&mut self, peer: OnionId, port: u16, text: String) -> Value {
        if let Err(why) = self.admit(&peer, true) {
            return self.refuse(Refused { why: format!("SEND to {peer}: {why}"), peer: Some(peer) });
        }
        let mid = protocol::new_mid();
        if let Err(e) = self.record(Event::Queued { peer: peer.clone(), mid: mid.clone(), port, msg: text }) {
            return self.failure(e);
        }
        self.dispatch(&peer);
        json!({"cmd": "SEND", "id": peer, "msg": mid})
    }

    /// Hands the peer's oldest waiting message to a delivery thread, one at a time per
    /// peer so that its messages arrive in order.
    fn dispatch(&mut self, peer: &OnionId) {
        let Some(next) = self.state.outbox().get(peer).and_then(VecDeque::front) else { return };
        if !self.busy.contains(peer) {
            match self.courier.send(peer.clone(), next.clone(), self.state.acknowledges(peer)) {
                Ok(()) => _ = self.busy.insert(peer.clone()),
                Err(e) => error!("cannot start a delivery thread: {e}"),
            }
        }
    }

    fn delivered(&mut self, Report { peer, mid, outcome }: Report) {
        let ev = match outcome {
            Outcome::Retrying(why) => return warn!("to {peer}: {why}"),
            Outcome::Delivered => Event::Delivered { peer: peer.clone(), mid },
            Outcome::Unconfirmed => Event::Unconfirmed { peer: peer.clone(), mid },
            Outcome::GaveUp(why) => {
                warn!("to {peer}: gave up: {why}");
                let queued = self.state.outbox().get(&peer).and_then(|q| q.iter().find(|o| o.mid == mid));
                let msg = queued.map(|o| o.text.clone()).unwrap_or_default();
                Event::Failed { peer: peer.clone(), mid, why, msg }
            }
        };
        self.busy.remove(&peer);
        // If the outcome cannot be logged, the message stays queued for the next start.
        match self.record(ev) {
            Ok(()) => self.dispatch(&peer),
            Err(e) => error!("{e}"),
        }
    }
}
