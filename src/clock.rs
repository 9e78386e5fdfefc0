//! Wall-clock time: UNIX seconds, and the two ways the daemon prints them.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn civil(t: u64, local: bool) -> libc::tm {
    let secs = t as libc::time_t;
    // SAFETY: both functions only write the `tm` we hand them.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if local {
            libc::localtime_r(&secs, &mut tm);
        } else {
            libc::gmtime_r(&secs, &mut tm);
        }
        tm
    }
}

/// Local "HH:MM": the 2017 client prints `"[" + date + "] " + msg`.
pub fn hhmm(t: u64) -> String {
    let tm = civil(t, true);
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// UTC ISO 8601, the time stamp that starts every log line.
pub fn stamp(t: u64) -> String {
    let tm = civil(t, false);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
