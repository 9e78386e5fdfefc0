//! Wall-clock time: UNIX seconds, and the two ways the daemon prints them.

use crate::sys;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs())
}

/// Local "HH:MM": the 2017 client prints `"[" + date + "] " + msg`.
pub fn hhmm(t: u64) -> String {
    let Ok(tm) = sys::civil(t, true) else { return "--:--".into() };
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// UTC, ISO 8601: the time stamp that starts every line of the messages log.
pub fn stamp(t: u64) -> String {
    let Ok(tm) = sys::civil(t, false) else { return "-".into() };
    let (year, month) = (tm.tm_year + 1900, tm.tm_mon + 1);
    let date = format!("{year}-{month:02}-{:02}", tm.tm_mday);
    format!("{date}T{:02}:{:02}:{:02}Z", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
