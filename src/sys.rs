//! The system: wall-clock time, and becoming a daemon. The daemon has no `unsafe`
//! code; nix checks every return value of the libc calls.

use chrono::{DateTime, Local, Utc};
use nix::unistd::{daemon, dup2_stderr, dup2_stdin, dup2_stdout, getpid};
use std::{fs::File, io};

/// The classic Unix daemon, daemon(3): the parent exits, and the child, leading a new
/// session, says its PID, then puts its standard streams on /dev/null. daemon(3)
/// forks, so it is called before any other thread exists: the child's copy of the
/// process is then consistent (no lock is held by a thread that is not there).
pub fn detach() -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    daemon(true, true)?;
    println!("detached: pid {}", getpid());
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&null)?;
    Ok(())
}

/// UNIX time in seconds; 0 for a clock set before 1970.
pub fn now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// Local "HH:MM": the 2017 client prints `"[" + date + "] " + msg`. A time no
/// calendar holds (a damaged log's) shows as 1970.
pub fn hhmm(t: u64) -> String {
    let time = DateTime::from_timestamp(t as i64, 0).unwrap_or_default();
    time.with_timezone(&Local).format("%H:%M").to_string()
}

/// UTC, ISO 8601: the time stamp that starts every line of the messages log.
pub fn stamp(t: u64) -> String {
    let time = DateTime::from_timestamp(t as i64, 0).unwrap_or_default();
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
