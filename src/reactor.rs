//! The reactor: one thread and one mio poll loop own every socket (the 2017 daemon's
//! `mg_mgr_poll` loop). It only moves bytes: it accepts, reads until the node says a
//! request is complete, holds the reply until the node has synced the records of the
//! round (group commit, PROTOCOL.md §7), sends it in one call and closes. The only
//! timers are connection deadlines; delivery threads report through the Waker.

use crate::delivery::Report;
use crate::node::Node;
use crate::wire::{self, Port, MAX_REQUEST};
use log::error;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::{sync::mpsc::Receiver, time::Duration, time::Instant};

/// Tokens 0 and 1 are the listeners, numbered as `Port`; connections count up from 4.
pub const WAKE: Token = Token(2);
const SIGNALS: Token = Token(3);

pub struct Reactor {
    pub poll: Poll,
    pub listeners: [TcpListener; 2],
    pub reports: Receiver<Report>,
    pub node: Node,
    /// Open connections per port.
    pub max_conns: usize,
    /// How long a connection may stay open in all, which also ends one that trickles
    /// a byte at a time.
    pub idle: Duration,
}

/// The connections, each reading its one request.
#[derive(Default)]
struct Conns {
    reading: HashMap<Token, (TcpStream, Port, Vec<u8>)>,
    next: usize,
    /// In accept order, so the front is the nearest.
    deadlines: VecDeque<(Instant, Token)>,
    /// Replies of this round, waiting for the records they depend on to be synced.
    replies: Vec<(TcpStream, Vec<u8>)>,
}

impl Reactor {
    pub fn run(mut self) -> io::Result<()> {
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            self.poll.registry().register(listener, Token(i), Interest::READABLE)?;
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGXFSZ])?;
        self.poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut conns = Conns { next: 4, ..Conns::default() };
        let mut events = Events::with_capacity(1024);
        // SIGINT and SIGTERM stop the loop. SIGHUP (logrotate's) needs nothing done, and
        // SIGXFSZ is caught so that a write past a file size limit fails, and is
        // reported, instead of killing the daemon.
        let stops = |signal| signal == SIGINT || signal == SIGTERM;
        while !self.node.exit {
            let nearest = conns.deadlines.front();
            let wait = nearest.map(|d| d.0.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, wait) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
            for event in events.iter() {
                match event.token() {
                    Token(0) => self.accept(&mut conns, Port::Client),
                    Token(1) => self.accept(&mut conns, Port::Peer),
                    WAKE => self.node.delivered(&self.reports),
                    // `any` stops at a stop, or reads every pending signal.
                    SIGNALS => self.node.exit |= signals.pending().any(stops),
                    token => self.readable(&mut conns, token),
                }
            }
            self.reply(&mut conns);
            self.expire(&mut conns);
        }
        log::info!("shutting down");
        self.node.sync();
        Ok(())
    }

    fn accept(&mut self, conns: &mut Conns, port: Port) {
        // Counted once a burst, then kept up to date as the burst is accepted.
        let mut open = conns.reading.values().filter(|c| c.1 == port).count();
        loop {
            // Until WouldBlock: mio's events are edge-triggered.
            let (mut sock, _) = match self.listeners[port as usize].accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return error!("accept: {e}"),
            };
            if open >= self.max_conns {
                let why = self.node.refuse("too many connections, try later");
                let _ = sock.write(&wire::encode(&why));
                continue;
            }
            let token = Token(conns.next);
            conns.next += 1;
            if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                error!("register: {e}");
                continue;
            }
            conns.reading.insert(token, (sock, port, Vec::new()));
            open += 1;
            conns.deadlines.push_back((Instant::now() + self.idle, token));
        }
    }

    /// Connections past their deadline are told so, and closed.
    fn expire(&mut self, conns: &mut Conns) {
        while let Some(&(_, token)) = conns.deadlines.front().filter(|d| d.0 <= Instant::now()) {
            conns.deadlines.pop_front();
            if let Some((mut sock, ..)) = conns.reading.remove(&token) {
                let why = format!("no complete request in {:?}", self.idle);
                let _ = sock.write(&wire::encode(&self.node.refuse(&why)));
            }
        }
    }

    fn readable(&mut self, conns: &mut Conns, token: Token) {
        let Some((sock, port, buf)) = conns.reading.get_mut(&token) else { return };
        let ended = fill(sock, buf);
        let Some(reply) = self.node.serve(*port, buf, ended) else { return };
        if let Some((sock, ..)) = conns.reading.remove(&token) {
            conns.replies.push((sock, reply));
        }
    }

    /// No reply that depends on a record leaves before that record is on disk; one
    /// fdatasync covers the whole round (PROTOCOL.md §7).
    fn reply(&mut self, conns: &mut Conns) {
        // A round without replies does not sync: no reply waits for a delivery's outcome.
        let failed = if conns.replies.is_empty() { None } else { self.node.sync() };
        for (mut sock, reply) in conns.replies.drain(..) {
            // One write: a reply in pieces crashes the 2017 client (PROTOCOL.md §2).
            let _ = sock.write(failed.as_ref().unwrap_or(&reply));
        }
    }
}

/// Reads what `sock` holds, up to just over MAX_REQUEST bytes; true once it has ended
/// or that much is read.
fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let room = (MAX_REQUEST + 1).saturating_sub(buf.len());
    match sock.take(room as u64).read_to_end(buf) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}
