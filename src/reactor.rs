//! The reactor: one thread and one mio poll loop own every socket (the 2017 daemon's
//! `mg_mgr_poll` loop). It only moves bytes: it accepts, reads until the node says a
//! request is complete, holds the reply until the node has synced the records of the
//! round (group commit, PROTOCOL.md §7), writes it in one write(2) and closes. The only
//! timers are connection deadlines; delivery threads report through the Waker.

use crate::delivery::{Courier, Report};
use crate::node::Node;
use crate::wire::{self, Port, MAX_REQUEST};
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Tokens 0 and 1 are the listeners, as `Port` numbers them; connections count up from 4.
const WAKE: Token = Token(2);
const SIGNALS: Token = Token(3);

/// A connection reading its one request.
struct Conn {
    sock: TcpStream,
    port: Port,
    buf: Vec<u8>,
}

/// What the reactor and the delivery threads need from the command line.
pub struct Config {
    /// Tor's SOCKS5 port.
    pub proxy: SocketAddr,
    /// Seconds to keep retrying a delivery.
    pub give_up: u64,
    /// Open connections per port.
    pub max_conns: usize,
    /// How long a connection may stay open.
    pub idle: Duration,
}

pub struct Reactor {
    poll: Poll,
    listeners: [TcpListener; 2],
    signals: Signals,
    conns: HashMap<Token, Conn>,
    /// Open connections on each port.
    open: [usize; 2],
    next_token: usize,
    /// In accept order. A connection gets `idle` in all, which also ends one that
    /// trickles a byte at a time.
    deadlines: VecDeque<(Instant, Token)>,
    config: Config,
    /// Replies of this round, waiting for the records they depend on to be synced.
    replies: Vec<(TcpStream, Vec<u8>)>,
    reports: mpsc::Receiver<Report>,
    courier: Courier,
    node: Node,
}

impl Reactor {
    /// `listeners`: the client port's and the peer port's.
    pub fn new(listeners: [TcpListener; 2], node: Node, config: Config) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listeners = listeners;
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener, Token(i), Interest::READABLE)?;
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGXFSZ])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (report_to, reports) = mpsc::channel();
        let (me, proxy, give_up) = (node.me.clone(), config.proxy, config.give_up);
        let courier = Courier { me, proxy, give_up, reports: report_to, waker };
        let (conns, open, next_token) = (HashMap::new(), [0, 0], 4);
        let (deadlines, replies) = (VecDeque::new(), Vec::new());
        Ok(Reactor {
            poll,
            listeners,
            signals,
            conns,
            open,
            next_token,
            deadlines,
            config,
            replies,
            reports,
            courier,
            node,
        })
    }

    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        while !self.node.exit {
            self.start_deliveries();
            let deadline = self.deadlines.front();
            let timeout = deadline.map(|d| d.0.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
            for event in events.iter() {
                match event.token() {
                    Token(0) => self.accept(Port::Client),
                    Token(1) => self.accept(Port::Peer),
                    WAKE => self.reported(),
                    SIGNALS => self.signalled(),
                    token => self.readable(token),
                }
            }
            self.reply();
            self.expire();
        }
        info!("shutting down");
        self.node.sync();
        Ok(())
    }

    fn start_deliveries(&mut self) {
        for job in self.node.jobs() {
            let peer = job.peer.clone();
            if let Err(e) = self.courier.send(job) {
                error!("cannot start a delivery thread: {e}");
                self.node.delivered(peer, None);
            }
        }
    }

    fn reported(&mut self) {
        while let Ok((peer, outcome)) = self.reports.try_recv() {
            self.node.delivered(peer, Some(outcome));
        }
    }

    /// SIGINT and SIGTERM stop the loop; SIGHUP reopens the errors log (logrotate).
    /// SIGXFSZ is caught so that a write past a file size limit fails, and is reported,
    /// instead of killing the daemon.
    fn signalled(&mut self) {
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => self.node.reopen_errors_log(),
                SIGXFSZ => {}
                _ => self.node.exit = true,
            }
        }
    }

    fn accept(&mut self, port: Port) {
        let mut refused = 0;
        loop {
            let mut sock = match self.listeners[port as usize].accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    error!("accept: {e}");
                    break;
                }
            };
            if self.open[port as usize] >= self.config.max_conns {
                refused += 1;
                let reply = wire::encode(&wire::refusal("too many connections, try later"));
                let _ = sock.write(&reply);
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                error!("register: {e}");
                continue;
            }
            self.conns.insert(token, Conn { sock, port, buf: Vec::new() });
            self.open[port as usize] += 1;
            self.deadlines.push_back((Instant::now() + self.config.idle, token));
        }
        if refused > 0 {
            warn!("refused {refused} connections: {} open on that port", self.config.max_conns);
        }
    }

    fn close(&mut self, token: Token) -> Option<Conn> {
        let conn = self.conns.remove(&token)?;
        self.open[conn.port as usize] -= 1;
        Some(conn)
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let mut expired = 0;
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            expired += self.close(token).is_some() as usize;
        }
        if expired > 0 {
            warn!("closed {expired} connections open for {:?}", self.config.idle);
        }
    }

    fn readable(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let ended = fill(&mut conn.sock, &mut conn.buf);
        let too_big = conn.buf.len() > MAX_REQUEST;
        let reply = match self.node.serve(conn.port, &conn.buf) {
            Some(reply) => reply,
            None if too_big => {
                let why = format!("request larger than {MAX_REQUEST} bytes");
                wire::encode(&self.node.refuse(&why))
            }
            None if ended => {
                self.close(token);
                return;
            }
            None => return,
        };
        if let Some(conn) = self.close(token) {
            self.replies.push((conn.sock, reply));
        }
    }

    /// No reply that depends on a record leaves before that record is on disk; one
    /// fdatasync covers the whole round (PROTOCOL.md §7).
    fn reply(&mut self) {
        if self.replies.is_empty() {
            return;
        }
        let failed = self.node.sync();
        for (mut sock, reply) in self.replies.drain(..) {
            let bytes = failed.as_ref().unwrap_or(&reply);
            // One write: a reply in pieces crashes the 2017 client (PROTOCOL.md §2).
            let _ = sock.write(bytes);
        }
    }
}

/// Reads what `sock` holds, up to just over MAX_REQUEST bytes; true once it has ended.
fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    while buf.len() <= MAX_REQUEST {
        match sock.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return e.kind() != io::ErrorKind::WouldBlock,
        }
    }
    false
}
