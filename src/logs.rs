//! The two log files. The messages log is the daemon's memory: one line per message
//! event, `STAMP JSON`, written before the event takes effect; unread messages are read
//! back from it. `state.json` checkpoints the state at a given length of that log, so
//! that start-up replays only the tail. The errors log gets every refusal and failure,
//! through `log` + `simplelog`.

use crate::{clock, store::Event, store::Record, store::State};
use log::{warn, LevelFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::{fd::AsRawFd, fd::RawFd, unix::fs::FileExt, unix::fs::MetadataExt};
use std::{collections::HashMap, path::Path, path::PathBuf};

const MESSAGES: &str = "messages.log";
const CHECKPOINT: &str = "state.json";
const ERRORS: &str = "errors.log";
/// Longer than any record: a text's limit, a refusal's reason and the keys.
const MAX_LINE: usize = 16 << 10;

#[derive(Serialize, Deserialize)]
struct Checkpoint<S> {
    ino: u64,
    len: u64,
    state: S,
}

pub struct Journal {
    dir: PathBuf,
    file: File,
    ino: u64,
    len: u64,
    checkpointed: u64,
    checkpoint_size: u64,
    errors_fd: RawFd,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).open(path)
}

fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

impl Journal {
    /// Opens the messages log in `dir` and rebuilds the state: the last checkpoint plus
    /// the log lines written after it.
    pub fn open(dir: &Path, errors_fd: RawFd) -> Result<(Journal, State), String> {
        fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
        let path = dir.join(MESSAGES);
        let mut file = open_append(&path).map_err(|e| failed("open", &path, e))?;
        let meta = file.metadata().map_err(|e| failed("read", &path, e))?;
        let (ino, mut len) = (meta.ino(), meta.len());
        let mut last = [0u8];
        // A crash can cut the last line; end it so that the next record starts afresh.
        if len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
            file.write_all(b"\n").map_err(|e| failed("write", &path, e))?;
            len += 1;
        }
        let mut journal = Journal { dir: dir.into(), file, ino, len, checkpointed: 0, checkpoint_size: 0, errors_fd };
        let (mut state, from, rotated) = journal.load_checkpoint();
        match rotated {
            // The state points into the rotated file: carry what it needs to this one.
            Some(old) => journal.carry(&old, &mut state)?,
            None => replay(&path, from, &mut state).map_err(|e| failed("read", &path, e))?,
        }
        journal.checkpoint(&state)?;
        Ok((journal, state))
    }

    fn load_checkpoint(&self) -> (State, u64, Option<File>) {
        let path = self.dir.join(CHECKPOINT);
        let checkpoint = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (State::default(), 0, None),
            read => read.map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())),
        };
        match checkpoint {
            Ok(Checkpoint { ino, len, state }) if ino == self.ino && len <= self.len => return (state, len, None),
            // logrotate renamed the log while the daemon was down, or before its SIGHUP.
            Ok(Checkpoint { ino, len, mut state }) => match rotated(&self.dir, ino) {
                Some((old, file)) if replay(&old, len, &mut state).is_ok() => return (state, 0, Some(file)),
                _ => warn!("{} does not match the messages log; rebuilding from the log", path.display()),
            },
            Err(e) => warn!("{} is damaged ({e}); rebuilding from the messages log", path.display()),
        }
        (State::default(), 0, None)
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
        self.len += line.len() as u64;
        Ok(self.len - line.len() as u64)
    }

    pub fn read(&self, at: u64) -> Result<Record, String> {
        read_record(&self.file, at)
    }

    /// Checkpointing costs a write of the whole state; doing it once the log has grown by
    /// more than that keeps its cost proportional and bounds what a restart replays.
    pub fn checkpoint_due(&self) -> bool {
        self.len.saturating_sub(self.checkpointed) > self.checkpoint_size.max(16 << 20)
    }

    pub fn checkpoint(&mut self, state: &State) -> Result<(), String> {
        // Set first: a checkpoint that fails (disk full) is tried again after as much
        // growth, not at every event; until then a start replays more, and that is all.
        self.checkpointed = self.len;
        let (path, tmp) = (self.dir.join(CHECKPOINT), self.dir.join("state.json.tmp"));
        let bytes =
            serde_json::to_vec(&Checkpoint { ino: self.ino, len: self.len, state }).map_err(|e| e.to_string())?;
        let write = || -> io::Result<()> {
            self.file.sync_data()?;
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| failed("write", &path, e))?;
        self.checkpoint_size = bytes.len() as u64;
        Ok(())
    }

    /// SIGHUP. After logrotate renamed the messages log, the new one starts with a copy
    /// of every record still unread or unsent, marked `carried`: each log file holds all
    /// the daemon needs, and the old one can be compressed or deleted.
    pub fn reopen(&mut self, state: &mut State) -> Result<(), String> {
        self.checkpoint(state)?;
        let errors = open_append(&self.dir.join(ERRORS)).map_err(|e| failed("open", &self.dir, e))?;
        // SAFETY: both descriptors are open; dup2 atomically points the logger's at the new file.
        if unsafe { libc::dup2(errors.as_raw_fd(), self.errors_fd) } < 0 {
            return Err(failed("reopen", &self.dir.join(ERRORS), io::Error::last_os_error()));
        }
        let path = self.dir.join(MESSAGES);
        let file = open_append(&path).map_err(|e| failed("open", &path, e))?;
        let meta = file.metadata().map_err(|e| failed("read", &path, e))?;
        if meta.ino() != self.ino {
            let old = std::mem::replace(&mut self.file, file);
            (self.ino, self.len) = (meta.ino(), meta.len());
            self.carry(&old, state)?;
        }
        self.checkpoint(state)
    }

    fn carry(&mut self, from: &File, state: &mut State) -> Result<(), String> {
        state.relocate(|at| self.append(&Record { carried: true, prev: None, ..read_record(from, at)? }))?;
        for (peer, queue) in state.outbox() {
            for o in queue {
                let ev = Event::Queued { peer: peer.clone(), mid: o.mid.clone(), port: o.port, msg: o.text.clone() };
                self.append(&Record { t: o.t, ev, carried: true, prev: None })?;
            }
        }
        Ok(())
    }

    /// The last `n` messages of a conversation, oldest first, with the delivery state of
    /// ours: walked backwards from its latest record, `at`, along `prev`.
    pub fn history(&self, mut at: Option<u64>, n: usize) -> Vec<Value> {
        let (mut found, mut outcome) = (Vec::new(), HashMap::new());
        while let (Some(pos), true) = (at, found.len() < n) {
            let Ok(Record { t, ev, prev, .. }) = self.read(pos) else { break };
            // A chain only goes back: anything else is damage, not a loop to follow.
            at = prev.filter(|&p| p < pos);
            match ev {
                Event::Recv { msg, verified, .. } => {
                    found.push(json!({"t": t, "dir": "in", "msg": msg, "verified": verified}))
                }
                Event::Queued { msg, mid, .. } => {
                    let state = outcome.remove(&mid).unwrap_or("queued".into());
                    found.push(json!({"t": t, "dir": "out", "msg": msg, "state": state}));
                }
                Event::Delivered { mid, .. } => _ = outcome.entry(mid).or_insert("delivered".into()),
                Event::Unconfirmed { mid, .. } => _ = outcome.entry(mid).or_insert("unconfirmed".into()),
                Event::Failed { mid, why, .. } => _ = outcome.entry(mid).or_insert(format!("failed: {why}")),
                Event::Read { .. } => {}
            }
        }
        found.reverse();
        found
    }
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let json = line.splitn(2, |&b| b == b' ').nth(1)?;
    serde_json::from_slice(json).ok()
}

fn read_record(file: &File, at: u64) -> Result<Record, String> {
    let mut buf = vec![0; MAX_LINE];
    let n = file.read_at(&mut buf, at).map_err(|e| format!("cannot read the messages log: {e}"))?;
    let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
    parse_line(line).ok_or_else(|| format!("the messages log has no record at {at}"))
}

fn replay(path: &Path, from: u64, state: &mut State) -> io::Result<()> {
    let (mut file, mut skipped, mut at) = (File::open(path)?, 0, from);
    file.seek(SeekFrom::Start(from))?;
    for line in BufReader::with_capacity(1 << 16, file).split(b'\n') {
        let line = line?;
        match parse_line(&line) {
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

/// Where logrotate put the file a checkpoint was taken of, if it is still in `dir`.
fn rotated(dir: &Path, ino: u64) -> Option<(PathBuf, File)> {
    let entries = fs::read_dir(dir).ok()?;
    let path = entries.flatten().find(|e| e.metadata().is_ok_and(|m| m.is_file() && m.ino() == ino))?.path();
    Some((path.clone(), File::open(path).ok()?))
}

/// simplelog keeps the file it is given; SIGHUP swaps what that descriptor refers to.
pub fn open_errors_log(dir: &Path) -> Result<RawFd, String> {
    fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
    let file = open_append(&dir.join(ERRORS)).map_err(|e| failed("open", dir, e))?;
    let fd = file.as_raw_fd();
    let config = simplelog::ConfigBuilder::new().set_time_format_rfc3339().set_thread_level(LevelFilter::Off).build();
    // Errors go to stderr as well: when the disk is full, the errors log cannot say so.
    let stderr = simplelog::WriteLogger::new(LevelFilter::Error, config.clone(), std::io::stderr());
    let loggers: Vec<Box<dyn simplelog::SharedLogger>> =
        vec![simplelog::WriteLogger::new(LevelFilter::Info, config, file), stderr];
    simplelog::CombinedLogger::init(loggers).map_err(|e| e.to_string())?;
    Ok(fd)
}
