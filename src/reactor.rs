//! The reactor: one thread and one mio poll loop own every socket and all state (the
//! 2017 daemon's `mg_mgr_poll` loop). Delivery threads only report back through a
//! channel and the Waker; timers are the poll timeout, set to the nearest deadline.

use crate::clock;
use crate::delivery::{Courier, Job, Outcome, Report};
use crate::logs::Journal;
use crate::onion::OnionId;
use crate::protocol::{self, Incoming, Refused, Request, MAX_REPLY};
use crate::store::{Event, Record, State};
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: Token = Token(0);
const PEERS: Token = Token(1);
const WAKE: Token = Token(2);
const STOP: Token = Token(3);
const HUP: Token = Token(4);

/// PROTOCOL 2.4, plus how long delivery keeps retrying.
pub struct Limits {
    pub max_text: usize,
    pub max_buffer: usize,
    pub max_conns: usize,
    pub idle: Duration,
    pub max_unread: usize,
    pub max_peers: usize,
    pub give_up: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Client,
    Peer,
}

/// A connection is Reading until one complete request is in. Its reply is then written
/// with a single write(2), because a reply in pieces crashes the 2017 client
/// (PROTOCOL 1.1), and the connection is closed: dropped from the map.
struct Conn {
    sock: TcpStream,
    side: Side,
    buf: Vec<u8>,
}

/// Delivery of one peer's queue: one attempt at a time keeps the peer's order.
struct Flight {
    busy: bool,
    retry_at: Instant,
    backoff: Duration,
}

pub struct Reactor {
    poll: Poll,
    clients: TcpListener,
    peers: TcpListener,
    signals: [UnixStream; 2],
    conns: HashMap<Token, Conn>,
    open: [usize; 2],
    next_token: usize,
    /// Accept times in order; a connection gets `idle` seconds in all, which also ends
    /// one that trickles a byte at a time.
    deadlines: VecDeque<(Instant, Token)>,
    flights: HashMap<OnionId, Flight>,
    reports: Receiver<Report>,
    courier: Courier,
    me: OnionId,
    state: State,
    journal: Journal,
    limits: Limits,
    running: bool,
}

fn unix_pair(poll: &Poll, token: Token, signals: &[i32]) -> io::Result<UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    let mut read = UnixStream::from_std(read);
    poll.registry().register(&mut read, token, Interest::READABLE)?;
    for &signal in signals {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    Ok(read)
}

impl Reactor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clients: std::net::TcpListener,
        peers: std::net::TcpListener,
        proxy: std::net::SocketAddr,
        me: OnionId,
        journal: Journal,
        state: State,
        limits: Limits,
    ) -> io::Result<Reactor> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let poll = Poll::new()?;
        let mut clients = TcpListener::from_std(clients);
        let mut peers = TcpListener::from_std(peers);
        poll.registry().register(&mut clients, CLIENTS, Interest::READABLE)?;
        poll.registry().register(&mut peers, PEERS, Interest::READABLE)?;
        let signals = [unix_pair(&poll, STOP, &[SIGINT, SIGTERM])?, unix_pair(&poll, HUP, &[SIGHUP])?];
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, reports) = mpsc::channel();
        let courier = Courier { me: me.clone(), proxy, reports: tx, waker };
        let (conns, flights, deadlines) = (HashMap::new(), HashMap::new(), VecDeque::new());
        Ok(Reactor {
            poll,
            clients,
            peers,
            signals,
            conns,
            open: [0, 0],
            next_token: 5,
            deadlines,
            flights,
            reports,
            courier,
            me,
            state,
            journal,
            limits,
            running: true,
        })
    }

    pub fn run(mut self) -> Result<(), String> {
        let pending: Vec<OnionId> = self.state.outbox().keys().cloned().collect();
        pending.iter().for_each(|peer| self.dispatch(peer));
        let mut events = Events::with_capacity(1024);
        while self.running {
            let timeout = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll: {e}")),
                Ok(()) => {}
            }
            for event in events.iter() {
                match event.token() {
                    CLIENTS => self.accept(Side::Client),
                    PEERS => self.accept(Side::Peer),
                    WAKE => self.take_reports(),
                    STOP => self.running = !self.drain(0),
                    HUP => {
                        if self.drain(1) {
                            self.reopen();
                        }
                    }
                    token => self.readable(token),
                }
            }
            self.expire();
            self.retry_due();
            if self.journal.checkpoint_due() {
                if let Err(e) = self.journal.checkpoint(&self.state) {
                    error!("{e}");
                }
            }
        }
        info!("shutting down");
        self.journal.checkpoint(&self.state)
    }

    /// True when a signal arrived on that pipe.
    fn drain(&mut self, which: usize) -> bool {
        let (mut any, mut buf) = (false, [0u8; 64]);
        while let Ok(n @ 1..) = self.signals[which].read(&mut buf) {
            any |= n > 0;
        }
        any
    }

    fn reopen(&mut self) {
        match self.journal.reopen(&self.state) {
            Ok(()) => info!("SIGHUP: log files reopened"),
            Err(e) => error!("SIGHUP: {e}"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let retries = self.flights.values().filter(|f| !f.busy).map(|f| f.retry_at);
        retries.chain(self.deadlines.front().map(|d| d.0)).min()
    }

    fn accept(&mut self, side: Side) {
        loop {
            let listener = if side == Side::Client { &self.clients } else { &self.peers };
            let (mut sock, _) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return error!("accept: {e}"),
            };
            if self.open[side as usize] >= self.limits.max_conns {
                warn!("refused a connection: {} open on that port already", self.limits.max_conns);
                let _ = sock.write(&protocol::encode(&protocol::refusal("too many connections, try later")));
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                error!("register: {e}");
                continue;
            }
            self.conns.insert(token, Conn { sock, side, buf: Vec::new() });
            self.open[side as usize] += 1;
            self.deadlines.push_back((Instant::now() + self.limits.idle, token));
        }
    }

    fn close(&mut self, token: Token) -> Option<Conn> {
        let conn = self.conns.remove(&token)?;
        self.open[conn.side as usize] -= 1;
        Some(conn)
    }

    fn expire(&mut self) {
        let (now, mut expired) = (Instant::now(), 0);
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            expired += self.close(token).is_some() as usize;
        }
        if expired > 0 {
            warn!("closed {expired} connections idle for {:?}", self.limits.idle);
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
        let parsed = protocol::parse(&conn.buf, self.limits.max_text);
        let too_big = conn.buf.len() > self.limits.max_buffer;
        let Some(mut conn) = (if parsed.is_some() || too_big || eof { self.close(token) } else { None })
        else {
            return;
        };
        let (reply, shown) = match parsed {
            Some(request) => self.serve(conn.side, request),
            None if too_big => {
                let why = format!("request larger than {} bytes", self.limits.max_buffer);
                (self.refuse(Refused::from(why)), None)
            }
            None => {
                if !conn.buf.is_empty() {
                    warn!("connection closed before a complete request");
                }
                return;
            }
        };
        let bytes = protocol::encode(&reply);
        let whole = matches!(conn.sock.write(&bytes), Ok(n) if n == bytes.len());
        // An UPDATE's message counts as read only once its reply went out whole.
        if let (true, Some(peer)) = (whole, shown) {
            self.record(Event::Read { peer }).unwrap_or_else(|e| error!("{e}"));
        }
    }

    fn refuse(&mut self, refused: Refused) -> Value {
        warn!("refused: {}", refused.why);
        if let Some(peer) = refused.peer {
            let why = refused.why.clone();
            if self.state.admit(&peer, self.limits.max_unread, self.limits.max_peers).is_ok() {
                let ev = Event::Failed { peer, mid: String::new(), why, msg: None };
                self.record(ev).unwrap_or_else(|e| error!("{e}"));
            }
        }
        protocol::refusal(&refused.why)
    }

    /// The reply, and the peer whose oldest unread message it shows.
    fn serve(&mut self, side: Side, request: Result<Request, Refused>) -> (Value, Option<OnionId>) {
        let refused = |why: &str| Err(Refused::from(why.to_string()));
        let request = match (side, request) {
            (Side::Peer, Ok(Request::Recv(incoming))) => return (self.receive(incoming), None),
            (Side::Peer, Ok(_)) => refused("this port takes RECV only"),
            (Side::Client, Ok(Request::Recv(_))) => refused("RECV belongs on the peer port"),
            (_, request) => request,
        };
        let me = &self.me;
        let reply = match request {
            Err(refused) => self.refuse(refused),
            Ok(Request::Host) => json!({"cmd": "HOST", "id": me, "msg": me.short()}),
            Ok(Request::GetPeers) => self.peer_list(),
            Ok(Request::Exit) => {
                self.running = false;
                json!({"cmd": "EXIT", "msg": ""})
            }
            Ok(Request::Update(peer)) => match self.state.oldest_unread(&peer) {
                None => json!({"cmd": "END", "id": peer, "msg": ""}),
                Some(item) => {
                    let mut reply =
                        json!({"cmd": "UPDATE", "id": peer, "msg": item.text, "date": clock::hhmm(item.t)});
                    if let Some(error) = &item.error {
                        reply["error"] = json!(error);
                    }
                    return (reply, Some(peer));
                }
            },
            Ok(Request::History(peer, n)) => self.history(peer, n),
            Ok(Request::Send(peer, port, text)) => self.queue(peer, port, text),
            Ok(Request::Recv(_)) => unreachable!("RECV on the client port is refused above"),
        };
        (reply, None)
    }

    /// Appends to the messages log, then applies: nothing counts before it is logged.
    fn record(&mut self, ev: Event) -> Result<(), String> {
        let rec = Record { t: clock::now(), ev };
        self.journal.append(&rec)?;
        self.state.apply(rec.t, rec.ev);
        Ok(())
    }

    fn receive(&mut self, m: Incoming) -> Value {
        if let Err(why) = self.state.admit(&m.from, self.limits.max_unread, self.limits.max_peers) {
            return self.refuse(Refused::from(format!("RECV from {}: {why}", m.from)));
        }
        let mid = m.mid.clone().unwrap_or_default();
        match self.record(Event::Recv { peer: m.from, msg: m.text, mid: m.mid }) {
            Ok(()) => json!({"cmd": "END", "id": self.me, "msg": mid}),
            Err(e) => {
                error!("{e}");
                protocol::refusal("cannot store messages now, try later")
            }
        }
    }

    fn peer_list(&self) -> Value {
        let (mut list, mut cut) = (String::new(), 0);
        for peer in self.state.peers() {
            if list.len() + peer.as_str().len() + 64 > MAX_REPLY {
                cut += 1;
                continue;
            }
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(peer.as_str());
        }
        let mut reply = json!({"cmd": "GET_PEERS", "msg": list});
        if cut > 0 {
            reply["cut"] = json!(cut);
        }
        reply
    }

    /// Keeps the newest lines that fit in one reply; `cut` says how many older ones did not.
    fn history(&self, peer: OnionId, n: usize) -> Value {
        let lines = self.journal.history(&peer, n.min(1000));
        let (mut room, mut keep) = (MAX_REPLY - 200, 0);
        for line in lines.iter().rev() {
            let size = line.to_string().len() + 1;
            if size > room {
                break;
            }
            room -= size;
            keep += 1;
        }
        let cut = lines.len() - keep;
        let shown: Vec<&Value> = lines[cut..].iter().collect();
        json!({"cmd": "HISTORY", "id": peer, "msg": "", "lines": shown, "cut": cut})
    }

    fn queue(&mut self, peer: OnionId, port: u16, text: String) -> Value {
        let (queued, waiting_peers) = (self.state.queued(&peer), self.state.outbox().len());
        if queued >= self.limits.max_unread || (queued == 0 && waiting_peers >= self.limits.max_peers) {
            let why = format!("SEND to {peer}: too many messages waiting for delivery");
            return self.refuse(Refused { why, peer: Some(peer) });
        }
        let mid = protocol::new_mid();
        let ev = Event::Queued { peer: peer.clone(), mid: mid.clone(), port, msg: text };
        if let Err(e) = self.record(ev) {
            error!("{e}");
            return protocol::refusal("cannot store messages now, try later");
        }
        self.dispatch(&peer);
        json!({"cmd": "SEND", "id": peer, "msg": mid})
    }

    fn dispatch(&mut self, peer: &OnionId) {
        let Some(front) = self.state.outbox().get(peer).and_then(VecDeque::front) else {
            self.flights.remove(peer);
            return;
        };
        let now = Instant::now();
        let flight = self.flights.entry(peer.clone()).or_insert(Flight {
            busy: false,
            retry_at: now,
            backoff: Duration::from_secs(1),
        });
        if flight.busy || flight.retry_at > now {
            return;
        }
        let job =
            Job { peer: peer.clone(), port: front.port, mid: front.mid.clone(), text: front.text.clone() };
        match self.courier.send(job) {
            Ok(()) => flight.busy = true,
            Err(e) => {
                error!("cannot start a delivery thread: {e}");
                flight.retry_at = now + flight.backoff;
            }
        }
    }

    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<OnionId> = self
            .flights
            .iter()
            .filter(|(_, f)| !f.busy && f.retry_at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        due.iter().for_each(|peer| self.dispatch(peer));
    }

    fn take_reports(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            self.delivered(report);
        }
    }

    fn delivered(&mut self, Report { peer, mid, outcome }: Report) {
        let Some(flight) = self.flights.get_mut(&peer) else { return };
        flight.busy = false;
        let queued_at =
            self.state.outbox().get(&peer).and_then(|q| q.iter().find(|o| o.mid == mid)).map(|o| o.t);
        let Some(queued_at) = queued_at else { return };
        // A peer that acknowledged before is no 2017 peer: its silence is a lost ack.
        let outcome = match outcome {
            Outcome::NoAck if self.state.acknowledges(&peer) => Outcome::Failed("no acknowledgement".into()),
            outcome => outcome,
        };
        let ev = match outcome {
            Outcome::Delivered => Event::Delivered { peer: peer.clone(), mid },
            Outcome::NoAck => Event::Unconfirmed { peer: peer.clone(), mid },
            Outcome::Failed(why)
                if clock::now().saturating_sub(queued_at) >= self.limits.give_up.as_secs() =>
            {
                warn!("to {peer}: giving up: {why}");
                Event::Failed { peer: peer.clone(), mid, why, msg: None }
            }
            Outcome::Failed(why) => {
                warn!("to {peer}: {why}; retrying in {:?}", flight.backoff);
                flight.retry_at = Instant::now() + flight.backoff;
                flight.backoff = (flight.backoff * 2).min(Duration::from_secs(60));
                return;
            }
        };
        flight.backoff = Duration::from_secs(1);
        match self.record(ev) {
            Ok(()) => self.dispatch(&peer),
            Err(e) => {
                error!("{e}");
                if let Some(flight) = self.flights.get_mut(&peer) {
                    flight.retry_at = Instant::now() + flight.backoff;
                }
            }
        }
    }
}
