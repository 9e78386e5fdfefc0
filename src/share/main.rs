//! share: offers files to peers and fetches what they offer, a program beside the
//! daemon, which never touches file bytes (PROTOCOL.md §10). This file only reads the
//! command line; `offers` does the work, `wire` parses what comes from outside.
#![deny(unsafe_code)]

mod offers;
mod wire;

use std::{io, path::Path, path::PathBuf, process::exit};
use torchat::onion::OnionId;

const USAGE: &str = "Usage: share serve [--dir DIR] PORT
       share offer [--dir DIR] [--days N] PEER FILE
       share get [--socks ADDR] [--into DIR] PEER LINE";

fn main() {
    // Described in USAGE.
    let mut options = getopts::Options::new();
    for name in ["dir", "days", "socks", "into"] {
        options.optopt("", name, "", "");
    }
    let m = options.parse(std::env::args().skip(1)).unwrap_or_else(|e| usage(&e.to_string()));
    let opt = |name, default: &str| m.opt_str(name).unwrap_or(default.into());
    let dir = PathBuf::from(opt("dir", "shares"));
    let peer = |id| OnionId::parse(id).unwrap_or_else(|e| usage(&e));
    let args: Vec<&str> = m.free.iter().map(String::as_str).collect();
    let done = match args[..] {
        ["serve", port] => offers::serve(dir, parse(port)),
        ["offer", id, file] => {
            let days = parse(&opt("days", "7"));
            let offered = offers::offer(&dir, peer(id), file, days);
            offered.map_err(|e| io::Error::other(format!("{file}: {e}")))
        }
        ["get", id, line] => {
            let offer = wire::offer(line).unwrap_or_else(|e| usage(&e));
            let socks = parse(&opt("socks", "127.0.0.1:9250"));
            offers::get(&peer(id), &offer, socks, Path::new(&opt("into", ".")))
        }
        _ => usage("no command"),
    };
    if let Err(e) = done {
        eprintln!("share: {e}");
        exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("share: {why}\n{USAGE}");
    exit(2)
}

fn parse<T: std::str::FromStr>(text: &str) -> T {
    text.parse().unwrap_or_else(|_| usage(&format!("bad {text}")))
}
