//! The two log files. The messages log is the daemon's memory and the conversations'
//! history, never rotated: one line per event, `STAMP JSON`, appended before the event
//! takes effect; start-up replays it into the state, and unread messages are read back
//! from it. The errors log gets every refusal and failure, through `log` and
//! `simplelog`; each line is appended by path, so a rotation (logrotate renames the
//! file) takes effect at the next line. Both are the user's alone (PROTOCOL.md §7).

use crate::wire::{self, Event, Record};
use crate::{state::State, sys};
use log::{warn, LevelFilter};
use serde_json::{json, Value};
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, LineWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::{collections::HashMap, path::Path, path::PathBuf};

const MESSAGES: &str = "messages.log";
const ERRORS: &str = "errors.log";
/// Longer than any record this daemon writes or wrote: a damaged log is not read
/// into memory whole.
const MAX_LINE: usize = 1 << 20;

pub struct Journal {
    file: File,
    len: u64,
    /// The log's length at its last fdatasync.
    synced: u64,
}

fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Opened to append and read; 0600, whatever the umask and whoever made it.
fn private(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(path);
    let file = file.map_err(|e| failed("open", path, e))?;
    file.set_permissions(Permissions::from_mode(0o600)).map_err(|e| failed("chmod", path, e))?;
    Ok(file)
}

/// The log folder, 0700 whatever the umask.
fn folder(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
    fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(|e| failed("chmod", dir, e))
}

impl Journal {
    /// Opens the messages log in `dir` and rebuilds the state from it.
    pub fn open(dir: &Path) -> Result<(Journal, State), String> {
        folder(dir)?;
        let path = dir.join(MESSAGES);
        let mut file = private(&path)?;
        let mut len = file.metadata().map_err(|e| failed("read", &path, e))?.len();
        let mut last = [0u8];
        // A crash can cut the last line; end it so that the next record starts afresh.
        if len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
            file.write_all(b"\n").map_err(|e| failed("write", &path, e))?;
            len += 1;
        }
        let mut state = State::default();
        replay(&path, &mut state).map_err(|e| failed("read", &path, e))?;
        Ok((Journal { file, len, synced: 0 }, state))
    }

    /// A record counts only once this returns where it now stands; a failed write is
    /// undone so that the next record does not get glued to half a line.
    pub fn append(&mut self, rec: &Record) -> Result<u64, String> {
        let mut line = format!("{} ", sys::stamp(rec.t)).into_bytes();
        serde_json::to_writer(&mut line, rec).map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(self.len);
            return Err(format!("cannot write the messages log: {e}"));
        }
        self.len += line.len() as u64;
        Ok(self.len - line.len() as u64)
    }

    /// Group commit: one fdatasync covers every record appended since the last one.
    pub fn sync(&mut self) -> Result<(), String> {
        if self.synced < self.len {
            self.file.sync_data().map_err(|e| format!("cannot sync the messages log: {e}"))?;
            self.synced = self.len;
        }
        Ok(())
    }

    /// The record at `at`, read exactly: up to its newline, 4 KiB at a time.
    pub fn read(&self, at: u64) -> Result<Record, String> {
        let (mut line, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            let n = self.file.read_at(&mut chunk, at + line.len() as u64);
            let n = n.map_err(|e| format!("cannot read the messages log: {e}"))?;
            let end = chunk[..n].iter().position(|&b| b == b'\n');
            line.extend_from_slice(&chunk[..end.unwrap_or(n)]);
            if end.is_some() || n == 0 || line.len() > MAX_LINE {
                break;
            }
        }
        wire::record(&line).ok_or_else(|| format!("the messages log has no record at {at}"))
    }

    /// The last `n` messages of a conversation, oldest first, with the delivery state of
    /// ours: walked backwards from its latest record, `at`, along `prev`.
    pub fn history(&self, mut at: Option<u64>, n: usize) -> Vec<Value> {
        let (mut found, mut outcome) = (Vec::new(), HashMap::new());
        while let (Some(pos), true) = (at, found.len() < n) {
            let Ok(Record { t, ev, prev, .. }) = self.read(pos) else { break };
            // A chain only goes back: anything else is damage, not a loop to follow.
            at = prev.filter(|&p| p < pos);
            let (mid, state) = match ev {
                Event::Recv { msg, verified, .. } => {
                    found.push(json!({"t": t, "dir": "in", "msg": msg, "verified": verified}));
                    continue;
                }
                Event::Queued { msg, mid, .. } => {
                    let state = outcome.remove(&mid).unwrap_or("queued".into());
                    found.push(json!({"t": t, "dir": "out", "msg": msg, "state": state}));
                    continue;
                }
                Event::Delivered { mid } => (mid, "delivered".into()),
                Event::Unconfirmed { mid } => (mid, "unconfirmed".into()),
                Event::Failed { mid, why, .. } => (mid, format!("failed: {}", wire::reason(&why))),
                Event::Read => continue,
            };
            outcome.entry(mid).or_insert(state);
        }
        found.reverse();
        found
    }
}

fn replay(path: &Path, state: &mut State) -> io::Result<()> {
    let (mut at, mut skipped) = (0, 0);
    for line in BufReader::with_capacity(1 << 16, File::open(path)?).split(b'\n') {
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

/// errors.log, opened for each line: the log is rare (refusals are bounded), and a
/// file renamed away is then left alone.
struct ErrorsLog(PathBuf);

impl Write for ErrorsLog {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        private(&self.0).map_err(io::Error::other)?.write(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The logger: errors.log, and errors to stderr as well, since when the disk is full
/// the errors log cannot say so.
pub fn open_errors_log(dir: &Path) -> Result<(), String> {
    folder(dir)?;
    private(&dir.join(ERRORS))?;
    let mut config = ConfigBuilder::new();
    let config = config.set_time_format_rfc3339().set_thread_level(LevelFilter::Off).build();
    let errors = LineWriter::new(ErrorsLog(dir.join(ERRORS)));
    let loggers: Vec<Box<dyn SharedLogger>> = vec![
        WriteLogger::new(LevelFilter::Info, config.clone(), errors),
        WriteLogger::new(LevelFilter::Error, config, io::stderr()),
    ];
    CombinedLogger::init(loggers).map_err(|e| e.to_string())
}
