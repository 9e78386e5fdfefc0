#!/usr/bin/env python3
"""TORchat's terminal client: talks to the daemon on 127.0.0.1:PORT (PROTOCOL.md).

Usage:
  torchat.py PORT                        full-screen chat (/help inside lists the commands)
  torchat.py PORT --id                   print this node's onion id
  torchat.py PORT --read                 print the unread messages (they count as read)
  torchat.py PORT --send ID TEXT         queue TEXT for the peer ID ("-": read TEXT from stdin)
  torchat.py PORT --send-group NAME TEXT queue TEXT for every other member of group NAME

Exit status: 0 done; 1 nothing to read (--read), or the daemon refused the request (for
a group: refused for at least one member, each named on stderr); 2 bad usage; 3 the
daemon cannot be reached.

Names given to peers, and groups with their members and messages, are kept per node in
$TORCHAT_HOME (default ~/.config/torchat)/NODE_ID.json, private to the user (0600).

Python 3 standard library only.
"""
import curses
import json
import locale
import os
import re
import socket
import sys
import time
import unicodedata

HELP = [
    "Paste an onion id and press Enter to open that conversation.",
    "Tab / Shift-Tab, Ctrl-N / Ctrl-P: next / previous peer in the panel",
    "PageUp / PageDown: scroll;  Up / Down: input history;  Ctrl-A/E/U/K: edit",
    "/peer N|ID|NAME   open the Nth entry of the panel, an onion id, or a named peer",
    "/name NAME   name the open conversation's peer; /info: its full id",
    "/group NAME ID|NAME ...   a group (16 at most, you included), opened",
    "/invite ID|NAME, /kick ID|NAME, /leave   in the open group",
    "/history N   show the last N lines of this conversation (default 50)",
    "/quit        leave (the daemon keeps running and receiving)",
    "/exit        stop the daemon and leave",
    "/help        this text",
]
BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")
POLL = 0.5  # seconds between polls: incoming messages show within a second
RETRY = 2.0  # seconds between tries while the daemon cannot be reached
# A group message (PROTOCOL.md §8): "[#NAME GID] TEXT", NAME 1 to 24 printable ASCII
# characters but "]", GID 12 lower-case hex digits.
GROUP = re.compile(r"\[#([ -\\^-~]{1,24}) ([0-9a-f]{12})\] (.*)", re.S)
MAX_MEMBERS = 16
KEPT = 200  # messages kept per group


class Unreachable(Exception):
    pass


class Refused(Exception):
    pass


class Daemon:
    """One JSON request per connection, one reply read to EOF (the daemon closes)."""

    def __init__(self, port):
        self.port = port

    def ask(self, cmd, peer="localhost", msg="", portno=8000):
        request = {"id": peer, "portno": portno, "msg": msg, "cmd": cmd}
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(json.dumps(request).encode())
                while len(data) <= 8192:
                    chunk = s.recv(5000)
                    if not chunk:
                        break
                    data += chunk
        except OSError as e:
            raise Unreachable(f"cannot reach the daemon on 127.0.0.1:{self.port}: {e.strerror or e}")
        try:
            reply = json.loads(data.decode())
        except ValueError:
            raise Unreachable(f"127.0.0.1:{self.port} did not answer like a TORchat daemon")
        # An UPDATE with an error is a notice about one of our messages, not a refusal.
        if reply.get("error") and reply.get("cmd") != "UPDATE":
            raise Refused(reply["error"])
        return reply

    def host(self):
        return self.ask("HOST")["id"]

    def peers(self):
        """Peers with unread messages and their counts, and which of them are strangers
        (PROTOCOL.md §5)."""
        reply = self.ask("GET_PEERS")
        unread = [p for p in reply.get("msg", "").split(",") if p]
        counts = reply.get("unread") or [1] * len(unread)
        contacts = reply.get("contacts", len(unread))
        return dict(zip(unread, counts)), set(unread[contacts:])

    def update(self, peer):
        reply = self.ask("UPDATE", msg=peer)
        return reply if reply.get("cmd") == "UPDATE" else None

    def history(self, peer, n):
        return self.ask("HISTORY", peer, str(n)).get("lines", [])

    def send(self, peer, text):
        return self.ask("SEND", peer, text, 80).get("msg", "")


def onion_id(text):
    """The canonical form of an onion id typed or pasted by the user, or None."""
    b32 = text.strip().lower()
    b32 = b32[:-6] if b32.endswith(".onion") else b32
    return b32 + ".onion" if len(b32) == 56 and set(b32) <= BASE32 else None


def members_list(body):
    """The ids of a members list (`members: ID ID ...`), or None if `body` is not one."""
    ids = [onion_id(w) for w in body[len("members: "):].split()] if body.startswith("members: ") else []
    return ids if ids and all(ids) else None


def group_name(text):
    """A group's name as the convention allows it, or None."""
    return text if 1 <= len(text) <= 24 and all(" " <= c <= "~" and c != "]" for c in text) else None


class Book:
    """What the client keeps for one node, in a file private to the user: the names
    given to peers, the groups with their members and messages, and the peers that
    wrote without being written to (message requests)."""

    def __init__(self, me):
        home = os.environ.get("TORCHAT_HOME") or os.path.join(os.path.expanduser("~"), ".config", "torchat")
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.path, self.me = os.path.join(home, me + ".json"), me
        self.names, self.groups, self.requests = {}, {}, []
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            self.names = {p: fit(str(n), 24) for p, n in data.get("names", {}).items() if onion_id(p) == p}
            self.groups = {g: v for g, v in data.get("groups", {}).items() if re.fullmatch("[0-9a-f]{12}", g)}
            self.requests = [p for p in data.get("requests", []) if onion_id(p) == p]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            raise Unreachable(f"cannot read {self.path}: {e}")

    def save(self):
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"names": self.names, "groups": self.groups, "requests": self.requests}, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def label(self, peer):
        """The user's name for a peer, or the start of its id."""
        return "me" if peer == self.me else self.names.get(peer) or peer[:12] + "..."

    def group_label(self, gid):
        """A group's name was chosen by whoever made it: unless that was the user, the
        start of its id stands beside it, so that two groups cannot pass for one."""
        group = self.groups[gid]
        return f"#{group['name']}" + ("" if group.get("mine") else f" ~{gid[:6]}")

    def resolve(self, word):
        """An onion id, or the peer the user gave that name; None if neither (or two)."""
        named = [p for p, n in self.names.items() if n == word]
        return onion_id(word) or (named[0] if len(named) == 1 else None)

    def file(self, sender, text, verified, t):
        """A group message (PROTOCOL.md §8) into its group; False if `text` is not one.
        Only a verified member changes the members list, or leaves."""
        match = GROUP.fullmatch(text)
        if not match:
            return False
        name, gid, body = match.groups()
        group = self.groups.setdefault(gid, {"name": name, "members": [], "log": [], "unread": 0})
        member = verified and sender in group["members"]
        ids = members_list(body)
        if ids and len(ids) <= MAX_MEMBERS and (member or (verified and not group["members"])):
            group["name"], group["members"] = name, list(dict.fromkeys(ids))
            body = self.shown(body)
        elif body == "left" and member:
            group["members"].remove(sender)
        mark = "unverified" if not verified else "" if member or sender in group["members"] else "non-member"
        self.log(gid, t, sender, body, mark)
        return True

    def shown(self, body):
        """A members list with the user's names for its ids."""
        ids = members_list(body)
        return "members: " + ", ".join(self.label(p) for p in ids) if ids else body

    def log(self, gid, t, sender, text, mark):
        group = self.groups[gid]
        group["log"] = (group["log"] + [[t, sender, text, mark]])[-KEPT:]
        group["unread"] += 1

    def send_group(self, daemon, gid, text, to=None):
        """TEXT to every other member (or to `to`), one SEND each; the members it could
        not be sent to, each with the daemon's reason."""
        group, failed = self.groups[gid], []
        for member in to or group["members"]:
            if member != self.me:
                try:
                    daemon.send(member, f"[#{group['name']} {gid}] {text}")
                    if member in self.requests:  # writing to a peer accepts its request
                        self.requests.remove(member)
                except Refused as e:
                    why = str(e).removeprefix(f"SEND to {member}: ")  # the member is named here
                    failed.append(f"{self.label(member)}: {why}")
        return failed


def hhmm(t):
    return time.strftime("%H:%M", time.localtime(t))


def width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def clean(text):
    """What a peer sent, safe for the terminal: no control characters or escapes."""
    text = text.replace("\t", "    ")
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs") and c != "\n" else c for c in text)


def cells(text):
    return sum(width(c) for c in text)


def wrap(text, cols, indent=0):
    """Screen lines of at most `cols` cells, broken after a blank where there is one;
    continuation lines indented."""
    lines = []
    for para in clean(text).split("\n"):
        line, start = "", 0
        for ch in para:
            if cells(line) + width(ch) > cols:
                cut = line.rfind(" ", start) + 1
                if cut <= start or indent + cells(line[cut:]) + width(ch) > cols:
                    cut = len(line)
                lines.append(line[:cut].rstrip(" ") or line[:cut])
                line, start = " " * indent + line[cut:], indent
            line += ch
        lines.append(line)
    return lines


def fit(text, cols):
    """`text` cut to `cols` cells."""
    out, used = "", 0
    for ch in clean(text).replace("\n", " "):
        if used + width(ch) > cols:
            break
        out += ch
        used += width(ch)
    return out


class Chat:
    def __init__(self, screen, daemon):
        self.screen, self.daemon = screen, daemon
        self.me, self.book = None, None
        self.unread, self.opened = {}, []  # counts taken but not yet seen; this session's peers
        self.waiting = {}  # message requests' counts, still unread in the daemon
        self.peer, self.group = None, None  # the open conversation: a peer, or a group's id
        self.lines = []  # the conversation: (time, kind, text, mark)
        self.history = []  # the last HISTORY reply for the open conversation
        self.notices = {}  # per peer, notices HISTORY does not hold (a SEND refused at once)
        self.depth = 50
        self.stale = False  # HISTORY must be asked again
        self.info = list(HELP[:1])  # lines of our own, shown under the conversation
        self.status, self.alarm, self.down = "connecting...", False, True
        self.text, self.cursor, self.typed, self.recall = "", 0, [], 0
        self.scroll = 0
        self.next_poll = 0.0
        self.running = True

    # --- talking to the daemon ------------------------------------------------------

    def poll(self):
        try:
            if self.me is None:
                self.me = self.daemon.host()
                self.book = Book(self.me)
            self.take()
            self.refresh()
            if self.down:
                self.say(f"connected to the daemon on 127.0.0.1:{self.daemon.port}", False)
                self.down = False
            self.next_poll = time.monotonic() + POLL
        except Unreachable as e:
            self.say(f"{e}; trying again every {RETRY:.0f}s", True)
            self.down = True
            self.next_poll = time.monotonic() + RETRY
        except Refused as e:
            self.say(f"refused: {e}", True)
            self.next_poll = time.monotonic() + POLL

    def take(self):
        """Takes the unread messages of contacts, of group members and of the open
        conversation (so they count as read) and files them: a group message in its
        group, wherever it came from; anything else in its sender's conversation, shown
        from HISTORY. A stranger's messages wait in the daemon, in the strangers' bound,
        until the user opens the request (PROTOCOL.md §5): taking them at once would
        make room for a flood."""
        unread, strangers = self.daemon.peers()
        members = {p for group in self.book.groups.values() for p in group["members"]}
        self.waiting = {p: n for p, n in unread.items() if p in strangers and p not in members}
        changed = False
        for peer in unread:
            if peer in strangers and peer not in self.book.requests:
                self.book.requests.append(peer)
            if peer in self.waiting and peer != self.peer:
                continue
            self.waiting.pop(peer, None)
            for _ in range(100):
                reply = self.daemon.update(peer)
                if reply is None:
                    break
                changed = True
                text, verified = reply.get("msg", ""), reply.get("verified", False)
                if not verified and text.startswith("[unverified] "):
                    text = text[len("[unverified] "):]
                if reply.get("error"):
                    self.notices.setdefault(peer, []).append((time.time(), "!", text, ""))
                elif self.book.file(peer, text, verified, time.time()):
                    continue
                self.unread[peer] = self.unread.get(peer, 0) + 1
        if changed:
            self.book.save()
            self.stale = True

    def refresh(self):
        """The open conversation. A peer's comes from HISTORY, asked again only when
        something may have changed (a message in or out, or one of ours still queued);
        its group messages are shown in their groups instead."""
        if self.group:
            group = self.book.groups[self.group]
            group["unread"] = 0
            self.lines = [(t, self.book.label(who) + ":", text, mark) for t, who, text, mark in group["log"]]
            return
        if not self.peer:
            return
        self.unread.pop(self.peer, None)
        queued = any(line.get("state") == "queued" for line in self.history)
        if not (self.stale or queued):
            return
        self.stale = False
        self.history = self.daemon.history(self.peer, self.depth)
        lines = []
        for line in self.history:
            if GROUP.fullmatch(line.get("msg", "")):
                self.backfill(line)
                continue
            if line.get("dir") == "in":
                lines.append((line["t"], "<", line["msg"], "" if line.get("verified") else "unverified"))
            else:
                lines.append((line["t"], ">", line["msg"], line.get("state", "")))
        self.lines = sorted(lines + self.notices.get(self.peer, []), key=lambda line: line[0])

    def backfill(self, line):
        """A group message found in HISTORY goes to its group, unless the group has it:
        one read by another client (the 2017 one, say) reaches us only this way."""
        _, gid, body = GROUP.fullmatch(line["msg"]).groups()
        log = self.book.groups.get(gid, {}).get("log", [])
        texts = (body, self.book.shown(body))
        known = any(who == self.peer and text in texts and abs(t - line["t"]) < 120 for t, who, text, _ in log)
        if line.get("dir") == "in" and not known and self.book.file(self.peer, line["msg"], line.get("verified"), line["t"]):
            log = self.book.groups[gid]["log"]
            log.sort(key=lambda entry: entry[0])
            self.book.save()

    def say(self, status, alarm):
        self.status, self.alarm = status, alarm

    def open(self, entry):
        """Opens a peer's conversation, or a group's (`entry` a group id)."""
        if entry in (self.book.groups if self.book else {}):
            self.peer, self.group = None, entry
        else:
            try:
                self.daemon.history(entry, 1)  # the daemon checks the id: a typo is refused here
            except (Unreachable, Refused) as e:
                return self.say(f"cannot open {entry[:16]}...: {e}", True)
            self.peer, self.group = entry, None
            if entry in self.opened:
                self.opened.remove(entry)
            self.opened.insert(0, entry)
        self.history, self.lines, self.scroll, self.stale, self.info = [], [], 0, True, []
        self.next_poll = 0.0

    def panel(self):
        """The side panel: groups, then peers (unread first, then this session's, then
        named ones), then message requests: strangers who wrote first."""
        groups = list(self.book.groups) if self.book else []
        requests = self.book.requests if self.book else []
        peers = list(self.unread) + list(self.waiting) + self.opened + (list(self.book.names) if self.book else [])
        peers = [p for p in dict.fromkeys(peers) if p not in requests]
        return groups + peers + [p for p in requests if p not in peers]

    def step(self, by):
        entries = self.panel()
        if entries:
            current = self.group or self.peer
            at = entries.index(current) if current in entries else -by
            self.open(entries[(at + by) % len(entries)])

    # --- the input line -----------------------------------------------------------

    def submit(self):
        line, self.text, self.cursor = self.text.strip(), "", 0
        if not line:
            return
        self.say("", False)
        self.typed.append(line)
        self.recall = len(self.typed)
        if line.startswith("/"):
            return self.command(line)
        peer = onion_id(line)
        if peer:
            return self.open(peer)
        try:
            if self.group:
                return self.to_group(line)
            if not self.peer:
                return self.say("no conversation open: paste an onion id, or /peer N", True)
            self.daemon.send(self.peer, line)
            if self.peer in self.book.requests:  # replying accepts a message request
                self.book.requests.remove(self.peer)
                self.book.save()
            self.stale, self.next_poll = True, 0.0
        except (Unreachable, Refused) as e:
            self.say(f"not sent: {e}", True)

    def to_group(self, text, to=None):
        """Sends to every other member of the open group; says which did not get it."""
        failed = self.book.send_group(self.daemon, self.group, text, to)
        self.book.log(self.group, time.time(), self.me, self.book.shown(text), "")
        self.book.save()
        if failed:
            self.say("not sent to " + "; ".join(failed), True)

    def command(self, line):
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name == "/help":
            self.info = list(HELP)
        elif name == "/quit":
            self.running = False
        elif name == "/exit":
            try:
                self.daemon.ask("EXIT")
                self.running = False
            except (Unreachable, Refused) as e:
                self.say(f"cannot stop the daemon: {e}", True)
        elif name == "/peer":
            peers = self.panel()
            if arg.isdigit() and 1 <= int(arg) <= len(peers):
                self.open(peers[int(arg) - 1])
            elif self.book and self.book.resolve(arg):
                self.open(self.book.resolve(arg))
            else:
                self.say(f"/peer: expected 1 to {len(peers)}, an onion id or a name", True)
        elif name == "/name":
            given = fit(arg, 24).strip()
            if not self.peer or not given:
                return self.say("/name: open a peer's conversation, then /name NAME", True)
            self.book.names[self.peer] = given
            self.book.save()
        elif name == "/info":
            if self.group:
                group = self.book.groups[self.group]
                members = [f"{self.book.label(p)} {p}" for p in group["members"]]
                self.info = [f"group {group['name']} ({self.group}), members:"] + members
            elif self.peer:
                self.info = [f"{self.book.label(self.peer)}: {self.peer}"]
        elif name == "/group":
            self.new_group(arg.split())
        elif name in ("/invite", "/kick", "/leave"):
            self.membership(name, arg)
        elif name == "/history":
            if arg.isdigit() and int(arg) > 0:
                self.depth, self.stale, self.next_poll = int(arg), True, 0.0
            else:
                self.say("/history: expected a number of lines", True)
        else:
            self.say(f"unknown command {name} (see /help)", True)

    def new_group(self, words):
        """/group NAME ID|NAME ...: a new group id, the members list to every member."""
        name = group_name(words[0]) if words else None
        members = [self.book.resolve(w) for w in words[1:]]
        unknown = [w for w, p in zip(words[1:], members) if not p]
        if not name or not members or unknown:
            why = f"who is {', '.join(unknown)}? (an onion id or a /name)" if unknown else "/group NAME ID|NAME ..."
            return self.say(why, True)
        members = list(dict.fromkeys([self.me] + members))
        if len(members) > MAX_MEMBERS:
            return self.say(f"/group: at most {MAX_MEMBERS} members, you included", True)
        gid = os.urandom(6).hex()
        self.book.groups[gid] = {"name": name, "members": members, "mine": True, "log": [], "unread": 0}
        self.open(gid)
        self.to_group("members: " + " ".join(members))

    def membership(self, command, arg):
        """/invite, /kick: the new members list to old and new members; /leave."""
        if not self.group:
            return self.say(f"{command}: open a group first", True)
        group = self.book.groups[self.group]
        if command == "/leave":
            self.to_group("left")
            del self.book.groups[self.group]
            self.book.save()
            self.group, self.lines = None, []
            return
        peer = self.book.resolve(arg)
        if not peer:
            return self.say(f"{command}: who is {arg}? (an onion id or a /name)", True)
        old = list(group["members"])
        members = [p for p in old if p != peer] if command == "/kick" else list(dict.fromkeys(old + [peer]))
        if len(members) > MAX_MEMBERS:
            return self.say(f"/invite: at most {MAX_MEMBERS} members, you included", True)
        group["members"] = members
        self.to_group("members: " + " ".join(members), to=list(dict.fromkeys(old + members)))

    def key(self, k):
        if k in ("\n", "\r", curses.KEY_ENTER):
            self.submit()
        elif k in ("\t", "\x0e"):
            self.step(1)
        elif k in (curses.KEY_BTAB, "\x10"):
            self.step(-1)
        elif k in ("\x7f", "\b", curses.KEY_BACKSPACE):
            if self.cursor > 0:
                self.text = self.text[: self.cursor - 1] + self.text[self.cursor:]
                self.cursor -= 1
        elif k == curses.KEY_DC:
            self.text = self.text[: self.cursor] + self.text[self.cursor + 1:]
        elif k == curses.KEY_LEFT:
            self.cursor = max(0, self.cursor - 1)
        elif k == curses.KEY_RIGHT:
            self.cursor = min(len(self.text), self.cursor + 1)
        elif k in (curses.KEY_HOME, "\x01"):
            self.cursor = 0
        elif k in (curses.KEY_END, "\x05"):
            self.cursor = len(self.text)
        elif k == "\x15":
            self.text, self.cursor = "", 0
        elif k == "\x0b":
            self.text = self.text[: self.cursor]
        elif k in (curses.KEY_UP, curses.KEY_DOWN):
            self.recall = max(0, min(len(self.typed), self.recall + (-1 if k == curses.KEY_UP else 1)))
            self.text = self.typed[self.recall] if self.recall < len(self.typed) else ""
            self.cursor = len(self.text)
        elif k in (curses.KEY_PPAGE, curses.KEY_NPAGE):
            rows = max(1, self.screen.getmaxyx()[0] - 4)
            self.scroll = max(0, self.scroll + (rows if k == curses.KEY_PPAGE else -rows))
        elif k == curses.KEY_RESIZE:
            curses.update_lines_cols()
        elif isinstance(k, str) and k.isprintable():
            self.text = self.text[: self.cursor] + k + self.text[self.cursor:]
            self.cursor += 1

    # --- drawing ------------------------------------------------------------------

    def put(self, y, x, text, attr=0):
        try:
            self.screen.addstr(y, x, text, attr)
        except curses.error:
            pass  # the bottom-right cell, or a terminal shrinking under us

    def draw(self):
        s = self.screen
        s.erase()
        rows, cols = s.getmaxyx()
        if rows < 8 or cols < 40:
            self.put(0, 0, fit("terminal too small for TORchat", cols))
            s.refresh()
            return
        side = min(30, cols // 3)
        for y in range(rows - 2):
            self.put(y, side, "|")
        self.put(0, 0, fit("TORchat", side - 1), curses.A_BOLD)
        y = 1
        for part in wrap(self.me or "(no id yet)", side - 1):
            self.put(y, 0, part)
            y += 1
        self.put(y + 1, 0, fit("peers (Tab):", side - 1), curses.A_BOLD)
        y += 2
        requests = self.book.requests if self.book else []
        entries = self.panel()
        for n, entry in enumerate(entries, 1):
            if y >= rows - 3:
                break
            if entry in requests and (n == 1 or entries[n - 2] not in requests):
                self.put(y, 0, fit("requests (reply to accept):", side - 1), curses.A_BOLD)
                y += 1
            group = self.book.groups.get(entry) if self.book else None
            count = group["unread"] if group else self.unread.get(entry) or self.waiting.get(entry)
            label = self.book.group_label(entry) if group else self.book.label(entry) if self.book else entry
            label = f"{n:>2} {label}" + (f" ({count})" if count else "")
            self.put(y, 0, fit(label, side - 1), curses.A_REVERSE if entry in (self.peer, self.group) else 0)
            y += 1
        x, pane = side + 2, cols - side - 2
        if self.group:
            title = self.book.group_label(self.group) + "  (/info: members)"
        elif self.peer:
            title = f"{self.book.label(self.peer)}  {self.peer}"
        else:
            title = "no conversation: paste an onion id, or /peer N"
        self.put(0, x, fit(title, pane), curses.A_BOLD)
        body = []
        for t, kind, text, mark in self.lines:
            body += wrap(f"[{hhmm(t)}] {kind} {text}" + (f"  [{mark}]" if mark else ""), pane, 10)
        for text in self.info:
            body += wrap(text, pane, 2)
        height = rows - 3
        self.scroll = min(self.scroll, max(0, len(body) - height))
        shown = body[max(0, len(body) - height - self.scroll): len(body) - self.scroll]
        for i, line in enumerate(shown):
            self.put(1 + i, x, line)
        status = self.status or f"127.0.0.1:{self.daemon.port}  /help for commands"
        self.put(rows - 2, 0, fit(status, cols - 1).ljust(cols - 1), curses.A_REVERSE | (curses.A_BOLD if self.alarm else 0))
        # The input line scrolls sideways to keep the cursor in view.
        prompt, room = "> ", cols - 3
        start = max(0, self.cursor - room + 1)
        self.put(rows - 1, 0, prompt + fit(self.text[start:], room))
        cursor_x = len(prompt) + sum(width(c) for c in self.text[start: self.cursor])
        try:
            s.move(rows - 1, min(cols - 1, cursor_x))
        except curses.error:
            pass
        s.refresh()

    def run(self):
        self.screen.timeout(100)
        self.screen.keypad(True)
        while self.running:
            if time.monotonic() >= self.next_poll:
                self.poll()
            self.draw()
            try:
                k = self.screen.get_wch()
            except curses.error:
                continue  # no key within the timeout
            self.key(k)


def interactive(daemon):
    def main(screen):
        try:
            curses.curs_set(1)
        except curses.error:
            pass
        try:
            curses.use_default_colors()
        except curses.error:
            pass
        Chat(screen, daemon).run()

    try:
        curses.wrapper(main)
    except KeyboardInterrupt:
        pass
    return 0


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
                    gid = GROUP.fullmatch(text).group(2)
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
    print(f"queued for {len(book.groups[found[0]]['members']) - 1 - len(failed)} members of #{name}")
    return 1 if failed else 0


def main(argv):
    args = argv[1:]
    if len(args) not in (1, 2, 4) or not args[0].isdigit() or not 0 < int(args[0]) < 65536:
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
        if len(args) == 4 and args[1] == "--send":
            peer = onion_id(args[2])
            text = sys.stdin.read().rstrip("\n") if args[3] == "-" else args[3]
            if not peer:
                print(f"torchat: not an onion id: {args[2]}", file=sys.stderr)
                return 1
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
