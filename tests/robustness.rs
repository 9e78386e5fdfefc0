//! Bad input of every kind gets a clear refusal or a clean close, and the daemon goes on
//! serving everybody else. Each case here crashed, hung or lost data in the 2017 daemon.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn error_of(port: u16, bytes: &[u8]) -> String {
    let reply = ask_raw(port, bytes);
    assert_eq!(reply["cmd"], "END", "{reply}");
    assert_eq!(reply["msg"], "", "a refusal still has the msg the 2017 client reads");
    reply["error"].as_str().unwrap_or_else(|| panic!("no error in {reply}")).to_string()
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let d = Daemon::start("malformed", &[]);
    let id = onion_id();
    let cases: &[(&[u8], &str)] = &[
        (b"{}", "missing field `cmd`"),
        (b"not json", "bad request"),
        (b"[1, 2]", "expected a JSON object"),
        (b"[\"EXIT\"]", "expected a JSON object"),
        (b"  \"EXIT\"", "expected a JSON object"),
        (b"{\"cmd\": \"UPDATE\"}", "missing field `msg`"),
        (b"{\"cmd\": \"UPDATE\", \"msg\": null}", "invalid type: null"),
        (b"{\"cmd\": \"UPDATE\", \"msg\": 5}", "invalid type"),
        (b"{\"cmd\": \"SEND\", \"id\": 5, \"msg\": \"x\", \"portno\": 80}", "invalid type"),
        (b"{\"cmd\": \"FOO\"}", "unknown variant `FOO`"),
        (b"{\"cmd\": 5}", "invalid type"),
        (b"{\"cmd\": \"HISTORY\", \"msg\": \"10\"}", "missing field `id`"),
        (b"{\"cmd\": \"UPDATE\", \"msg\": \"\xff\xfe\"}", "bad request"),
        (b"{\"cmd\": \"UPDATE\", \"msg\": \"abc.onion\"}", "not an onion id"),
        (b"{\"cmd\": \"HOST\", \"cmd\": \"EXIT\"}", "duplicate field `cmd`"),
    ];
    for (bytes, why) in cases {
        let error = error_of(d.client, bytes);
        assert!(error.contains(why), "{:?}: {error}", String::from_utf8_lossy(bytes));
    }
    let send = |portno: &str| format!("{{\"cmd\": \"SEND\", \"id\": \"{id}\", \"msg\": \"x\", \"portno\": {portno}}}");
    // The peer's virtual port, 1 to 65535: the only number a SEND has.
    assert!(error_of(d.client, send("0").as_bytes()).contains("expected a nonzero u16"));
    assert!(error_of(d.client, send("70000").as_bytes()).contains("expected a nonzero u16"));
    assert!(error_of(d.client, send("\"x\"").as_bytes()).contains("expected a nonzero u16"));
    let history = format!("{{\"cmd\": \"HISTORY\", \"id\": \"{id}\", \"msg\": \"ten\"}}");
    assert!(error_of(d.client, history.as_bytes()).contains("expected a number of lines"));
    // Malformed, a SEND leaves no notice (a refusal by a bound does: tests/hostile.rs).
    assert_eq!(update(d.client, &id)["cmd"], "END");
    assert_eq!(ask(d.client, "HOST", "localhost", "")["cmd"], "HOST");
    assert!(d.errors_log().contains("unknown variant `FOO`"), "refusals are in the errors log");
}

#[test]
fn a_request_split_across_writes_is_assembled() {
    let d = Daemon::start("split", &[]);
    let peer = onion_id();
    let body = serde_json::json!({"cmd": "RECV", "id": peer, "msg": "split in three"}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    s.set_nodelay(true).unwrap();
    for part in [&body[..10], &body[10..40], &body[40..]] {
        s.write_all(part.as_bytes()).unwrap();
        // Not synchronisation: only a gap, so that the daemon reads the parts apart.
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&read_all(&mut s)).unwrap()["cmd"], "END");
    assert_eq!(update(d.client, &peer)["msg"], shown("split in three"));
}

#[test]
fn only_the_first_of_two_objects_in_one_write_counts() {
    let d = Daemon::start("two", &[]);
    let peer = onion_id();
    let one = serde_json::json!({"cmd": "RECV", "id": peer, "msg": "one"});
    let two = serde_json::json!({"cmd": "RECV", "id": peer, "msg": "two"});
    let reply = ask_raw(d.peer, format!("{one}{two}").as_bytes());
    assert_eq!(reply["cmd"], "END");
    assert_eq!(drain(d.client, &peer), [shown("one")]);
}

#[test]
fn a_request_the_sender_closes_right_after_writing_is_served() {
    let d = Daemon::start("eof", &[]);
    let peer = onion_id();
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    s.write_all(serde_json::json!({"cmd": "RECV", "id": peer, "msg": "bye"}).to_string().as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    read_all(&mut s);
    assert_eq!(update(d.client, &peer)["msg"], shown("bye"));
    // Half a request, then EOF: refused with the reason, nothing stored.
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    s.write_all(b"{\"cmd\": \"RECV\", \"id\": \"").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(String::from_utf8_lossy(&read_all(&mut s)).contains("bad request: EOF while parsing"));
    assert_eq!(ask(d.client, "GET_PEERS", "localhost", "")["msg"], "");
}

#[test]
fn a_one_mebibyte_message_is_refused_and_nothing_else_suffers() {
    let d = Daemon::start("huge", &[]);
    let peer = onion_id();
    let body = serde_json::json!({"cmd": "RECV", "id": peer, "msg": "z".repeat(1 << 20)}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", d.peer)).unwrap();
    // The daemon stops reading at its buffer limit: it answers, or resets, mid-write.
    let _ = s.write_all(body.as_bytes());
    let reply = read_all(&mut s);
    if !reply.is_empty() {
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert!(reply["error"].as_str().unwrap().contains("larger than"), "{reply}");
    }
    assert_eq!(update(d.client, &peer)["cmd"], "END");
    assert_eq!(recv_from(d.peer, &peer, "small")["cmd"], "END");
    assert!(d.errors_log().contains("larger than 16384 bytes"));
}

#[test]
fn the_limits_of_unread_messages_are_enforced_with_an_error_the_sender_sees() {
    let d = Daemon::start("limits", &["--stranger-unread", "3", "--max-strangers", "2", "--max-unread", "4"]);
    let (a, b, c) = (onion_id(), onion_id(), onion_id());
    for i in 0..3 {
        assert_eq!(recv_from(d.peer, &a, &format!("{i}"))["cmd"], "END");
    }
    let busy = "busy: too many messages from unknown senders, try later";
    assert!(recv_from(d.peer, &a, "one too many")["error"].as_str().unwrap().contains(busy));
    recv_from(d.peer, &b, "b");
    assert!(recv_from(d.peer, &c, "c")["error"].as_str().unwrap().contains(busy));
    update(d.client, &a);
    assert_eq!(recv_from(d.peer, &a, "room again")["cmd"], "END");
    // A contact (a peer the user wrote to) has its own limit, --max-unread.
    send(d.client, &c, "hello");
    for i in 0..4 {
        assert_eq!(recv_from(d.peer, &c, &format!("{i}"))["cmd"], "END");
    }
    let full = recv_from(d.peer, &c, "one too many");
    assert!(full["error"].as_str().unwrap().contains("too many messages waiting for this peer"), "{full}");
}

#[test]
fn thousands_of_idle_connections_do_not_block_the_client_port() {
    raise_fd_limit();
    let d = Daemon::start("flood", &["--idle", "600", "--max-conns", "1000"]);
    let mut idle: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(("127.0.0.1", d.peer)).unwrap()).collect();
    // The client port has its own budget: it answers while the peer port is full.
    assert_eq!(ask(d.client, "HOST", "localhost", "")["cmd"], "HOST");
    // The 1,000 the daemon held give way, oldest first, to the 1,000 that waited in the
    // listen queue (PROTOCOL.md §9).
    let gave_way = idle[..1000].iter_mut().map(read_all);
    assert_eq!(gave_way.filter(|r| String::from_utf8_lossy(r).contains("busy, try later")).count(), 1000);
    drop(idle);
    wait_for("the slots to free up", 10, || recv_from(d.peer, &onion_id(), "after the storm")["cmd"] == "END");
}

#[test]
fn idle_connections_are_closed_after_the_idle_limit() {
    raise_fd_limit();
    let d = Daemon::start("idle", &["--idle", "1"]);
    let mut idle: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(("127.0.0.1", d.peer)).unwrap()).collect();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reply = String::from_utf8_lossy(&read_all(s)).to_string();
        assert!(reply.contains("no complete request in 1s"), "closed with the reason: {reply}");
    }
    assert!(d.errors_log().contains("no complete request in 1s"), "{}", d.errors_log());
}

#[test]
fn a_client_that_trickles_bytes_is_cut_at_the_idle_limit() {
    let d = Daemon::start("trickle", &["--idle", "1"]);
    let mut s = TcpStream::connect(("127.0.0.1", d.client)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut closed = false;
    for byte in b"{\"cmd\": \"HOST\"  ".iter().cycle().take(60) {
        if s.write_all(&[*byte]).is_err() || matches!(s.read(&mut [0u8; 64]), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a connection sending one byte per 100 ms outlived --idle 1");
}

#[test]
fn a_client_that_never_reads_does_not_hold_anything_up() {
    let d = Daemon::start("noread", &[]);
    let peer = onion_id();
    recv_from(d.peer, &peer, "kept");
    let silent: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.client)).unwrap();
            s.write_all(py_json("GET_PEERS", "localhost", 8000, "").as_bytes()).unwrap();
            s
        })
        .collect();
    assert_eq!(update(d.client, &peer)["msg"], shown("kept"));
    drop(silent);
}
