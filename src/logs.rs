//! The two log files. The messages log is the daemon's memory: one line per message
//! event, `STAMP JSON`, written before the event takes effect. `state.json` checkpoints
//! the state at a given length of that log, so that start-up replays only the tail.
//! The errors log gets every refusal and failure, through `log` + `simplelog`.

use crate::{clock, onion::OnionId, store::Event, store::Record, store::State};
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
        let (mut state, from) = Self::load_checkpoint(dir, ino, len);
        replay(&path, from, &mut state).map_err(|e| failed("read", &path, e))?;
        let mut journal = Journal { dir: dir.into(), file, ino, len, checkpointed: 0, checkpoint_size: 0, errors_fd };
        journal.checkpoint(&state)?;
        Ok((journal, state))
    }

    fn load_checkpoint(dir: &Path, ino: u64, len: u64) -> (State, u64) {
        let path = dir.join(CHECKPOINT);
        let checkpoint = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (State::default(), 0),
            read => read.map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())),
        };
        match checkpoint {
            Ok(Checkpoint { ino: i, len: l, state }) if i == ino && l <= len => return (state, l),
            // The log was rotated after the checkpoint: finish the old file first.
            Ok(Checkpoint { ino, len, mut state }) => {
                if rotated(dir, ino).is_some_and(|old| replay(&old, len, &mut state).is_ok()) {
                    return (state, 0);
                }
                warn!("{} does not match the messages log; rebuilding from the log", path.display());
            }
            Err(e) => warn!("{} is damaged ({e}); rebuilding from the messages log", path.display()),
        }
        (State::default(), 0)
    }

    /// A record counts only once this returns Ok; a failed write is undone so that the
    /// next record does not get glued to half a line.
    pub fn append(&mut self, rec: &Record) -> Result<(), String> {
        let mut line = format!("{} ", clock::stamp(rec.t)).into_bytes();
        serde_json::to_writer(&mut line, rec).map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(self.len);
            return Err(format!("cannot write the messages log: {e}"));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Checkpointing costs a write of the whole state; doing it once the log has grown by
    /// more than that keeps its cost proportional and bounds what a restart replays.
    pub fn checkpoint_due(&self) -> bool {
        self.len - self.checkpointed > self.checkpoint_size.max(16 << 20)
    }

    pub fn checkpoint(&mut self, state: &State) -> Result<(), String> {
        let path = self.dir.join(CHECKPOINT);
        let tmp = self.dir.join("state.json.tmp");
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
        self.checkpointed = self.len;
        self.checkpoint_size = bytes.len() as u64;
        Ok(())
    }

    /// SIGHUP, after logrotate moved the files: checkpoint the old messages log, then
    /// continue in new files.
    pub fn reopen(&mut self, state: &State) -> Result<(), String> {
        self.checkpoint(state)?;
        let errors = open_append(&self.dir.join(ERRORS)).map_err(|e| failed("open", &self.dir, e))?;
        // SAFETY: both descriptors are open; dup2 atomically points the logger's at the new file.
        if unsafe { libc::dup2(errors.as_raw_fd(), self.errors_fd) } < 0 {
            return Err(failed("reopen", &self.dir.join(ERRORS), io::Error::last_os_error()));
        }
        let path = self.dir.join(MESSAGES);
        self.file = open_append(&path).map_err(|e| failed("open", &path, e))?;
        let meta = self.file.metadata().map_err(|e| failed("read", &path, e))?;
        (self.ino, self.len) = (meta.ino(), meta.len());
        self.checkpoint(state)
    }

    /// The last `n` messages exchanged with `peer`, oldest first, with the delivery
    /// state of ours. Read from the end of the log, in a window that grows up to 16 MiB,
    /// so that the cost does not grow with the size of the log.
    pub fn history(&self, peer: &OnionId, n: usize) -> Vec<Value> {
        let needle = peer.as_str().as_bytes();
        let mut window = 1 << 20;
        loop {
            let start = self.len.saturating_sub(window);
            let mut buf = vec![0; (self.len - start) as usize];
            if self.file.read_exact_at(&mut buf, start).is_err() {
                return Vec::new();
            }
            // The window's first line may begin before it.
            let first = if start == 0 { 0 } else { buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1) };
            let (mut found, mut outcome) = (Vec::new(), HashMap::new());
            for line in buf[first..].rsplit(|&b| b == b'\n').filter(|l| l.windows(needle.len()).any(|w| w == needle)) {
                let Some(Record { t, ev }) = parse_line(line) else { continue };
                match ev {
                    Event::Recv { peer: p, msg, .. } if p == *peer => {
                        found.push(json!({"t": t, "dir": "in", "msg": msg}))
                    }
                    Event::Queued { peer: p, msg, mid, .. } if p == *peer => {
                        let state = outcome.get(&mid).copied().unwrap_or("queued");
                        found.push(json!({"t": t, "dir": "out", "msg": msg, "state": state}));
                    }
                    Event::Delivered { mid, .. } => _ = outcome.entry(mid).or_insert("delivered"),
                    Event::Unconfirmed { mid, .. } => _ = outcome.entry(mid).or_insert("unconfirmed"),
                    Event::Failed { mid, .. } => _ = outcome.entry(mid).or_insert("failed"),
                    _ => {}
                }
                if found.len() == n {
                    break;
                }
            }
            if found.len() == n || start == 0 || window >= 16 << 20 {
                found.reverse();
                return found;
            }
            window *= 4;
        }
    }
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let json = line.splitn(2, |&b| b == b' ').nth(1)?;
    serde_json::from_slice(json).ok()
}

fn replay(path: &Path, from: u64, state: &mut State) -> io::Result<()> {
    let (mut file, mut skipped) = (File::open(path)?, 0);
    file.seek(SeekFrom::Start(from))?;
    for line in BufReader::with_capacity(1 << 16, file).split(b'\n') {
        match parse_line(&line?) {
            Some(rec) => state.apply(rec.t, rec.ev),
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        warn!("{}: skipped {skipped} damaged lines", path.display());
    }
    Ok(())
}

/// Where logrotate put the file a checkpoint was taken of, if it is still in `dir`.
fn rotated(dir: &Path, ino: u64) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).ok()?;
    entries.flatten().find(|e| e.metadata().is_ok_and(|m| m.is_file() && m.ino() == ino)).map(|e| e.path())
}

/// simplelog keeps the file it is given; SIGHUP swaps what that descriptor refers to.
pub fn open_errors_log(dir: &Path) -> Result<RawFd, String> {
    fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
    let file = open_append(&dir.join(ERRORS)).map_err(|e| failed("open", dir, e))?;
    let fd = file.as_raw_fd();
    let config = simplelog::ConfigBuilder::new().set_time_format_rfc3339().set_thread_level(LevelFilter::Off).build();
    simplelog::WriteLogger::init(LevelFilter::Info, config, file).map_err(|e| e.to_string())?;
    Ok(fd)
}
