//! End to end over real Tor: a private Tor network on loopback (tests/tornet.py), two
//! nodes started the way a user starts one (scripts/run.sh), talking through real v3
//! onion services. Needs `tor` and `tor-gencert`: it fails, not skips, without them.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Stops every Tor and daemon this test started, also when it fails.
struct Cleanup(PathBuf, Vec<u32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.1.iter().for_each(|&pid| signal(pid, libc::SIGKILL));
        for pidfile in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(pidfile.path().join("tor.pid")) {
                signal(pid.trim().parse().unwrap_or(0), libc::SIGKILL);
            }
        }
        let _ = Command::new("python3").arg(repo("tests/tornet.py")).arg(&self.0).arg("--stop").status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct Node {
    id: String,
    client: u16,
    dir: PathBuf,
    child: Child,
}

/// scripts/run.sh for real, joined to the private network; returns once it serves.
fn node(top: &Path, name: &str, port: u16, socks: u16, cleanup: &mut Cleanup) -> Node {
    node_with(top, name, port, socks, &[], &top.join("client.torrc"), cleanup)
}

/// The same with run.sh's `flags` and the extra torrc lines in `torrc`.
fn node_with(
    top: &Path, name: &str, port: u16, socks: u16, flags: &[&str], torrc: &Path, cleanup: &mut Cleanup,
) -> Node {
    let dir = top.join(name);
    let mut child = Command::new(repo("scripts/run.sh"))
        .args(flags)
        .args(["--logs", dir.join("logs").to_str().unwrap(), &port.to_string()])
        .env("TORCHAT_DIR", &dir)
        .env("TORCHAT_SOCKS", socks.to_string())
        .env("TORCHAT_TORRC", torrc)
        .env("TORCHAT_MAIN", bin())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(top.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap();
    cleanup.1.push(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines.next().expect("run.sh ended before the daemon served").unwrap();
        if let Some(rest) = line.strip_prefix("TORchat ") {
            break rest.split(':').next().unwrap().to_string();
        }
    };
    // Detached, the daemon is not run.sh's process: the next line names it.
    if flags.contains(&"-d") {
        let line = lines.next().expect("a 'detached: pid N' line").unwrap();
        cleanup.1.push(line.strip_prefix("detached: pid ").expect("a 'detached: pid N' line").parse().unwrap());
    }
    Node { id, client: port, dir, child }
}

/// The 2017 manual flow: a Tor of its own (it stays up), then the daemon beside it.
fn manual_node(top: &Path, name: &str, port: u16, socks: u16, cleanup: &mut Cleanup) -> Node {
    let dir = top.join(name);
    std::fs::create_dir_all(dir.join("hs")).unwrap();
    std::fs::set_permissions(dir.join("hs"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let d = dir.display();
    let torrc = format!(
        "DataDirectory {d}/data\nPidFile {d}/tor.pid\nLog notice file {d}/tor.log\nRunAsDaemon 1\n\
         SocksPort 127.0.0.1:{socks}\nHiddenServiceDir {d}/hs\nHiddenServicePort 80 127.0.0.1:{}\n{}\n{}",
        port + 1,
        defenses(&std::fs::read_to_string(repo("tor/torrc")).unwrap()).join("\n"),
        std::fs::read_to_string(top.join("client.torrc")).unwrap()
    );
    std::fs::write(dir.join("torrc"), torrc).unwrap();
    assert!(Command::new("tor").arg("-f").arg(dir.join("torrc")).stdout(Stdio::null()).status().unwrap().success());
    wait_for("the manual tor", 120, || {
        let log = std::fs::read_to_string(dir.join("tor.log")).unwrap_or_default();
        log.contains("Bootstrapped 100%") && dir.join("hs/hostname").exists()
    });
    start_daemon(dir, port, socks, cleanup)
}

/// The lines of a torrc that turn on Tor's defenses for onion services (PROTOCOL.md §9).
fn defenses(torrc: &str) -> Vec<&str> {
    let ours = ["EnableIntroDoSDefense 1", "MaxStreams 100", "MaxStreamsCloseCircuit 1", "PoWDefensesEnabled 1"];
    torrc.lines().filter(|l| ours.iter().any(|d| l.strip_prefix("HiddenService") == Some(d))).collect()
}

fn start_daemon(dir: PathBuf, port: u16, socks: u16, cleanup: &mut Cleanup) -> Node {
    let mut child = Command::new(bin())
        .args(["--hostname", dir.join("hs/hostname").to_str().unwrap(), "--logs", dir.join("logs").to_str().unwrap()])
        .args(["--socks", &format!("127.0.0.1:{socks}"), &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cleanup.1.push(child.id());
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let id = line.strip_prefix("TORchat ").and_then(|l| l.split(':').next()).expect("a ready line").to_string();
    Node { id, client: port, dir, child }
}

fn delivered(node: &Node) -> usize {
    let log = std::fs::read_to_string(node.dir.join("logs/messages.log")).unwrap_or_default();
    log.matches("\"ev\":\"delivered\"").count()
}

fn receive(node: &Node, from: &Node, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    wait_for(&format!("{n} messages over Tor"), 120, || {
        got.extend(drain(node.client, &from.id));
        got.len() >= n
    });
    got
}

#[test]
fn two_nodes_chat_over_a_private_tor_network() {
    let started = Instant::now();
    let top = temp_dir("tornet");
    let base = 20000 + (std::process::id() % 200) as u16 * 40;
    let mut cleanup = Cleanup(top.clone(), Vec::new());
    tornet(&top, base);
    let network_up = started.elapsed();

    let mut a = node(&top, "a", base + 100, base + 110, &mut cleanup);
    let mut b = manual_node(&top, "b", base + 200, base + 210, &mut cleanup);
    let nodes_up = started.elapsed();
    assert_eq!(ask(a.client, "HOST", "localhost", "")["id"], a.id.as_str());
    // Both onion services run with Tor's defenses on (PROTOCOL.md §9).
    for node in [&mut a, &mut b] {
        assert_eq!(defenses(&std::fs::read_to_string(node.dir.join("torrc")).unwrap()).len(), 4);
    }

    // Both ways; the first connects fail until the descriptors are published, and the
    // daemon retries them.
    send(a.client, &b.id, "hello b");
    send(b.client, &a.id, "hello a");
    assert_eq!(receive(&b, &a, 1), ["hello b"]);
    assert_eq!(receive(&a, &b, 1), ["hello a"]);
    let onions_up = started.elapsed();

    // A long message and non-ASCII text, intact; the receiver sees the sender's id.
    let long = format!("{} caf\u{e9} \u{4e2d}\u{6587} \u{1f600} end", "0123456789".repeat(220));
    assert!(long.len() > 2000);
    send(a.client, &b.id, &long);
    let reply = {
        let mut reply = serde_json::Value::Null;
        wait_for("the long message", 60, || {
            reply = update(b.client, &a.id);
            reply["cmd"] == "UPDATE"
        });
        reply
    };
    assert_eq!(reply["msg"], long.as_str());
    assert_eq!(reply["id"], a.id.as_str());

    // Round trips: SEND until the acknowledgement is back at the sender.
    let mut rtts = Vec::new();
    for i in 0..20 {
        let (before, start) = (delivered(&a), Instant::now());
        send(a.client, &b.id, &format!("ping {i}"));
        wait_for("an acknowledgement", 30, || delivered(&a) > before);
        rtts.push(start.elapsed());
    }
    assert_eq!(receive(&b, &a, 20).len(), 20);
    rtts.sort();

    // A file from A's client to B, fetched through Tor from A's onion port 81: the file
    // server run.sh started beside A's daemon.
    let file = top.join("offered.bin");
    let bytes: Vec<u8> = (0..(4 << 20) / 32).flat_map(|_| random::<32>()).collect();
    std::fs::write(&file, &bytes).unwrap();
    let offered = Command::new("python3")
        .args([client(), a.client.to_string(), "--send-file".into(), b.id.clone(), file.display().to_string()])
        .env("TORCHAT_SHARES", a.dir.join("shares"))
        .env("TORCHAT_SHARE", env!("CARGO_BIN_EXE_share"))
        .output()
        .unwrap();
    assert!(offered.status.success(), "{}", String::from_utf8_lossy(&offered.stderr));
    let line = receive(&b, &a, 1).remove(0);
    assert!(line.starts_with("[file ") && line.ends_with("] offered.bin"), "{line}");
    let (fetch_start, into) = (Instant::now(), top.join("b-downloads"));
    std::fs::create_dir_all(&into).unwrap();
    let got = Command::new(env!("CARGO_BIN_EXE_share"))
        .args(["get", "--socks", &format!("127.0.0.1:{}", base + 210), "--into", into.to_str().unwrap()])
        .args([&a.id, &line])
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    let fetched = fetch_start.elapsed();
    assert!(std::fs::read(into.join("offered.bin")).unwrap() == bytes, "bytes differ");
    // The same bytes, from the same server through the same Tor, to a reader that only
    // counts them: what the path itself allows.
    let token = line.split(' ').nth(1).unwrap();
    let request = format!("{{\"cmd\":\"GET\",\"token\":\"{token}\",\"from\":0}}");
    let raw_start = Instant::now();
    let mut raw = socks_connect(base + 210, &a.id, 81);
    std::io::Write::write_all(&mut raw, request.as_bytes()).unwrap();
    let got = read_all(&mut raw).len();
    let raw_took = raw_start.elapsed();
    assert!(got > bytes.len(), "the raw stream got {got} bytes");

    // A peer that is down gets what was sent meanwhile, once, when it is back. (Its
    // daemon goes down, its Tor stays: a restarted Tor is a new onion service instance,
    // which a client holding the old descriptor can take minutes to find.)
    tell(b.client, "EXIT", "localhost", 8000, "");
    assert!(b.child.wait().unwrap().success());
    let queued = |a: &Node| std::fs::read_to_string(a.dir.join("logs/messages.log")).unwrap().matches("away").count();
    send(a.client, &b.id, "while you were away 1");
    send(a.client, &b.id, "while you were away 2");
    wait_for("both queued", 10, || queued(&a) == 2);
    // Its tries fail ("general SOCKS server failure": the onion is up, its daemon is
    // not) until they are a minute apart (PROTOCOL.md §6).
    wait_for("tries a minute apart", 90, || errors_log(&a).contains("next try in 60s"));
    assert!(errors_log(&a).contains("general SOCKS server failure"), "{}", errors_log(&a));
    // B comes back and writes: its signed message wakes A's waiting delivery.
    b = start_daemon(b.dir.clone(), base + 200, base + 210, &mut cleanup);
    send(b.client, &a.id, "I'm back");
    let mut back_at_a = None;
    wait_for("B's message at A, then A's waiting ones at B", 60, || {
        back_at_a = back_at_a.or(messages_log(&a).contains("I'm back").then(Instant::now));
        back_at_a.is_some() && messages_log(&b).contains("while you were away 2")
    });
    let woken = back_at_a.unwrap().elapsed();
    assert!(woken < std::time::Duration::from_secs(10), "A's messages reached B {woken:?} after B's reached A");
    assert_eq!(receive(&b, &a, 2), ["while you were away 1", "while you were away 2"]);
    let b_log = std::fs::read_to_string(b.dir.join("logs/messages.log")).unwrap();
    assert_eq!(b_log.matches("while you were away 1").count(), 1, "each once");

    // Neither the Tor nor the file server that run.sh started outlives its daemon.
    let a_tor: u32 = std::fs::read_to_string(a.dir.join("tor.pid")).unwrap().trim().parse().unwrap();
    let shares = a.dir.join("shares").display().to_string();
    let a_share = processes(&["serve", &shares]);
    assert_eq!(a_share.len(), 1, "one file server for a");
    tell(a.client, "EXIT", "localhost", 8000, "");
    assert!(a.child.wait().unwrap().success());
    wait_for("a's tor to follow its daemon out", 60, || !alive(a_tor));
    wait_for("a's file server to follow its daemon out", 10, || !alive(a_share[0]));

    println!("private Tor network up: {network_up:?}; both nodes serving: {nodes_up:?}; onion services reachable both ways: {onions_up:?}");
    println!("round trip (SEND to acknowledgement), 20 messages: p50 {:?}, max {:?}", rtts[10], rtts[19]);
    let (rate, raw_rate) = (4.0 / fetched.as_secs_f64(), 4.0 / raw_took.as_secs_f64());
    println!("a 4 MiB file fetched through Tor (share get, verified, saved): {fetched:?}, {rate:.1} MiB/s");
    println!("the same bytes through the same Tor to a reader that only counts: {raw_took:?}, {raw_rate:.1} MiB/s");
    println!("A's waiting messages at B, after B's message reached A (A's tries a minute apart): {woken:?}");
    println!("whole test: {:?}", started.elapsed());
}

/// A private Tor network under `top`, on ports from `base`; it writes
/// `top/client.torrc`, the lines that join it.
fn tornet(top: &Path, base: u16) {
    let net = Command::new("python3").arg(repo("tests/tornet.py")).arg(top).arg(base.to_string()).output();
    let net = net.expect("python3");
    assert!(net.status.success(), "tornet: {}", String::from_utf8_lossy(&net.stderr));
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn messages_log(node: &Node) -> String {
    read(node.dir.join("logs/messages.log"))
}

fn errors_log(node: &Node) -> String {
    read(node.dir.join("logs/errors.log"))
}

/// PROTOCOL.md §11, on a private Tor network: A runs contacts-only, B and X are open.
/// A stranger (X) cannot reach A at all until A writes to it; a contact can.
#[test]
fn a_contacts_only_node_is_reached_by_its_contacts_alone() {
    let started = Instant::now();
    let top = temp_dir("tornet-contacts");
    // Apart from the other test's network, below the ephemeral ports.
    let base = 10000 + (std::process::id() % 200) as u16 * 40;
    let mut cleanup = Cleanup(top.clone(), Vec::new());
    tornet(&top, base);
    let network_up = started.elapsed();
    // A's Tor answers on a control port: what it published is seen there.
    let control = base + 120;
    let a_torrc = top.join("a.torrc");
    std::fs::write(&a_torrc, read(top.join("client.torrc")) + &format!("ControlPort 127.0.0.1:{control}\n")).unwrap();
    let mut a = node_with(&top, "a", base + 100, base + 110, &["--contacts-only"], &a_torrc, &mut cleanup);
    // B detached: what run.sh starts beside it must follow it out all the same.
    let mut b = node_with(&top, "b", base + 200, base + 210, &["-d"], &top.join("client.torrc"), &mut cleanup);
    let x = node(&top, "x", base + 300, base + 310, &mut cleanup);
    let nodes_up = started.elapsed();
    let listed = |n: &Node| std::fs::read_dir(n.dir.join("hs/authorized_clients")).unwrap().count();
    assert_eq!(listed(&a), 1, "closed before any contact: the key nobody holds");
    assert_eq!((listed(&b), listed(&x)), (0, 0), "open");
    assert!(read(a.dir.join("torrc")).contains(&format!("ClientOnionAuthDir {}", a.dir.join("auth").display())));

    // X writes to A and to B. B gets it (the control); A never does.
    let x_sent = Instant::now();
    send(x.client, &a.id, "x to a");
    send(x.client, &b.id, "x to b");
    assert_eq!(receive(&b, &x, 1), ["x to b"]);
    let x_to_b = x_sent.elapsed();

    // A has no contact yet: 45 s after X wrote, nothing from X has reached A's daemon,
    // while X retries.
    while x_sent.elapsed() < std::time::Duration::from_secs(45) {
        assert!(!messages_log(&a).contains(&x.id), "a stranger's message reached a contacts-only node");
        std::thread::sleep(std::time::Duration::from_millis(100)); // an observation window, not a wait
    }
    let tries: Vec<String> = errors_log(&x).lines().filter(|l| l.contains(&a.id)).map(String::from).collect();
    assert!(tries.len() >= 4, "X keeps retrying: {tries:?}");
    assert!(!errors_log(&a).contains(&x.id), "nothing of X's reached A's daemon");

    // A and B write to each other: each is then the other's contact.
    let reloads = |n: &Node| read(n.dir.join("tor.log")).matches("Received reload signal").count();
    let (a_sent, before) = (Instant::now(), reloads(&a));
    send(a.client, &b.id, "a to b");
    wait_for("A's tor to re-read its files", 10, || reloads(&a) > before);
    let a_reread = a_sent.elapsed();
    assert_eq!(receive(&b, &a, 1), ["a to b"]);
    let a_to_b = a_sent.elapsed();
    let b_sent = Instant::now();
    send(b.client, &a.id, "b to a");
    assert_eq!(receive(&a, &b, 1), ["b to a"]);
    let b_to_a = b_sent.elapsed();
    // X tries again, now that A lists a contact: still nothing.
    let x_tries = || errors_log(&x).lines().filter(|l| l.contains(&a.id)).count();
    wait_for("X's next try", 70, || x_tries() > tries.len());
    assert!(!messages_log(&a).contains(&x.id), "X's message arrived once A had a contact");

    // A writes to X: X's waiting message reaches A.
    let ax_sent = Instant::now();
    send(a.client, &x.id, "a to x");
    assert_eq!(receive(&x, &a, 1), ["a to x"]);
    let a_to_x = ax_sent.elapsed();
    let got = {
        let mut got = Vec::new();
        wait_for("X's waiting message at A", 120, || {
            got.extend(drain(a.client, &x.id));
            !got.is_empty()
        });
        got
    };
    assert_eq!(got, ["x to a"]);
    let x_to_a = ax_sent.elapsed();

    // A blocks B (PROTOCOL.md §12): within 5 s B is neither listed nor has a client file
    // at A, and A's tor has re-read them.
    let (listed_file, client_file) = (
        a.dir.join(format!("hs/authorized_clients/torchat-{}.auth", &b.id[..56])),
        a.dir.join(format!("auth/torchat-{}.auth_private", &b.id[..56])),
    );
    assert!(listed_file.exists() && client_file.exists());
    let (blocked_at, before) = (Instant::now(), reloads(&a));
    assert_eq!(ask(a.client, "BLOCK", &b.id, "")["cmd"], "BLOCK");
    wait_for("B to leave A's files", 5, || !listed_file.exists() && !client_file.exists());
    wait_for("A's tor to re-read them", 5, || reloads(&a) > before);
    let unlisted = blocked_at.elapsed();
    // Tor's refusal is not instant: B still reaches A's daemon, which acknowledges and
    // keeps nothing, so B counts the message delivered and stops.
    let b_delivered = delivered(&b);
    send(b.client, &a.id, "b while blocked");
    wait_for("B's message counted delivered", 120, || delivered(&b) > b_delivered);
    let b_counted = blocked_at.elapsed();
    assert!(!messages_log(&a).contains("b while blocked"), "a blocked peer's message was stored");
    assert!(drain(a.client, &b.id).is_empty());
    // Unblocked, and written to: a contact again, whom Tor lets through.
    assert_eq!(ask(a.client, "UNBLOCK", &b.id, "")["cmd"], "UNBLOCK");
    send(a.client, &b.id, "a after unblock");
    assert_eq!(receive(&b, &a, 1), ["a after unblock"]);
    wait_for("B listed again", 5, || listed_file.exists());
    send(b.client, &a.id, "b after unblock");
    assert_eq!(receive(&a, &b, 1), ["b after unblock"]);

    // 151 contacts: the 150 written to most recently are listed, and Tor publishes
    // the descriptor that lists them.
    let mut events = std::net::TcpStream::connect(("127.0.0.1", control)).unwrap();
    std::io::Write::write_all(&mut events, b"AUTHENTICATE\r\nSETEVENTS HS_DESC\r\n").unwrap();
    let many: Vec<String> = (0..151).map(|_| onion_id()).collect();
    let before = reloads(&a);
    for id in &many {
        send(a.client, id, "hello");
    }
    wait_for("150 listed", 30, || read(a.dir.join("onion-auth.log")).contains("150 contacts listed"));
    let listed_at = Instant::now();
    assert_eq!(listed(&a), 151, "150 and the key nobody holds");
    wait_for("A's tor to re-read them", 10, || reloads(&a) > before);
    let uploaded = format!("650 HS_DESC UPLOADED {}", &a.id[..56]);
    // Usually within a second; once, under the 151 fetches A's tor makes for the
    // made-up ids, 3 minutes.
    let deadline = Instant::now() + std::time::Duration::from_secs(240);
    let mut reader = BufReader::new(events);
    let mut seen = String::new();
    while !seen.contains(&uploaded) {
        let left = deadline.saturating_duration_since(Instant::now());
        reader.get_ref().set_read_timeout(Some(left.max(std::time::Duration::from_millis(1)))).unwrap();
        seen.clear();
        reader.read_line(&mut seen).expect("no descriptor uploaded within 240 s");
        assert!(!seen.is_empty(), "the control port closed");
    }
    assert!(!read(a.dir.join("tor.log")).contains("too big"), "{}", read(a.dir.join("tor.log")));
    let published = listed_at.elapsed();

    // Nothing run.sh started outlives its daemon, detached (B) or not (A).
    for node in [&mut a, &mut b] {
        let tor: u32 = read(node.dir.join("tor.pid")).trim().parse().unwrap();
        let beside = [
            processes(&["serve", &node.dir.join("shares").display().to_string()]),
            processes(&["onion-auth.py", &node.dir.display().to_string()]),
        ];
        assert_eq!(beside.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1], "one file server and one onion-auth.py");
        tell(node.client, "EXIT", "localhost", 8000, "");
        // A's daemon is this test's child (run.sh became it): reaped, it is gone for Tor.
        assert!(node.child.wait().unwrap().success());
        wait_for("its tor to follow its daemon out", 60, || !alive(tor));
        wait_for("the programs beside it to follow it out", 10, || beside.iter().flatten().all(|&pid| !alive(pid)));
    }

    println!("private Tor network up: {network_up:?}; three nodes serving: {nodes_up:?}");
    println!("X to B (open): {x_to_b:?}; A to B: {a_to_b:?}; B to A (contacts-only): {b_to_a:?}");
    println!("A's SEND to a new peer until A's tor re-read its files: {a_reread:?}");
    println!("A to X: {a_to_x:?}; X's waiting message at A, from A's SEND: {x_to_a:?}");
    println!("BLOCK until B left A's files and A's tor re-read them: {unlisted:?}");
    println!("BLOCK until B's daemon counted its next message delivered: {b_counted:?}");
    println!("151 contacts: the descriptor listing 150 uploaded {published:?} after they were listed");
    println!("what X's daemon recorded while A was closed to it ({} tries):", tries.len());
    tries.iter().for_each(|t| println!("  {t}"));
    println!("whole test: {:?}", started.elapsed());
}

/// A stream to `host`:`port` through the SOCKS5 port of a Tor (domain name, no
/// authentication).
fn socks_connect(socks: u16, host: &str, port: u16) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", socks)).unwrap();
    s.write_all(&[&[5, 1, 0, 5, 1, 0, 3, host.len() as u8][..], host.as_bytes(), &port.to_be_bytes()].concat())
        .unwrap();
    let mut reply = [0u8; 12]; // the method chosen, then the CONNECT reply (IPv4 form)
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[3], 0, "SOCKS reply {reply:?}");
    s
}

/// The PIDs of the processes whose command line holds every one of `words`.
fn processes(words: &[&str]) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    let holds = |pid: &u32| {
        let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let line = String::from_utf8_lossy(&line).replace('\0', " ");
        words.iter().all(|w| line.contains(w))
    };
    pids.filter(holds).collect()
}

/// run.sh with `env`, for a failure: its exit status and what it said.
fn run_sh(dir: &Path, port: u16, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(repo("scripts/run.sh")).arg(port.to_string()).env("TORCHAT_DIR", dir).env("TORCHAT_MAIN", bin());
    env.iter().for_each(|(k, v)| _ = cmd.env(k, v));
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn run_sh_says_what_is_wrong_instead_of_hanging() {
    let top = temp_dir("run-sh");
    let (status, err) = run_sh(&top.join("a"), 1000, &[("PATH", "/nonexistent")]);
    assert_eq!((status, err.trim()), (1, "run.sh: tor is not installed: sudo apt-get install tor"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socks = taken.local_addr().unwrap().port().to_string();
    let (status, err) = run_sh(&top.join("b"), 1000, &[("TORCHAT_SOCKS", &socks), ("TORCHAT_TORRC", "/dev/null")]);
    assert_eq!(status, 1);
    assert!(err.contains(&format!("port {socks} is taken: set TORCHAT_SOCKS")), "{err}");

    // A network that does not exist: Tor never bootstraps.
    let nowhere = top.join("nowhere.torrc");
    std::fs::write(&nowhere, "TestingTorNetwork 1\nDirAuthority none orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 127.0.0.1:1 0000000000000000000000000000000000000000\n").unwrap();
    let (status, err) = run_sh(
        &top.join("c"),
        1000,
        &[("TORCHAT_TORRC", nowhere.to_str().unwrap()), ("TORCHAT_WAIT", "3"), ("TORCHAT_SOCKS", "auto")],
    );
    assert_eq!(status, 1);
    assert!(err.contains("Tor is not ready after 3s") && err.contains("check the network"), "{err}");
    // The torrc it wrote turns on every defense, and tor accepts it.
    let torrc = top.join("c/torrc");
    assert_eq!(defenses(&std::fs::read_to_string(&torrc).unwrap()).len(), 4, "pow: yes here, as Debian builds tor");
    let out = Command::new("tor").arg("--verify-config").arg("-f").arg(&torrc).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration was valid"), "{out:?}");
    wait_for("its tor to be stopped", 10, || {
        std::fs::read_to_string(top.join("c/tor.pid")).map_or(true, |p| !alive(p.trim().parse().unwrap_or(0)))
    });
    std::fs::remove_dir_all(top).unwrap();
}

#[test]
fn the_shipped_torrc_for_the_manual_flow_is_valid_and_points_at_the_peer_port() {
    let out = Command::new("tor").args(["--verify-config", "-f", "tor/torrc"]).current_dir(repo("")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration was valid"), "{out:?}");
    let torrc = std::fs::read_to_string(repo("tor/torrc")).unwrap();
    // main 8000 serves peers on 8001, and its default --hostname is tor/hs/hostname.
    assert!(torrc.contains("HiddenServicePort 80 127.0.0.1:8001") && torrc.contains("HiddenServiceDir tor/hs"));
    assert!(torrc.contains("SocksPort 127.0.0.1:9250"));
    assert_eq!(defenses(&torrc).len(), 4, "{torrc}");
}

/// What run.sh said on its terminal (its stderr) for node `name`.
fn said(top: &Path, name: &str) -> String {
    read(top.join(format!("{name}.err")))
}

/// The PID in a node's tor.pid, if that process is alive.
fn tor_of(node: &Node) -> Option<u32> {
    read(node.dir.join("tor.pid")).trim().parse().ok().filter(|&pid| alive(pid))
}

/// Zombies whose parent is `pid`: a dead child nobody reaped.
fn zombies_under(pid: u32) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    let zombie = |p: &u32| {
        let stat = read(PathBuf::from(format!("/proc/{p}/stat")));
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
    };
    pids.filter(zombie).collect()
}

/// Kills the node's tor (SIGKILL), then waits for a new one to be up: a new PID, and one
/// more "Bootstrapped 100%" in its log. How long that took.
fn kill_tor(node: &Node) -> std::time::Duration {
    let old = tor_of(node).expect("a tor");
    let bootstrapped = || read(node.dir.join("tor.log")).matches("Bootstrapped 100%").count();
    let before = bootstrapped();
    let killed = Instant::now();
    signal(old, libc::SIGKILL);
    wait_for("a new tor, bootstrapped", 30, || tor_of(node).is_some_and(|p| p != old) && bootstrapped() > before);
    killed.elapsed()
}

/// PROTOCOL.md §6 and run.sh: the node supervises what it starts beside the daemon.
/// A runs in the foreground, B detached; their tors are killed as the OOM killer would.
#[test]
fn a_node_outlives_its_tor_and_brings_back_what_run_sh_started() {
    let started = Instant::now();
    let top = temp_dir("tornet-keep");
    let base = 2000 + (std::process::id() % 150) as u16 * 40;
    let mut cleanup = Cleanup(top.clone(), Vec::new());
    tornet(&top, base);
    let mut a = node(&top, "a", base + 100, base + 110, &mut cleanup);
    let mut b = node_with(&top, "b", base + 200, base + 210, &["-d"], &top.join("client.torrc"), &mut cleanup);
    let b_daemon = *cleanup.1.last().unwrap();
    send(a.client, &b.id, "hello B");
    assert_eq!(receive(&b, &a, 1), ["hello B"]);
    send(b.client, &a.id, "hello A");
    assert_eq!(receive(&a, &b, 1), ["hello A"]);

    // A's tor dies: a new one is up within 30 s, run.sh says so, and what is written each
    // way meanwhile arrives.
    let first = kill_tor(&a);
    let line = said(&top, "a");
    assert!(
        line.contains("run.sh: tor stopped (killed by SIGKILL) at ") && line.contains("; starting it again now"),
        "{line}"
    );
    assert!(zombies_under(a.child.id()).is_empty(), "a dead tor left a zombie under A's daemon");
    // B's next message to A waits for B's own tor restart below: a stream B's tor puts
    // on its rendezvous circuit to A's dead tor can hang in the SOCKS handshake for
    // minutes, which the daemon does not bound (README, "Left").
    let sent = Instant::now();
    send(a.client, &b.id, "a after its tor came back");
    assert_eq!(receive(&b, &a, 1), ["a after its tor came back"]);
    let a_to_b = sent.elapsed();
    // Three more times: back each time, after a pause that grows.
    let again: Vec<_> = (0..3).map(|_| kill_tor(&a)).collect();
    let line = said(&top, "a");
    assert!(line.contains("starting it again in 1s") && line.contains("starting it again in 2s"), "{line}");
    // B's tor, detached: back too, said in B's run.log.
    let b_back = kill_tor(&b);
    assert!(
        read(b.dir.join("run.log")).contains("run.sh: tor stopped (killed by SIGKILL)"),
        "{}",
        read(b.dir.join("run.log"))
    );
    let sent = Instant::now();
    send(b.client, &a.id, "b after its tor came back");
    assert_eq!(receive(&a, &b, 1), ["b after its tor came back"]);
    let b_to_a = sent.elapsed();

    // The file server and onion-auth.py: killed, back within 30 s.
    for (what, words) in [("the file server", "serve"), ("onion-auth.py", "onion-auth.py")] {
        let find = || {
            processes(&[words, &a.dir.display().to_string()])
                .into_iter()
                .find(|&p| !processes(&["run.sh"]).contains(&p))
        };
        let old = find().expect(what);
        signal(old, libc::SIGKILL);
        wait_for(&format!("{what} back"), 30, || find().is_some_and(|p| p != old));
        assert!(said(&top, "a").contains(&format!("run.sh: {what} stopped (killed by SIGKILL)")));
    }

    // Each daemon's exit ends everything run.sh started for it: keepers, tor, the
    // programs beside it.
    for (node, daemon) in [(&mut a, None), (&mut b, Some(b_daemon))] {
        let dir = node.dir.display().to_string();
        let started_for = |node: &Node| {
            let mut pids = processes(&["run.sh", &dir]);
            pids.extend(processes(&["serve", &dir]));
            pids.extend(processes(&["onion-auth.py", &dir]));
            pids.extend(tor_of(node));
            pids.retain(|&p| Some(p) != daemon && p != node.child.id());
            pids
        };
        let before = started_for(node);
        assert!(before.len() >= 4, "keepers, tor, the file server, onion-auth.py: {before:?}");
        tell(node.client, "EXIT", "localhost", 8000, "");
        if daemon.is_none() {
            assert!(node.child.wait().unwrap().success());
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while before.iter().any(|&p| alive(p)) {
            let left: Vec<String> = before
                .iter()
                .filter(|&&p| alive(p))
                .map(|p| read(PathBuf::from(format!("/proc/{p}/cmdline"))).replace('\0', " "))
                .collect();
            assert!(Instant::now() < deadline, "left after the daemon exited: {left:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(started_for(node).is_empty(), "{:?}", started_for(node));
    }
    println!("A's tor killed: a new one up after {first:?}; then {again:?}; B's: {b_back:?}");
    println!("written right after: A to B arrived in {a_to_b:?}; B to A, after B's tor came back, in {b_to_a:?}");
    println!("what run.sh said:\n{}", said(&top, "a"));
    println!("B's run.log:\n{}", read(b.dir.join("run.log")));
    println!("whole test: {:?}", started.elapsed());
}
