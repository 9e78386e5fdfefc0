//! Hostile peers (PROTOCOL.md §4, §5, §7): anyone who knows the onion id can write, and
//! an id costs nothing to make. Contacts come before strangers, signers are pinned,
//! refusals stay small, files stay private, and nothing is acknowledged before it is
//! on disk.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

const BUSY: &str = "busy: too many messages from unknown senders, try later";

fn error(reply: &Value) -> &str {
    reply["error"].as_str().unwrap_or_default()
}

#[test]
fn a_flood_of_made_up_ids_signed_or_not_never_refuses_a_contact() {
    let d = Daemon::start("flood-ids", &["--socks", "127.0.0.1:1"]);
    let contact = Key::new();
    send(d.client, &contact.id, "hello"); // the user writes first: a contact
    wait_for("the SEND", 5, || d.messages_log().contains("\"queued\""));
    let (stop, busy) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let flood: Vec<_> = (0..4)
        .map(|i| {
            let (stop, busy, port, me) = (stop.clone(), busy.clone(), d.peer, d.id.clone());
            thread::spawn(move || {
                for n in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let reply = match (i + n) % 2 {
                        0 => recv_from(port, &onion_id(), "unsigned, from nobody"),
                        _ => recv_raw(port, &Key::new().recv(&me, "signed, by a fresh key", now())),
                    };
                    busy.fetch_add(error(&reply).contains(BUSY) as usize, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for("the strangers' area to fill", 30, || busy.load(Ordering::Relaxed) > 100);
    for i in 0..50 {
        let body = contact.recv(&d.id, &format!("contact {i}"), now());
        let reply = recv_raw(d.peer, &body);
        assert_eq!(reply["msg"], body["mid"], "the contact's message {i} was not acknowledged: {reply}");
    }
    stop.store(true, Ordering::Relaxed);
    flood.into_iter().for_each(|t| t.join().unwrap());
    // GET_PEERS lists the contact first, as the 2017 client shows the first ones.
    let peers = ask(d.client, "GET_PEERS", "localhost", "");
    assert!(peers["msg"].as_str().unwrap().starts_with(&contact.id), "{peers}");
    assert_eq!((peers["contacts"].as_u64(), peers["cut"].as_u64()), (Some(1), Some(11)), "{peers}");
    let expected: Vec<String> = (0..50).map(|i| format!("contact {i}")).collect();
    assert_eq!(drain(d.client, &contact.id), expected);
    let stored = d.messages_log().matches("\"ev\":\"recv\"").count();
    assert_eq!(stored, 50 + 50, "the contact's 50, and one from each of the 50 strangers the area holds");
}

#[test]
fn a_full_strangers_area_refuses_before_verifying_and_admits_again_after_a_read() {
    let (_proxy, d) = network(2, &["--max-strangers", "1", "--stranger-unread", "1"]);
    let other = onion_id();
    assert_eq!(recv_from(d[1].peer, &other, "first")["cmd"], "END");
    // Refused by the bound, not by the signature check that would come after it.
    let mut forged = Key::new().recv(&d[1].id, "forged", now());
    forged["sig"] = json!(base64_of(&[7; 64]));
    assert!(error(&recv_raw(d[1].peer, &forged)).ends_with(BUSY));
    // A daemon that writes now is refused, and keeps trying.
    send(d[0].client, &d[1].id, "from a stranger");
    wait_for("a refusal at the sender", 10, || d[0].errors_log().contains(BUSY));
    assert_eq!(drain(d[1].client, &other), [shown("first")]);
    let mut reply = Value::Null;
    wait_for("the retry after the read", 30, || {
        reply = update(d[1].client, &d[0].id);
        reply["cmd"] == "UPDATE"
    });
    assert_eq!((&reply["msg"], &reply["verified"]), (&json!("from a stranger"), &json!(true)));
    // Replying makes the stranger a contact: listed first from then on.
    send(d[1].client, &d[0].id, "welcome");
    recv_from(d[1].peer, &onion_id(), "a new stranger");
    wait_for("the reply's delivery", 10, || d[1].messages_log().contains("\"delivered\""));
    recv_raw(d[1].peer, &d[0].key.as_ref().unwrap().recv(&d[1].id, "now a contact", now()));
    let peers = ask(d[1].client, "GET_PEERS", "localhost", "");
    assert!(peers["msg"].as_str().unwrap().starts_with(&d[0].id) && peers["contacts"] == 1, "{peers}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_signer_is_pinned_and_a_downgrade_is_refused_also_after_a_restart() {
    let mut d = Daemon::start("pin", &[]);
    let (alice, old_peer) = (Key::new(), onion_id());
    let body = alice.recv(&d.id, "signed", now());
    assert_eq!(recv_raw(d.peer, &body)["msg"], body["mid"]);
    for round in 0..2 {
        let reply = recv_from(d.peer, &alice.id, "unsigned, claiming alice");
        assert!(error(&reply).contains("this peer signs its messages"), "round {round}: {reply}");
        // A peer that never signed (a 2017 daemon) is still heard.
        assert_eq!(recv_from(d.peer, &old_peer, &format!("old {round}"))["cmd"], "END");
        d.crash_and_restart();
    }
    assert_eq!(drain(d.client, &alice.id), ["signed"]);
    assert_eq!(drain(d.client, &old_peer), ["old 0", "old 1"].map(shown));
}

#[test]
fn the_errors_log_stays_small_under_ten_thousand_hostile_requests_with_long_values() {
    let d = Daemon::start("long-values", &[]);
    let long = "x".repeat(16000);
    let bodies = [
        json!({"cmd": "RECV", "id": onion_id(), "msg": "hi", "ts": long}),
        json!({"cmd": "RECV", "id": long, "msg": "hi"}),
        json!({"cmd": long, "msg": "hi"}),
    ];
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (port, bodies) = (d.peer, bodies.clone());
            thread::spawn(move || {
                for n in 0..2500 {
                    let reply = recv_raw(port, &bodies[(i + n) % 3]);
                    assert!(reply.to_string().len() < 400, "a long reply: {reply}");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let errors = d.errors_log();
    assert!(errors.len() < 64 << 10, "errors.log grew to {} bytes", errors.len());
    assert!(errors.lines().all(|l| l.len() < 400), "a long line in the errors log");
    assert!(errors.contains("not logging them"), "the flood is said to be summarised");
    assert_eq!(ask(d.client, "HOST", "localhost", "")["id"], d.id.as_str());
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_log_folder_and_files_are_private_whatever_the_umask() {
    // SAFETY: umask(2) only sets this process's file mode mask.
    unsafe { libc::umask(0o022) };
    let (dir, key) = node_dir("modes");
    let logs = dir.join("logs");
    // As an earlier version left them: readable by everyone.
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["messages.log", "errors.log"] {
        std::fs::write(logs.join(file), "").unwrap();
        std::fs::set_permissions(logs.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let d = Daemon::start_in(dir, key.id.clone(), vec![]);
    recv_from(d.peer, &onion_id(), "private");
    ask(d.client, "NOPE", "localhost", "");
    wait_for("the refusal in errors.log", 5, || d.errors_log().contains("NOPE"));
    assert_eq!(mode(&logs), 0o700);
    for file in ["messages.log", "errors.log"] {
        assert_eq!(mode(&logs.join(file)), 0o600, "{file}");
    }
}

/// The daemon under strace: every write, send and fdatasync, with the file each descriptor is.
fn traced(dir: &std::path::Path, trace: &std::path::Path) -> (std::process::Child, u16, u16) {
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-s", "200", "-e", "trace=write,sendto,fdatasync", "-o", trace.to_str().unwrap(), bin()])
        .args(["--hostname", dir.join("hostname").to_str().unwrap(), "--logs", dir.join("logs").to_str().unwrap()])
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (apt-get install strace)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = |what: &str| {
        let rest = line.split(what).nth(1).expect("the ready line");
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (child, port("clients on 127.0.0.1:"), port("peers on 127.0.0.1:"))
}

#[test]
fn an_acknowledgement_leaves_only_after_its_record_is_synced() {
    let (dir, _key) = node_dir("durable");
    let trace = dir.join("trace.txt");
    let (mut child, client_port, peer_port) = traced(&dir, &trace);
    let mid = "0123456789abcdef0123456789abcdef";
    let ack = recv_raw(peer_port, &json!({"cmd": "RECV", "id": onion_id(), "msg": "durable", "mid": mid}));
    assert_eq!(ack["msg"], mid);
    // EXIT, not a kill: strace would leave the daemon running.
    tell(client_port, "EXIT", "localhost", 8000, "");
    assert!(child.wait().unwrap().success());
    let trace = std::fs::read_to_string(trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let at = |what: &str, from: usize| lines[from..].iter().position(|l| l.contains(what)).map(|i| i + from);
    let record = at("messages.log>, \"", 0).expect("the record's write");
    assert!(lines[record].contains("durable"), "{}", lines[record]);
    let sync = at("fdatasync(", record).expect("an fdatasync after the record");
    let reply = at(mid, record + 1).expect("the acknowledgement's write");
    assert!(lines[reply].contains("sendto(") && lines[reply].contains("END"), "{}", lines[reply]);
    assert!(sync < reply, "the acknowledgement went out before the sync:\n{trace}");
}

#[test]
fn a_long_notice_from_an_earlier_version_is_shown_bounded_and_a_refused_send_is_a_notice() {
    let (dir, key) = node_dir("old-notice");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let peer = onion_id();
    // A notice as earlier versions could write it: its reason quotes 16,000 characters.
    let why = format!("bad request: invalid type: string \\\"{}\\\"", "9".repeat(16000));
    let old = format!("\"failed\",\"peer\":\"{peer}\",\"mid\":\"\",\"why\":\"{why}\",\"msg\":\"\"");
    let line = format!("2026-11-25T18:00:00Z {{\"t\":1,\"ev\":{old}}}\n");
    std::fs::write(dir.join("logs/messages.log"), line).unwrap();
    let d =
        Daemon::start_in(dir, key.id, vec!["--socks".into(), "127.0.0.1:1".into(), "--max-unread".into(), "1".into()]);
    let notice = update(d.client, &peer);
    assert!(notice["msg"].as_str().unwrap().starts_with("[not delivered: bad request"), "{notice}");
    assert!(error(&notice).len() <= 160, "{notice}");
    assert_eq!(update(d.client, &peer)["cmd"], "END", "shown once");
    // A SEND refused by a bound: the 2017 client never reads that reply, so the
    // message comes back as a notice, which fits in one reply with the longest text.
    let text = "y".repeat(3000);
    send(d.client, &peer, "first");
    send(d.client, &peer, &text);
    let notice = update(d.client, &peer);
    let expected = format!("[not delivered: too many messages waiting for this peer] {text}");
    assert_eq!(
        (notice["msg"].as_str(), error(&notice)),
        (Some(expected.as_str()), "too many messages waiting for this peer")
    );
    // A SEND whose port is a 16,000-character string: a short reason, no notice.
    let long = json!({"cmd": "SEND", "id": peer, "portno": "8".repeat(16000), "msg": "x"});
    assert!(error(&ask_raw(d.client, long.to_string().as_bytes())).len() <= 160);
    assert_eq!(update(d.client, &peer)["cmd"], "END");
}
