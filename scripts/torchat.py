#!/usr/bin/env python3
"""TORchat's terminal client: talks to the daemon on 127.0.0.1:PORT (PROTOCOL.md).

Usage:
  torchat.py PORT                        full-screen chat (/help inside lists the commands)
  torchat.py PORT --id                   print this node's onion id
  torchat.py PORT --read                 print the unread messages (they count as read)
  torchat.py PORT --send ID TEXT         queue TEXT for the peer ID ("-": read TEXT from stdin)
  torchat.py PORT --send-group NAME TEXT queue TEXT for every other member of group NAME
  torchat.py PORT --send-file ID PATH    offer the file at PATH to the peer ID (share offer)
  torchat.py PORT --block ID             hear the peer ID no more (PROTOCOL.md §12)
  torchat.py PORT --unblock ID           hear it again, as a stranger until you write to it

Exit status: 0 done; 1 nothing to read (--read), or the daemon refused the request (for
a group: refused for at least one member, each named on stderr); 2 bad usage; 3 the
daemon cannot be reached.

Names given to peers, and groups with their members and messages, are kept per node in
$TORCHAT_HOME (default ~/.config/torchat)/NODE_ID.json, private to the user (0600).
Files go through the file program, `share` (PROTOCOL.md §10), found where run.sh puts
things: offers in $TORCHAT_SHARES (tor/node-PORT/shares), fetched through Tor's SOCKS
port $TORCHAT_SOCKS (9250), into $TORCHAT_DOWNLOADS (~/Downloads/torchat).

One concern a file: daemon.py talks to the daemon, received.py parses what peers send,
book.py keeps names and groups, files.py runs the file program, text.py and screen.py
draw. Python 3 standard library only.
"""
import locale
import sys
import time

import received
from book import Book
from daemon import Daemon, Refused, Unreachable, onion_id
from files import Files
from screen import interactive
from text import clean


def read_unread(daemon):
    """Every unread message, peer by peer, as `[HH:MM] PEER: TEXT`; a group message as
    `[HH:MM] #GROUP PEER: TEXT`, and filed in its group for the full-screen chat."""
    book, printed = Book(daemon.host()), 0
    for _ in range(1000):
        unread, _ = daemon.peers()
        if not unread:
            break
        for peer in unread:
            reply = daemon.update(peer)
            while reply is not None:
                text, verified = reply.get("msg", ""), reply.get("verified", False)
                line = f"{peer}: {text}"
                if not reply.get("error") and book.file(peer, text, verified, time.time()):
                    gid = received.group(text)[1]
                    t, who, body, mark = book.groups[gid]["log"][-1]
                    line = f"{book.group_label(gid)} {book.label(who)}: {body}" + (f"  [{mark}]" if mark else "")
                print(f"[{reply.get('date', '')}] {clean(line)}")
                printed += 1
                reply = daemon.update(peer)
    book.save()
    return 0 if printed else 1


def send_group(daemon, name, text):
    """TEXT to every other member of the group the user knows by NAME."""
    book = Book(daemon.host())
    found = [g for g, group in book.groups.items() if group["name"] == name]
    if len(found) != 1:
        print(f"torchat: {'no' if not found else 'more than one'} group named {name}", file=sys.stderr)
        return 1
    failed = book.send_group(daemon, found[0], text)
    book.log(found[0], time.time(), book.me, text, "")
    book.save()
    for why in failed:
        print(f"torchat: not sent to {why}", file=sys.stderr)
    n = len(book.groups[found[0]]["members"]) - 1 - len(failed)
    print(f"queued for {n} member{'' if n == 1 else 's'} of #{name}")
    return 1 if failed else 0


def send_file(daemon, peer, path):
    """An offer of the file at PATH, sent to the peer as a message."""
    line = Files(daemon.port).offer(peer, path)
    print(f"offered to {peer} as {daemon.send(peer, line)}: {line}")
    return 0


def main(argv):
    args = argv[1:]
    if len(args) not in (1, 2, 3, 4) or not args[0].isdigit() or not 0 < int(args[0]) < 65536:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    daemon = Daemon(int(args[0]))
    try:
        if len(args) == 1:
            locale.setlocale(locale.LC_ALL, "")
            return interactive(daemon)
        if args[1:] == ["--id"]:
            print(daemon.host())
            return 0
        if args[1:] == ["--read"]:
            return read_unread(daemon)
        if len(args) == 3 and args[1] in ("--block", "--unblock"):
            peer = onion_id(args[2])
            if not peer:
                print(f"torchat: not an onion id: {args[2]}", file=sys.stderr)
                return 1
            Book(daemon.host()).block(daemon, peer, args[1] == "--block")
            print(f"{args[1][2:]}ed {peer}")
            return 0
        if len(args) == 4 and args[1] in ("--send", "--send-file"):
            peer = onion_id(args[2])
            if not peer:
                print(f"torchat: not an onion id: {args[2]}", file=sys.stderr)
                return 1
            if args[1] == "--send-file":
                return send_file(daemon, peer, args[3])
            text = sys.stdin.read().rstrip("\n") if args[3] == "-" else args[3]
            print(f"queued for {peer} as {daemon.send(peer, text)}")
            return 0
        if len(args) == 4 and args[1] == "--send-group":
            return send_group(daemon, args[2], sys.stdin.read().rstrip("\n") if args[3] == "-" else args[3])
    except Unreachable as e:
        print(f"torchat: {e}", file=sys.stderr)
        return 3
    except Refused as e:
        print(f"torchat: refused: {e}", file=sys.stderr)
        return 1
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
