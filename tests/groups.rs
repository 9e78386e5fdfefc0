//! Group chats and named contacts in our client (scripts/torchat.py, PROTOCOL.md §8):
//! the daemons carry group messages as ordinary signed text.

mod common;
use common::*;

/// The text C's UPDATE shows, as the 2017 client prints it after "[HH:MM] ".
fn next_text(d: &Daemon, from: &str) -> String {
    let mut reply = serde_json::Value::Null;
    wait_for("a message at C", 20, || {
        reply = update(d.client, from);
        reply["cmd"] == "UPDATE"
    });
    reply["msg"].as_str().unwrap().to_string()
}

#[test]
fn a_group_of_three_daemons_two_of_our_clients_and_a_2017_client() {
    let proxy = Proxy::start();
    let socks = proxy.arg();
    let start = |name: &str, extra: &[&str]| {
        let mut args = vec!["--socks", socks.as_str(), "--stranger-unread", "1000"];
        args.extend_from_slice(extra);
        let d = Daemon::start(name, &args);
        proxy.route(&d.id, Route::To(d.peer));
        d
    };
    // A's daemon holds at most 2 unsent messages a peer: D never answers, so the third
    // message to D is refused, and A's client must say so.
    let (a, b, c) = (start("group-a", &["--max-unread", "2"]), start("group-b", &[]), start("group-c", &[]));
    let dave = onion_id();
    proxy.route(&dave, Route::Hang);

    // B has written to A and C: they are its contacts, whose messages it takes at once.
    send(b.client, &a.id, "hi A");
    send(b.client, &c.id, "hi C");
    assert_eq!(next_text(&c, &b.id), "hi C");
    let ta = Terminal::start(a.client, 120, 32);
    let tb = Terminal::start(b.client, 120, 32);
    ta.wait("A connected", |s| s.contains("connected"));
    for (id, name) in [(&b.id, "bob"), (&c.id, "carol"), (&dave, "dave")] {
        ta.type_line(id);
        ta.wait("the conversation", |s| s.contains(&id[..20]));
        ta.type_line(&format!("/name {name}"));
        ta.wait("the name in the panel", |s| s.contains(name));
    }
    ta.type_line("/group team bob carol dave");
    let screen = ta.wait("the group open at A", |s| s.contains("#team") && s.contains("members: me, bob, carol, dave"));
    assert!(!screen.contains("~"), "a group A named itself shows no id: {screen}");

    // C runs the 2017 client: the header is plain text there.
    let members = next_text(&c, &a.id);
    let gid = &members[members.find(' ').unwrap() + 1..][..12];
    assert_eq!(members, format!("[#team {gid}] members: {} {} {} {dave}", a.id, b.id, c.id));
    eprintln!("the 2017 client shows: [HH:MM] {members}");

    // B sees the group in its panel, with the start of its id: the name is A's choice.
    tb.wait("the group at B", |s| s.contains(&format!("#team ~{}", &gid[..6])));
    tb.type_line("/peer 1");
    tb.wait("the members at B", |s| s.contains(&format!("members: {}..., me, {}...", &a.id[..12], &c.id[..12])));

    ta.type_line("hello team");
    tb.wait("A's message at B, with its sender", |s| s.contains(&format!("{}...: hello team", &a.id[..12])));
    assert_eq!(next_text(&c, &a.id), format!("[#team {gid}] hello team"));
    // The third message to D: A's daemon refuses it, and A's client names D.
    ta.type_line("anyone?");
    ta.wait("the refusal for dave", |s| s.contains("not sent to dave: too many messages waiting for this peer"));
    assert_eq!(next_text(&c, &a.id), format!("[#team {gid}] anyone?"));

    // C answers the group by hand, as a 2017 user can: a member, signed. A terminal
    // escape in it is shown inert.
    let hand = format!("[#team {gid}] hi from carol \u{1b}[2J");
    send(c.client, &a.id, &hand);
    send(c.client, &b.id, &hand);
    tb.wait("C's message at B, its escape inert", |s| s.contains(&format!("{}...: hi from carol ?[2J", &c.id[..12])));
    ta.wait("C's message at A", |s| s.contains("carol: hi from carol") && !s.contains("hi from carol  ["));

    // A stranger's message is a request at B: listed apart, and left unread in the
    // daemon (within its strangers' bound) until B opens it.
    let stranger = onion_id();
    recv_from(b.peer, &stranger, "[#free 000000000000] buy now");
    tb.wait("the request at B", |s| {
        s.contains("requests (reply to accept):") && s.contains(&format!("{}... (1)", &stranger[..12]))
    });
    assert_eq!(ask(b.client, "GET_PEERS", "localhost", "")["msg"], stranger.as_str(), "not taken");
    // B replies in the group: A and C get it, and B's one-to-one conversations stay empty.
    tb.type_line("hi all");
    ta.wait("B's reply at A", |s| s.contains("bob: hi all"));
    assert_eq!(next_text(&c, &b.id), format!("[#team {gid}] hi all"));

    // A removes C: the new list goes to C too; C's next message is a non-member's.
    ta.type_line("/kick carol");
    ta.wait("the new list at A", |s| s.contains("members: me, bob, dave"));
    assert_eq!(next_text(&c, &a.id), format!("[#team {gid}] members: {} {} {dave}", a.id, b.id));
    send(c.client, &a.id, &format!("[#team {gid}] still here?"));
    ta.wait("C marked at A", |s| s.contains("carol: still here?  [non-member]"));
    tb.wait("the new list at B", |s| s.contains(&format!("members: {}..., me, {}...", &a.id[..12], &dave[..12])));

    // Names and groups survive a restart of the client. While it is down, a 2017
    // client reads B's next group message: it reaches the group through HISTORY.
    ta.type_line("/quit");
    ta.wait("A's client to end", |s| s.contains("client exited: 0"));
    send(b.client, &a.id, &format!("[#team {gid}] while you were away"));
    assert_eq!(next_text(&a, &b.id), format!("[#team {gid}] while you were away"));
    let ta = Terminal::start_in(a.client, 120, 32, ta.home.clone());
    ta.wait("names and the group after a restart", |s| s.contains("#team") && s.contains("bob"));
    ta.type_line("/peer bob");
    ta.wait("bob's conversation", |s| s.contains(&format!("bob  {}", b.id)));
    ta.type_line("/peer 1");
    ta.wait("the group's messages after a restart", |s| {
        s.contains("bob: hi all") && s.contains("bob: while you were away")
    });
    let file = std::fs::read_dir(&ta.home).unwrap().next().unwrap().unwrap().path();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777,
        0o600
    );

    // The non-interactive mode: to every other member, dave refused and named.
    let (status, out, err) =
        run_client(&ta.home, &[&a.client.to_string(), "--send-group", "team", "from a script"], "");
    assert_eq!(status, 1, "{out} {err}");
    assert!(out.contains("queued for 1 member of #team") && err.contains("not sent to dave"), "{out} {err}");
    tb.wait("the script's message at B", |s| s.contains("from a script"));
    let (status, _, err) = run_client(&ta.home, &[&a.client.to_string(), "--send-group", "nosuch", "x"], "");
    assert!(status == 1 && err.contains("no group named nosuch"), "{err}");

    // /info shows the ids behind the names; /invite brings C back; B leaves.
    ta.type_line("/info");
    ta.wait("the members' ids", |s| s.contains(&format!("bob {}", &b.id[..40])));
    ta.type_line("/invite carol");
    assert_eq!(next_text(&c, &a.id), format!("[#team {gid}] members: {} {} {dave} {}", a.id, b.id, c.id));
    // A removes B, whose client says so and sends the group nothing more.
    ta.type_line("/kick bob");
    tb.wait("B told", |s| s.contains(&format!("{}...: {}... removed you from #team", &a.id[..12], &a.id[..12])));
    tb.type_line("still with you?");
    tb.wait("B's client refusing", |s| s.contains("you are no longer a member of #team"));
    assert!(drain(c.client, &b.id).iter().all(|m| !m.contains("still with you?")), "a removed member fanned out");
    ta.type_line("/invite bob");
    let back = format!("members: {}..., {}..., {}..., me", &a.id[..12], &dave[..12], &c.id[..12]);
    tb.wait("B back in", |s| s.contains(&back));
    tb.type_line("/leave");
    ta.wait("B gone at A", |s| s.contains("bob: left"));
    tb.wait("the group gone at B", |s| !s.contains("#team"));
    // Opening the request takes the stranger's message: its group is new, and it is no member.
    tb.type_line(&stranger);
    tb.wait("the stranger's group", |s| s.contains("#free ~000000"));
    assert_eq!(ask(b.client, "GET_PEERS", "localhost", "")["msg"], "", "taken once opened");
}
