//! The two log files. The messages log is the daemon's memory and the conversations'
//! history, never rotated: one line per event, `STAMP JSON`, appended before the event
//! takes effect; start-up replays it into the state, and unread messages are read back
//! from it. The errors log gets every refusal and failure, through `log` and
//! `simplelog`; SIGHUP reopens it (logrotate). Both are the user's alone (PROTOCOL.md §7).

use crate::state::State;
use crate::wire::{self, Event, Record};
use crate::{clock, sys};
use log::{warn, LevelFilter};
use serde_json::{json, Value};
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MESSAGES: &str = "messages.log";
const ERRORS: &str = "errors.log";
/// Longer than any record this daemon writes or wrote: a damaged log is not read
/// into memory whole.
const MAX_LINE: usize = 1 << 20;

pub struct Journal {
    dir: PathBuf,
    file: File,
    len: u64,
    /// The log's length at its last fdatasync.
    synced: u64,
    errors_fd: RawFd,
}

fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Opened to append and read; 0600, whatever the umask and whoever made it.
fn private(path: &Path) -> Result<File, String> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true).mode(0o600);
    let file = options.open(path).map_err(|e| failed("open", path, e))?;
    let mode = Permissions::from_mode(0o600);
    file.set_permissions(mode).map_err(|e| failed("chmod", path, e))?;
    Ok(file)
}

/// The log folder, 0700 whatever the umask.
fn folder(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
    let mode = Permissions::from_mode(0o700);
    fs::set_permissions(dir, mode).map_err(|e| failed("chmod", dir, e))
}

impl Journal {
    /// Opens the messages log in `dir` and rebuilds the state from it.
    pub fn open(dir: &Path, errors_fd: RawFd) -> Result<(Journal, State), String> {
        folder(dir)?;
        let path = dir.join(MESSAGES);
        let mut file = private(&path)?;
        let meta = file.metadata().map_err(|e| failed("read", &path, e))?;
        let mut len = meta.len();
        let mut last = [0u8];
        // A crash can cut the last line; end it so that the next record starts afresh.
        let cut = len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n';
        if cut {
            file.write_all(b"\n").map_err(|e| failed("write", &path, e))?;
            len += 1;
        }
        let mut state = State::default();
        replay(&path, &mut state).map_err(|e| failed("read", &path, e))?;
        let journal = Journal { dir: dir.into(), file, len, synced: 0, errors_fd };
        Ok((journal, state))
    }

    /// A record counts only once this returns where it now stands; a failed write is
    /// undone so that the next record does not get glued to half a line.
    pub fn append(&mut self, rec: &Record) -> Result<u64, String> {
        let mut line = format!("{} ", clock::stamp(rec.t)).into_bytes();
        serde_json::to_writer(&mut line, rec).map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(self.len);
            return Err(format!("cannot write the messages log: {e}"));
        }
        let at = self.len;
        self.len += line.len() as u64;
        Ok(at)
    }

    /// Group commit: one fdatasync covers every record appended since the last one.
    pub fn sync(&mut self) -> Result<(), String> {
        if self.synced == self.len {
            return Ok(());
        }
        let synced = self.file.sync_data();
        synced.map_err(|e| format!("cannot sync the messages log: {e}"))?;
        self.synced = self.len;
        Ok(())
    }

    /// The record at `at`, read exactly: a line at a time, 4 KiB at a time.
    pub fn read(&self, at: u64) -> Result<Record, String> {
        let mut line = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let from = at + line.len() as u64;
            let n = self.file.read_at(&mut chunk, from);
            let n = n.map_err(|e| format!("cannot read the messages log: {e}"))?;
            let end = chunk[..n].iter().position(|&b| b == b'\n');
            line.extend_from_slice(&chunk[..end.unwrap_or(n)]);
            if end.is_some() || n == 0 || line.len() > MAX_LINE {
                break;
            }
        }
        wire::record(&line).ok_or_else(|| format!("the messages log has no record at {at}"))
    }

    /// SIGHUP: logrotate has moved the errors log away; the logger's descriptor is
    /// pointed at a new one.
    pub fn reopen_errors(&self) -> Result<(), String> {
        let path = self.dir.join(ERRORS);
        let file = private(&path)?;
        sys::redirect(&file, self.errors_fd).map_err(|e| failed("reopen", &path, e))
    }

    /// The last `n` messages of a conversation, oldest first, with the delivery state of
    /// ours: walked backwards from its latest record, `at`, along `prev`.
    pub fn history(&self, mut at: Option<u64>, n: usize) -> Vec<Value> {
        let mut found = Vec::new();
        let mut outcome = HashMap::new();
        while let (Some(pos), true) = (at, found.len() < n) {
            let Ok(Record { t, ev, prev, .. }) = self.read(pos) else { break };
            // A chain only goes back: anything else is damage, not a loop to follow.
            at = prev.filter(|&p| p < pos);
            match ev {
                Event::Recv { msg, verified, .. } => {
                    found.push(json!({"t": t, "dir": "in", "msg": msg, "verified": verified}));
                }
                Event::Queued { msg, mid, .. } => {
                    let state = outcome.remove(&mid).unwrap_or("queued".into());
                    found.push(json!({"t": t, "dir": "out", "msg": msg, "state": state}));
                }
                Event::Delivered { mid } => _ = outcome.entry(mid).or_insert("delivered".into()),
                Event::Unconfirmed { mid } => _ = outcome.entry(mid).or_insert("unconfirmed".into()),
                Event::Failed { mid, why, .. } => {
                    let why = wire::reason(&why);
                    outcome.entry(mid).or_insert(format!("failed: {why}"));
                }
                Event::Read => {}
            }
        }
        found.reverse();
        found
    }
}

fn replay(path: &Path, state: &mut State) -> io::Result<()> {
    let file = File::open(path)?;
    let (mut at, mut skipped) = (0, 0);
    for line in BufReader::with_capacity(1 << 16, file).split(b'\n') {
        let line = line?;
        match wire::record(&line) {
            Some(rec) => state.apply(at, rec),
            None => skipped += 1,
        }
        at += line.len() as u64 + 1;
    }
    if skipped > 0 {
        warn!("{}: skipped {skipped} damaged lines", path.display());
    }
    Ok(())
}

/// The logger: errors.log, and errors to stderr as well, since when the disk is full
/// the errors log cannot say so. Returns the descriptor that SIGHUP repoints.
pub fn open_errors_log(dir: &Path) -> Result<RawFd, String> {
    folder(dir)?;
    let file = private(&dir.join(ERRORS))?;
    let fd = file.as_raw_fd();
    let mut config = ConfigBuilder::new();
    config.set_time_format_rfc3339().set_thread_level(LevelFilter::Off);
    let config = config.build();
    let stderr = WriteLogger::new(LevelFilter::Error, config.clone(), io::stderr());
    let errors = WriteLogger::new(LevelFilter::Info, config, file);
    let loggers: Vec<Box<dyn SharedLogger>> = vec![errors, stderr];
    CombinedLogger::init(loggers).map_err(|e| e.to_string())?;
    Ok(fd)
}
