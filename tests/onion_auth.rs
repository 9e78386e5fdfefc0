//! scripts/onion-auth.py, the program beside the daemon that keeps Tor's client
//! authorization in step with the contacts (PROTOCOL.md §11), driven as run.sh drives
//! it: a real daemon writes the messages log, and a real Tor, offline (DisableNetwork),
//! loads the files; its control port shows what it loaded. The private Tor network
//! test (tests/tor.rs) shows who can then reach whom.

mod common;
use common::*;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use data_encoding::{BASE32_NOPAD, BASE64};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

fn script() -> String {
    format!("{}/scripts/onion-auth.py", env!("CARGO_MANIFEST_DIR"))
}

/// onion-auth.py on `log` and `tordir`, its lines going to `tordir/onion-auth.log`.
fn onion_auth(log: &Path, tordir: &Path, flags: &[&str]) -> Command {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(tordir.join("onion-auth.log")).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(script()).args(flags).arg(log).arg(tordir).stdin(Stdio::null()).stderr(out);
    cmd
}

/// Follows the log until dropped.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Tor of this test's own, offline: it makes the onion key, reads the client files and
/// the authorized clients, and answers on its control port. Killed when dropped.
struct Tor(Child, PathBuf);

impl Tor {
    fn start(dir: &Path) -> Tor {
        for folder in ["hs", "auth"] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            std::fs::set_permissions(dir.join(folder), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        }
        let d = dir.display();
        // A port of its own, not "auto": a SIGHUP would move that one.
        let control = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let torrc = format!(
            "DataDirectory {d}/data\nPidFile {d}/tor.pid\nLog notice file {d}/tor.log\nSocksPort 0\n\
             DisableNetwork 1\nControlPort 127.0.0.1:{control}\nControlPortWriteToFile {d}/control\n\
             HiddenServiceDir {d}/hs\nHiddenServicePort 80 127.0.0.1:1\nClientOnionAuthDir {d}/auth\n"
        );
        std::fs::write(dir.join("torrc"), torrc).unwrap();
        let child = Command::new("tor").arg("-f").arg(dir.join("torrc")).stdout(Stdio::null()).spawn().unwrap();
        let tor = Tor(child, dir.to_path_buf());
        // Answering on its control port, Tor is in its main loop: a SIGHUP before that
        // would end it.
        wait_for("tor's onion key and control port", 30, || {
            dir.join("hs/hostname").exists() && tor.control("GETINFO version").contains("250-version=")
        });
        tor
    }

    /// One control port command's reply; empty if Tor does not answer.
    fn control(&self, command: &str) -> String {
        let addr = std::fs::read_to_string(self.1.join("control")).unwrap_or_default();
        let Ok(mut s) = std::net::TcpStream::connect(addr.trim().strip_prefix("PORT=").unwrap_or("")) else {
            return String::new();
        };
        s.write_all(format!("AUTHENTICATE\r\n{command}\r\nQUIT\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// The onion ids whose client key this Tor holds, with the key (base64).
    fn client_keys(&self) -> Vec<(String, String)> {
        let reply = self.control("ONION_CLIENT_AUTH_VIEW");
        let clients = reply.lines().filter_map(|l| l.strip_prefix("250-CLIENT "));
        let fields = clients.map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>());
        fields.map(|f| (format!("{}.onion", f[0]), f[1].strip_prefix("x25519:").unwrap().to_string())).collect()
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hex(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

/// The key in one of Tor's files (`...:x25519:KEY`), base32 as Tor writes it.
fn key_in(path: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b32 = text.trim().rsplit(':').next().unwrap();
    assert_eq!(b32.len(), 52, "{text}");
    BASE32_NOPAD.decode(b32.as_bytes()).unwrap().try_into().unwrap()
}

fn listed(tordir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(tordir.join("hs/authorized_clients")).unwrap().flatten();
    let mut names: Vec<String> = names.map(|e| e.file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// The file that lists `id` as an authorized client.
fn auth_file(tordir: &Path, id: &str) -> PathBuf {
    tordir.join(format!("hs/authorized_clients/torchat-{}.auth", &id[..56]))
}

/// A daemon with unreachable peers: every SEND stays queued, and makes a contact.
fn daemon(proxy: &Proxy) -> Daemon {
    Daemon::start("onion-auth", &["--socks", &proxy.arg()])
}

fn log_of(d: &Daemon) -> PathBuf {
    d.dir.join("logs/messages.log")
}

fn said(tordir: &Path) -> String {
    std::fs::read_to_string(tordir.join("onion-auth.log")).unwrap_or_default()
}

/// RFC 7748's keys through the program: a node's private key is its onion key's
/// clamped scalar, and a contact's public key, computed from its onion id alone, is the
/// X25519 public key of whoever holds that id's scalar.
#[test]
fn the_derived_keys_are_rfc_7748s() {
    let (proxy, tordir) = (Proxy::start(), temp_dir("rfc7748"));
    let d = daemon(&proxy);
    // RFC 7748 §6.1: Alice's and Bob's private keys, their X25519 public keys, and the
    // secret they share.
    let alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let alice_public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let bob_public = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    // This node is Alice: Tor's key file holds the clamped scalar, then the hash prefix.
    let clamped = curve25519_dalek::scalar::clamp_integer(alice);
    std::fs::create_dir_all(tordir.join("hs")).unwrap();
    let key_file = [&b"== ed25519v1-secret: type0 ==\0\0\0"[..], &clamped, &[7u8; 32]].concat();
    std::fs::write(tordir.join("hs/hs_ed25519_secret_key"), key_file).unwrap();
    // Its contacts: Bob, Alice herself, and the ed25519 base point (RFC 7748 §4.1: u = 9).
    let id = |point: EdwardsPoint| onion_id_of(&point.compress().to_bytes());
    let (bob_id, alice_id) = (id(EdwardsPoint::mul_base_clamped(bob)), id(EdwardsPoint::mul_base_clamped(alice)));
    let base_id = id(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    for peer in [&bob_id, &alice_id, &base_id] {
        send(d.client, peer, "hello");
    }
    wait_for("3 queued", 10, || d.messages_log().matches("\"queued\"").count() == 3);
    // A folder that exists, open to others (as a umask of 022 makes it): made private.
    std::fs::create_dir_all(tordir.join("auth")).unwrap();
    std::fs::set_permissions(tordir.join("auth"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let status = onion_auth(&log_of(&d), &tordir, &["--contacts-only", "--once"]).status().unwrap();
    assert!(status.success(), "{}", said(&tordir));

    assert_eq!(key_in(&auth_file(&tordir, &bob_id)), bob_public);
    assert_eq!(key_in(&auth_file(&tordir, &alice_id)), alice_public);
    let mut nine = [0u8; 32];
    nine[0] = 9;
    assert_eq!(key_in(&auth_file(&tordir, &base_id)), nine);
    // Alice's client file for Bob holds her private key, which pairs with the public
    // key anybody computes from her id, and agrees with Bob on RFC 7748's secret.
    let private = key_in(&tordir.join(format!("auth/torchat-{}.auth_private", &bob_id[..56])));
    assert_eq!(private, clamped);
    assert_eq!(MontgomeryPoint::mul_base_clamped(private).to_bytes(), alice_public);
    assert_eq!(MontgomeryPoint(bob_public).mul_clamped(private).to_bytes(), shared);
    let client_file = std::fs::read_to_string(tordir.join(format!("auth/torchat-{}.auth_private", &bob_id[..56])));
    assert!(client_file.unwrap().starts_with(&format!("{}:descriptor:x25519:", &bob_id[..56])));
    // Each file holds a key: 0600, in 0700 folders.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for folder in ["auth", "hs/authorized_clients"] {
        assert_eq!(mode(tordir.join(folder)), 0o700, "{folder}");
        for file in std::fs::read_dir(tordir.join(folder)).unwrap() {
            assert_eq!(mode(file.unwrap().path()), 0o600);
        }
    }
    std::fs::remove_dir_all(&tordir).unwrap();
}

/// PROTOCOL.md §11: within 5 s of the SEND that makes a peer a contact, Tor holds its
/// client key (the one the program wrote) and lists it; at most 150 are listed, the
/// user's own files among them, and they stay; the log can be damaged, and the Tor
/// gone or not Tor, with a line said for each, and the daemon serves on.
#[test]
fn tor_holds_a_new_contacts_keys_within_seconds_and_bad_input_is_said() {
    let (proxy, tordir) = (Proxy::start(), temp_dir("follow"));
    let mut d = daemon(&proxy);
    let tor = Tor::start(&tordir);
    let _follower = Follower(onion_auth(&log_of(&d), &tordir, &["--contacts-only"]).spawn().unwrap());
    wait_for("the first pass", 10, || said(&tordir).contains("0 contacts listed, and a key that nobody holds"));
    assert_eq!(listed(&tordir), ["torchat-nobody.auth"], "closed with no contact");
    let secret = std::fs::read(tordir.join("hs/hs_ed25519_secret_key")).unwrap();
    let own = BASE64.encode(&secret[32..64]);

    // A SEND makes a contact: Tor holds its client key within 5 s.
    let peer = Key::new();
    let sent = Instant::now();
    send(d.client, &peer.id, "hello");
    wait_for("tor to hold the new contact's client key", 5, || {
        tor.client_keys().contains(&(peer.id.clone(), own.clone()))
    });
    let took = sent.elapsed();
    let point = CompressedEdwardsY(onion_key(&peer.id)).decompress().unwrap();
    assert_eq!(key_in(&auth_file(&tordir, &peer.id)), point.to_montgomery().to_bytes());
    assert!(said(&tordir).contains("1 contact listed, and a key that nobody holds; told tor to read them again"));

    // 151 contacts: the 150 written to most recently are listed, the first one is not.
    let many: Vec<String> = (0..150).map(|_| onion_id()).collect();
    for id in &many {
        send(d.client, id, "hello");
    }
    wait_for("150 more listed", 15, || said(&tordir).contains("150 contacts listed"));
    assert_eq!(listed(&tordir).len(), 151, "150 contacts and the key nobody holds");
    assert!(!auth_file(&tordir, &peer.id).exists(), "the oldest contact is not listed");
    assert!(many.iter().all(|id| auth_file(&tordir, id).exists()));
    wait_for("tor to hold 151 client keys", 5, || tor.client_keys().len() == 151);

    // A file of the user's own is kept, and counted among the 150.
    let mine = tordir.join("hs/authorized_clients/mine.auth");
    std::fs::write(&mine, "descriptor:x25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    send(d.client, &many[0], "again");
    wait_for("room made for the user's file", 10, || {
        said(&tordir).contains("149 contacts listed, and a key that nobody holds (and 1 file of your own)")
    });
    assert!(mine.exists() && listed(&tordir).len() == 151);
    assert!(auth_file(&tordir, &many[0]).exists(), "written to again: among the newest");
    assert!(!auth_file(&tordir, &many[1]).exists(), "now the oldest");

    // A damaged log: a line that is no record, and a last line a crash cut off.
    d.kill();
    let mut log = std::fs::OpenOptions::new().append(true).open(log_of(&d)).unwrap();
    log.write_all(b"2026-12-07T05:00:00Z {\"not\": a record}\n2026-12-07T05:00:01Z {\"t\":17650").unwrap();
    wait_for("the damaged line said", 5, || said(&tordir).contains("skipped 1 damaged lines"));
    d.restart();
    let later = Key::new();
    send(d.client, &later.id, "after the damage");
    wait_for("a contact after the damage listed", 5, || auth_file(&tordir, &later.id).exists());
    assert_eq!(said(&tordir).matches("skipped 1 damaged lines").count(), 2, "the cut line, once the daemon ended it");

    // Tor gone, or tor.pid naming another process: said, and the files still follow.
    let pid = std::fs::read_to_string(tordir.join("tor.pid")).unwrap().trim().to_string();
    drop(tor);
    let (gone, other) = (Key::new(), Key::new());
    send(d.client, &gone.id, "tor is gone");
    wait_for("the missing tor said", 5, || said(&tordir).contains(&format!("tor not told: tor (pid {pid}) is gone")));
    assert!(auth_file(&tordir, &gone.id).exists());
    // This test's own PID: a SIGHUP would end this test.
    std::fs::write(tordir.join("tor.pid"), format!("{}\n", std::process::id())).unwrap();
    send(d.client, &other.id, "not tor");
    wait_for("the wrong process said", 5, || {
        said(&tordir).contains(&format!("process {} in tor.pid is", std::process::id()))
    });
    assert!(auth_file(&tordir, &other.id).exists());
    assert_eq!(ask(d.client, "HOST", "localhost", "")["id"], d.id.as_str(), "the daemon serves on");
    println!("a SEND to a new peer until Tor holds its client key: {took:?}");
    std::fs::remove_dir_all(&tordir).unwrap();
}

/// Without --contacts-only the onion is open again: our listed files go, the user's
/// stay; the client files stay, so this node still reaches its contacts.
#[test]
fn an_open_node_lists_nobody_of_ours_and_keeps_its_client_files() {
    let (proxy, tordir) = (Proxy::start(), temp_dir("open"));
    let d = daemon(&proxy);
    let tor = Tor::start(&tordir);
    let peer = Key::new();
    send(d.client, &peer.id, "hello");
    wait_for("queued", 10, || d.messages_log().contains("\"queued\""));
    assert!(onion_auth(&log_of(&d), &tordir, &["--contacts-only", "--once"]).status().unwrap().success());
    std::fs::write(tordir.join("hs/authorized_clients/mine.auth"), "descriptor:x25519:x\n").unwrap();
    assert_eq!(listed(&tordir).len(), 3);
    assert!(onion_auth(&log_of(&d), &tordir, &["--once"]).status().unwrap().success());
    assert_eq!(listed(&tordir), ["mine.auth"]);
    assert!(said(&tordir).contains("open to everyone (and 1 file of your own); told tor to read them again"));
    let own = BASE64.encode(&std::fs::read(tordir.join("hs/hs_ed25519_secret_key")).unwrap()[32..64]);
    wait_for("tor to hold the contact's client key", 5, || tor.client_keys() == [(peer.id.clone(), own.clone())]);
    // A usage mistake is said, not guessed at.
    let out =
        Command::new("python3").arg(script()).args(["--once", "logs/messages.log", "/nonexistent"]).output().unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stderr).trim()),
        (Some(1), "onion-auth: no folder /nonexistent")
    );
    let out = Command::new("python3").arg(script()).arg("--all").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Usage: onion-auth.py"));
    std::fs::remove_dir_all(&tordir).unwrap();
}

/// The ed25519 key an onion id is made of.
fn onion_key(id: &str) -> [u8; 32] {
    let raw = BASE32_NOPAD.decode(id[..56].to_uppercase().as_bytes()).unwrap();
    raw[..32].try_into().unwrap()
}

/// The messages-log fuzz corpus (every input libFuzzer kept for the daemon's own reader
/// of these lines), as one log: the program reads all of it, skips what is damaged,
/// and lists only onion ids.
#[test]
fn the_messages_log_fuzz_corpus_is_read_without_a_failure() {
    let tordir = temp_dir("corpus");
    let corpus = std::fs::read_dir(format!("{}/tests/fuzz/corpus/messages_log", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut log = Vec::new();
    for input in corpus {
        log.extend(std::fs::read(input.unwrap().path()).unwrap());
        log.push(b'\n');
    }
    // And a line longer than any record, cut off by the end of the log.
    log.extend(vec![b'x'; 3 << 20]);
    std::fs::write(tordir.join("messages.log"), &log).unwrap();
    let out = onion_auth(&tordir.join("messages.log"), &tordir, &["--contacts-only", "--once"]).output().unwrap();
    assert!(out.status.success() && !said(&tordir).contains("Traceback"), "{}", said(&tordir));
    assert!(said(&tordir).contains("damaged lines"), "{}", said(&tordir));
    let contacts: Vec<String> = listed(&tordir).into_iter().filter(|n| n != "torchat-nobody.auth").collect();
    assert!(!contacts.is_empty(), "the corpus has records with contacts");
    for name in &contacts {
        let id = format!("{}.onion", name.strip_prefix("torchat-").unwrap().strip_suffix(".auth").unwrap());
        assert_eq!(onion_id_of(&onion_key(&id)), id, "only checksummed onion ids");
    }
    println!("{} contacts listed from the corpus; {}", contacts.len(), said(&tordir).trim());
    std::fs::remove_dir_all(&tordir).unwrap();
}

/// PROTOCOL.md §12: a blocked peer is no contact. Its listed key and its client file go
/// within a pass (half a second), Tor is told, and Tor's client keys lose it; unblocked,
/// it stays out until the user writes to it again.
#[test]
fn a_blocked_contact_leaves_both_folders_and_tor_until_written_to_again() {
    let (proxy, tordir) = (Proxy::start(), temp_dir("blocked"));
    let d = daemon(&proxy);
    let tor = Tor::start(&tordir);
    let (kept, blocked) = (Key::new(), Key::new());
    send(d.client, &kept.id, "hello");
    send(d.client, &blocked.id, "hello");
    wait_for("queued", 10, || d.messages_log().matches("\"queued\"").count() == 2);
    let _follower = Follower(onion_auth(&log_of(&d), &tordir, &["--contacts-only"]).spawn().unwrap());
    let client_file = tordir.join(format!("auth/torchat-{}.auth_private", &blocked.id[..56]));
    wait_for("both listed", 5, || auth_file(&tordir, &blocked.id).exists() && client_file.exists());
    let keys = |tor: &Tor| tor.client_keys().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    wait_for("tor to hold both", 5, || keys(&tor).len() == 2);

    let blocked_at = Instant::now();
    assert_eq!(ask(d.client, "BLOCK", &blocked.id, "")["cmd"], "BLOCK");
    wait_for("its files to go", 5, || !auth_file(&tordir, &blocked.id).exists() && !client_file.exists());
    wait_for("tor to lose its key", 5, || keys(&tor) == [kept.id.clone()]);
    let gone = blocked_at.elapsed();
    assert!(auth_file(&tordir, &kept.id).exists());
    assert!(said(&tordir).contains("client files for 1 contact; contacts only: 1 contact listed"), "{}", said(&tordir));

    // Unblocked, a stranger: still out. Written to: a contact again.
    assert_eq!(ask(d.client, "UNBLOCK", &blocked.id, "")["cmd"], "UNBLOCK");
    let passes = said(&tordir).lines().count();
    // Three passes of the follower: the unblocked peer is not listed again.
    let end = Instant::now() + std::time::Duration::from_millis(1500);
    while Instant::now() < end {
        assert!(!auth_file(&tordir, &blocked.id).exists(), "an unblocked stranger was listed");
        std::thread::sleep(std::time::Duration::from_millis(50)); // an observation window, not a wait
    }
    send(d.client, &blocked.id, "again");
    wait_for("listed again", 5, || auth_file(&tordir, &blocked.id).exists() && client_file.exists());
    assert!(said(&tordir).lines().count() > passes);
    // The same from a fresh start: the log alone says who is blocked.
    assert_eq!(ask(d.client, "BLOCK", &kept.id, "")["cmd"], "BLOCK");
    assert!(onion_auth(&log_of(&d), &tordir, &["--contacts-only", "--once"]).status().unwrap().success());
    assert!(!auth_file(&tordir, &kept.id).exists() && auth_file(&tordir, &blocked.id).exists());
    println!("BLOCK until its files were gone and tor had lost its key: {gone:?}");
    drop(tor);
    std::fs::remove_dir_all(&tordir).unwrap();
}
