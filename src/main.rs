//! TORchat: a peer-to-peer chat daemon for Tor onion services. This file only reads the
//! command line and wires the parts together.

use getopts::{Matches, Options};
use std::net::{SocketAddr, TcpListener};
use std::{io::Write, os::fd::AsRawFd, path::Path, process::exit, time::Duration};
use torchat::reactor::{Limits, Reactor};
use torchat::{logs, onion, protocol};

const USAGE: &str = "Usage: main [options] PORT\n\nServes local clients on 127.0.0.1:PORT (0: any free port).";
const OPTIONS: [(&str, &str); 12] = [
    ("peer-port", "port that Tor delivers onion connections to (PORT+1)"),
    ("hostname", "Tor's hostname file of this onion service (tor/hs/hostname)"),
    ("key", "Tor's secret key of this onion service (hs_ed25519_secret_key next to the hostname file)"),
    ("logs", "folder of messages.log, errors.log, state.json (logs)"),
    ("socks", "Tor's SOCKS5 port (127.0.0.1:9250)"),
    ("give-up", "seconds to keep retrying a delivery (86400)"),
    ("max-text", "bytes in one message, JSON-escaped (3000; at most 3500)"),
    ("max-buffer", "bytes buffered per connection (16384)"),
    ("max-conns", "open connections per port (1000)"),
    ("idle", "seconds a connection may stay open (20)"),
    ("max-unread", "unread, and unsent, messages per peer (1000)"),
    ("max-peers", "peers with unread, and with unsent, messages (1000)"),
];

fn fail(status: i32, msg: &str) -> ! {
    eprintln!("main: {msg}{}", if status == 2 { " (see main --help)" } else { "" });
    exit(status)
}

fn opt<T: std::str::FromStr>(m: &Matches, name: &str, default: T) -> T {
    let parse = |v: String| v.parse().unwrap_or_else(|_| fail(2, &format!("--{name}: bad value {v:?}")));
    m.opt_str(name).map_or(default, parse)
}

fn main() {
    let mut options = Options::new();
    options.optflag("d", "daemon", "detach from the terminal once the ports are bound");
    options.optflag("h", "help", "print this help");
    OPTIONS.iter().for_each(|(name, help)| _ = options.optopt("", name, help, "VALUE"));
    let m = options.parse(std::env::args().skip(1)).unwrap_or_else(|e| fail(2, &e.to_string()));
    if m.opt_present("help") {
        return print!("{}", options.usage(USAGE));
    }
    let [port] = m.free.as_slice() else { fail(2, "expected one PORT") };
    let port: u16 = port.parse().unwrap_or_else(|_| fail(2, &format!("bad port {port:?}")));
    let peer_port = opt(&m, "peer-port", if port == 0 { 0 } else { port.checked_add(1).unwrap_or(0) });
    let secs = |name, default| Duration::from_secs(opt(&m, name, default));
    let limits = Limits {
        max_text: opt(&m, "max-text", 3000),
        max_buffer: opt(&m, "max-buffer", 16384),
        max_conns: opt(&m, "max-conns", 1000),
        idle: secs("idle", 20),
        max_unread: opt(&m, "max-unread", 1000),
        max_peers: opt(&m, "max-peers", 1000),
        give_up: secs("give-up", 86400),
    };
    let positive = [limits.max_conns, limits.idle.as_secs() as usize, limits.max_unread, limits.max_peers];
    if !(1..=protocol::MAX_TEXT_LIMIT).contains(&limits.max_text) || limits.max_buffer < 2 * limits.max_text {
        fail(2, &format!("--max-text must be 1 to {}, --max-buffer twice that", protocol::MAX_TEXT_LIMIT));
    } else if positive.contains(&0) {
        fail(2, "--max-conns, --idle, --max-unread and --max-peers must be above 0");
    }
    // Both ports full, a SOCKS connection per peer, and a few files of our own.
    let needed = (2 * limits.max_conns + limits.max_peers + 64) as u64;
    raise_fd_limit(needed).unwrap_or_else(|hard| {
        fail(2, &format!("these limits need {needed} open files, and the hard limit is {hard}: lower --max-conns"))
    });
    let proxy: SocketAddr = opt(&m, "socks", SocketAddr::from(([127, 0, 0, 1], 9250)));
    let hostname = m.opt_str("hostname").unwrap_or_else(|| "tor/hs/hostname".into());
    let me = std::fs::read_to_string(&hostname)
        .map_err(|e| format!("cannot read {hostname}: {e} (is tor running? see --hostname)"))
        .and_then(|id| onion::OnionId::parse(&id).map_err(|e| format!("{hostname}: {e}")))
        .unwrap_or_else(|e| fail(1, &e));
    let key = m.opt_str("key").map_or_else(|| Path::new(&hostname).with_file_name("hs_ed25519_secret_key"), Into::into);
    let me = onion::Identity::load(&key, me).unwrap_or_else(|e| fail(1, &e));
    // A write past a file size limit is then an error the daemon reports, not its death.
    // SAFETY: ignoring a signal changes no memory of this process.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let log_dir = m.opt_str("logs").unwrap_or_else(|| "logs".into());
    let errors_fd = logs::open_errors_log(Path::new(&log_dir)).unwrap_or_else(|e| fail(1, &e));
    let (journal, state) = logs::Journal::open(Path::new(&log_dir), errors_fd).unwrap_or_else(|e| fail(1, &e));
    let listeners = [(port, "clients"), (peer_port, "peers")].map(|(port, what)| {
        let bound = TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.set_nonblocking(true).map(|_| l));
        let listener = bound.unwrap_or_else(|e| fail(1, &format!("cannot listen for {what} on 127.0.0.1:{port}: {e}")));
        // std's backlog of 128 drops connections in a burst (each then waits a second for
        // the kernel's retry); the kernel caps this at net.core.somaxconn.
        // SAFETY: listen(2) on a socket this process owns, already listening.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        listener
    });
    let addr = |i: usize| listeners[i].local_addr().map_or(String::new(), |a| a.to_string());
    println!("TORchat {}: clients on {}, peers on {}", me.id, addr(0), addr(1));
    if m.opt_present("daemon") {
        detach().unwrap_or_else(|e| fail(1, &format!("cannot detach: {e}")));
    }
    let _ = std::io::stdout().flush();
    let reactor = Reactor::new(listeners, proxy, me, journal, state, limits);
    if let Err(e) = reactor.map_err(|e| format!("cannot start: {e}")).and_then(Reactor::run) {
        log::error!("{e}"); // to the errors log and to stderr
        exit(1);
    }
}

/// Raises the soft limit of open files to `needed` if it is lower; Err: the hard limit.
fn raise_fd_limit(needed: u64) -> Result<(), u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls only read or write the struct they are given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_max < needed {
            return Err(limit.rlim_max);
        }
        limit.rlim_cur = limit.rlim_cur.max(needed);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    Ok(())
}

/// The classic Unix daemon: fork; the parent prints the child's PID and exits; the child
/// leaves the terminal's session and points its standard streams at /dev/null.
fn detach() -> std::io::Result<()> {
    let null = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    let _ = std::io::stdout().flush();
    // SAFETY: no other thread exists yet, so the child starts from a consistent state;
    // the rest are plain system calls on descriptors this process owns.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => unsafe {
            libc::setsid();
            (0..3).for_each(|fd| _ = libc::dup2(null.as_raw_fd(), fd));
            Ok(())
        },
        child => {
            println!("detached: pid {child}");
            exit(0)
        }
    }
}
