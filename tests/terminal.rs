//! Our terminal client, scripts/torchat.py: full-screen in a real terminal (tmux, driven
//! with send-keys and read with capture-pane), and its non-interactive mode.

mod common;
use common::*;

fn row_of(screen: &str, text: &str) -> Option<usize> {
    screen.lines().position(|l| l.contains(text))
}

#[test]
fn chat_in_a_terminal_with_a_second_daemon_and_an_old_peer() {
    let (_proxy, nodes) = network(2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let t = Terminal::start(a.client, 110, 30);
    t.wait("our onion id in the panel", |s| s.contains(&a.id[..16]) && s.contains("connected"));

    let mut typo = b.id.clone().into_bytes();
    typo[3] = if typo[3] == b'a' { b'b' } else { b'a' };
    t.type_line(std::str::from_utf8(&typo).unwrap());
    t.wait("the typo refused", |s| s.contains("checksum is wrong") && s.contains("no conversation"));
    send(b.client, &a.id, "hi from B");
    t.wait("B with one unread message", |s| s.contains(&format!("{}... (1)", &b.id[..12])));
    t.type_line(&b.id);
    let screen = t.wait("the conversation with B", |s| s.contains("< hi from B"));
    assert!(!screen.contains("[unverified]"), "B signs: {screen}");
    assert!(!screen.contains("(1)"), "read once shown: {screen}");

    t.type_line("hello B, ça va? 中文");
    t.wait("our message delivered", |s| s.contains("> hello B, ça va? 中文  [delivered]"));
    let got = update(b.client, &a.id);
    assert_eq!((got["msg"].as_str(), got["verified"].as_bool()), (Some("hello B, ça va? 中文"), Some(true)));
    send(b.client, &a.id, "fine, thanks");
    t.wait("B's answer", |s| s.contains("< fine, thanks"));

    // An unsigned message from a 2017 peer: another conversation, marked.
    let old = onion_id();
    recv_from(a.peer, &old, "old peer here");
    t.wait("the old peer in the panel", |s| s.contains(&format!("{}... (1)", &old[..12])));
    t.key("Tab");
    t.wait("the old peer's message, marked", |s| s.contains("< old peer here  [unverified]"));

    // Long lines wrap inside the pane; a narrower terminal wraps them again.
    let long: String = (0..60).map(|i| format!("w{i:02} ")).collect();
    recv_from(a.peer, &old, long.trim());
    let screen = t.wait("the long message", |s| s.contains("w59"));
    assert!(row_of(&screen, "w59").unwrap() > row_of(&screen, "w00").unwrap(), "{screen}");
    assert!(t.tmux(&["resize-window", "-t", "main", "-x", "60", "-y", "20"]).status().unwrap().success());
    let screen = t.wait("a redraw at 60 columns", |s| s.lines().all(|l| l.chars().count() <= 60) && s.contains("w59"));
    assert!(row_of(&screen, "w59").unwrap() - row_of(&screen, "w00").unwrap() >= 4, "{screen}");

    // Switch back with the command, and leave the daemon running.
    t.type_line("/peer 1");
    t.wait("B's conversation again", |s| s.contains("< fine, thanks"));
    t.type_line("/quit");
    t.wait("the client to end", |s| s.contains("client exited: 0"));
    assert_eq!(ask(a.client, "HOST", "localhost", "")["id"], a.id.as_str(), "/quit leaves the daemon running");
}

#[test]
fn the_daemon_going_away_is_a_message_and_a_retry_and_exit_stops_it() {
    let mut d = Daemon::start("tty-away", &[]);
    let t = Terminal::start(d.client, 100, 24);
    t.wait("the daemon", |s| s.contains(&d.id[..16]));
    t.type_line("/help");
    t.wait("the help", |s| s.contains("/exit") && s.contains("/history N"));
    d.kill();
    t.wait("a clear message", |s| s.contains("cannot reach the daemon on 127.0.0.1") && s.contains("trying again"));
    d.restart();
    t.wait("it to come back", |s| s.contains("connected to the daemon"));
    t.type_line("not an id, and no conversation open");
    t.wait("a hint", |s| s.contains("no conversation open"));
    t.type_line("/exit");
    let screen = t.wait("the client to end", |s| s.contains("client exited: 0"));
    assert!(!screen.contains("Traceback"), "{screen}");
    assert_eq!(d.wait_exit(), 0, "/exit stops the daemon");
}

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    run_client(&temp_dir("script-home"), args, stdin)
}

#[test]
fn the_non_interactive_mode_for_scripts() {
    let d = Daemon::start("tty-script", &[]);
    let port = d.client.to_string();
    assert_eq!(run(&[&port, "--id"], ""), (0, format!("{}\n", d.id), String::new()));
    assert_eq!(run(&[&port, "--read"], "").0, 1, "nothing to read");
    let (p, q) = (onion_id(), onion_id());
    recv_from(d.peer, &p, "one");
    recv_from(d.peer, &q, "two");
    recv_from(d.peer, &p, "three");
    let (status, out, _) = run(&[&port, "--read"], "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(status, 0);
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with(&format!("{p}: [unverified] one")) && lines[0].starts_with('['), "{out}");
    assert!(lines[1].ends_with(&format!("{p}: [unverified] three")), "{out}");
    assert!(lines[2].ends_with(&format!("{q}: [unverified] two")), "{out}");
    assert_eq!(run(&[&port, "--read"], "").0, 1, "read once");

    let (status, out, _) = run(&[&port, "--send", &p.to_uppercase(), "hello"], "");
    assert!(status == 0 && out.starts_with(&format!("queued for {p} as ")), "{status} {out}");
    let (status, out, _) = run(&[&port, "--send", &q, "-"], "from stdin\n");
    assert!(status == 0 && out.starts_with("queued"), "{out}");
    wait_for("both queued", 5, || d.messages_log().matches("\"ev\":\"queued\"").count() == 2);
    assert!(d.messages_log().contains("\"msg\":\"from stdin\""));
    let (status, _, err) = run(&[&port, "--send", &q, &"x".repeat(3001)], "");
    assert!(status == 1 && err.contains("message too long"), "{status} {err}");
    let (status, _, err) = run(&[&port, "--send", "nobody", "hi"], "");
    assert!(status == 1 && err.contains("not an onion id"), "{err}");

    for args in [&[][..], &["eighty"], &[&port, "--bogus"], &[&port, "--send", &p]] {
        let (status, _, err) = run(args, "");
        assert!(status == 2 && err.contains("Usage"), "{args:?}: {status} {err}");
    }
    drop(d);
    let (status, _, err) = run(&[&port, "--id"], "");
    assert!(status == 3 && err.contains("cannot reach the daemon"), "{status} {err}");
}

/// PROTOCOL.md §6 in words: a message still queued says why it waits, read from the
/// daemon's errors log, and the status line says when this node's Tor does not answer.
#[test]
fn a_waiting_message_says_why_and_the_status_line_says_when_tor_is_not_running() {
    let proxy = Proxy::start();
    let d = Daemon::start("tty-why", &["--socks", &proxy.arg()]);
    let (nowhere, refusing) = (onion_id(), onion_id());
    proxy.route(&refusing, Route::Refuse);
    let logs = format!("TORCHAT_LOGS={}", d.dir.join("logs").display());
    let env = [logs.clone(), format!("TORCHAT_SOCKS={}", proxy.arg())];
    let t = Terminal::start_with(d.client, 150, 30, temp_dir("why-home"), &env);
    t.wait("connected", |s| s.contains("connected"));
    t.type_line(&nowhere);
    t.type_line("hello?");
    let unreachable = "> hello?  [waiting: not reachable (offline, or it accepts only its contacts), next try";
    t.wait("why it waits", |s| s.contains(unreachable));
    t.type_line(&refusing);
    t.type_line("anyone home?");
    t.wait("why this one waits", |s| s.contains("> anyone home?  [waiting: its Tor is up but its TORchat is not"));
    // A damaged errors log: bytes that are not text, a line longer than what is read.
    let mut log = std::fs::OpenOptions::new().append(true).open(d.dir.join("logs/errors.log")).unwrap();
    std::io::Write::write_all(
        &mut log,
        &[b"\xff\xfe\x00 to x: y; next try in 5s\n".as_slice(), &[b'z'; 100_000]].concat(),
    )
    .unwrap();
    let errors = || std::fs::read(d.dir.join("logs/errors.log")).unwrap();
    let damaged = errors().len();
    wait_for("a try logged after the damage", 70, || {
        String::from_utf8_lossy(&errors()[damaged..]).contains("next try in")
    });
    let screen = t.wait("the reason read past the damage", |s| s.contains("> anyone home?  [waiting: its Tor is up"));
    assert!(!screen.contains("Traceback") && !screen.contains("client exited"), "{screen}");
    assert!(!screen.contains("Tor is not running: messages wait"), "the proxy answers: {screen}");

    // This node's Tor: a SOCKS port that goes away, and comes back.
    let tor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socks = tor.local_addr().unwrap().to_string();
    let e = Daemon::start("tty-no-tor", &["--socks", &socks]);
    let env = [format!("TORCHAT_LOGS={}", e.dir.join("logs").display()), format!("TORCHAT_SOCKS={socks}")];
    let u = Terminal::start_with(e.client, 150, 30, temp_dir("no-tor-home"), &env);
    u.wait("connected", |s| s.contains("connected"));
    drop(tor);
    u.wait("Tor is not running", |s| s.contains("Tor is not running: messages wait; run.sh restarts it"));
    u.type_line(&nowhere);
    u.type_line("when tor is back");
    u.wait("why it waits", |s| s.contains("> when tor is back  [waiting: this node's Tor is not running, next try"));
    let _tor = std::net::TcpListener::bind(&socks).unwrap();
    let screen = u.wait("Tor back", |s| s.contains(&format!("Tor is running again ({socks})")));
    assert!(!screen.contains("Tor is not running: messages wait"), "{screen}");

    // No errors log at all: the message shows as queued, nothing else changes.
    let env = ["TORCHAT_LOGS=/nonexistent".to_string(), format!("TORCHAT_SOCKS={}", proxy.arg())];
    let v = Terminal::start_with(d.client, 110, 30, temp_dir("no-log-home"), &env);
    v.wait("connected", |s| s.contains("connected"));
    v.type_line(&nowhere);
    v.wait("the queued message, with no reason", |s| s.contains("> hello?  [queued]"));
}

/// The everyday client (issue 29): unread counts survive a restart of the client, the
/// id is shown whole on a line of its own, groups open by name, near-miss ids are never
/// sent, and the small words are right. 80x24, as a plain terminal starts.
#[test]
fn an_everyday_client_keeps_unread_shows_the_id_whole_and_never_sends_a_near_miss_id() {
    let (_proxy, nodes) = network(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let home = temp_dir("everyday-home");
    let t = Terminal::start_in(a.client, 80, 24, home.clone());
    t.wait("connected", |s| s.contains("connected"));
    for (id, name) in [(&b.id, "bob"), (&c.id, "a-rather-long-name-xxxx")] {
        t.type_line(id);
        t.wait("the conversation", |s| s.contains(&id[..16]));
        t.type_line(&format!("/name {name}"));
        t.wait("the name", |s| s.contains(&name[..name.len().min(12)]));
    }
    // /id: the whole id, alone on a line of the whole width.
    t.type_line("/id");
    let screen = t.wait("the id alone on its line", |s| s.lines().any(|l| l.trim_end() == a.id));
    eprintln!("/id at 80x24:\n{screen}");
    t.type_line("/info");
    t.wait("the peer's id alone on its line", |s| s.lines().any(|l| l.trim_end() == c.id));
    // /help fits the screen.
    t.type_line("/help");
    let screen = t.wait("the help", |s| s.contains("/exit  stop the daemon"));
    assert!(screen.contains("Paste an onion id") && screen.lines().count() <= 24, "{screen}");

    // Near-miss ids typed into an open conversation never reach the peer.
    let short = &c.id[..55];
    let mut wrong = c.id.clone().into_bytes();
    wrong[10] = if wrong[10] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    for (typed, says) in [
        (short.to_string(), "55 characters, an id has 56"),
        (format!("{short}.onion"), "55 characters, an id has 56"),
        (wrong.clone(), "checksum is wrong"),
        (wrong.trim_end_matches(".onion").to_string(), "checksum is wrong"),
        (format!("{}x", &c.id[..56]), "57 characters, an id has 56"),
    ] {
        t.type_line(&typed);
        let screen = t.wait("the reason", |s| s.contains(says));
        assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    }
    t.type_line("a real message");
    wait_for("the real message at C", 10, || a.messages_log().matches("\"ev\":\"delivered\"").count() >= 1);
    let got = drain(c.client, &a.id);
    assert_eq!(got, ["a real message"], "only the message reached C");

    // Unread, then a restart of the client: the counts are the same, and a name is cut
    // before its count.
    t.type_line("/group team bob");
    t.wait("the group open", |s| s.contains("#team  (/info: members)"));
    send(b.client, &a.id, "one");
    send(b.client, &a.id, "two");
    send(c.client, &a.id, "three");
    let counts = |s: &str| s.contains("bob (2)") && s.contains("(1)") && s.contains("a-rather-long-");
    let before = t.wait("two unread from bob, one from the long name", counts);
    t.type_line("/quit");
    t.wait("the end", |s| s.contains("client exited: 0"));
    drop(t);
    let t = Terminal::start_in(a.client, 80, 24, home.clone());
    let after = t.wait("the same counts after a restart", counts);
    eprintln!("the panel before /quit:\n{before}\nand after a new start:\n{after}");
    t.type_line("/peer bob");
    t.wait("bob's messages, shown", |s| s.contains("< one") && s.contains("< two"));
    t.wait("bob's count gone", |s| !s.contains("bob (2)"));

    // Groups open by name, with or without #; /get with no offers says so in a line.
    t.type_line("/peer team");
    t.wait("the group by name", |s| s.contains("#team  (/info: members)"));
    t.type_line("/peer bob");
    t.type_line("/peer #team");
    t.wait("the group by #name", |s| s.contains("#team  (/info: members)"));
    t.type_line("/get 1");
    t.wait("no offers", |s| s.contains("/get: no offers yet"));
    // A passing word clears by itself.
    t.type_line("/peer bob");
    t.wait("the status line back to its default", |s| s.contains("/help for commands"));
}
