#!/usr/bin/env python3
"""Keeps Tor's onion-service client authorization in step with the contacts
(PROTOCOL.md §11), beside the daemon: the daemon never sees these files, and this
program never sees a message's text, only who the user wrote to.

Usage: onion-auth.py [--contacts-only] [--once] LOG TORDIR

LOG is the daemon's messages log: a contact is a peer the user has written to (a
"queued" record) and has not blocked since (a "block" record, PROTOCOL.md §12): a
blocked peer is no contact, and after an "unblock" it is one again only once the
user writes to it. TORDIR is the node's Tor folder, as scripts/run.sh lays it out:
  TORDIR/hs/hs_ed25519_secret_key  this node's onion key, which Tor writes
  TORDIR/auth/                     Tor's ClientOnionAuthDir: a client file for each
                                   contact, so that this node reaches the contacts
                                   that run contacts-only
  TORDIR/hs/authorized_clients/    with --contacts-only, the contacts written to most
                                   recently (150 at most, with the user's own files
                                   there) and a key that nobody holds; without it,
                                   none of ours: the onion is open
  TORDIR/tor.pid                   the Tor told to read them again (SIGHUP)
Our files are named torchat-*; any other file in those folders is the user's, and is
never touched. The program follows LOG as it grows, every half second, until it is
stopped; --once makes one pass and exits (run.sh does, before Tor starts, so that
Tor's first descriptor is already closed to strangers). Each change and each problem
is a line on stderr.
"""
import base64
import hashlib
import json
import os
import re
import signal
import sys
import time

PREFIX = "torchat-"
# Tor pads the list to a multiple of 16 and fails, silently, to publish a descriptor
# past about 368 clients: 150 contacts and the key nobody holds leave a wide margin.
MAX_LISTED = 150
# Longer than any record the daemon writes (its journal's MAX_LINE).
MAX_LINE = 1 << 20
P = 2**255 - 19
SECRET_HEADER = b"== ed25519v1-secret: type0 ==\0\0\0"


def log(text):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} onion-auth: {text}", file=sys.stderr, flush=True)


def counted(n, word):
    """`n` and `word`, plural unless n is 1: "1 contact", "2 contacts"."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def b32(key):
    """32 bytes as Tor writes them in these files: base32, upper case, no padding."""
    return base64.b32encode(key).decode().rstrip("=")


def onion_key(text):
    """The ed25519 public key that a v3 onion id is made of, or None if `text` is not
    one in the daemon's canonical form (56 base32 characters and .onion, the checksum
    right, version 3)."""
    if not isinstance(text, str) or not re.fullmatch(r"[a-z2-7]{56}\.onion", text):
        return None
    raw = base64.b32decode(text[:56].upper())
    key, checksum, version = raw[:32], raw[32:34], raw[34]
    digest = hashlib.sha3_256(b".onion checksum" + key + b"\x03").digest()
    if version != 3 or checksum != digest[:2]:
        return None
    return key


def x25519_public(ed25519_key):
    """The same point's Montgomery u-coordinate, u = (1 + y) / (1 - y) mod p (RFC 7748
    §4.1): the x25519 public key of whoever holds the onion id's secret scalar."""
    y = int.from_bytes(ed25519_key, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % P, P - 2, P) % P
    return u.to_bytes(32, "little")


def own_secret(tordir):
    """This node's x25519 private key: the first half of the expanded key in Tor's key
    file, the clamped scalar. None until Tor has made the key."""
    path = os.path.join(tordir, "hs", "hs_ed25519_secret_key")
    try:
        with open(path, "rb") as f:
            data = f.read(97)
    except FileNotFoundError:
        return None
    if len(data) != 96 or not data.startswith(SECRET_HEADER):
        raise ValueError(f"{path} is not a Tor ed25519 secret key")
    return data[32:64]


def event(line):
    """(EV, PEER) of a record of the messages log; None for a line that is not one."""
    try:
        record = json.loads(line.partition(b" ")[2])
    except ValueError:
        return None
    if not isinstance(record, dict) or onion_key(record.get("peer")) is None:
        return None
    return record.get("ev"), record["peer"]


class Contacts:
    """The contacts in the messages log, read as it grows: each id, with the number of
    the line that last wrote to it; a blocked peer is none."""

    def __init__(self, path):
        self.path = path
        self.file = None
        self.offset = 0
        self.latest = {}
        # Counts the changes to `latest`: equal counts, the same contacts.
        self.changes = 0

    def read(self):
        """Reads what was appended since the last call; how many damaged lines it skipped.
        A log that was replaced or cut is read again from its start."""
        with open(self.path, "rb") as f:
            stat = os.fstat(f.fileno())
            if self.file != (stat.st_dev, stat.st_ino) or stat.st_size < self.offset:
                if self.file:
                    log(f"{self.path} was replaced or cut: reading it again")
                self.file = (stat.st_dev, stat.st_ino)
                self.offset, self.rest, self.lines, self.latest = 0, b"", 0, {}
                self.changes += 1
            f.seek(self.offset)
            damaged = 0
            while chunk := f.read(1 << 20):
                self.offset += len(chunk)
                *lines, self.rest = (self.rest + chunk).split(b"\n")
                # A line longer than any record is damage: not kept whole in memory.
                if len(self.rest) > MAX_LINE:
                    self.rest = b""
                    damaged += 1
                for line in lines:
                    damaged += self.add(line)
        return damaged

    def add(self, line):
        """1 if `line` is damaged, else 0. Writing to a peer makes it a contact, blocking
        it ends that; any other record changes nothing here."""
        self.lines += 1
        parsed = event(line)
        if parsed is None:
            return 1
        ev, peer = parsed
        if ev == "queued":
            self.latest[peer] = self.lines
            self.changes += 1
        elif ev == "block" and peer in self.latest:
            del self.latest[peer]
            self.changes += 1
        return 0


def client_files(contacts, secret):
    """Tor's client file for each contact: this node's private key, for that onion."""
    files = {}
    for peer in contacts:
        files[f"{PREFIX}{peer[:56]}.auth_private"] = f"{peer[:56]}:descriptor:x25519:{b32(secret)}\n"
    return files


def service_files(contacts, room, nobody):
    """The authorized clients: the `room` contacts written to most recently, and the key
    that nobody holds, so that with no contact the onion is closed too (with no file at
    all, Tor makes it public)."""
    newest = sorted(contacts, key=contacts.get, reverse=True)[:room]
    files = {f"{PREFIX}nobody.auth": nobody}
    for peer in newest:
        files[f"{PREFIX}{peer[:56]}.auth"] = f"descriptor:x25519:{b32(x25519_public(onion_key(peer)))}\n"
    return files


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_private(path, text):
    """0600, whatever the umask, and whole or not at all: each holds a key."""
    temp = path + ".new"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(text)
    os.replace(temp, path)


def keep(folder, files):
    """Makes our files in `folder` exactly `files` (name to text); whether any changed."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    changed = False
    for name in os.listdir(folder):
        if name.startswith(PREFIX) and name not in files:
            os.remove(os.path.join(folder, name))
            changed = True
    for name, text in files.items():
        path = os.path.join(folder, name)
        if read_text(path) != text:
            write_private(path, text)
            changed = True
    return changed


def tell_tor(tordir):
    """SIGHUP to the Tor in TORDIR/tor.pid, which reads both folders again; None, or why
    it could not be told. Only a process named tor is signalled: a stale pid file can
    name somebody else's process."""
    try:
        with open(os.path.join(tordir, "tor.pid")) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return f"no tor.pid in {tordir}"
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        if name != "tor":
            return f"process {pid} in tor.pid is {name}, not tor"
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return f"tor (pid {pid}) is gone"
    return None


class Keeper:
    """One node's files, made to follow its messages log."""

    def __init__(self, log_path, tordir, contacts_only):
        self.contacts = Contacts(log_path)
        self.tordir = tordir
        self.contacts_only = contacts_only
        self.said = None
        # A change Tor has not been told of: kept across a pass that failed midway.
        self.changed = False
        # What the files were last made from (`inputs`).
        self.made_from = None

    def once(self):
        """One pass. A problem is said once, not every half second, until it changes."""
        try:
            problem = self.update()
        except (OSError, ValueError) as e:
            problem = str(e)
        if problem != self.said and problem:
            log(problem)
        self.said = problem

    def update(self):
        """Why the files could not all be written, or None."""
        try:
            damaged = self.contacts.read()
        except FileNotFoundError:
            damaged = 0  # the daemon has not written its log yet
        if damaged:
            log(f"{self.contacts.path}: skipped {damaged} damaged lines")
        contacts = self.contacts.latest
        secret = own_secret(self.tordir)
        missing = None if secret else f"no onion key in {self.tordir}/hs yet: client files wait for it"
        auth = os.path.join(self.tordir, "auth")
        listed = os.path.join(self.tordir, "hs", "authorized_clients")
        # The files follow from these alone: while they stay as they were, a pass reads
        # no file of ours and writes none.
        if self.inputs(secret, auth, listed) == self.made_from:
            return missing
        if secret:
            self.changed |= keep(auth, client_files(contacts, secret))
        users = [n for n in os.listdir(listed) if n.endswith(".auth") and not n.startswith(PREFIX)]
        ours = {}
        if self.contacts_only:
            nobody = read_text(os.path.join(listed, f"{PREFIX}nobody.auth"))
            nobody = nobody or f"descriptor:x25519:{b32(os.urandom(32))}\n"
            ours = service_files(contacts, max(MAX_LISTED - len(users), 0), nobody)
        self.changed |= keep(listed, ours)
        if self.changed:
            self.say_changed(len(contacts) if secret else 0, len(ours) - 1, len(users))
            self.changed = False
        self.made_from = self.inputs(secret, auth, listed)
        return missing

    def inputs(self, secret, auth, listed):
        """What the files are made from: the contacts, the key, and which files the two
        folders hold (the user's own, and ours, should one have been removed)."""
        for folder in (auth, listed):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        return (self.contacts.changes, secret, sorted(os.listdir(auth)), sorted(os.listdir(listed)))

    def say_changed(self, clients, listed, users):
        """Tells Tor, and says what it now has."""
        if self.contacts_only:
            mode = f"contacts only: {counted(listed, 'contact')} listed, and a key that nobody holds"
        else:
            mode = "open to everyone"
        if users:
            mode += f" (and {counted(users, 'file')} of your own)"
        why = tell_tor(self.tordir)
        told = "told tor to read them again" if why is None else f"tor not told: {why}; it reads them when it starts"
        log(f"client files for {counted(clients, 'contact')}; {mode}; {told}")


def main(args):
    flags = {a for a in args if a.startswith("--")}
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 2 or flags - {"--contacts-only", "--once"}:
        sys.exit(__doc__.split("\n\n")[1])
    if not os.path.isdir(paths[1]):
        sys.exit(f"onion-auth: no folder {paths[1]}")
    keeper = Keeper(paths[0], paths[1], "--contacts-only" in flags)
    keeper.once()
    while "--once" not in flags:
        time.sleep(0.5)
        keeper.once()


if __name__ == "__main__":
    main(sys.argv[1:])
