//! Availability (PROTOCOL.md §9): a full port makes room instead of refusing, so that a
//! stranger holding connections cannot lock a contact out and a local burst of SENDs
//! larger than the limit is served; a SEND refused for its text leaves a notice.

mod common;
use common::*;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A connection that sends half a RECV and then nothing, as a stranger holding the
/// peer port would.
fn half_request(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"{\"cmd\":\"RECV\",\"id\":\"").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn a_stranger_holding_1500_half_open_connections_never_keeps_a_contact_out() {
    raise_fd_limit();
    let d = Daemon::start("held", &["--socks", "127.0.0.1:1"]);
    let contact = Key::new();
    send(d.client, &contact.id, "hello"); // the user writes first: a contact
    wait_for("the SEND", 5, || d.messages_log().contains("\"queued\""));
    let stop = Arc::new(AtomicBool::new(false));
    // 1,500 connections, each opened again as soon as the daemon closes it.
    let flood = thread::spawn({
        let (stop, port) = (stop.clone(), d.peer);
        move || {
            let mut held: Vec<TcpStream> = (0..1500).map(|_| half_request(port)).collect();
            let (mut closed, mut busy) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                for s in &mut held {
                    let mut reply = [0u8; 512];
                    match s.read(&mut reply) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Ok(n) => busy += String::from_utf8_lossy(&reply[..n]).contains("busy, try later") as usize,
                        Err(_) => {}
                    }
                    closed += 1;
                    *s = half_request(port);
                }
                thread::sleep(Duration::from_millis(5)); // the flood's pace, not a wait
            }
            (closed, busy)
        }
    });
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", d.pid)).unwrap().count();
    wait_for("the peer port to be full", 30, || fds() >= 1000);
    let mut latencies = Vec::new();
    for i in 0..20 {
        let body = contact.recv(&d.id, &format!("contact {i}"), now());
        let start = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
        s.write_all(body.to_string().as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let reply: Value = serde_json::from_slice(&read_all(&mut s)).unwrap_or(Value::Null);
        assert_eq!(reply["msg"], body["mid"], "the contact's message {i} was not acknowledged within 2 s: {reply}");
        latencies.push(start.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let (closed, busy) = flood.join().unwrap();
    latencies.sort();
    eprintln!(
        "a contact's acknowledgement under 1,500 held connections: p50 {:?}, p99 {:?}; {closed} held connections closed, {busy} of them told \"busy, try later\"",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    assert!(busy > 0, "no held connection gave way");
    let expected: Vec<String> = (0..20).map(|i| format!("contact {i}")).collect();
    assert_eq!(drain(d.client, &contact.id), expected);
}

#[test]
fn a_burst_of_3000_fire_and_forget_sends_is_recorded_whole() {
    raise_fd_limit();
    let d = Daemon::start("burst", &["--socks", "127.0.0.1:1", "--max-unread", "5000"]);
    let peer = onion_id();
    // Three times --max-conns, opened before any writes, as a script might.
    let conns: Vec<TcpStream> = (0..3000).map(|_| TcpStream::connect(("127.0.0.1", d.client)).unwrap()).collect();
    for (i, mut s) in conns.into_iter().enumerate() {
        s.write_all(py_json("SEND", &peer, 80, &format!("burst {i}")).as_bytes()).unwrap();
    }
    let queued = || d.messages_log().matches("\"ev\":\"queued\"").count();
    wait_for("3,000 SENDs recorded", 60, || queued() >= 3000);
    let log = d.messages_log();
    for i in 0..3000 {
        assert_eq!(log.matches(&format!("\"msg\":\"burst {i}\"")).count(), 1, "burst {i}");
    }
    assert!(!d.errors_log().contains("refused: "), "{}", d.errors_log());
}

#[test]
fn a_long_send_from_the_2017_client_leaves_a_notice_quoting_its_start() {
    let d = Daemon::start("long-send", &["--socks", "127.0.0.1:1"]);
    let peer = onion_id();
    let text = format!("caf\u{e9} {}", "a long pasted line ".repeat(210));
    assert_eq!(text.chars().count(), 3995);
    send(d.client, &peer, &text); // the 2017 way: no reply read
    let mut notice = Value::Null;
    wait_for("the notice", 5, || {
        notice = update(d.client, &peer);
        notice["cmd"] == "UPDATE"
    });
    let why = "message too long: 3996 bytes, at most 3000";
    let start: String = text.chars().take(500).collect();
    assert_eq!(notice["msg"], format!("[not delivered: {why}] {start}"));
    assert_eq!(notice["error"], why);
    assert!(d.errors_log().contains(&format!("SEND to {peer}: {why}")), "{}", d.errors_log());
    assert!(!d.messages_log().contains("\"queued\""), "nothing was queued");
    // A text that is not refused still goes out as before.
    send(d.client, &peer, "short");
    wait_for("the short one queued", 5, || d.messages_log().contains("\"queued\""));
}
