//! TORchat: a peer-to-peer chat daemon for Tor onion services. This file only reads the
//! command line and wires the parts together.

mod clock;
mod delivery;
mod logs;
mod onion;
mod protocol;
mod reactor;
mod store;

use getopts::{Matches, Options};
use onion::OnionId;
use reactor::{Limits, Reactor};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::exit;
use std::str::FromStr;
use std::time::Duration;

fn options() -> Options {
    let mut o = Options::new();
    o.optflag("d", "daemon", "detach from the terminal once the ports are bound");
    o.optopt("", "peer-port", "port Tor delivers onion connections to (PORT+1)", "N");
    o.optopt("", "hostname", "Tor's hostname file for this onion service (tor/hostname)", "FILE");
    o.optopt("", "logs", "folder of messages.log, errors.log, state.json (logs)", "DIR");
    o.optopt("", "socks", "Tor's SOCKS5 port (127.0.0.1:9250)", "ADDR");
    o.optopt("", "give-up", "seconds to keep retrying a delivery (86400)", "S");
    o.optopt("", "max-text", "bytes in one message, JSON-escaped (3000, at most 3500)", "N");
    o.optopt("", "max-buffer", "bytes buffered per connection (16384)", "N");
    o.optopt("", "max-conns", "open connections per port (1000)", "N");
    o.optopt("", "idle", "seconds a connection may stay open (20)", "S");
    o.optopt("", "max-unread", "unread (and unsent) messages per peer (1000)", "N");
    o.optopt("", "max-peers", "peers with unread (or unsent) messages (1000)", "N");
    o.optflag("h", "help", "print this help");
    o
}

fn usage_error(msg: &str) -> ! {
    eprintln!("main: {msg} (see main --help)");
    exit(2)
}

fn fatal(msg: &str) -> ! {
    eprintln!("main: {msg}");
    exit(1)
}

fn opt<T: FromStr>(m: &Matches, name: &str, default: T) -> T {
    match m.opt_str(name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| usage_error(&format!("--{name}: bad value {v:?}"))),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let m = options().parse(&args).unwrap_or_else(|e| usage_error(&e.to_string()));
    if m.opt_present("help") {
        print!(
            "{}",
            options().usage(
                "Usage: main [options] PORT\n\nServes local clients on 127.0.0.1:PORT (0: any free port)."
            )
        );
        return;
    }
    let [port] = m.free.as_slice() else { usage_error("expected exactly one PORT") };
    let port: u16 = port.parse().unwrap_or_else(|_| usage_error(&format!("bad port {port:?}")));
    let default_peer =
        if port == 0 { 0 } else { port.checked_add(1).unwrap_or_else(|| usage_error("no PORT+1")) };
    let peer_port: u16 = opt(&m, "peer-port", default_peer);
    let limits = Limits {
        max_text: opt(&m, "max-text", 3000),
        max_buffer: opt(&m, "max-buffer", 16384),
        max_conns: opt(&m, "max-conns", 1000),
        idle: Duration::from_secs(opt(&m, "idle", 20)),
        max_unread: opt(&m, "max-unread", 1000),
        max_peers: opt(&m, "max-peers", 1000),
        give_up: Duration::from_secs(opt(&m, "give-up", 86400)),
    };
    if limits.max_text > protocol::MAX_TEXT_LIMIT || limits.max_text == 0 {
        usage_error(&format!("--max-text must be 1 to {}", protocol::MAX_TEXT_LIMIT));
    }
    if limits.max_buffer < 2 * limits.max_text || limits.max_conns == 0 || limits.idle.is_zero() {
        usage_error("--max-buffer must hold two texts; --max-conns and --idle above 0");
    }
    let proxy: SocketAddr = opt(&m, "socks", SocketAddr::from(([127, 0, 0, 1], 9250)));
    let hostname = m.opt_str("hostname").unwrap_or_else(|| "tor/hostname".into());
    let me = read_hostname(Path::new(&hostname)).unwrap_or_else(|e| fatal(&e));
    let log_dir = m.opt_str("logs").unwrap_or_else(|| "logs".into());

    logs::open_errors_log(Path::new(&log_dir)).unwrap_or_else(|e| fatal(&e));
    let (journal, state) = logs::Journal::open(Path::new(&log_dir)).unwrap_or_else(|e| fatal(&e));
    let bind = |port: u16, what: &str| {
        TcpListener::bind(("127.0.0.1", port))
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .unwrap_or_else(|e| fatal(&format!("cannot listen for {what} on 127.0.0.1:{port}: {e}")))
    };
    let clients = bind(port, "clients");
    let peers = bind(peer_port, "peers");
    let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("TORchat {me}: clients on {}, peers on {}", local(&clients), local(&peers));
    if m.opt_present("daemon") {
        detach().unwrap_or_else(|e| fatal(&format!("cannot detach: {e}")));
    }
    let _ = std::io::stdout().flush();
    let reactor = Reactor::new(clients, peers, proxy, me, journal, state, limits);
    let reactor = reactor.unwrap_or_else(|e| fatal(&format!("cannot start: {e}")));
    if let Err(e) = reactor.run() {
        log::error!("{e}");
        fatal(&e);
    }
}

fn read_hostname(path: &Path) -> Result<OnionId, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the onion hostname {}: {e} (start tor first, or give --hostname)",
            path.display()
        )
    })?;
    OnionId::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The classic Unix daemon: fork, the parent reports the child's PID and exits, the
/// child leaves the terminal's session and points its standard streams at /dev/null.
fn detach() -> std::io::Result<()> {
    let _ = std::io::stdout().flush();
    // SAFETY: no other thread exists yet, so the child inherits a consistent process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
            // SAFETY: plain system calls on descriptors this process owns.
            unsafe {
                libc::setsid();
                for fd in 0..3 {
                    libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
                }
            }
            Ok(())
        }
        child => {
            println!("detached: pid {child}");
            exit(0)
        }
    }
}
