//! Files (PROTOCOL.md §10): `share serve`, `share offer` and `share get` through the
//! SOCKS stub, as a peer would fetch over Tor: whole files, resumed after kills of
//! either side, refusals that leave nothing, hostile names, idle connections, a full
//! disk.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;

fn share() -> Command {
    Command::new(env!("CARGO_BIN_EXE_share"))
}

/// `share serve` on a free port: the process and its port.
fn serve(dir: &Path, port: u16) -> (Child, u16) {
    let mut child = share()
        .args(["serve", "--dir", dir.to_str().unwrap(), &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{line:?}"));
    (child, port)
}

/// The sender's side: its onion id, its offers' folder, `share serve`, and the SOCKS stub
/// that routes its id to it.
struct Sender {
    id: String,
    dir: PathBuf,
    serve: Child,
    port: u16,
    proxy: Proxy,
}

impl Sender {
    fn start(name: &str, route: fn(u16) -> Route) -> Sender {
        let (dir, id) = (temp_dir(name), onion_id());
        let (serve, port) = serve(&dir.join("shares"), 0);
        let proxy = Proxy::start();
        proxy.route(&id, route(port));
        Sender { id, dir, serve, port, proxy }
    }

    /// A file of `size` random bytes in the sender's folder, offered to `peer`: its
    /// path and the offer line.
    fn offer(&self, name: &str, size: usize, extra: &[&str]) -> (PathBuf, String) {
        let path = self.dir.join(name);
        let bytes: Vec<u8> = (0..size / 32 + 1).flat_map(|_| random::<32>()).take(size).collect();
        std::fs::write(&path, bytes).unwrap();
        let shares = self.dir.join("shares");
        let out = share()
            .args(["offer", "--dir", shares.to_str().unwrap()])
            .args(extra)
            .args([&onion_id(), path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (path, String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    /// `share get` of `line`, from this sender, into `into`.
    fn get(&self, line: &str, into: &Path) -> Command {
        let mut get = share();
        get.args(["get", "--socks", &self.proxy.arg(), "--into", into.to_str().unwrap(), &self.id, line]);
        get
    }

    fn restart_serve(&mut self) {
        signal(self.serve.id(), libc::SIGKILL);
        let _ = self.serve.wait();
        (self.serve, self.port) = serve(&self.dir.join("shares"), self.port);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        signal(self.serve.id(), libc::SIGKILL);
        let _ = self.serve.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a folder holds, hidden files included.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn status(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn a_40_mb_file_is_offered_and_fetched_whole_and_the_offer_is_private() {
    let sender = Sender::start("files-whole", Route::To);
    let (path, line) = sender.offer("report.pdf", 40 << 20, &[]);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!((fields[0], fields[2], fields[4]), ("[file", "41943040", "report.pdf"), "{line}");
    let into = temp_dir("files-whole-into");
    let out = sender.get(&line, &into).output().unwrap();
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), into.join("report.pdf").to_str().unwrap());
    assert!(std::fs::read(into.join("report.pdf")).unwrap() == std::fs::read(&path).unwrap(), "bytes differ");
    assert_eq!(listing(&into), ["report.pdf"], "no partial file is left");
    // The same offer again: a number is added, nothing is overwritten.
    let out = sender.get(&line, &into).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), into.join("report (1).pdf").to_str().unwrap());
    // The offers' folder and its records are the user's alone.
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    let shares = sender.dir.join("shares");
    assert_eq!(mode(&shares), 0o700);
    let token = fields[1];
    assert_eq!(mode(&shares.join(format!("{token}.json"))), 0o600);
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn fetches_killed_midway_and_a_restarted_server_resume_and_send_little_twice() {
    let mut sender = Sender::start("files-resume", Route::Slow);
    let size = 32 << 20;
    let (path, line) = sender.offer("big.bin", size, &[]);
    let into = temp_dir("files-resume-into");
    let token = line.split(' ').nth(1).unwrap().to_string();
    let part = into.join(format!(".{token}.part"));
    let part_len = || std::fs::metadata(&part).map_or(0, |m| m.len());
    // Cut when the partial file passes eighths of the file, the first ones at random: the
    // fetch killed, or at the third the server killed and started again (what it had
    // sent still arrives). Each next run asks from where the last one stopped, and none
    // gets to the end, so the last one finishes.
    let eighth = size as u64 / 8;
    let first = 1 + u64::from_le_bytes(random()) % 2;
    for (round, at) in [first, 3, 4, 5].into_iter().enumerate() {
        let mut get = sender.get(&line, &into).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_for("the partial file to grow", 30, || part_len() >= at * eighth || !alive(get.id()));
        if round == 2 {
            sender.restart_serve();
        } else {
            signal(get.id(), libc::SIGKILL);
        }
        let _ = get.wait();
        assert!(part_len() < size as u64, "round {round} got to the end");
    }
    let out = sender.get(&line, &into).output().unwrap();
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert!(std::fs::read(into.join("big.bin")).unwrap() == std::fs::read(&path).unwrap(), "bytes differ");
    let relayed = sender.proxy.relayed.load(Ordering::Relaxed);
    eprintln!("3 fetches killed, the server killed once: {relayed} bytes sent for a file of {size}");
    // Resumed, not restarted: what was in flight at each cut, at most a few MB each.
    assert!(relayed < size as u64 + (6 << 20), "{relayed} bytes sent for {size}");
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn a_wrong_hash_an_unknown_token_an_expired_offer_and_a_changed_file_fail_and_leave_nothing() {
    let sender = Sender::start("files-refused", Route::To);
    let into = temp_dir("files-refused-into");
    let fetch = |line: &str| {
        let out = sender.get(line, &into).output().unwrap();
        assert_eq!(status(&out), 1, "{line}: {}", text(&out.stderr));
        assert!(listing(&into).is_empty(), "{line} left {:?}", listing(&into));
        text(&out.stderr)
    };
    let (_, line) = sender.offer("a.txt", 100_000, &[]);
    let sum = line.split(' ').nth(3).unwrap().trim_end_matches(']');
    let wrong = line.replace(sum, &"0".repeat(64));
    assert!(fetch(&wrong).contains("not the offer's SHA-256"));
    let unknown = line.replace(line.split(' ').nth(1).unwrap(), &"7".repeat(32));
    assert!(fetch(&unknown).contains("refused: unknown token"));
    let (_, expired) = sender.offer("b.txt", 1000, &["--days", "0"]);
    assert!(fetch(&expired).contains("refused: offer expired"));
    let (path, changed) = sender.offer("c.txt", 1000, &[]);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
    assert!(fetch(&changed).contains("refused: file changed"));
    std::fs::remove_file(&path).unwrap();
    assert!(fetch(&changed).contains("refused: file gone"));
    // A line that is not an offer, or a peer that is not an onion id: bad usage.
    let out = sender.get("hello", &into).output().unwrap();
    assert_eq!((status(&out), text(&out.stderr).contains("not an offer line")), (2, true));
    let out = share().args(["get", "nobody", &line]).output().unwrap();
    assert_eq!(status(&out), 2, "{}", text(&out.stderr));
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn hostile_names_land_inside_the_downloads_folder_under_safe_names() {
    let sender = Sender::start("files-names", Route::To);
    let (_, line) = sender.offer("x", 10, &[]);
    let head = line.split("] ").next().unwrap();
    let into = temp_dir("files-names-into");
    let long = "n".repeat(5000);
    let names = [
        ("../../x", "x"),
        (".bashrc", "bashrc"),
        (" . .profile", "profile"),
        ("/etc/passwd", "passwd"),
        ("a\u{1b}[31mred\u{7}\nb", "a[31mredb"),
        ("cod\u{202e}fdp.exe", "codfdp.exe"),
        ("..", "file"),
        (long.as_str(), &long[..100]),
    ];
    for (hostile, safe) in names {
        let out = sender.get(&format!("{head}] {hostile}"), &into).output().unwrap();
        assert_eq!(status(&out), 0, "{hostile:?}: {}", text(&out.stderr));
        let saved = PathBuf::from(text(&out.stdout).trim());
        assert_eq!(saved, into.join(safe), "{hostile:?}");
        std::fs::remove_file(saved).unwrap();
    }
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn a_thousand_idle_connections_never_keep_a_fetch_out_and_the_seventeenth_transfer_is_busy() {
    raise_fd_limit();
    let sender = Sender::start("files-idle", Route::To);
    let (path, line) = sender.offer("f.bin", 1 << 20, &[]);
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(("127.0.0.1", sender.port)).unwrap()).collect();
    let into = temp_dir("files-idle-into");
    let out = sender.get(&line, &into).output().unwrap();
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert!(std::fs::read(into.join("f.bin")).unwrap() == std::fs::read(&path).unwrap());
    drop(idle);
    // 16 transfers to readers that do not read hold the 16 places; the next is busy.
    let (_, big) = sender.offer("g.bin", 64 << 20, &[]);
    let token = big.split(' ').nth(1).unwrap();
    let request = format!("{{\"cmd\":\"GET\",\"token\":\"{token}\",\"from\":0}}");
    let get = || {
        let mut s = TcpStream::connect(("127.0.0.1", sender.port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut header = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut header).unwrap();
        (s, header)
    };
    let stalled: Vec<(TcpStream, String)> = (0..16).map(|_| get()).collect();
    assert!(stalled.iter().all(|(_, h)| h.contains("\"cmd\":\"FILE\"")), "{:?}", stalled[0].1);
    let (_, busy) = get();
    assert!(busy.contains("busy, try later"), "{busy}");
    drop(stalled);
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn a_full_disk_fails_with_its_reason_and_keeps_what_can_resume() {
    let sender = Sender::start("files-full", Route::To);
    let (path, line) = sender.offer("f.bin", 3 << 20, &[]);
    let into = temp_dir("files-full-into");
    // The disk is full at 1 MiB for this fetch: a write past it fails.
    let mut get = sender.get(&line, &into);
    let mut full = Command::new("prlimit");
    full.arg(format!("--fsize={}", 1 << 20)).arg(get.get_program()).args(get.get_args());
    let out = full.output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(status(&out), 1, "{err}");
    assert!(err.contains("File too large") && err.contains("run again to resume"), "{err}");
    let token = line.split(' ').nth(1).unwrap();
    assert_eq!(std::fs::metadata(into.join(format!(".{token}.part"))).unwrap().len(), 1 << 20);
    let out = get.output().unwrap();
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert!(std::fs::read(into.join("f.bin")).unwrap() == std::fs::read(&path).unwrap());
    std::fs::remove_dir_all(into).unwrap();
}

#[test]
fn serve_prints_how_far_each_transfer_got() {
    let mut sender = Sender::start("files-log", Route::To);
    let (_, line) = sender.offer("f.bin", 5000, &[]);
    let into = temp_dir("files-log-into");
    assert_eq!(status(&sender.get(&line, &into).output().unwrap()), 0);
    let token = line.split(' ').nth(1).unwrap();
    let mut out = String::new();
    let stdout = sender.serve.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut out).unwrap();
    assert_eq!(out.trim(), format!("sent {token} 0 5000 5000"));
    std::fs::remove_dir_all(into).unwrap();
}

/// `share serve` as scripts/run.sh starts it: its output appended to DIR/sent.log, where
/// our client reads what became of the offers.
fn serve_logged(dir: &Path) -> (Child, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("sent.log")).unwrap();
    let child = share().args(["serve", "--dir", dir.to_str().unwrap(), "0"]).stdout(log).spawn().unwrap();
    let mut port = 0;
    wait_for("share serve to listen", 10, || {
        let log = std::fs::read_to_string(dir.join("sent.log")).unwrap_or_default();
        port = log.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        port > 0
    });
    (child, port)
}

#[test]
fn our_client_offers_a_file_in_a_terminal_and_the_other_fetches_it_with_progress() {
    let (proxy, nodes) = network(2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let (shares, downloads) = (a.dir.join("shares"), b.dir.join("downloads"));
    let (mut serve, port) = serve_logged(&shares);
    // A's onion id on port 81 reaches its file server, through a link slow enough to watch.
    proxy.route(&format!("{}:81", a.id), Route::Slow(port));
    let file = a.dir.join("big.bin");
    let bytes: Vec<u8> = (0..(64 << 20) / 32).flat_map(|_| random::<32>()).collect();
    std::fs::write(&file, &bytes).unwrap();
    let env = |name: &str, value: &Path| format!("{name}={}", value.display());
    let socks = format!("TORCHAT_SOCKS={}", proxy.arg());
    let share_bin = format!("TORCHAT_SHARE={}", env!("CARGO_BIN_EXE_share"));
    let ta = Terminal::start_with(
        a.client,
        120,
        30,
        a.dir.join("home"),
        &[env("TORCHAT_SHARES", &shares), share_bin.clone(), socks.clone()],
    );
    let tb = Terminal::start_with(
        b.client,
        120,
        30,
        b.dir.join("home"),
        &[env("TORCHAT_DOWNLOADS", &downloads), share_bin, socks],
    );
    ta.wait("A connected", |s| s.contains("connected"));
    tb.wait("B connected", |s| s.contains("connected"));
    ta.type_line(&b.id);
    ta.type_line(&format!("/send {}", file.display()));
    ta.wait("the offer, shown as sent", |s| s.contains("> offered big.bin (67.1 MB)"));
    tb.type_line(&a.id);
    tb.wait("the offer, shown as an offer", |s| s.contains("< offers big.bin (67.1 MB): /get 1"));
    tb.type_line("/get 1");
    tb.wait("progress", |s| s.contains("/get 1 big.bin: [") && s.contains("MB/s"));
    let saved = downloads.join("big.bin");
    tb.wait("the saved path", |s| s.contains(&format!("/get 1 big.bin: saved {}", saved.display())));
    assert!(std::fs::read(&saved).unwrap() == bytes, "bytes differ");
    ta.wait("A sees it fetched", |s| s.contains("* fetched big.bin"));
    ta.type_line("/files");
    ta.wait("A's offers", |s| s.contains("big.bin (67.1 MB) to ") && s.contains(": fetched"));
    tb.type_line("/files");
    tb.wait("B's offers", |s| s.contains("1. big.bin (67.1 MB) from ") && s.contains(": saved "));
    // In a group: one offer to each other member, shown and fetched in the group.
    let small = a.dir.join("small.txt");
    std::fs::write(&small, "hello").unwrap();
    ta.type_line(&format!("/group team {}", b.id));
    ta.type_line(&format!("/send {}", small.display()));
    ta.wait("the group's offer, sent", |s| s.contains("me: offered small.txt (5 bytes)"));
    tb.wait("the group in B's panel", |s| s.contains("#team"));
    tb.type_line("/peer 1");
    tb.wait("the group's offer", |s| s.contains(": offers small.txt (5 bytes): /get 2"));
    tb.type_line("/get 2");
    tb.wait("saved", |s| s.contains(&format!("/get 2 small.txt: saved {}", downloads.join("small.txt").display())));
    assert_eq!(std::fs::read_to_string(downloads.join("small.txt")).unwrap(), "hello");
    signal(serve.id(), libc::SIGKILL);
    let _ = serve.wait();
}

#[test]
fn a_script_offers_a_file_with_the_exit_status_of_send() {
    let (_proxy, nodes) = network(1, &[]);
    let a = &nodes[0];
    let home = a.dir.join("home");
    let peer = onion_id();
    let file = a.dir.join("notes.txt");
    std::fs::write(&file, "notes").unwrap();
    let offer = |path: &Path| {
        let out = Command::new("python3")
            .args([&client(), &a.client.to_string(), "--send-file", &peer, path.to_str().unwrap()])
            .env("TORCHAT_HOME", &home)
            .env("TORCHAT_SHARES", a.dir.join("shares"))
            .env("TORCHAT_SHARE", env!("CARGO_BIN_EXE_share"))
            .output()
            .unwrap();
        (status(&out), text(&out.stdout), text(&out.stderr))
    };
    let (status, out, err) = offer(&file);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains(&format!("offered to {peer} as ")) && out.contains("] notes.txt"), "{out}");
    let offered = update(a.client, &peer);
    assert_eq!(offered["cmd"], "END", "the offer went to the peer, not to us: {offered}");
    let history = ask(a.client, "HISTORY", &peer, "1");
    assert!(history["lines"][0]["msg"].as_str().unwrap().starts_with("[file "), "{history}");
    let (status, _, err) = offer(&a.dir.join("missing.txt"));
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("No such file"), "{err}");
}
