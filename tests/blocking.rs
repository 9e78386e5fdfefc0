//! Blocking (PROTOCOL.md §12): a blocked peer is heard no more and sent nothing more,
//! its history kept, all of it derived from the messages log, so that it survives a
//! restart; UNBLOCK makes it a stranger until the user writes to it again. Daemons
//! talk through the SOCKS proxy of the tests.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn block(d: &Daemon, cmd: &str, peer: &str) -> Value {
    ask(d.client, cmd, peer, "")
}

fn history(d: &Daemon, peer: &str) -> Value {
    ask(d.client, "HISTORY", peer, "50")
}

/// The states of our messages in HISTORY, oldest first.
fn states(reply: &Value) -> Vec<String> {
    let lines = reply["lines"].as_array().unwrap();
    lines.iter().filter(|l| l["dir"] == "out").map(|l| l["state"].as_str().unwrap().to_string()).collect()
}

fn unread_peers(d: &Daemon) -> String {
    ask(d.client, "GET_PEERS", "localhost", "")["msg"].as_str().unwrap().to_string()
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

/// Watches for `window`: `cond` must hold throughout (an observation, not a wait).
fn holds_for(window: Duration, what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(cond(), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_blocked_peer_is_heard_no_more_and_sent_nothing_also_after_a_restart() {
    let (proxy, mut nodes) = network(2, &["--stranger-unread", "2"]);
    let b = nodes.pop().unwrap();
    let mut a = nodes.pop().unwrap();

    // A and B are each other's contacts; B has written twice, unread at A.
    send(a.client, &b.id, "hello B");
    send(b.client, &a.id, "one");
    send(b.client, &a.id, "two");
    wait_for("B's two messages at A", 10, || ask(a.client, "GET_PEERS", "", "")["unread"] == json!([2]));
    wait_for("A's message delivered", 10, || count(&a.messages_log(), "\"ev\":\"delivered\"") == 1);

    // Two messages of A's wait for B, which Tor cannot reach now.
    proxy.route(&b.id, Route::Refuse);
    send(a.client, &b.id, "queued 1");
    send(a.client, &b.id, "queued 2");
    wait_for("A's delivery waiting between tries", 10, || a.errors_log().contains("; next try in 2s"));

    let reply = block(&a, "BLOCK", &b.id);
    assert_eq!(reply, json!({"cmd": "BLOCK", "id": b.id, "msg": ""}));
    let tries = proxy.connects(&b.id);
    assert_eq!(unread_peers(&a), "", "its unread leave at once");
    assert_eq!(update(a.client, &b.id)["cmd"], "END");
    let h = history(&a, &b.id);
    assert_eq!(h["blocked"], true, "{h}");
    assert_eq!(states(&h), ["delivered", "failed: blocked", "failed: blocked"], "{h}");
    let texts: Vec<&str> = h["lines"].as_array().unwrap().iter().map(|l| l["msg"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello B", "one", "two", "queued 1", "queued 2"], "its history is kept");

    // B's messages are acknowledged and kept nowhere; B counts them delivered and stops.
    proxy.route(&b.id, Route::To(b.peer));
    let b_delivered = count(&b.messages_log(), "\"ev\":\"delivered\"");
    send(b.client, &a.id, "three");
    wait_for("B's message counted delivered", 10, || count(&b.messages_log(), "\"ev\":\"delivered\"") > b_delivered);
    assert!(!a.messages_log().contains("three"), "a blocked peer's message was stored");
    assert!(!b.errors_log().contains("next try"), "B retried: {}", b.errors_log());
    // Even an unsigned claim of B's id, which a signer's id would refuse, is only acked.
    assert_eq!(recv_from(a.peer, &b.id, "not B"), json!({"cmd": "END", "id": a.id, "msg": ""}));
    assert!(!a.messages_log().contains("not B"));

    // A SEND to B is refused, and leaves no notice (PROTOCOL.md §9 does not apply).
    let refused = ask(a.client, "SEND", &b.id, "still there?");
    assert!(refused["error"].as_str().unwrap().contains("this peer is blocked: UNBLOCK it first"), "{refused}");
    assert_eq!((unread_peers(&a), update(a.client, &b.id)["cmd"].clone()), (String::new(), json!("END")));
    holds_for(Duration::from_secs(5), "a blocked peer's waiting delivery was tried again", || {
        proxy.connects(&b.id) == tries
    });

    // All of it comes back from the messages log.
    a.crash_and_restart();
    assert_eq!(history(&a, &b.id)["blocked"], true);
    assert_eq!(states(&history(&a, &b.id)), ["delivered", "failed: blocked", "failed: blocked"]);
    send(b.client, &a.id, "four");
    wait_for("B's next message counted delivered", 10, || {
        count(&b.messages_log(), "\"ev\":\"delivered\"") > b_delivered + 1
    });
    assert!(!a.messages_log().contains("four"));
    assert!(ask(a.client, "SEND", &b.id, "x")["error"].as_str().unwrap().contains("blocked"));
    assert_eq!(proxy.connects(&b.id), tries, "nothing was sent to B after the restart");

    // Unblocked, B is a stranger: its messages are heard again, within the strangers'
    // bound (2 here), until A writes to it.
    assert_eq!(block(&a, "UNBLOCK", &b.id), json!({"cmd": "UNBLOCK", "id": b.id, "msg": ""}));
    assert_eq!(history(&a, &b.id)["blocked"], false);
    for text in ["five", "six", "seven"] {
        send(b.client, &a.id, text);
    }
    wait_for("a stranger's room refusing B", 10, || b.errors_log().contains("unknown senders"));
    assert_eq!(drain(a.client, &b.id), ["five", "six"]);
    send(a.client, &b.id, "welcome back");
    wait_for("B's third message, once B is a contact again", 20, || drain(a.client, &b.id) == ["seven"]);
    assert_eq!(drain(b.client, &a.id), ["hello B", "welcome back"], "what was blocked was never sent");
}

/// A delivery that is trying when the peer is blocked may finish; its late report of a
/// failure is no unread notice.
#[test]
fn a_late_report_from_a_blocked_peers_delivery_is_no_notice() {
    let (proxy, nodes) = network(1, &["--give-up", "1"]);
    let a = &nodes[0];
    let peer = onion_id();
    // The peer reads the message, then refuses it when the test says so.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.route(&peer, Route::To(listener.local_addr().unwrap().port()));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        released.recv().unwrap();
        s.write_all(br#"{"cmd":"END","msg":"","error":"no"}"#).unwrap();
    });
    let queued = Instant::now();
    send(a.client, &peer, "in flight");
    wait_for("the try to be open", 10, || proxy.connects(&peer) == 1);
    assert_eq!(block(a, "BLOCK", &peer)["cmd"], "BLOCK");
    // Past the give-up time, the refusal ends the delivery as failed.
    wait_for("the give-up time to pass", 5, || queued.elapsed() > Duration::from_millis(1100));
    release.send(()).unwrap();
    fake.join().unwrap();
    wait_for("the late report", 10, || count(&a.messages_log(), "\"ev\":\"failed\"") == 2);
    assert_eq!(unread_peers(a), "");
    assert_eq!(update(a.client, &peer)["cmd"], "END");
    assert_eq!(states(&history(a, &peer)), ["failed: refused by the peer: no"]);
    holds_for(Duration::from_secs(3), "a blocked peer was tried again", || proxy.connects(&peer) == 1);
}

#[test]
fn block_and_unblock_refuse_a_bad_id_and_are_one_reply_each() {
    let d = Daemon::start("block-bad", &[]);
    for bad in ["localhost", "", "abc.onion"] {
        let reply = block(&d, "BLOCK", bad);
        assert_eq!(reply["cmd"], "END", "{reply}");
        assert!(reply["error"].as_str().unwrap().contains("onion id"), "{reply}");
    }
    let reply = ask_raw(d.client, br#"{"cmd":"UNBLOCK"}"#);
    assert!(reply["error"].as_str().unwrap().contains("missing field `id`"), "{reply}");
    // Blocking a peer never written to, twice, and unblocking it: each answered.
    let peer = onion_id();
    assert_eq!(block(&d, "BLOCK", &peer)["cmd"], "BLOCK");
    assert_eq!(block(&d, "BLOCK", &peer)["cmd"], "BLOCK");
    assert_eq!(recv_from(d.peer, &peer, "hi")["cmd"], "END");
    assert_eq!(unread_peers(&d), "");
    assert_eq!(block(&d, "UNBLOCK", &peer)["cmd"], "UNBLOCK");
    recv_from(d.peer, &peer, "hi again");
    assert_eq!(drain(d.client, &peer), [shown("hi again")]);
    assert_eq!(count(&d.messages_log(), "\"ev\":\"block\""), 2);
}

/// The panel's entries: its rows that start with a number.
fn panel(screen: &str) -> Vec<String> {
    let rows = screen.lines().map(|l| l.split('|').next().unwrap_or("").trim());
    rows.filter(|r| r.split(' ').next().is_some_and(|n| n.parse::<u32>().is_ok())).map(String::from).collect()
}

#[test]
fn our_client_blocks_a_peer_lists_it_unblocks_it_and_leaves_it_out_of_a_group() {
    let (_proxy, nodes) = network(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    send(b.client, &a.id, "hi from B");
    send(c.client, &a.id, "hi from C");
    let home = temp_dir("block-home");
    let t = Terminal::start_in(a.client, 120, 32, home.clone());
    t.wait("A connected", |s| s.contains("connected"));
    for (id, name) in [(&b.id, "bob"), (&c.id, "carol")] {
        t.type_line(id);
        t.wait("the conversation", |s| s.contains(&format!("< hi from {}", &name[..1].to_uppercase())));
        t.type_line(&format!("/name {name}"));
        t.wait("the name in the panel", |s| panel(s).iter().any(|e| e.ends_with(name)));
    }
    t.type_line("/group team bob carol");
    t.wait("the group", |s| s.contains("members: me, bob, carol"));

    // /block on the open conversation: out of the panel, still open, marked.
    t.type_line("/peer bob");
    t.wait("bob's conversation", |s| s.contains("< hi from B"));
    t.type_line("/block");
    let screen =
        t.wait("bob blocked", |s| s.contains("bob blocked: what it sends is dropped") && s.contains("[blocked]"));
    assert!(!panel(&screen).iter().any(|e| e.ends_with("bob")), "bob left the panel: {screen}");
    assert!(screen.contains("< hi from B"), "its history stays: {screen}");
    t.type_line("/blocked");
    t.wait("the list", |s| s.contains("blocked (/unblock ID|NAME):") && s.contains(&format!("bob {}", b.id)));

    // B writes again: delivered for B's daemon, never shown at A.
    send(b.client, &a.id, "are you there?");
    wait_for("B's message counted delivered", 10, || count(&b.messages_log(), "\"ev\":\"delivered\"") == 1);
    assert!(!t.screen().contains("are you there?"));

    // A group message leaves bob out, and says so; carol gets it.
    t.type_line("/peer 1");
    t.wait("the group open", |s| s.contains("#team"));
    t.type_line("hello team");
    t.wait("the fan-out's word", |s| s.contains("not sent to bob: blocked, left out"));
    wait_for("carol's copy", 10, || drain(c.client, &a.id).iter().any(|m| m.ends_with("] hello team")));
    assert!(drain(b.client, &a.id).iter().all(|m| !m.contains("hello team")), "bob got the group message");

    // A new client, the same daemon: the list agrees; /unblock empties it.
    t.type_line("/quit");
    t.wait("the client to end", |s| s.contains("client exited: 0"));
    drop(t);
    let t = Terminal::start_in(a.client, 120, 32, home.clone());
    t.wait("A connected", |s| s.contains("connected"));
    assert!(!panel(&t.screen()).iter().any(|e| e.ends_with("bob")));
    t.type_line("/blocked");
    t.wait("bob still listed", |s| s.contains(&format!("bob {}", b.id)));
    t.type_line("/unblock bob");
    t.wait("bob unblocked", |s| s.contains("bob unblocked: a stranger until you write to it"));
    assert_eq!(history(a, &b.id)["blocked"], false);
    t.type_line("/blocked");
    t.wait("nobody listed", |s| s.contains("blocked (/unblock ID|NAME):") && s.contains("  nobody"));
    t.wait("bob back in the panel", |s| panel(s).iter().any(|e| e.ends_with("bob")));

    // For scripts: --block and --unblock, which the full-screen client then agrees with.
    let (status, out, _) = run_client(&home, &[&a.client.to_string(), "--block", &c.id], "");
    assert_eq!((status, out), (0, format!("blocked {}\n", c.id)));
    assert_eq!(history(a, &c.id)["blocked"], true);
    t.type_line("/blocked");
    t.wait("carol listed", |s| s.contains(&format!("carol {}", c.id)));
    let (status, _, _) = run_client(&home, &[&a.client.to_string(), "--unblock", &c.id], "");
    assert_eq!(status, 0);
    assert_eq!(history(a, &c.id)["blocked"], false);
    let (status, _, err) = run_client(&home, &[&a.client.to_string(), "--block", "nobody"], "");
    assert!(status == 1 && err.contains("not an onion id"), "{err}");
    t.type_line("/remove bob");
    t.wait("bob removed", |s| s.contains("removed: no longer a contact"));
    assert_eq!(count(&a.messages_log(), "\"ev\":\"block\""), 3);
}
