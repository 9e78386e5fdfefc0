//! A daemon on an onion address is reachable by anyone: what broke the 2017 daemon, kill -9
//! at random points under a stream of messages, thousands of idle and trickling
//! connections, a flood from one peer, and a full disk.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn refused(port: u16, bytes: &[u8]) -> String {
    let reply = ask_raw(port, bytes);
    reply["error"].as_str().unwrap_or_else(|| panic!("not refused: {reply}")).to_string()
}

#[test]
fn what_broke_the_2017_daemon_is_refused_and_the_daemon_serves_on() {
    raise_fd_limit();
    let d = Daemon::start("2017", &[]);
    let v3 = onion_id();
    let alive = || assert_eq!(ask(d.client, "HOST", "localhost", "")["id"], d.id.as_str());
    // It aborted on each of these.
    for bytes in [
        &b"{}"[..],
        b"{\"id\": \"localhost\", \"msg\": \"\", \"portno\": 8000}",
        b"{\"cmd\": \"SEND\", \"id\": \"x\", \"msg\": \"m\", \"portno\": \"x\"}",
        b"{\"cmd\": \"SEND\", \"id\": 5, \"msg\": \"m\", \"portno\": 80}",
        b"{\"cmd\": \"UPDATE\", \"msg\": null}",
    ] {
        refused(d.client, bytes);
        alive();
    }
    // It overflowed a 30-byte buffer with any v3 id, and used text as a format string.
    recv_from(d.peer, &v3, "%s%n%s%n%x");
    assert_eq!(update(d.client, &v3)["msg"], shown("%s%n%s%n%x"));
    assert_eq!(ask(d.client, "HISTORY", &v3, "1")["id"], v3.as_str());
    // It dropped a 1 MiB message silently: here the sender is told.
    let big = serde_json::json!({"cmd": "RECV", "id": v3, "msg": "x".repeat(1 << 20), "portno": 80});
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    let _ = s.write_all(big.to_string().as_bytes());
    assert!(String::from_utf8_lossy(&read_all(&mut s)).contains("request larger than"));
    // It lost a request split over two writes, and the first of two in one write.
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    s.write_all(b"{\"cmd\": \"RECV\", \"id\": \"").unwrap();
    s.flush().unwrap();
    thread::sleep(Duration::from_millis(50)); // two segments, not a synchronisation
    s.write_all(format!("{v3}\", \"msg\": \"split\", \"portno\": 80}}{{\"cmd\": \"EXIT\"}}").as_bytes()).unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&read_all(&mut s)).unwrap()["cmd"], "END");
    assert_eq!(update(d.client, &v3)["msg"], shown("split"));
    // It stopped answering with 1,100 idle connections (select's 1,024).
    let idle: Vec<TcpStream> = (0..1100).map(|_| TcpStream::connect(("127.0.0.1", d.client)).unwrap()).collect();
    drop(idle);
    wait_for("the client port", 10, || TcpStream::connect(("127.0.0.1", d.client)).is_ok());
    alive();
    // Anyone could EXIT it.
    assert!(refused(d.peer, b"{\"cmd\": \"EXIT\"}").contains("unknown variant `EXIT`"));
    alive();
}

/// `n` random milliseconds in `lo..hi`: where the kill falls, not a wait for anything.
fn random_ms(lo: u64, hi: u64) -> Duration {
    let r = u64::from_le_bytes(random());
    Duration::from_millis(lo + r % (hi - lo))
}

#[test]
fn kill_9_at_random_points_under_a_stream_loses_nothing_acknowledged() {
    let mut d = Daemon::start("kill-stream", &["--stranger-unread", "100000"]);
    let (client, peer_port, from) = (d.client, d.peer, onion_id());
    let stop = Arc::new(AtomicBool::new(false));
    // The sender retries each message, same mid, until it is acknowledged.
    let sender = {
        let (stop, from) = (stop.clone(), from.clone());
        thread::spawn(move || {
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (text, mid) = (format!("m{}", acked.len()), format!("{:032x}", acked.len() + 1));
                let body = serde_json::json!({"cmd": "RECV", "id": from, "msg": text, "portno": 80, "mid": mid});
                let ack = TcpStream::connect(("127.0.0.1", peer_port)).ok().and_then(|mut s| {
                    s.write_all(body.to_string().as_bytes()).ok()?;
                    serde_json::from_slice::<serde_json::Value>(&read_all(&mut s)).ok()
                });
                match ack {
                    Some(ack) if ack["msg"] == mid.as_str() => acked.push(text),
                    _ => thread::sleep(Duration::from_millis(5)),
                }
            }
            acked
        })
    };
    // The reader takes what the 2017 client would see.
    let reader = {
        let (stop, from) = (stop.clone(), from.clone());
        thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = py_json("UPDATE", "localhost", 8000, &from);
                let reply = TcpStream::connect(("127.0.0.1", client)).ok().and_then(|mut s| {
                    s.write_all(request.as_bytes()).ok()?;
                    serde_json::from_slice::<serde_json::Value>(&read_all(&mut s)).ok()
                });
                match reply {
                    Some(r) if r["cmd"] == "UPDATE" => seen.push(r["msg"].as_str().unwrap().to_string()),
                    _ => thread::sleep(Duration::from_millis(5)),
                }
            }
            seen
        })
    };
    let kills = 6;
    for _ in 0..kills {
        thread::sleep(random_ms(100, 400));
        d.crash_and_restart();
    }
    thread::sleep(random_ms(100, 200));
    stop.store(true, Ordering::Relaxed);
    let (acked, mut seen) = (sender.join().unwrap(), reader.join().unwrap());
    seen.extend(drain(d.client, &from));
    assert!(acked.len() > 100, "the stream was too thin to mean anything: {}", acked.len());
    let log = d.messages_log();
    let mut shown_once = HashSet::new();
    for text in &seen {
        assert!(shown_once.insert(text.clone()), "{text} shown twice");
    }
    for text in &acked {
        let stored = log.matches(&format!("\"msg\":\"{text}\",")).count();
        assert_eq!(stored, 1, "{text}: acknowledged, stored {stored} times");
    }
    // A kill between an UPDATE's `read` record and its reply costs that reply (the
    // message stays in HISTORY): at most one per kill.
    let missing = acked.iter().filter(|t| !shown_once.contains(&shown(t))).count();
    assert!(missing <= kills, "{missing} acknowledged messages never shown");
    eprintln!("{} acknowledged, {} shown, {missing} lost to a kill between read and reply", acked.len(), seen.len());
}

#[test]
fn kill_9_of_the_sender_at_random_points_delivers_each_accepted_message_once() {
    let proxy = Proxy::start();
    let mut a = Daemon::start("kill-sender", &["--socks", &proxy.arg()]);
    let b = Daemon::start("kill-receiver", &["--stranger-unread", "5000"]);
    proxy.route(&b.id, Route::To(b.peer));
    let (client, to) = (a.client, b.id.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // A client that counts a message sent once the daemon has answered its SEND.
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let (mut accepted, mut tries) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) && accepted.len() < 300 {
                tries += 1;
                let text = format!("s{tries}");
                let reply = TcpStream::connect(("127.0.0.1", client)).ok().and_then(|mut s| {
                    s.write_all(py_json("SEND", &to, 80, &text).as_bytes()).ok()?;
                    serde_json::from_slice::<serde_json::Value>(&read_all(&mut s)).ok()
                });
                match reply {
                    Some(r) if r["cmd"] == "SEND" => accepted.push(text),
                    _ => thread::sleep(Duration::from_millis(5)),
                }
            }
            accepted
        })
    };
    for _ in 0..4 {
        thread::sleep(random_ms(100, 400));
        a.crash_and_restart();
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = writer.join().unwrap();
    assert!(accepted.len() > 20, "too few messages to mean anything: {}", accepted.len());
    let received = || {
        let log = b.messages_log();
        let counts: HashMap<String, usize> = log
            .lines()
            .filter_map(|l| l.split("\"msg\":\"").nth(1)?.split('"').next())
            .fold(HashMap::new(), |mut m, t| {
                *m.entry(t.to_string()).or_default() += 1;
                m
            });
        counts
    };
    wait_for("every accepted message at the receiver", 30, || accepted.iter().all(|t| received().contains_key(t)));
    for (text, n) in received() {
        assert_eq!(n, 1, "{text} stored {n} times");
    }
}

#[test]
fn ten_thousand_idle_and_trickling_connections_leave_the_client_port_serving() {
    raise_fd_limit();
    let d = Daemon::start("abuse", &["--idle", "5"]);
    let peer = onion_id();
    recv_from(d.peer, &peer, "still here");
    // 100 send one byte a second, as slowly as the idle limit lets them, and the newer
    // connections then take their place.
    let trickle = thread::spawn({
        let port = d.peer;
        move || {
            let mut slow: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
            let mut cut = 0;
            for byte in b"{\"cmd\": \"RECV\", \"id\": \"".iter().take(10) {
                slow.retain_mut(|s| {
                    let open = s.write_all(&[*byte]).is_ok();
                    cut += !open as usize;
                    open
                });
                thread::sleep(Duration::from_secs(1)); // the attack is the slowness itself
            }
            (slow.len(), cut)
        }
    });
    let start = Instant::now();
    let mut idle: Vec<TcpStream> = (0..10_000).map(|_| TcpStream::connect(("127.0.0.1", d.peer)).unwrap()).collect();
    eprintln!("10,000 connections opened in {:?}", start.elapsed());
    let (mut latencies, mut peak, mut peak_fds, start) = (Vec::new(), 0, 0, Instant::now());
    while start.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        assert_eq!(ask(d.client, "HOST", "localhost", "")["cmd"], "HOST");
        latencies.push(t.elapsed());
        peak = peak.max(rss_kib(d.pid));
        peak_fds = peak_fds.max(std::fs::read_dir(format!("/proc/{}/fd", d.pid)).unwrap().count());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "client port under 10,000 idle + 100 trickling: {} requests, p50 {:?}, p99 {p99:?}; peak RSS {peak} KiB, {peak_fds} fds",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(peak < 32 << 10, "RSS {peak} KiB");
    // The daemon held at most --max-conns of them at a time, the others waiting in its
    // listen queue; each it held gave way to a newer one after a second, or was closed
    // at the idle limit, with a word either way.
    let (mut gave_way, mut closed) = (0, 0);
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match String::from_utf8_lossy(&read_all(s)) {
            r if r.contains("busy, try later") => gave_way += 1,
            r if r.contains("no complete request in 5s") => closed += 1,
            r => panic!("unexpected {r}"),
        }
    }
    assert!(gave_way > 0 && gave_way + closed == 10_000, "{gave_way} gave way, {closed} closed at the idle limit");
    assert!(peak_fds <= 1000 + 100 + 64, "the daemon held {peak_fds} descriptors");
    let (still_open, cut) = trickle.join().unwrap();
    assert!(cut > 0 && still_open < 100, "trickling connections outlived --idle 5");
    assert_eq!(update(d.client, &peer)["msg"], shown("still here"));
}

#[test]
fn a_flooding_peer_is_refused_at_its_limit_and_others_still_get_through() {
    let d = Daemon::start("flood", &["--stranger-unread", "200", "--max-strangers", "51"]);
    let flooder = onion_id();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (port, flooder, errors) = (d.peer, flooder.clone(), errors.clone());
            thread::spawn(move || {
                for i in 0..300 {
                    let reply = recv_from(port, &flooder, &format!("flood {i}"));
                    if let Some(e) = reply["error"].as_str() {
                        errors.lock().unwrap().push(e.to_string());
                    }
                }
            })
        })
        .collect();
    // Meanwhile others write, and each is stored.
    let others: Vec<String> = (0..50).map(|_| onion_id()).collect();
    for other in &others {
        assert_eq!(recv_from(d.peer, other, "meanwhile")["cmd"], "END");
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1200 - 200, "beyond --stranger-unread, each one refused");
    let busy = "busy: too many messages from unknown senders, try later";
    assert!(errors.iter().all(|e| e.contains(busy)), "{errors:?}");
    assert!(d.errors_log().contains(busy));
    assert_eq!(drain(d.client, &flooder).len(), 200);
    for other in &others {
        assert_eq!(drain(d.client, other), [shown("meanwhile")]);
    }
    assert!(rss_kib(d.pid) < 16 << 10);
}

/// Sets the daemon's file size limit (soft) with prlimit; None: unlimited.
fn file_size_limit(pid: u32, bytes: Option<u64>) {
    let limit = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_full_disk_stops_acknowledgements_until_there_is_room() {
    let d = Daemon::start("full", &[]);
    let (peer, log) = (onion_id(), d.dir.join("logs/messages.log"));
    assert_eq!(recv_from(d.peer, &peer, "before")["cmd"], "END");
    // The disk is full from here on, for the messages log: a write past its end fails.
    let full = std::fs::metadata(&log).unwrap().len() + 100;
    file_size_limit(d.pid, Some(full));
    let reply = recv_from(d.peer, &peer, &"a message longer than the room left ".repeat(5));
    assert_eq!(reply["error"], "cannot use the messages log now, try later", "never acknowledged: {reply}");
    let sent = ask_raw(d.client, py_json("SEND", &peer, 80, "not now").as_bytes());
    assert!(sent["error"].is_string(), "{sent}");
    let stderr = std::fs::read_to_string(d.dir.join("stderr.txt")).unwrap();
    assert!(stderr.contains("cannot write the messages log"), "said where it can be seen: {stderr}");
    // The half-written line was undone: every line is whole.
    assert_eq!(std::fs::metadata(&log).unwrap().len(), full - 100);
    file_size_limit(d.pid, None);
    assert_eq!(recv_from(d.peer, &peer, "after")["cmd"], "END");
    assert_eq!(drain(d.client, &peer), [shown("before"), shown("after")]);
    let lines = d.messages_log();
    assert!(lines.lines().all(|l| l.ends_with('}')), "{lines}");
}
