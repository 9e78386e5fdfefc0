//! The daemon as a process: options, start-up, clean stops, crashes, restarts, detaching,
//! and log files that survive all of them.

mod common;
use common::*;
use std::io::Write;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn help_and_bad_command_lines() {
    let (status, out, _) = run(&["--help"]);
    assert_eq!(status, 0);
    for option in ["--daemon", "--peer-port", "--hostname", "--logs", "--socks", "--max-strangers", "--idle"] {
        assert!(out.contains(option), "{option} missing from --help");
    }
    for args in [&["--bogus", "8000"][..], &["eighty"], &["70000"], &[], &["1", "2"], &["--idle", "x", "1"]] {
        let (status, out, err) = run(args);
        assert_eq!((status, out.as_str()), (2, ""), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn limits_the_file_descriptor_limit_cannot_hold_are_refused_and_others_raise_it() {
    let d = Daemon::start("fds", &[]);
    let (hostname, logs) = (d.dir.join("hostname"), d.dir.join("other-logs"));
    let args = ["--hostname", hostname.to_str().unwrap(), "--logs", logs.to_str().unwrap()];
    let out = Command::new("prlimit").args(["--nofile=1024:1024", bin()]).args(args).arg("0").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--max-conns: 3064 open files needed, the hard limit is 1024"), "{err}");
    // A soft limit below what the defaults need is raised up to the hard limit.
    let mut child = Command::new("prlimit")
        .args(["--nofile=256:4096", bin()])
        .args(args)
        .arg("0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().nth(3), Some("3064"), "{open_files}");
}

#[test]
fn a_missing_or_invalid_hostname_file_is_a_clear_error() {
    let dir = temp_dir("hostname");
    let hostname = dir.join("hostname");
    let args = |h: &std::path::Path| {
        ["--hostname", h.to_str().unwrap(), "--logs", dir.to_str().unwrap(), "0"].map(String::from)
    };
    let (status, _, err) = run(&args(&hostname).each_ref().map(String::as_str));
    assert_eq!(status, 1);
    assert!(err.contains("cannot read") && err.contains("hostname"), "{err}");
    std::fs::write(&hostname, "notanonion.onion\n").unwrap();
    let (status, _, err) = run(&args(&hostname).each_ref().map(String::as_str));
    assert_eq!(status, 1);
    assert!(err.contains("not an onion id"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_port_in_use_is_reported_in_the_shell() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let d = Daemon::start("taken", &[]);
    let hostname = d.dir.join("hostname");
    let (status, _, err) =
        run(&["-d", "--hostname", hostname.to_str().unwrap(), "--logs", d.dir.to_str().unwrap(), &port]);
    assert_eq!(status, 1);
    assert!(err.contains("cannot listen for clients") && err.contains(&port), "{err}");
}

#[test]
fn exit_sigterm_and_sigint_stop_cleanly_and_keep_the_unread_set() {
    let mut d = Daemon::start("stop", &[]);
    let peer = onion_id();
    for (i, how) in ["EXIT", "SIGTERM", "SIGINT"].iter().enumerate() {
        recv_from(d.peer, &peer, &format!("before {how}"));
        match *how {
            "EXIT" => tell(d.client, "EXIT", "localhost", 8000, ""),
            "SIGTERM" => signal(d.pid, libc::SIGTERM),
            _ => signal(d.pid, libc::SIGINT),
        }
        assert_eq!(d.wait_exit(), 0, "{how}");
        assert!(d.errors_log().matches("shutting down").count() == i + 1);
        d.restart();
    }
    assert_eq!(drain(d.client, &peer), ["before EXIT", "before SIGTERM", "before SIGINT"].map(shown));
}

#[test]
fn kill_9_loses_nothing_acknowledged_and_shows_nothing_twice() {
    let mut d = Daemon::start("kill9", &["--stranger-unread", "1000"]);
    let peer = onion_id();
    let mut expected = Vec::new();
    for round in 0..5 {
        for i in 0..20 {
            let text = format!("{round}.{i}");
            assert_eq!(recv_from(d.peer, &peer, &text)["cmd"], "END");
            expected.push(shown(&text));
        }
        // Read a few before the crash: they must not come back.
        for _ in 0..7 {
            assert_eq!(update(d.client, &peer)["msg"], expected.remove(0));
        }
        d.crash_and_restart();
    }
    assert_eq!(drain(d.client, &peer), expected);
}

#[test]
fn a_last_line_cut_by_a_crash_does_not_stop_the_next_start() {
    let mut d = Daemon::start("cut", &[]);
    let peer = onion_id();
    recv_from(d.peer, &peer, "whole");
    d.kill();
    let log = d.dir.join("logs/messages.log");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"2026-11-25T12:00:00Z {\"t\":1,\"ev\":\"re")
        .unwrap();
    d.restart();
    recv_from(d.peer, &peer, "after");
    assert_eq!(drain(d.client, &peer), ["whole", "after"].map(shown));
    assert!(d.errors_log().contains("skipped 1 damaged lines"), "{}", d.errors_log());
}

#[test]
fn start_up_rebuilds_the_state_from_the_messages_log_and_skips_damaged_lines() {
    let mut d = Daemon::start("replay", &[]);
    let peer = onion_id();
    for text in ["one", "two", "three"] {
        recv_from(d.peer, &peer, text);
    }
    assert_eq!(update(d.client, &peer)["msg"], shown("one"));
    d.crash_and_restart();
    assert_eq!(update(d.client, &peer)["msg"], shown("two"));
    d.kill();
    // Damage the second 'read' record: that message counts as unread again.
    let log = d.dir.join("logs/messages.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let reads: Vec<usize> = text.match_indices("\"read\"").map(|(at, _)| at).collect();
    let damaged = format!("{}XXXX{}", &text[..reads[1]], &text[reads[1] + 6..]);
    std::fs::write(&log, damaged).unwrap();
    d.restart();
    assert!(d.errors_log().contains("skipped 1 damaged lines"), "{}", d.errors_log());
    assert_eq!(drain(d.client, &peer), ["two", "three"].map(shown));
}

#[test]
fn detached_daemon_serves_and_stops_on_exit() {
    let d = Daemon::start("detach", &["-d"]);
    assert!(alive(d.pid));
    assert_eq!(ask(d.client, "HOST", "localhost", "")["id"], d.id.as_str());
    let sid = std::fs::read_to_string(format!("/proc/{}/stat", d.pid)).unwrap();
    let fields: Vec<&str> = sid.rsplit(')').next().unwrap().split_whitespace().collect();
    assert_eq!(fields[3], d.pid.to_string(), "the daemon leads its own session");
    tell(d.client, "EXIT", "localhost", 8000, "");
    wait_for("the detached daemon to exit", 10, || !alive(d.pid));
}

#[test]
fn logrotate_copytruncate_rotates_the_errors_log_and_the_messages_log_is_never_rotated() {
    let d = Daemon::start("hup", &[]);
    let (peer, logs) = (onion_id(), d.dir.join("logs"));
    recv_from(d.peer, &peer, "before");
    ask(d.client, "NOPE", "localhost", "");
    // logrotate's copytruncate: a copy, the file cut to nothing, and a SIGHUP (from a
    // configuration that sends one): the daemon carries on, appending.
    std::fs::copy(logs.join("errors.log"), logs.join("errors.log.1")).unwrap();
    std::fs::OpenOptions::new().write(true).open(logs.join("errors.log")).unwrap().set_len(0).unwrap();
    signal(d.pid, libc::SIGHUP);
    recv_from(d.peer, &peer, "after");
    ask(d.client, "AGAIN", "localhost", "");
    assert!(d.errors_log().contains("AGAIN") && !d.errors_log().contains("NOPE"));
    let old = std::fs::read_to_string(logs.join("errors.log.1")).unwrap();
    assert!(old.contains("NOPE") && !old.contains("AGAIN"));
    // The messages log is the history: one file, both messages in it.
    assert!(d.messages_log().contains("before") && d.messages_log().contains("after"));
    assert_eq!(drain(d.client, &peer), ["before", "after"].map(shown));
}

#[test]
fn a_log_with_the_copies_an_earlier_version_carried_over_a_rotation_still_loads() {
    let (dir, key) = node_dir("carried");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let peer = onion_id();
    let line = |t: u64, fields: &str| format!("2026-11-25T18:00:00Z {{\"t\":{t},\"ev\":{fields}}}\n");
    let recv =
        format!("\"recv\",\"peer\":\"{peer}\",\"msg\":\"carried\",\"mid\":null,\"verified\":false,\"carried\":true");
    let queued = format!(
        "\"queued\",\"peer\":\"{peer}\",\"mid\":\"{}\",\"port\":80,\"msg\":\"unsent\",\"carried\":true",
        "a".repeat(32)
    );
    let failed = format!("\"failed\",\"peer\":\"{peer}\",\"mid\":\"\",\"why\":\"x\",\"msg\":\"\"");
    std::fs::write(dir.join("logs/messages.log"), [line(1, &failed), line(2, &recv), line(3, &queued)].concat())
        .unwrap();
    let d = Daemon::start_in(dir, key.id.clone(), vec!["--socks".into(), "127.0.0.1:1".into()]);
    assert_eq!(update(d.client, &peer)["msg"], "[not delivered: x] ");
    assert_eq!(update(d.client, &peer)["msg"], shown("carried"));
    let history = ask(d.client, "HISTORY", &peer, "10");
    assert_eq!(history["lines"].as_array().unwrap().len(), 1, "{history}");
}
