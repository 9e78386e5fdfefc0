//! TORchat: a peer-to-peer chat daemon for Tor onion services. This file only reads the
//! command line and wires the parts together.
#![forbid(unsafe_code)]

use getopts::{Matches, Options};
use mio::{net::TcpListener, Poll, Waker};
use nix::sys::resource::{getrlimit, setrlimit, Resource::RLIMIT_NOFILE};
use nix::sys::socket::{listen, Backlog};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use std::{fmt::Display, net::SocketAddr, path::PathBuf, process::exit, str::FromStr};
use torchat::journal::{self, Journal};
use torchat::node::state::{self, Limits};
use torchat::onion::Identity;
use torchat::reactor::{self, Reactor};
use torchat::{delivery::Courier, node::Node, sys};

const USAGE: &str = "Usage: main [options] PORT\n\n\
    Serves local clients on 127.0.0.1:PORT (0: any free port).";
fn fail(status: i32, msg: &str) -> ! {
    eprintln!("main: {msg}{}", if status == 2 { " (see main --help)" } else { "" });
    exit(status)
}

/// What `result` holds, or the end, saying `what` failed.
fn must<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| fail(1, &format!("{what}: {e}")))
}

/// Option `name`; `default` if not given.
fn opt<T: FromStr>(m: &Matches, name: &str, default: T) -> T {
    m.opt_get_default(name, default).unwrap_or_else(|_| fail(2, &format!("--{name}: bad value")))
}

/// A limit: a number above 0.
fn count<T: FromStr + Default + PartialEq>(m: &Matches, name: &str, default: T) -> T {
    match opt(m, name, default) {
        n if n == T::default() => fail(2, &format!("--{name} must be above 0")),
        n => n,
    }
}

fn main() {
    let mut options = Options::new();
    options.optflag("d", "daemon", "detach from the terminal once the ports are bound");
    options.optflag("h", "help", "print this help");
    options.optopt("", "peer-port", "port Tor delivers onion connections to (PORT+1)", "PORT");
    options.optopt("", "hostname", "Tor's hostname file, key beside it (tor/hs/hostname)", "FILE");
    options.optopt("", "logs", "folder of messages.log and errors.log (logs)", "DIR");
    options.optopt("", "socks", "Tor's SOCKS5 port (127.0.0.1:9250)", "ADDR");
    options.optopt("", "give-up", "seconds to keep retrying a delivery (86400)", "SECS");
    options.optopt("", "max-conns", "open connections per port (1000)", "N");
    options.optopt("", "idle", "seconds a connection may stay open (20)", "SECS");
    options.optopt("", "max-unread", "unread messages per contact, unsent per peer (1000)", "N");
    options.optopt("", "max-strangers", "strangers with unread messages (50)", "N");
    options.optopt("", "stranger-unread", "unread messages per stranger (10)", "N");
    let args = std::env::args().skip(1);
    let m = options.parse(args).unwrap_or_else(|e| fail(2, &e.to_string()));
    if m.opt_present("help") {
        return print!("{}", options.usage(USAGE));
    }
    let [port] = m.free.as_slice() else { fail(2, "expected one PORT") };
    let port: u16 = port.parse().unwrap_or_else(|_| fail(2, &format!("bad port {port:?}")));
    let next = if port == 0 { 0 } else { port.checked_add(1).unwrap_or(0) };
    let peer_port = opt(&m, "peer-port", next);
    let limits = Limits {
        max_unread: count(&m, "max-unread", 1000),
        max_strangers: count(&m, "max-strangers", 50),
        stranger_unread: count(&m, "stranger-unread", 10),
    };
    let max_conns = count(&m, "max-conns", 1000);
    let idle = Duration::from_secs(count(&m, "idle", 20));
    let proxy = opt(&m, "socks", SocketAddr::from(([127, 0, 0, 1], 9250)));
    let give_up = count(&m, "give-up", 86400);
    // Both ports full, a SOCKS connection per peer, and a few files of our own.
    let needed = (2 * max_conns + state::MAX_PEERS + 64) as u64;
    let (soft, hard) = must(getrlimit(RLIMIT_NOFILE), "cannot read the open files limit");
    if hard < needed {
        fail(2, &format!("--max-conns: {needed} open files needed, the hard limit is {hard}"))
    }
    must(setrlimit(RLIMIT_NOFILE, soft.max(needed), hard), "cannot raise the open files limit");
    let hostname: PathBuf = opt(&m, "hostname", "tor/hs/hostname".into());
    let me = Identity::load(&hostname).unwrap_or_else(|e| fail(1, &e));
    let dir: PathBuf = opt(&m, "logs", "logs".into());
    journal::open_errors_log(&dir).unwrap_or_else(|e| fail(1, &e));
    let (journal, state) = Journal::open(&dir).unwrap_or_else(|e| fail(1, &e));
    let listeners = [listen_on(port, "clients"), listen_on(peer_port, "peers")];
    let addr = |i: usize| listeners[i].local_addr().map_or(String::new(), |a| a.to_string());
    println!("TORchat {}: clients on {}, peers on {}", me.id.as_str(), addr(0), addr(1));
    if m.opt_present("daemon") {
        must(sys::detach(), "cannot detach");
    }
    let poll = must(Poll::new(), "cannot poll");
    let waker = Arc::new(must(Waker::new(poll.registry(), reactor::WAKE), "cannot poll"));
    let (reports_to, reports) = mpsc::channel();
    let courier = Courier { me: Arc::new(me), proxy, give_up, reports: reports_to, waker };
    let node = Node::new(journal, state, limits, courier);
    let reactor = Reactor { poll, listeners, reports, node, max_conns, idle };
    if let Err(e) = reactor.run() {
        log::error!("{e}"); // to the errors log and to stderr
        exit(1);
    }
}

/// 127.0.0.1:`port`, with room for a burst of connections: std's and mio's backlog
/// drops some, and each then waits a second for the kernel's retry.
fn listen_on(port: u16, what: &str) -> TcpListener {
    let why = format!("cannot listen for {what} on 127.0.0.1:{port}");
    let listener = must(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))), &why);
    must(listen(&listener, Backlog::MAXALLOWABLE), &why);
    listener
}
