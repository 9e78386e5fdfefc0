//! The two log files. The messages log is the daemon's memory and the conversations'
//! history, never rotated: one line per event, `STAMP JSON`, appended before the event
//! takes effect; start-up replays it into the state, and unread messages are read back
//! from it. The errors log gets every refusal and failure, through `log` and
//! `simplelog`, a line at a time. Both are the user's alone (PROTOCOL.md §7).

use crate::wire::{self, Record};
use crate::{node::state::State, sys};
use log::{warn, LevelFilter};
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
use std::fs::{self, File, Permissions};
use std::io::{self, BufRead, BufReader, LineWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::{fmt::Display, iter, path::Path};

const MESSAGES: &str = "messages.log";
const ERRORS: &str = "errors.log";
/// Longer than any record this daemon writes or wrote: a damaged log is not read
/// into memory whole.
const MAX_LINE: u64 = 1 << 20;

pub struct Journal {
    file: File,
    len: u64,
    /// The log's length at its last fdatasync.
    synced: u64,
}

fn failed(what: &str, path: &Path, e: impl Display) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Opened to append and read; 0600, whatever the umask and whoever made it.
fn private(path: &Path) -> Result<File, String> {
    let file = File::options().create(true).append(true).read(true).mode(0o600).open(path);
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
    /// Opens the messages log in `dir` and rebuilds the state from it: the state that
    /// every record makes, and where the next record goes, past the last line's
    /// newline, whether or not a crash cut it off.
    pub fn open(dir: &Path) -> Result<(Journal, State), String> {
        folder(dir)?;
        let path = dir.join(MESSAGES);
        let mut file = private(&path)?;
        let (mut state, mut end, mut skipped) = (State::default(), 0, 0);
        for line in BufReader::with_capacity(1 << 16, &file).split(b'\n') {
            let line = line.map_err(|e| failed("read", &path, e))?;
            match wire::record(&line) {
                Some(rec) => state.apply(end, rec),
                None => skipped += 1,
            }
            end += line.len() as u64 + 1;
        }
        if skipped > 0 {
            warn!("{MESSAGES}: skipped {skipped} damaged lines");
        }
        let len = file.metadata().map_err(|e| failed("read", &path, e))?.len();
        // A crash can cut the last line: end it, so that the next record starts afresh.
        if end > len {
            file.write_all(b"\n").map_err(|e| failed("write", &path, e))?;
        }
        Ok((Journal { file, len: end, synced: 0 }, state))
    }

    /// A record counts only once this returns where it now stands; a failed write is
    /// undone so that the next record does not get glued to half a line.
    pub fn append(&mut self, rec: &Record) -> Result<u64, String> {
        let json = serde_json::to_string(rec).expect("a record is plain data");
        let line = format!("{} {json}\n", sys::stamp(rec.t));
        if let Err(e) = self.file.write_all(line.as_bytes()) {
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

    /// The record at `at`, read exactly: up to its newline.
    pub fn read(&self, at: u64) -> Result<Record, String> {
        let (mut file, mut line) = (&self.file, Vec::new());
        let failed = |e: io::Error| format!("cannot read the messages log: {e}");
        file.seek(SeekFrom::Start(at)).map_err(failed)?;
        BufReader::new(file).take(MAX_LINE).read_until(b'\n', &mut line).map_err(failed)?;
        wire::record(&line).ok_or_else(|| format!("the messages log has no record at {at}"))
    }

    /// A conversation's records, newest first: from its latest, `at`, along `prev`.
    pub fn back(&self, mut at: Option<u64>) -> impl Iterator<Item = Record> + '_ {
        iter::from_fn(move || {
            let pos = at?;
            let rec = self.read(pos).ok()?;
            // A chain only goes back: anything else is damage, not a loop to follow.
            at = rec.prev.filter(|&p| p < pos);
            Some(rec)
        })
    }
}

/// The logger: errors.log, and errors to stderr as well, since when the disk is full
/// the errors log cannot say so. It is only ever appended to, so logrotate's
/// `copytruncate` rotates it with nothing for the daemon to do.
pub fn open_errors_log(dir: &Path) -> Result<(), String> {
    folder(dir)?;
    let errors = LineWriter::new(private(&dir.join(ERRORS))?);
    let config = ConfigBuilder::new().set_time_format_rfc3339().build();
    let info: Box<dyn SharedLogger> = WriteLogger::new(LevelFilter::Info, config.clone(), errors);
    let error = WriteLogger::new(LevelFilter::Error, config, io::stderr());
    CombinedLogger::init(vec![info, error]).map_err(|e| e.to_string())
}
