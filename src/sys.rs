//! The system: wall-clock time, and every `unsafe` block of the daemon (AUDIT.md,
//! "Unsafe code"): the few libc calls that std does not offer. Each return value is
//! checked; each block says what makes it sound.

use std::io::{Error, Result};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{SystemTime, UNIX_EPOCH};

/// libc's convention: -1 and errno on failure.
fn check(ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 {
        return Err(Error::last_os_error());
    }
    Ok(ret)
}

/// Sets the backlog of a listening socket: std's and mio's 128 drop connections in a
/// burst, each of which then waits a second for the kernel's retry.
pub fn listen(socket: &impl AsRawFd, backlog: i32) -> Result<()> {
    let fd = socket.as_raw_fd();
    // SAFETY: listen(2) takes two integers and touches no memory of ours.
    check(unsafe { libc::listen(fd, backlog) })?;
    Ok(())
}

/// Raises the soft limit of open files to `needed`, or as far as the hard limit
/// allows; returns the hard limit.
pub fn raise_fd_limit(needed: u64) -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes only the struct it is given, which lives here.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let wanted = needed.min(limit.rlim_max);
    limit.rlim_cur = limit.rlim_cur.max(wanted);
    // SAFETY: setrlimit(2) only reads the struct it is given.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    Ok(limit.rlim_max)
}

/// Points descriptor `fd` at `file`'s open file, atomically (dup2(2)): whoever writes
/// to `fd` (the logger, the standard streams) writes to `file` from then on.
fn redirect(file: &impl AsRawFd, fd: RawFd) -> Result<()> {
    let from = file.as_raw_fd();
    // SAFETY: dup2 touches no memory; `fd` is replaced by a descriptor of an open file,
    // so nothing that holds `fd` is left with a closed or reused descriptor.
    check(unsafe { libc::dup2(from, fd) })?;
    Ok(())
}

/// The classic Unix daemon: fork; Some(child's PID) in the parent, None in the child,
/// which leads a new session with its standard streams on /dev/null.
pub fn detach() -> Result<Option<i32>> {
    let null = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    // SAFETY: called before any other thread exists, so the child's copy of this
    // process is consistent (no lock is held by a thread that does not exist there).
    let pid = check(unsafe { libc::fork() })?;
    if pid > 0 {
        return Ok(Some(pid));
    }
    // SAFETY: setsid(2) takes no arguments and touches no memory.
    check(unsafe { libc::setsid() })?;
    for fd in 0..3 {
        redirect(&null, fd)?;
    }
    Ok(None)
}

/// UNIX time `t` as a calendar date and time, local or UTC.
fn civil(t: u64, local: bool) -> Result<libc::tm> {
    let time = t as libc::time_t;
    // SAFETY: libc::tm is integers and one pointer, for which all-zero bytes are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let convert = if local { libc::localtime_r } else { libc::gmtime_r };
    // SAFETY: both read `time` and write only `tm`, both of which live here; they
    // return null when the time cannot be represented.
    let done = unsafe { convert(&time, &mut tm) };
    if done.is_null() {
        return Err(Error::other("time out of range"));
    }
    Ok(tm)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Local "HH:MM": the 2017 client prints `"[" + date + "] " + msg`.
pub fn hhmm(t: u64) -> String {
    let Ok(tm) = civil(t, true) else { return "--:--".into() };
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// UTC, ISO 8601: the time stamp that starts every line of the messages log.
pub fn stamp(t: u64) -> String {
    let Ok(tm) = civil(t, false) else { return "-".into() };
    let (year, month, day) = (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    format!("{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
