//! Delivery between daemons through a SOCKS5 proxy that stands in for Tor.

mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn count(log: &str, what: &str) -> usize {
    log.matches(&format!("\"ev\":\"{what}\"")).count()
}

/// All of `peer`'s messages as they arrive, until `n` have come.
fn receive(d: &Daemon, peer: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    wait_for(&format!("{n} messages from {peer}"), 30, || {
        got.extend(drain(d.client, peer));
        got.len() >= n
    });
    got
}

#[test]
fn two_daemons_chat_both_ways() {
    let (_proxy, d) = network(2, &[]);
    send(d[0].client, &d[1].id, "hello from 0");
    send(d[1].client, &d[0].id, "hello from 1");
    assert_eq!(receive(&d[1], &d[0].id, 1), ["hello from 0"]);
    assert_eq!(receive(&d[0], &d[1].id, 1), ["hello from 1"]);
    wait_for("both deliveries logged", 10, || d.iter().all(|d| count(&d.messages_log(), "delivered") == 1));
    let history = ask(d[0].client, "HISTORY", &d[1].id, "10");
    let lines: Vec<(&str, &str)> = history["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["dir"].as_str().unwrap(), l["msg"].as_str().unwrap()))
        .collect();
    assert!(lines.contains(&("out", "hello from 0")) && lines.contains(&("in", "hello from 1")), "{history}");
    assert_eq!(history["lines"].as_array().unwrap().iter().find(|l| l["dir"] == "out").unwrap()["state"], "delivered");
}

#[test]
fn three_daemons_each_get_what_was_sent_to_them() {
    let (_proxy, d) = network(3, &[]);
    for (from, to) in [(0, 1), (1, 2), (2, 0), (0, 2)] {
        send(d[from].client, &d[to].id, &format!("{from} to {to}"));
    }
    assert_eq!(receive(&d[1], &d[0].id, 1), ["0 to 1"]);
    assert_eq!(receive(&d[2], &d[1].id, 1), ["1 to 2"]);
    assert_eq!(receive(&d[0], &d[2].id, 1), ["2 to 0"]);
    assert_eq!(receive(&d[2], &d[0].id, 1), ["0 to 2"]);
}

#[test]
fn a_burst_of_1000_messages_arrives_in_order() {
    let (_proxy, d) = network(2, &[]);
    let sent: Vec<String> = (0..1000).map(|i| format!("message {i}")).collect();
    for text in &sent {
        send(d[0].client, &d[1].id, text);
    }
    assert_eq!(receive(&d[1], &d[0].id, 1000), sent);
    assert_eq!(count(&d[1].messages_log(), "recv"), 1000, "each once");
}

#[test]
fn a_refused_destination_ends_in_a_notice_after_the_give_up_time() {
    let (proxy, d) = network(1, &["--give-up", "2"]);
    let nobody = onion_id();
    proxy.route(&nobody, Route::Refuse);
    send(d[0].client, &nobody, "are you there?");
    let mut notice = Value::Null;
    wait_for("the notice", 20, || {
        notice = update(d[0].client, &nobody);
        notice["cmd"] == "UPDATE"
    });
    assert_eq!(notice["msg"], "[not delivered: connection refused] are you there?");
    assert_eq!(notice["error"], "connection refused");
    let history = ask(d[0].client, "HISTORY", &nobody, "1");
    assert_eq!(history["lines"][0]["state"], "failed: connection refused");
    assert!(proxy.connects(&nobody) >= 2, "retried before giving up");
    assert_eq!(count(&d[0].messages_log(), "failed"), 1);
    assert!(d[0].errors_log().contains("connection refused"));
}

#[test]
fn a_hung_peer_does_not_delay_the_others() {
    let (proxy, d) = network(11, &[]);
    let hung = onion_id();
    proxy.route(&hung, Route::Hang);
    send(d[0].client, &hung, "into the void");
    wait_for("the hung connection", 5, || proxy.connects(&hung) == 1);
    for other in &d[1..] {
        send(d[0].client, &other.id, "prompt");
    }
    for other in &d[1..] {
        assert_eq!(receive(other, &d[0].id, 1), ["prompt"]);
    }
}

#[test]
fn a_peer_that_is_down_gets_its_messages_once_when_it_comes_back() {
    let (proxy, mut d) = network(2, &[]);
    d[1].kill();
    for i in 0..3 {
        send(d[0].client, &d[1].id, &format!("while down {i}"));
    }
    wait_for("a failed attempt", 10, || d[0].errors_log().contains("connection refused"));
    d[1].restart();
    proxy.route(&d[1].id, Route::To(d[1].peer));
    assert_eq!(receive(&d[1], &d[0].id, 3), ["while down 0", "while down 1", "while down 2"]);
    wait_for("all delivered", 10, || count(&d[0].messages_log(), "delivered") == 3);
    assert_eq!(count(&d[1].messages_log(), "recv"), 3);
}

#[test]
fn queued_messages_survive_a_kill_9_of_the_sender() {
    let (proxy, mut d) = network(2, &[]);
    proxy.route(&d[1].id, Route::Refuse);
    for i in 0..5 {
        send(d[0].client, &d[1].id, &format!("queued {i}"));
    }
    wait_for("5 queued", 5, || count(&d[0].messages_log(), "queued") == 5);
    d[0].crash_and_restart();
    proxy.route(&d[1].id, Route::To(d[1].peer));
    let texts: Vec<String> = (0..5).map(|i| format!("queued {i}")).collect();
    assert_eq!(receive(&d[1], &d[0].id, 5), texts);
    wait_for("all delivered", 10, || count(&d[0].messages_log(), "delivered") == 5);
    assert_eq!(count(&d[1].messages_log(), "recv"), 5, "each once");
}

/// A peer in the test: answers each request with what `reply` returns (None: close
/// without a word, like the 2017 daemon), and keeps what it was sent.
fn fake_peer(reply: impl Fn(&Value, usize) -> Option<Value> + Send + 'static) -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = seen.clone();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
            let request = loop {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    break Some(v);
                }
            };
            let Some(request) = request else { continue };
            let n = {
                let mut seen = kept.lock().unwrap();
                seen.push(request.clone());
                seen.len()
            };
            if let Some(answer) = reply(&request, n) {
                let _ = conn.write_all(answer.to_string().as_bytes());
            }
        }
    });
    (port, seen)
}

#[test]
fn a_peer_that_never_acknowledges_gets_each_message_once_marked_unconfirmed() {
    let (proxy, d) = network(1, &[]);
    let (port, seen) = fake_peer(|_, _| None);
    let old = onion_id();
    proxy.route(&old, Route::To(port));
    for i in 0..3 {
        send(d[0].client, &old, &format!("to the past {i}"));
    }
    wait_for("3 unconfirmed", 15, || count(&d[0].messages_log(), "unconfirmed") == 3);
    let seen = seen.lock().unwrap();
    let texts: Vec<&str> = seen.iter().map(|v| v["msg"].as_str().unwrap()).collect();
    assert_eq!(texts, ["to the past 0", "to the past 1", "to the past 2"]);
    assert!(seen.iter().all(|v| v["cmd"] == "RECV" && v["id"] == d[0].id.as_str() && v["portno"] == 80));
    let history = ask(d[0].client, "HISTORY", &old, "3");
    assert!(history["lines"].as_array().unwrap().iter().all(|l| l["state"] == "unconfirmed"), "{history}");
}

#[test]
fn a_lost_acknowledgement_from_a_peer_that_acknowledges_costs_a_retry_not_a_message() {
    let (proxy, d) = network(1, &[]);
    let ack = |v: &Value| Some(serde_json::json!({"cmd": "END", "id": "x", "msg": v["mid"]}));
    // Acknowledges the first message, swallows the first try of the second.
    let (port, seen) = fake_peer(move |v, n| if n == 2 { None } else { ack(v) });
    let peer = onion_id();
    proxy.route(&peer, Route::To(port));
    send(d[0].client, &peer, "one");
    wait_for("one delivered", 10, || count(&d[0].messages_log(), "delivered") == 1);
    send(d[0].client, &peer, "two");
    wait_for("two delivered", 15, || count(&d[0].messages_log(), "delivered") == 2);
    let seen = seen.lock().unwrap();
    let texts: Vec<&str> = seen.iter().map(|v| v["msg"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "two"]);
    assert_eq!(seen[1]["mid"], seen[2]["mid"], "a retry keeps the mid");
    let key = d[0].key.as_ref().unwrap();
    for body in seen.iter() {
        let ts = body["ts"].as_u64().unwrap();
        assert!(ts % 60 == 0 && now() - ts < 120, "ts to the minute, now: {body}");
        assert!(key.signed(&peer, body), "signed for this receiver: {body}");
        assert!(!key.signed(&onion_id(), body));
    }
    assert_eq!(count(&d[0].messages_log(), "unconfirmed"), 0);
}

/// PROTOCOL.md §6: a RECV that verifies as the peer's own shows it is online, so a
/// delivery to it waiting between tries goes at once, its backoff started over. An
/// unsigned RECV claiming its id wakes nothing.
#[test]
fn a_peer_that_writes_gets_what_waits_for_it_at_once() {
    let (proxy, d) = network(2, &[]);
    let (a, b) = (&d[0], &d[1]);
    proxy.route(&b.id, Route::Refuse);
    send(a.client, &b.id, "while you were away 1");
    send(a.client, &b.id, "while you were away 2");
    // Tries 1, 2 and 4 s apart fail; the next waits 8 s.
    wait_for("tries 8 s apart", 20, || a.errors_log().contains("next try in 8s"));
    let (waiting, tries) = (Instant::now(), proxy.connects(&b.id));
    // B has never signed here, so anyone could claim its id: this wakes nothing.
    assert_eq!(recv_from(a.peer, &b.id, "claiming to be b")["cmd"], "END");
    wait_for("the scheduled try", 20, || proxy.connects(&b.id) > tries);
    let unsigned = waiting.elapsed();
    assert!(unsigned >= Duration::from_secs(7), "an unsigned RECV woke the delivery: tried after {unsigned:?}");
    wait_for("tries 16 s apart", 5, || a.errors_log().contains("next try in 16s"));

    // B is back and writes: its signed message wakes A's delivery, 16 s early.
    proxy.route(&b.id, Route::To(b.peer));
    let back = Instant::now();
    send(b.client, &a.id, "I'm back");
    wait_for("B's message at A", 5, || a.messages_log().contains("I'm back"));
    wait_for("A's waiting messages at B", 5, || b.messages_log().contains("while you were away 2"));
    let latency = back.elapsed();
    let got = receive(b, &a.id, 2);
    assert_eq!(got, ["while you were away 1", "while you were away 2"], "in order, each once");
    wait_for("both delivered", 5, || count(&a.messages_log(), "delivered") == 2);
    // The backoff started over: the woken try succeeded, so no try was scheduled after it.
    assert!(!a.errors_log().contains("next try in 32s"), "{}", a.errors_log());

    // A signed RECV while no delivery waits changes nothing.
    let (tries, log) = (proxy.connects(&b.id), a.messages_log());
    send(b.client, &a.id, "still here");
    wait_for("B's second message at A", 5, || a.messages_log().contains("still here"));
    assert_eq!(proxy.connects(&b.id), tries, "no connection to B");
    let new = &a.messages_log()[log.len()..];
    assert_eq!((new.lines().count(), count(new, "recv")), (1, 1), "only the RECV: {new}");
    println!("B's SEND to A's two waiting messages at B: {latency:?} (A's next scheduled try was 16 s away)");
}
