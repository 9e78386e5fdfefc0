//! The scripts in scripts/ on a log written by a real exchange between two daemons.

mod common;
use common::*;
use std::process::Command;

fn python(script: &str, args: &[&str]) -> String {
    let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(path).args(args).output().expect("python3");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_log_scripts_read_a_real_log() {
    let (_proxy, nodes) = network(2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let other = onion_id();
    recv_from(a.peer, &b.id, "hello from b");
    recv_from(a.peer, &other, "hello from someone else");
    send(a.client, &b.id, "caf\u{e9} back to b");
    wait_for("the delivery", 10, || a.messages_log().contains("\"delivered\""));
    update(a.client, &b.id);
    send(b.client, &a.id, "signed by b");
    wait_for("b's signed message", 10, || a.messages_log().contains("signed by b"));
    let log = a.dir.join("logs/messages.log");
    let log = log.to_str().unwrap();

    let out = python("conversation.py", &[log, &b.id]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("< hello from b  [unverified]"), "{out}");
    assert!(lines[1].ends_with("> caf\u{e9} back to b  [delivered]"), "{out}");
    assert!(lines[2].ends_with("< signed by b"), "{out}");

    let dir = a.dir.join("split");
    let out = python("split-log.py", &[log, dir.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let of_b = std::fs::read_to_string(dir.join(format!("{}.log", b.id))).unwrap();
    assert_eq!(of_b.lines().count(), 5, "recv, queued, delivered, read, recv: {of_b}");
    let of_other = std::fs::read_to_string(dir.join(format!("{other}.log"))).unwrap();
    assert!(of_other.contains("hello from someone else") && !of_other.contains("hello from b"));
}
