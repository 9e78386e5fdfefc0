//! Wall-clock time: UNIX seconds, and the two ways the daemon prints them.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn civil(t: u64, local: bool) -> libc::tm {
    // SAFETY: a zeroed tm is valid, and both functions only write the tm they are given.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let convert = if local { libc::localtime_r } else { libc::gmtime_r };
        convert(&(t as libc::time_t), &mut tm);
        tm
    }
}

/// Local "HH:MM": the 2017 client prints `"[" + date + "] " + msg`.
pub fn hhmm(t: u64) -> String {
    let tm = civil(t, true);
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// UTC, ISO 8601: the time stamp that starts every line of the messages log.
pub fn stamp(t: u64) -> String {
    let tm = civil(t, false);
    let (date, time) = ((tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday), (tm.tm_hour, tm.tm_min, tm.tm_sec));
    format!("{}-{:02}-{:02}T{:02}:{:02}:{:02}Z", date.0, date.1, date.2, time.0, time.1, time.2)
}
