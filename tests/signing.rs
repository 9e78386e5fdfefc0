//! Sender authentication (PROTOCOL 2.3): every message is signed with the sender's onion
//! key, bound to the receiver and a time; forgeries and replays are refused, a 2017
//! peer's unsigned message is kept but marked.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

fn refused(d: &Daemon, body: &Value, why: &str) {
    let reply = recv_raw(d.peer, body);
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("not refused: {body} -> {reply}"));
    assert!(error.contains(why), "{error:?} does not say {why:?}");
    assert_eq!(update(d.client, body["id"].as_str().unwrap())["cmd"], "END", "a refused message was stored");
    wait_for("the refusal in the errors log", 5, || d.errors_log().contains(why));
}

#[test]
fn a_signed_message_is_shown_verified_everywhere() {
    let d = Daemon::start("signed", &[]);
    let alice = Key::new();
    let body = alice.recv(&d.id, "signed, sealed", now() / 60 * 60);
    assert_eq!(recv_raw(d.peer, &body), serde_json::json!({"cmd": "END", "id": d.id, "msg": body["mid"]}));
    let reply = update(d.client, &alice.id);
    assert_eq!((reply["msg"].as_str(), reply["verified"].as_bool()), (Some("signed, sealed"), Some(true)));
    let history = ask(d.client, "HISTORY", &alice.id, "5");
    assert_eq!(history["lines"][0]["verified"], true);
    assert!(d.messages_log().contains("\"msg\":\"signed, sealed\",\"mid\":"));
    assert!(d.messages_log().contains("\"verified\":true"));
}

#[test]
fn an_unsigned_message_of_a_2017_peer_is_kept_and_marked_everywhere() {
    let d = Daemon::start("unsigned", &[]);
    let old = onion_id();
    assert_eq!(recv_from(d.peer, &old, "hello from 2017")["cmd"], "END");
    let reply = update(d.client, &old);
    assert_eq!(reply["msg"], "[unverified] hello from 2017", "the mark the 2017 client shows");
    assert_eq!(reply["verified"], false);
    assert_eq!(ask(d.client, "HISTORY", &old, "5")["lines"][0]["verified"], false);
    assert!(d.messages_log().contains("\"verified\":false"));
}

#[test]
fn forgeries_are_refused_logged_and_not_stored() {
    let d = Daemon::start("forged", &[]);
    let (alice, mallory) = (Key::new(), Key::new());
    let ts = now() / 60 * 60;
    // Mallory signs with her key and claims to be Alice.
    let mut forged = mallory.recv(&d.id, "it's me, Alice", ts);
    forged["id"] = alice.id.clone().into();
    refused(&d, &forged, "does not verify");
    let mut tampered = alice.recv(&d.id, "pay 10", ts);
    tampered["msg"] = "pay 1000".into();
    refused(&d, &tampered, "does not verify");
    let mut no_ts = alice.recv(&d.id, "when?", ts);
    no_ts.as_object_mut().unwrap().remove("ts");
    refused(&d, &no_ts, "needs \"ts\" and \"mid\"");
    let mut bad_sig = alice.recv(&d.id, "garbled", ts);
    for sig in ["not base64!", "AAAA", &"A".repeat(87), ""] {
        bad_sig["sig"] = sig.into();
        refused(&d, &bad_sig, "expected 64 bytes in base64");
    }
    // A key of small order (here the identity point) verifies anything non-strictly.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut weak_sender = alice.recv(&d.id, "weak", ts);
    weak_sender["id"] = onion_id_of(&weak).into();
    refused(&d, &weak_sender, "weak key");
    assert_eq!(d.messages_log().matches("\"ev\":\"recv\"").count(), 0);
    assert_eq!(ask(d.client, "GET_PEERS", "localhost", "")["msg"], "");
}

#[test]
fn a_time_stamp_more_than_10_minutes_off_is_refused() {
    let d = Daemon::start("stale", &[]);
    let alice = Key::new();
    refused(&d, &alice.recv(&d.id, "from the past", now() - 11 * 60), "away from this node's clock");
    refused(&d, &alice.recv(&d.id, "from the future", now() + 11 * 60), "away from this node's clock");
    let almost = alice.recv(&d.id, "9 minutes late", now() - 9 * 60);
    assert_eq!(recv_raw(d.peer, &almost)["msg"], almost["mid"]);
}

#[test]
fn a_replay_is_acknowledged_but_stored_once_and_refused_by_anyone_else() {
    let (d, other) = (Daemon::start("replay", &[]), Daemon::start("replay-other", &[]));
    let alice = Key::new();
    let body = alice.recv(&d.id, "only once", now() / 60 * 60);
    let ack = recv_raw(d.peer, &body);
    assert_eq!(ack["msg"], body["mid"]);
    assert_eq!(recv_raw(d.peer, &body), ack, "a replay (or a retry after a lost ack) is acknowledged");
    // A retry of the same message, signed again later: same mid, stored once.
    let mut again = body.clone();
    again["ts"] = (now() / 60 * 60 - 60).into();
    again["sig"] = alice.sign(&d.id, again["ts"].as_u64().unwrap(), body["mid"].as_str().unwrap(), "only once").into();
    assert_eq!(recv_raw(d.peer, &again), ack);
    assert_eq!(drain(d.client, &alice.id), ["only once"]);
    // The same bytes to another receiver: the signature names the first one.
    let reply = recv_raw(other.peer, &body);
    assert!(reply["error"].as_str().unwrap().contains("does not verify"), "{reply}");
    assert_eq!(update(other.client, &alice.id)["cmd"], "END");
}

/// The key is Tor's file beside the hostname file.
fn start(key_file: &std::path::Path, hostname: &std::path::Path) -> (i32, String) {
    let logs = key_file.with_file_name("logs");
    let out = Command::new(bin())
        .args(["--hostname", hostname.to_str().unwrap()])
        .args(["--logs", logs.to_str().unwrap(), "0"])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_missing_corrupt_exposed_or_foreign_key_file_stops_the_start_with_a_clear_message() {
    let dir = temp_dir("keyfile");
    let (key, other, hostname) = (Key::new(), Key::new(), dir.join("hostname"));
    let file = dir.join("hs_ed25519_secret_key");
    std::fs::write(&hostname, format!("{}\n", key.id)).unwrap();
    let (status, err) = start(&file, &hostname);
    assert!(status == 1 && err.contains("hs_ed25519_secret_key: No such file"), "{status} {err}");
    key.write(&file);
    let bytes = std::fs::read(&file).unwrap();
    let chmod = |mode| std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    for corrupt in [&bytes[..95], &[&bytes[..], b"x"].concat(), &[b"== ed25519v1-public", &bytes[19..]].concat()] {
        std::fs::write(&file, corrupt).unwrap();
        chmod(0o600);
        let (status, err) = start(&file, &hostname);
        assert!(status == 1 && err.contains("not a Tor ed25519 secret key"), "{status} {err}");
    }
    key.write(&file);
    chmod(0o644);
    let (status, err) = start(&file, &hostname);
    assert!(status == 1 && err.contains("other users can read it"), "{status} {err}");
    other.write(&file);
    let (status, err) = start(&file, &hostname);
    assert!(status == 1 && err.contains(&format!("not the key of {}", key.id)), "{status} {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Tor writes an onion service's keys even with the network disabled.
fn tor_made_key(dir: &std::path::Path) -> String {
    let torrc = dir.join("torrc");
    let hs = dir.join("hs");
    let config = format!(
        "DataDirectory {}\nSocksPort 0\nDisableNetwork 1\nHiddenServiceDir {}\nHiddenServicePort 80 127.0.0.1:9\nLog notice file {}\n",
        dir.join("data").display(),
        hs.display(),
        dir.join("tor.log").display()
    );
    std::fs::write(&torrc, config).unwrap();
    let mut tor = Command::new("tor")
        .args(["-f", torrc.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("tor is installed");
    wait_for("tor to write the onion service keys", 30, || hs.join("hostname").exists());
    tor.kill().unwrap();
    tor.wait().unwrap();
    std::fs::read_to_string(hs.join("hostname")).unwrap().trim().to_string()
}

#[test]
fn two_daemons_with_keys_made_by_tor_exchange_verified_messages() {
    let proxy = Proxy::start();
    let socks = proxy.arg();
    let nodes: Vec<Daemon> = (0..2)
        .map(|i| {
            let dir = temp_dir(&format!("tor-key{i}"));
            let id = tor_made_key(&dir);
            // Where the test daemon looks for them; fs::copy keeps Tor's 0600.
            for file in ["hostname", "hs_ed25519_secret_key"] {
                std::fs::copy(dir.join("hs").join(file), dir.join(file)).unwrap();
            }
            let d = Daemon::start_in(dir, id, vec!["--socks".into(), socks.clone()]);
            proxy.route(&d.id, Route::To(d.peer));
            d
        })
        .collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_eq!(ask(a.client, "HOST", "localhost", "")["id"], a.id.as_str());
    send(a.client, &b.id, "hello B, this is A");
    send(b.client, &a.id, "hello A");
    for (to, from, text) in [(b, a, "hello B, this is A"), (a, b, "hello A")] {
        let mut reply = Value::Null;
        wait_for("the message", 10, || {
            reply = update(to.client, &from.id);
            reply["cmd"] == "UPDATE"
        });
        assert_eq!((reply["msg"].as_str(), reply["verified"].as_bool()), (Some(text), Some(true)));
    }
    wait_for("the acknowledgement", 10, || a.messages_log().contains("\"ev\":\"delivered\""));
}
