//! The system: wall-clock time, and the daemon's only `unsafe` block (AUDIT.md,
//! "Unsafe code"), fork(2). nix checks every return value of the libc calls.

use chrono::{DateTime, Local, Utc};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult, Pid};

/// The classic Unix daemon: fork; Some(child's PID) in the parent, None in the child,
/// which leads a new session with its standard streams on /dev/null.
pub fn detach() -> std::io::Result<Option<Pid>> {
    let null = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    // SAFETY: called before any other thread exists, so the child's copy of this
    // process is consistent (no lock is held by a thread that does not exist there).
    if let ForkResult::Parent { child } = unsafe { fork() }? {
        return Ok(Some(child));
    }
    setsid()?;
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&null)?;
    Ok(None)
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
