"""Why a message waits, in words: the daemon writes each failed try to its errors log,
a line `STAMP [WARN] to ID: REASON; next try in Ns` (PROTOCOL.md §6), and this reads
them back; and whether this node's Tor answers on its SOCKS port. The daemon's own
file, read all the same as if anything could be in it: only its last 64 KiB, any bytes,
a line that is not of that form is passed over, and a missing, damaged or rotated log
only means no reason to show."""
import calendar
import os
import re
import socket
import time

TAIL = 1 << 16
TRY = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\S* \[WARN\] to ([a-z2-7]{56}\.onion): (.{1,300}); next try in (\d{1,5})s")

# The reasons Tor's SOCKS port gives (RFC 1928's words), and ours, as people say them.
WORDS = [
    ("general SOCKS server failure", "not reachable (offline, or it accepts only its contacts)"),
    ("host unreachable", "not reachable (offline, or it accepts only its contacts)"),
    ("TTL expired", "not reachable in time (offline, or Tor is slow)"),
    ("connection refused", "its Tor is up but its TORchat is not"),
    ("Tor's SOCKS port", "this node's Tor is not running"),
    ("no acknowledgement", "it did not say it got it"),
]


def in_words(reason):
    for said, words in WORDS:
        if reason.startswith(said):
            return words
    return reason


def tries(path):
    """The latest failed try to each peer: {peer: (reason in words, when the next try
    is, UNIX time)}."""
    latest = {}
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL))
            text = f.read(TAIL).decode("utf-8", errors="replace")
    except OSError:
        return latest
    for line in text.split("\n"):
        match = TRY.fullmatch(line.strip())
        if match:
            stamp, peer, reason, seconds = match.groups()
            at = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
            latest[peer] = (in_words(reason), at + int(seconds))
    return latest


def waiting(path, peer, now):
    """Why our messages to `peer` wait, and when the next try is, in words; None when the
    log says nothing of it."""
    found = tries(path).get(peer)
    if not found:
        return None
    words, next_try = found
    left = int(next_try - now)
    return f"waiting: {words}, next try {f'in {left}s' if left > 0 else 'now'}"


def tor_runs(address):
    """Whether something answers on Tor's SOCKS port (`HOST:PORT`)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False
