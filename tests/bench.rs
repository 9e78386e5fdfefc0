//! Benchmarks, not tests: they print figures and assert nothing about time.
//! Run: cargo test --release --test bench -- --ignored --nocapture --test-threads 1

mod common;
use common::*;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// UPDATE round trips, each a new connection as the 2017 client makes them.
fn update_load(port: u16, peer: &str, clients: usize, secs: u64) -> (f64, Duration, Duration) {
    let request = py_json("UPDATE", "localhost", 8000, peer);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let (end, mut lat) = (Instant::now() + Duration::from_secs(secs), Vec::new());
                while Instant::now() < end {
                    let start = Instant::now();
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.write_all(request.as_bytes()).unwrap();
                    let _ = s.read(&mut [0u8; 5000]).unwrap();
                    lat.push(start.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    lat.sort();
    (lat.len() as f64 / secs as f64, lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

#[test]
#[ignore]
fn update_throughput_and_latency() {
    let d = Daemon::start("bench-update", &[]);
    let peer = onion_id();
    for clients in [1, 16] {
        let (rps, p50, p99) = update_load(d.client, &peer, clients, 3);
        println!("UPDATE, empty queue, {clients:2} clients: {rps:8.0} req/s, p50 {p50:?}, p99 {p99:?}");
    }
}

/// 100,000 unread 100-byte messages from 1,000 peers, through the peer port.
fn fill(d: &Daemon, peers: &[String], per_peer: usize) {
    let text = "m".repeat(100);
    for i in 0..per_peer {
        for peer in peers {
            let body = format!("{{\"cmd\":\"RECV\",\"id\":\"{peer}\",\"msg\":\"{text}\",\"portno\":80}}");
            let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
            s.write_all(body.as_bytes()).unwrap();
            let _ = s.read(&mut [0u8; 256]);
        }
        if i % 20 == 19 {
            eprint!(".");
        }
    }
}

#[test]
#[ignore]
fn memory_idle_and_with_100k_unread() {
    let d = Daemon::start("bench-memory", &[]);
    println!("RSS at idle: {} KiB", rss_kib(d.pid));
    let peers: Vec<String> = (0..1000).map(|_| onion_id()).collect();
    let start = Instant::now();
    fill(&d, &peers, 100);
    println!("\n100,000 RECV in {:?} ({:.0}/s)", start.elapsed(), 100_000.0 / start.elapsed().as_secs_f64());
    println!("RSS with 100,000 unread from 1,000 peers: {} KiB", rss_kib(d.pid));
    let (rps, p50, p99) = update_load(d.client, &peers[0], 1, 1);
    println!("UPDATE with unread, 1 client: {rps:.0} req/s, p50 {p50:?}, p99 {p99:?}");
}

/// A messages log of about `bytes`, as the daemon writes it (each record linked to the
/// same peer's previous one): conversations read, then 100,000 unread from 1,000 peers.
fn big_log(path: &std::path::Path, bytes: u64, peers: &[String]) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let text = "h".repeat(100);
    let (mut at, mut last, mut unread) = (0u64, std::collections::HashMap::new(), 0);
    for peer in peers.iter().cycle() {
        let prev = last.get(peer).map_or(String::new(), |p| format!(",\"prev\":{p}"));
        let mut lines = format!("2026-11-25T00:00:00Z {{\"t\":1795000000,\"ev\":\"recv\",\"peer\":\"{peer}\",\"msg\":\"{text}\",\"mid\":null{prev}}}\n");
        last.insert(peer, at);
        if at < bytes {
            lines += &format!("2026-11-25T00:00:00Z {{\"t\":1795000000,\"ev\":\"read\",\"peer\":\"{peer}\"}}\n");
        } else if unread == 100_000 {
            break;
        } else {
            unread += 1;
        }
        out.write_all(lines.as_bytes()).unwrap();
        at += lines.len() as u64;
    }
}

fn time_to_serve(d: &mut Daemon) -> Duration {
    d.kill();
    let start = Instant::now();
    d.restart();
    let host = ask(d.client, "HOST", "localhost", "");
    assert_eq!(host["cmd"], "HOST");
    start.elapsed()
}

#[test]
#[ignore]
fn start_up_with_a_1_gb_log() {
    let mut d = Daemon::start("bench-start", &[]);
    let peers: Vec<String> = (0..1000).map(|_| onion_id()).collect();
    d.kill();
    let log = d.dir.join("logs/messages.log");
    big_log(&log, 1 << 30, &peers);
    let _ = std::fs::remove_file(d.dir.join("logs/state.json"));
    println!("log: {} MiB", std::fs::metadata(&log).unwrap().len() >> 20);
    println!("first start, no checkpoint (whole log replayed): {:?}", time_to_serve(&mut d));
    println!("restart after kill -9, from the checkpoint: {:?}", time_to_serve(&mut d));
    println!("RSS with 100,000 unread: {} KiB", rss_kib(d.pid));
    assert_eq!(ask(d.client, "GET_PEERS", "localhost", "")["cut"].as_u64().unwrap() + 63, 1000);
    let start = Instant::now();
    let history = ask(d.client, "HISTORY", &peers[7], "50");
    println!(
        "HISTORY 50 at the end of the 1 GB log: {:?} ({} lines)",
        start.elapsed(),
        history["lines"].as_array().unwrap().len()
    );
}

#[test]
#[ignore]
fn delivery_to_10_peers_with_and_without_a_hung_one() {
    let proxy = Proxy::start();
    let socks = proxy.arg();
    let sender = Daemon::start("bench-sender", &["--socks", &socks, "--max-unread", "5000"]);
    let peers: Vec<Daemon> =
        (0..10).map(|i| Daemon::start(&format!("bench-peer{i}"), &["--max-unread", "5000"])).collect();
    peers.iter().for_each(|p| proxy.route(&p.id, Route::To(p.peer)));
    let delivered = || sender.messages_log().matches("\"ev\":\"delivered\"").count();
    let mut hung = 0;
    for round in ["10 peers", "10 peers + hung ones", "10 peers", "10 peers + hung ones"] {
        if round.contains("hung") {
            let id = onion_id();
            proxy.route(&id, Route::Hang);
            send(sender.client, &id, "into the void");
            hung += 1;
            wait_for("the hung connection", 5, || proxy.connects(&id) == 1);
        }
        let (before, start) = (delivered(), Instant::now());
        for i in 0..200 {
            peers.iter().for_each(|p| send(sender.client, &p.id, &format!("{round} {i}")));
        }
        wait_for("2,000 deliveries", 120, || delivered() >= before + 2000);
        let secs = start.elapsed().as_secs_f64();
        println!("{round} ({hung} hung): 2,000 delivered in {secs:.2} s: {:.0} messages/s", 2000.0 / secs);
    }
    for p in &peers {
        assert_eq!(p.messages_log().matches("\"ev\":\"recv\"").count(), 800);
    }
}

/// The reference for RECV ingest: accept, read one request, write a fixed reply, close,
/// on one thread with mio like the daemon, and nothing else.
fn minimal_server() -> u16 {
    use mio::{net::TcpListener, Events, Interest, Poll, Token};
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        poll.registry().register(&mut listener, Token(0), Interest::READABLE).unwrap();
        let (mut events, mut conns, mut next) = (Events::with_capacity(1024), std::collections::HashMap::new(), 1);
        loop {
            poll.poll(&mut events, None).unwrap();
            for event in events.iter() {
                if event.token() == Token(0) {
                    while let Ok((mut sock, _)) = listener.accept() {
                        poll.registry().register(&mut sock, Token(next), Interest::READABLE).unwrap();
                        conns.insert(next, (sock, Vec::new()));
                        next += 1;
                    }
                } else if let Some((sock, buf)) = conns.get_mut(&event.token().0) {
                    let mut chunk = [0u8; 4096];
                    while let Ok(n @ 1..) = sock.read(&mut chunk) {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    if buf.ends_with(b"}") {
                        let _ = sock.write(b"{\"cmd\":\"END\",\"msg\":\"\"}");
                        conns.remove(&event.token().0);
                    }
                }
            }
        }
    });
    port
}

/// RECV round trips (connect, write, read the acknowledgement to EOF, close) per second.
fn ingest(port: u16, senders: usize, peers: &[String], secs: u64) -> f64 {
    let text = "r".repeat(100);
    let threads: Vec<_> = (0..senders)
        .map(|t| {
            let bodies: Vec<String> = peers
                .iter()
                .skip(t)
                .step_by(senders.max(1))
                .map(|p| format!("{{\"cmd\":\"RECV\",\"id\":\"{p}\",\"msg\":\"{text}\",\"portno\":80}}"))
                .collect();
            std::thread::spawn(move || {
                let (end, mut n) = (Instant::now() + Duration::from_secs(secs), 0usize);
                while Instant::now() < end {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.write_all(bodies[n % bodies.len()].as_bytes()).unwrap();
                    let _ = s.read_to_end(&mut Vec::new());
                    n += 1;
                }
                n
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum::<usize>() as f64 / secs as f64
}

#[test]
#[ignore]
fn recv_ingest_against_a_minimal_server() {
    let d = Daemon::start("bench-ingest", &["--max-unread", "100000"]);
    let reference = minimal_server();
    let peers: Vec<String> = (0..1000).map(|_| onion_id()).collect();
    for senders in [1, 16, 64] {
        let minimal = ingest(reference, senders, &peers, 3);
        let daemon = ingest(d.peer, senders, &peers, 3);
        println!(
            "RECV ingest, {senders:2} senders: daemon {daemon:7.0}/s, minimal server {minimal:7.0}/s: {:.0}%",
            100.0 * daemon / minimal
        );
    }
}

#[test]
#[ignore]
fn update_latency_against_a_minimal_server() {
    let d = Daemon::start("bench-latency", &[]);
    let reference = minimal_server();
    let peer = onion_id();
    for clients in [1, 16] {
        let (_, m50, m99) = update_load(reference, &peer, clients, 3);
        let (rps, p50, p99) = update_load(d.client, &peer, clients, 3);
        println!("UPDATE, {clients:2} clients: daemon {rps:6.0}/s p50 {p50:?} p99 {p99:?}; minimal server p50 {m50:?} p99 {m99:?}");
    }
}
