//! Shared test helpers: a daemon process on ephemeral loopback ports in a temp dir, the
//! 2017 Python client's exact use of a socket, a peer's RECV, and a SOCKS5 proxy that
//! maps onion ids to local daemons and can refuse or hang a destination.
#![allow(dead_code)]

use serde_json::Value;
use sha3::{Digest, Sha3_256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes
}

/// A random, valid v3 onion id of a peer that does not sign: random bytes are all the id
/// checks need (they are a valid ed25519 key only half the time).
pub fn onion_id() -> String {
    onion_id_of(&random())
}

/// An onion service key made as Tor makes it: a random seed, SHA-512, the first half
/// clamped. Its signatures come from ed25519-dalek's plain `SigningKey`, a path that
/// does not share the daemon's (the expanded key and `raw_sign`).
pub struct Key {
    pub id: String,
    signing: ed25519_dalek::SigningKey,
}

impl Key {
    pub fn new() -> Key {
        let signing = ed25519_dalek::SigningKey::from_bytes(&random());
        Key { id: onion_id_of(signing.verifying_key().as_bytes()), signing }
    }

    /// Tor's `hs_ed25519_secret_key`, mode 0600 as Tor writes it.
    pub fn write(&self, path: &Path) {
        use sha2::{Digest, Sha512};
        let mut expanded: [u8; 64] = Sha512::digest(self.signing.as_bytes()).into();
        expanded[0] &= 248;
        expanded[31] = expanded[31] & 127 | 64;
        let bytes = [&b"== ed25519v1-secret: type0 ==\0\0\0"[..], &expanded].concat();
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }

    /// The bytes a RECV's `sig` covers (PROTOCOL 2.3).
    fn covered(&self, to: &str, ts: impl std::fmt::Display, mid: &str, msg: &str) -> Vec<u8> {
        format!("torchat-v1\0{to}\0{}\0{ts}\0{mid}\0{msg}", self.id).into_bytes()
    }

    pub fn sign(&self, to: &str, ts: u64, mid: &str, msg: &str) -> String {
        use base64::Engine;
        use ed25519_dalek::Signer;
        base64::engine::general_purpose::STANDARD.encode(self.signing.sign(&self.covered(to, ts, mid, msg)).to_bytes())
    }

    /// Whether `body`, a RECV this key's daemon sent to `to`, carries a valid signature.
    pub fn signed(&self, to: &str, body: &Value) -> bool {
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD.decode(body["sig"].as_str().unwrap_or_default());
        let Ok(Ok(sig)) = sig.map(|s| ed25519_dalek::Signature::from_slice(&s)) else { return false };
        let (ts, mid, msg) = (&body["ts"], body["mid"].as_str().unwrap(), body["msg"].as_str().unwrap());
        self.signing.verifying_key().verify_strict(&self.covered(to, ts, mid, msg), &sig).is_ok()
    }

    /// A signed RECV for `to`, as our daemon writes it, with the time stamp `ts`.
    pub fn recv(&self, to: &str, msg: &str, ts: u64) -> Value {
        let mid: String = random::<16>().iter().map(|b| format!("{b:02x}")).collect();
        let sig = self.sign(to, ts, &mid, msg);
        serde_json::json!({"cmd": "RECV", "id": self.id, "msg": msg, "portno": 80, "mid": mid, "ts": ts, "sig": sig})
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn onion_id_of(key: &[u8; 32]) -> String {
    let sum = Sha3_256::new().chain_update(b".onion checksum").chain_update(key).chain_update([3u8]).finalize();
    let mut raw = key.to_vec();
    raw.extend_from_slice(&[sum[0], sum[1], 3]);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits: Vec<bool> = raw.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
    let b32: String = bits.chunks(5).map(|c| alphabet[c.iter().fold(0, |a, &b| a << 1 | b as usize)] as char).collect();
    format!("{b32}.onion")
}

pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("torchat-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `cond` every 10 ms until it holds; panics after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh temp dir with a node's onion key and hostname file, as Tor leaves them.
pub fn node_dir(name: &str) -> (PathBuf, Key) {
    let dir = temp_dir(name);
    let key = Key::new();
    key.write(&dir.join("hs_ed25519_secret_key"));
    std::fs::write(dir.join("hostname"), format!("{}\n", key.id)).unwrap();
    (dir, key)
}

pub struct Daemon {
    pub dir: PathBuf,
    pub id: String,
    pub client: u16,
    pub peer: u16,
    pub child: Option<Child>,
    pub pid: u32,
    args: Vec<String>,
    /// The onion key, when the test made it.
    pub key: Option<Key>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_main")
}

impl Daemon {
    /// A daemon with its own onion id and key in a fresh temp dir.
    pub fn start(name: &str, args: &[&str]) -> Daemon {
        let (dir, key) = node_dir(name);
        let mut d = Daemon::start_in(dir, key.id.clone(), args.iter().map(|s| s.to_string()).collect());
        d.key = Some(key);
        d
    }

    pub fn start_in(dir: PathBuf, id: String, args: Vec<String>) -> Daemon {
        let (child, pid, client, peer) = spawn(&dir, &args, 0, 0);
        Daemon { dir, id, client, peer, child, pid, args, key: None }
    }

    pub fn messages_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/messages.log")).unwrap_or_default()
    }

    pub fn errors_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/errors.log")).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and starts it again on the same ports, folder and id.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    pub fn restart(&mut self) {
        (self.child, self.pid, self.client, self.peer) = spawn(&self.dir, &self.args, self.client, self.peer);
    }

    pub fn kill(&mut self) {
        signal(self.pid, libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Waits for the process (not detached) to end by itself; returns its exit status.
    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.child.take().expect("a child process");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "daemon did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() || alive(self.pid) {
            self.kill();
        }
        // A failed test leaves its folder (logs, stderr.txt) to look at.
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `n` daemons that reach each other through one proxy.
pub fn network(n: usize, extra: &[&str]) -> (Proxy, Vec<Daemon>) {
    let proxy = Proxy::start();
    let socks = proxy.arg();
    // Daemons that write to each other without having been written to are strangers
    // to each other (PROTOCOL.md §5); these tests are about delivery, not that bound.
    let mut args = vec!["--socks", socks.as_str()];
    if !extra.contains(&"--stranger-unread") {
        args.extend_from_slice(&["--stranger-unread", "100000"]);
    }
    args.extend_from_slice(extra);
    let daemons: Vec<Daemon> = (0..n).map(|i| Daemon::start(&format!("node{i}"), &args)).collect();
    for d in &daemons {
        proxy.route(&d.id, Route::To(d.peer));
    }
    (proxy, daemons)
}

/// Room for thousands of sockets in this test process.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(30000);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn signal(pid: u32, sig: i32) {
    if pid > 0 {
        unsafe { libc::kill(pid as i32, sig) };
    }
}

pub fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); /proc tells a running process from one.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Starts the binary with --hostname/--logs in `dir` and reads the ports it bound from
/// its first line of output. Detached (-d), the process left is the parent's child, and
/// its PID comes from the second line.
fn spawn(dir: &Path, args: &[String], client: u16, peer: u16) -> (Option<Child>, u32, u16, u16) {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr.txt")).unwrap();
    let mut child = Command::new(bin())
        .args(["--hostname", dir.join("hostname").to_str().unwrap(), "--logs", dir.join("logs").to_str().unwrap()])
        .args(["--peer-port", &peer.to_string()])
        .args(args)
        .arg(client.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = |what: &str| -> u16 {
        let rest = line.split(what).nth(1).unwrap_or_else(|| panic!("no ready line: {line:?}"));
        rest.split(':').nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let (client, peer) = (port("clients on "), port("peers on "));
    if !args.iter().any(|a| a == "-d") {
        let pid = child.id();
        return (Some(child), pid, client, peer);
    }
    let mut detached = String::new();
    out.read_line(&mut detached).unwrap();
    assert!(child.wait().unwrap().success(), "the parent of a detached daemon exits 0");
    let pid = detached.trim().strip_prefix("detached: pid ").expect("a 'detached: pid N' line").parse().unwrap();
    (None, pid, client, peer)
}

fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => c.encode_utf16(&mut [0; 2]).iter().for_each(|u| out.push_str(&format!("\\u{u:04x}"))),
        }
    }
    out + "\""
}

/// Exactly what the 2017 client sends: json.dumps (default separators, ensure_ascii) of
/// id, portno, msg, cmd, date in that order.
pub fn py_json(cmd: &str, id: &str, portno: u16, msg: &str) -> String {
    format!(
        "{{\"id\": {}, \"portno\": {portno}, \"msg\": {}, \"cmd\": {}, \"date\": \"[14:03] \"}}",
        py_str(id),
        py_str(msg),
        py_str(cmd)
    )
}

/// The client's HOST, GET_PEERS, UPDATE: send, then ONE recv(5000), then json.loads.
pub fn ask(port: u16, cmd: &str, id: &str, msg: &str) -> Value {
    ask_raw(port, py_json(cmd, id, 8000, msg).as_bytes())
}

pub fn ask_raw(port: u16, bytes: &[u8]) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 5000];
    let n = s.read(&mut buf).unwrap();
    assert!(n <= 4096, "reply of {n} bytes");
    serde_json::from_slice(&buf[..n]).unwrap_or_else(|e| panic!("reply not JSON in one read ({e}): {:?}", &buf[..n]))
}

/// The client's SEND and EXIT: send, and drop the socket without reading.
pub fn tell(port: u16, cmd: &str, id: &str, portno: u16, msg: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(py_json(cmd, id, portno, msg).as_bytes()).unwrap();
}

pub fn update(port: u16, peer: &str) -> Value {
    ask(port, "UPDATE", "localhost", peer)
}

pub fn send(port: u16, peer: &str, text: &str) {
    tell(port, "SEND", peer, 80, text)
}

/// A 2017 peer's message as an UPDATE reply shows it: marked, since it is not signed.
pub fn shown(text: &str) -> String {
    format!("[unverified] {text}")
}

/// All UPDATE replies for `peer` until END.
pub fn drain(port: u16, peer: &str) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        let reply = update(port, peer);
        if reply["cmd"] == "END" {
            return texts;
        }
        texts.push(reply["msg"].as_str().unwrap().to_string());
    }
}

/// What a 2017 peer writes (four keys, alphabetical), then the reply until EOF.
pub fn recv_from(peer_port: u16, from: &str, text: &str) -> Value {
    recv_raw(peer_port, &serde_json::json!({"cmd": "RECV", "id": from, "msg": text, "portno": 80}))
}

pub fn recv_raw(peer_port: u16, body: &Value) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", peer_port)).unwrap();
    s.write_all(body.to_string().as_bytes()).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    serde_json::from_slice(&reply).unwrap_or(Value::Null)
}

/// Reads until EOF or error; what was read.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[derive(Clone, Copy)]
pub enum Route {
    To(u16),
    /// To a port, at about 30 MB/s: a slow link, so that a transfer can be cut midway.
    Slow(u16),
    Refuse,
    Hang,
}

/// A SOCKS5 proxy standing in for Tor: onion ids map to local ports; an unknown id gets
/// "host unreachable", as from Tor.
pub struct Proxy {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    pub connects: Arc<Mutex<HashMap<String, usize>>>,
    /// Bytes relayed from destinations to clients, in all.
    pub relayed: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let connects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let relayed: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let (r, c, b) = (routes.clone(), connects.clone(), relayed.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, c, b) = (r.clone(), c.clone(), b.clone());
                thread::spawn(move || serve_socks(conn, &r, &c, &b));
            }
        });
        Proxy { addr, routes, connects, relayed }
    }

    pub fn route(&self, host: &str, route: Route) {
        self.routes.lock().unwrap().insert(host.to_string(), route);
    }

    pub fn connects(&self, host: &str) -> usize {
        self.connects.lock().unwrap().get(host).copied().unwrap_or(0)
    }

    pub fn arg(&self) -> String {
        self.addr.to_string()
    }
}

fn serve_socks(
    mut c: TcpStream, routes: &Mutex<HashMap<String, Route>>, connects: &Mutex<HashMap<String, usize>>,
    relayed: &std::sync::atomic::AtomicU64,
) {
    // Its replies are small writes in a row: without this, Nagle meets delayed ACKs.
    let _ = c.set_nodelay(true);
    let mut head = [0u8; 2];
    if c.read_exact(&mut head).is_err() {
        return;
    }
    let mut methods = vec![0u8; head[1] as usize];
    let _ = c.read_exact(&mut methods);
    let _ = c.write_all(&[5, 0]);
    let mut req = [0u8; 5];
    if c.read_exact(&mut req).is_err() || req[..4] != [5, 1, 0, 3] {
        return;
    }
    let mut host = vec![0u8; req[4] as usize + 2];
    let _ = c.read_exact(&mut host);
    let port = u16::from_be_bytes([host[host.len() - 2], host[host.len() - 1]]);
    let host = String::from_utf8_lossy(&host[..host.len() - 2]).to_string();
    *connects.lock().unwrap().entry(host.clone()).or_default() += 1;
    // A route for HOST:PORT comes before one for HOST.
    let routes = routes.lock().unwrap();
    let route = routes.get(&format!("{host}:{port}")).or(routes.get(&host)).copied();
    drop(routes);
    let reply = |code: u8| [5, code, 0, 1, 127, 0, 0, 1, 0, 0];
    match route {
        None => _ = c.write_all(&reply(4)),
        Some(Route::Refuse) => _ = c.write_all(&reply(5)),
        Some(Route::Hang) => _ = c.read(&mut [0u8; 1]),
        Some(Route::To(port) | Route::Slow(port)) => match TcpStream::connect(("127.0.0.1", port)) {
            Err(_) => _ = c.write_all(&reply(5)),
            Ok(target) => {
                let _ = c.write_all(&reply(0));
                let (mut c2, mut t2) = (c.try_clone().unwrap(), target.try_clone().unwrap());
                let up = thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut t2);
                    let _ = t2.shutdown(Shutdown::Write);
                });
                let (mut t, mut c) = (target, c);
                let slow = matches!(route, Some(Route::Slow(_)));
                let mut buf = vec![0u8; if slow { 1 << 16 } else { 1 << 20 }];
                while let Ok(n @ 1..) = t.read(&mut buf) {
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    relayed.fetch_add(n as u64, Ordering::Relaxed);
                    if slow {
                        thread::sleep(Duration::from_millis(2)); // the link's pace, not a wait
                    }
                }
                let _ = c.shutdown(Shutdown::Write);
                let _ = up.join();
            }
        },
    }
}

pub fn client() -> String {
    format!("{}/scripts/torchat.py", env!("CARGO_MANIFEST_DIR"))
}

/// A tmux server of this test's own, running the client in one window, with its own
/// folder for what the client keeps (TORCHAT_HOME). When the client ends, the pane says
/// how, and stays open to be read.
pub struct Terminal {
    socket: String,
    pub home: PathBuf,
    /// Where the client looks for this node's Tor unless the test says (TORCHAT_SOCKS):
    /// a port that answers, so that the status line says nothing of Tor.
    _tor: TcpListener,
}

impl Terminal {
    pub fn start(port: u16, cols: u16, rows: u16) -> Terminal {
        Terminal::start_in(port, cols, rows, temp_dir("client-home"))
    }

    pub fn start_in(port: u16, cols: u16, rows: u16, home: PathBuf) -> Terminal {
        Terminal::start_with(port, cols, rows, home, &[])
    }

    /// With more of the environment set for the client (`NAME=VALUE`, no blanks).
    pub fn start_with(port: u16, cols: u16, rows: u16, home: PathBuf, env: &[String]) -> Terminal {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!("torchat-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let tor = TcpListener::bind("127.0.0.1:0").unwrap();
        let socks = format!("TORCHAT_SOCKS={}", tor.local_addr().unwrap());
        let (client, dir, env) = (client(), home.display(), env.join(" "));
        let script =
            format!("TORCHAT_HOME={dir} {socks} {env} python3 {client} {port}; echo \"client exited: $?\"; exec cat");
        let t = Terminal { socket, home, _tor: tor };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        t.tmux(&["-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", &cols, "-y", &rows])
            .args(["-e", "LANG=C.UTF-8", "sh", "-c", &script])
            .status()
            .unwrap();
        t
    }

    pub fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-u", "-L", &self.socket]).args(args).stdout(Stdio::piped()).stderr(Stdio::null());
        c
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "main"]).output().unwrap().stdout).into()
    }

    pub fn type_line(&self, text: &str) {
        assert!(self.tmux(&["send-keys", "-t", "main", "-l", text]).status().unwrap().success());
        self.key("Enter");
    }

    pub fn key(&self, key: &str) {
        assert!(self.tmux(&["send-keys", "-t", "main", key]).status().unwrap().success());
    }

    /// Polls the screen until `cond` holds; the screen then.
    pub fn wait(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cond(&screen) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{screen}");
            std::thread::sleep(std::time::Duration::from_millis(50));
            screen = self.screen();
        }
        screen
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).status();
    }
}

/// The client's non-interactive mode, keeping what it keeps in `home`: its exit status,
/// stdout and stderr.
pub fn run_client(home: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new("python3")
        .arg(client())
        .args(args)
        .env("TORCHAT_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let std::process::Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (status.code().unwrap_or(-1), text(stdout), text(stderr))
}
