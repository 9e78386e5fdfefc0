//! The client port as the 2017 Python client uses it: every command, every reply shape.

mod common;
use common::*;

#[test]
fn host_gives_the_full_id_and_a_short_form_the_2017_panel_can_draw() {
    let d = Daemon::start("host", &[]);
    let reply = ask(d.client, "HOST", "localhost", "");
    assert_eq!(reply["cmd"], "HOST");
    assert_eq!(reply["id"], d.id.as_str());
    let short = reply["msg"].as_str().unwrap();
    assert!(short.len() <= 26 && short.is_ascii(), "{short}");
    assert!(d.id.starts_with(&short[..16]));
}

#[test]
fn get_peers_lists_peers_with_unread_messages_contacts_first_in_order_of_first_arrival() {
    let d = Daemon::start("peers", &["--socks", "127.0.0.1:1"]);
    assert_eq!(
        ask(d.client, "GET_PEERS", "localhost", ""),
        serde_json::json!({"cmd": "GET_PEERS", "msg": "", "cut": 0, "unread": [], "contacts": 0})
    );
    let (a, b, c) = (onion_id(), onion_id(), onion_id());
    for (from, text) in [(&b, "1"), (&a, "2"), (&b, "3")] {
        assert_eq!(recv_from(d.peer, from, text)["cmd"], "END");
    }
    let reply = ask(d.client, "GET_PEERS", "localhost", "");
    assert_eq!(
        (reply["msg"].as_str().unwrap(), &reply["unread"]),
        (format!("{b},{a}").as_str(), &serde_json::json!([2, 1]))
    );
    drain(d.client, &b);
    assert_eq!(ask(d.client, "GET_PEERS", "localhost", "")["msg"], a.as_str());
    // Writing to a peer makes it a contact: listed before the strangers.
    send(d.client, &c, "hello");
    recv_from(d.peer, &b, "4");
    recv_from(d.peer, &c, "5");
    let reply = ask(d.client, "GET_PEERS", "localhost", "");
    assert_eq!((reply["msg"].as_str().unwrap(), &reply["contacts"]), (format!("{c},{a},{b}").as_str(), &1.into()));
}

#[test]
fn update_takes_the_oldest_unread_with_its_arrival_time() {
    let d = Daemon::start("update", &[]);
    let peer = onion_id();
    let empty = update(d.client, &peer);
    assert_eq!(empty["cmd"], "END");
    recv_from(d.peer, &peer, "first");
    recv_from(d.peer, &peer, "second");
    let reply = update(d.client, &peer);
    assert_eq!(
        (reply["cmd"].as_str(), reply["id"].as_str(), reply["msg"].as_str()),
        (Some("UPDATE"), Some(peer.as_str()), Some(shown("first").as_str()))
    );
    let date = reply["date"].as_str().unwrap();
    assert!(
        date.len() == 5 && date.as_bytes()[2] == b':' && date.replace(':', "").bytes().all(|b| b.is_ascii_digit()),
        "{date}"
    );
    assert_eq!(update(d.client, &peer)["msg"], shown("second"));
    assert_eq!(update(d.client, &peer)["cmd"], "END");
}

#[test]
fn ids_are_normalised_and_checked() {
    let d = Daemon::start("ids", &[]);
    let peer = onion_id();
    recv_from(d.peer, &peer, "hi");
    let bare = peer.trim_end_matches(".onion").to_uppercase();
    assert_eq!(update(d.client, &bare)["msg"], shown("hi"));
    let mut typo = peer.clone().into_bytes();
    typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
    let reply = update(d.client, std::str::from_utf8(&typo).unwrap());
    assert_eq!(reply["cmd"], "END");
    assert!(reply["error"].as_str().unwrap().contains("checksum"), "{reply}");
    assert!(update(d.client, "localhost")["error"].as_str().unwrap().contains("not an onion id"));
}

#[test]
fn text_arrives_intact_whatever_it_holds() {
    let d = Daemon::start("text", &[]);
    let peer = onion_id();
    let texts =
        ["caf\u{e9} \u{1f600} \u{4e2d}\u{6587}", "%s%n%x \"quoted\" \\ back", "two\nlines\ttab", "\u{7}\u{0}bell"];
    for text in texts {
        assert_eq!(recv_from(d.peer, &peer, text)["cmd"], "END");
    }
    assert_eq!(drain(d.client, &peer), texts.map(shown));
    // The same through the Python client's ensure_ascii escapes, both ways through our
    // own daemon: SEND is queued as sent, HISTORY shows it.
    send(d.client, &peer, texts[0]);
    wait_for("the SEND to be logged", 5, || d.messages_log().contains("\"queued\""));
    let history = ask(d.client, "HISTORY", &peer, "1");
    assert_eq!(history["lines"][0]["msg"], texts[0]);
}

#[test]
fn the_largest_message_fits_one_reply() {
    let d = Daemon::start("large", &[]);
    let peer = onion_id();
    let long = "x".repeat(3000);
    assert_eq!(recv_from(d.peer, &peer, &long)["cmd"], "END");
    let refused = recv_from(d.peer, &peer, &"x".repeat(3001));
    assert!(refused["error"].as_str().unwrap().contains("too long"), "{refused}");
    // Escapes count: 600 control characters take 3600 bytes in a reply.
    assert!(recv_from(d.peer, &peer, &"\u{1}".repeat(600))["error"].as_str().unwrap().contains("too long"));
    assert_eq!(update(d.client, &peer)["msg"], shown(&long));
    assert_eq!(update(d.client, &peer)["cmd"], "END");
}

#[test]
fn history_answers_from_the_log_and_cuts_the_oldest_to_fit() {
    let d = Daemon::start("history", &[]);
    let (peer, other) = (onion_id(), onion_id());
    for i in 0..10 {
        recv_from(d.peer, &peer, &format!("in {i}"));
        recv_from(d.peer, &other, &format!("mention of {peer}"));
        send(d.client, &peer, &format!("out {i}"));
    }
    wait_for("20 lines", 5, || d.messages_log().matches("out 9").count() == 1);
    let reply = ask(d.client, "HISTORY", &peer, "3");
    let lines = reply["lines"].as_array().unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l["msg"].as_str().unwrap()).collect();
    assert_eq!(texts, ["out 8", "in 9", "out 9"]);
    assert_eq!((lines[1]["dir"].as_str(), lines[2]["dir"].as_str()), (Some("in"), Some("out")));
    assert_eq!(reply["cut"], 0);
    let long = "y".repeat(1500);
    for _ in 0..5 {
        recv_from(d.peer, &peer, &long);
    }
    let reply = ask(d.client, "HISTORY", &peer, "50");
    assert!(reply["cut"].as_u64().unwrap() >= 20, "{}", reply["cut"]);
    assert_eq!(reply["lines"].as_array().unwrap().last().unwrap()["msg"], long.as_str());
}

#[test]
fn get_peers_stays_one_reply_with_many_peers() {
    let d = Daemon::start("many", &["--max-strangers", "100"]);
    for _ in 0..100 {
        recv_from(d.peer, &onion_id(), "hi");
    }
    let reply = ask(d.client, "GET_PEERS", "localhost", "");
    let shown = reply["msg"].as_str().unwrap().split(',').count() as u64;
    assert_eq!((shown, reply["cut"].as_u64().unwrap()), (40, 60));
}

#[test]
fn each_port_refuses_the_other_ports_commands_without_effect() {
    let d = Daemon::start("ports", &[]);
    let peer = onion_id();
    for cmd in ["EXIT", "UPDATE", "GET_PEERS", "HOST", "SEND", "HISTORY"] {
        let reply = ask(d.peer, cmd, &peer, &peer);
        assert!(reply["error"].as_str().unwrap().contains("expected `RECV`"), "{cmd}: {reply}");
    }
    let reply = ask_raw(d.client, serde_json::json!({"cmd": "RECV", "id": peer, "msg": "x"}).to_string().as_bytes());
    assert!(reply["error"].as_str().unwrap().contains("unknown variant `RECV`"), "{reply}");
    assert_eq!(update(d.client, &peer)["cmd"], "END");
    assert_eq!(ask(d.client, "HOST", "localhost", "")["cmd"], "HOST", "still serving after EXIT on the peer port");
}

#[test]
fn a_peer_gets_an_acknowledgement_naming_the_receiver_and_the_mid() {
    let d = Daemon::start("ack", &[]);
    let mid = "0123456789abcdef0123456789abcdef";
    let body = serde_json::json!({"cmd": "RECV", "id": onion_id(), "msg": "hi", "mid": mid});
    let reply = ask_raw(d.peer, body.to_string().as_bytes());
    assert_eq!(reply, serde_json::json!({"cmd": "END", "id": d.id, "msg": mid}));
    // A retry after a lost acknowledgement: acknowledged again, stored once.
    assert_eq!(ask_raw(d.peer, body.to_string().as_bytes()), reply);
    assert_eq!(drain(d.client, body["id"].as_str().unwrap()), [shown("hi")]);
}
