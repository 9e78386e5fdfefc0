//! The reactor: one thread and one mio poll loop own every socket (the 2017 daemon's
//! `mg_mgr_poll` loop). It only moves bytes: it accepts, reads until the node says a
//! request is complete, holds the reply until the node has synced the records of the
//! round (group commit, PROTOCOL.md §7), sends it in one call and closes. The only
//! timers are the connections' ages; delivery threads report through the Waker.

use crate::delivery::Report;
use crate::node::Node;
use crate::wire::{self, Port, MAX_REQUEST};
use log::error;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;
use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::{sync::mpsc::Receiver, time::Duration, time::Instant};

/// Tokens 0 and 1 are the listeners, numbered as `Port`; a connection's token is even
/// for the client port and odd for the peer port, from 4 up.
pub const WAKE: Token = Token(2);
const SIGNALS: Token = Token(3);
/// How long a connection of a full port has to send its request before a newcomer may
/// take its place (PROTOCOL.md §9).
const GRACE: Duration = Duration::from_secs(1);

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

/// A connection reading its one request: the bytes so far, and when it was accepted.
type Conn = (TcpStream, Vec<u8>, Instant);

#[derive(Default)]
struct Conns {
    /// Each port's connections (indexed as `Port`) in accept order, since tokens count
    /// up: the first is the oldest.
    reading: [BTreeMap<Token, Conn>; 2],
    /// Counts the connections accepted, from 2 up.
    next: usize,
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
        let mut conns = Conns { next: 2, ..Conns::default() };
        let mut events = Events::with_capacity(1024);
        // SIGINT and SIGTERM stop the loop. SIGHUP (logrotate's) needs nothing done, and
        // SIGXFSZ is caught so that a write past a file size limit fails, and is
        // reported, instead of killing the daemon.
        let stops = |signal| signal == SIGINT || signal == SIGTERM;
        while !self.node.exit {
            let due = conns.reading.iter().filter_map(|r| self.due(r)).min();
            let wait = due.map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, wait) {
                Err(e) if e.kind() != ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
            for event in events.iter() {
                // A listener's event needs nothing here: every round accepts (below), as
                // a full port leaves connections in its listen queue, and no new event
                // comes for those. `readable` knows no listener's token.
                match event.token() {
                    WAKE => self.node.delivered(&self.reports),
                    // `any` stops at a stop, or reads every pending signal.
                    SIGNALS => self.node.exit |= signals.pending().any(stops),
                    token => self.readable(&mut conns, token),
                }
            }
            self.reply(&mut conns);
            self.accept(&mut conns, Port::Client);
            self.accept(&mut conns, Port::Peer);
        }
        log::info!("shutting down");
        self.node.sync();
        Ok(())
    }

    /// When the oldest connection's time is up; on a full port, when it may give way.
    fn due(&self, reading: &BTreeMap<Token, Conn>) -> Option<Instant> {
        let (.., since) = reading.values().next()?;
        let full = reading.len() >= self.max_conns && since.elapsed() < GRACE;
        Some(*since + if full { GRACE } else { self.idle })
    }

    /// Closes the port's connections past their deadline, then accepts while the port
    /// has room, or while its oldest connection, still incomplete after GRACE, can give
    /// way to a newcomer. The rest wait in the kernel's listen queue: nobody who holds
    /// connections locks others out, and a burst larger than the limit is served, not
    /// refused (PROTOCOL.md §9).
    fn accept(&mut self, conns: &mut Conns, port: Port) {
        let (reading, idle) = (&mut conns.reading[port as usize], self.idle);
        while let Some(oldest) = reading.first_entry().filter(|c| c.get().2.elapsed() >= idle) {
            self.close(oldest.remove(), &format!("no complete request in {idle:?}"));
        }
        loop {
            // Full (so not empty: max_conns is above 0), and nobody may give way yet.
            let full = reading.len() >= self.max_conns;
            if full && reading.values().next().is_some_and(|c| c.2.elapsed() < GRACE) {
                return;
            }
            // Until WouldBlock: mio's events are edge-triggered.
            let (mut sock, _) = match self.listeners[port as usize].accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => return error!("accept: {e}"),
            };
            // The oldest gives way only now, when somebody is known to wait.
            if full {
                let (_, oldest) = reading.pop_first().expect("a full port has connections");
                self.close(oldest, "busy, try later");
            }
            let token = Token(conns.next * 2 + port as usize);
            conns.next += 1;
            if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                error!("register: {e}");
                continue;
            }
            reading.insert(token, (sock, Vec::new(), Instant::now()));
        }
    }

    /// Tells `conn` why it is closed; the refusal is logged, within its limit.
    fn close(&mut self, (mut sock, ..): Conn, why: &str) {
        let _ = sock.write(&wire::encode(&self.node.refuse(why)));
    }

    fn readable(&mut self, conns: &mut Conns, token: Token) {
        let port = [Port::Client, Port::Peer][token.0 % 2];
        let reading = &mut conns.reading[port as usize];
        let Some((sock, buf, _)) = reading.get_mut(&token) else { return };
        // What the socket holds, up to just over MAX_REQUEST bytes; the request has ended
        // unless more may come.
        let room = (MAX_REQUEST + 1).saturating_sub(buf.len());
        let read = sock.take(room as u64).read_to_end(buf);
        let ended = !matches!(read, Err(e) if e.kind() == ErrorKind::WouldBlock);
        let Some(reply) = self.node.serve(port, buf, ended) else { return };
        let (sock, ..) = reading.remove(&token).expect("it was read from above");
        conns.replies.push((sock, reply));
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
