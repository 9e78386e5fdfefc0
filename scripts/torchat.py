#!/usr/bin/env python3
"""TORchat's terminal client: talks to the daemon on 127.0.0.1:PORT (PROTOCOL.md).

Usage:
  torchat.py PORT                 full-screen chat (/help inside lists the commands)
  torchat.py PORT --id            print this node's onion id
  torchat.py PORT --read          print the unread messages (they count as read)
  torchat.py PORT --send ID TEXT  queue TEXT for the peer ID ("-": read TEXT from stdin)

Exit status: 0 done; 1 nothing to read (--read), or the daemon refused the request;
2 bad usage; 3 the daemon cannot be reached.

Python 3 standard library only.
"""
import curses
import json
import locale
import socket
import sys
import time
import unicodedata

HELP = [
    "Paste an onion id and press Enter to open that conversation.",
    "Tab / Shift-Tab, Ctrl-N / Ctrl-P: next / previous peer in the panel",
    "PageUp / PageDown: scroll;  Up / Down: input history;  Ctrl-A/E/U/K: edit",
    "/peer N|ID   open the Nth peer of the panel, or an onion id",
    "/history N   show the last N lines of this conversation (default 50)",
    "/quit        leave (the daemon keeps running and receiving)",
    "/exit        stop the daemon and leave",
    "/help        this text",
]
BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")
POLL = 0.5  # seconds between polls: incoming messages show within a second
RETRY = 2.0  # seconds between tries while the daemon cannot be reached


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
        reply = self.ask("GET_PEERS")
        unread = [p for p in reply.get("msg", "").split(",") if p]
        counts = reply.get("unread") or [1] * len(unread)
        return dict(zip(unread, counts)), reply.get("talked", [])

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
        self.me = None
        self.unread, self.talked, self.opened = {}, [], []
        self.peer = None
        self.lines = []  # the conversation: (time, kind, text, mark)
        self.history = []  # the last HISTORY reply for the open conversation
        self.extra = []  # lines HISTORY does not hold: notices, messages from before a log rotation
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
            if self.peer:
                self.read_new()
            self.unread, self.talked = self.daemon.peers()
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

    def read_new(self):
        """Takes the open conversation's unread messages (so they count as read) and
        shows the conversation as HISTORY has it, with what HISTORY cannot show. HISTORY
        is asked again only when something may have changed: a conversation just opened,
        a message in or out, or one of ours still queued."""
        taken, notices = [], len(self.extra)
        for _ in range(100):
            reply = self.daemon.update(self.peer)
            if reply is None:
                break
            if reply.get("error"):
                self.extra.append((time.time(), "!", reply.get("msg", ""), ""))
            else:
                text = reply.get("msg", "")
                verified = reply.get("verified", False)
                if not verified and text.startswith("[unverified] "):
                    text = text[len("[unverified] "):]
                taken.append((text, verified))
        queued = any(line.get("state") == "queued" for line in self.history)
        if not (self.stale or taken or queued or len(self.extra) > notices):
            return
        self.stale = False
        self.history = self.daemon.history(self.peer, self.depth)
        recent = [line.get("msg") for line in self.history if line.get("dir") == "in"][-(len(taken) + 5):]
        for text, verified in taken:
            if text not in recent:
                self.extra.append((time.time(), "<", text, "" if verified else "unverified"))
        lines = []
        for line in self.history:
            if line.get("dir") == "in":
                lines.append((line["t"], "<", line["msg"], "" if line.get("verified") else "unverified"))
            else:
                lines.append((line["t"], ">", line["msg"], line.get("state", "")))
        self.lines = sorted(lines + self.extra, key=lambda line: line[0])

    def say(self, status, alarm):
        self.status, self.alarm = status, alarm

    def open(self, peer):
        try:
            self.daemon.history(peer, 1)  # the daemon checks the id: a typo is refused here
        except (Unreachable, Refused) as e:
            return self.say(f"cannot open {peer[:16]}...: {e}", True)
        self.peer, self.extra, self.history, self.lines, self.scroll = peer, [], [], [], 0
        self.stale = True
        self.info = []
        if peer in self.opened:
            self.opened.remove(peer)
        self.opened.insert(0, peer)
        self.next_poll = 0.0

    def panel(self):
        """The peers in the side panel: unread first, then this session's, then recent."""
        out = list(self.unread)
        for peer in self.opened + self.talked:
            if peer not in out:
                out.append(peer)
        return out

    def step(self, by):
        peers = self.panel()
        if peers:
            at = peers.index(self.peer) if self.peer in peers else -by
            self.open(peers[(at + by) % len(peers)])

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
        if not self.peer:
            return self.say("no conversation open: paste an onion id, or /peer N", True)
        try:
            self.daemon.send(self.peer, line)
            self.stale, self.next_poll = True, 0.0
        except (Unreachable, Refused) as e:
            self.say(f"not sent: {e}", True)

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
            elif onion_id(arg):
                self.open(onion_id(arg))
            else:
                self.say(f"/peer: expected 1 to {len(peers)} or an onion id", True)
        elif name == "/history":
            if arg.isdigit() and int(arg) > 0:
                self.depth, self.stale, self.next_poll = int(arg), True, 0.0
            else:
                self.say("/history: expected a number of lines", True)
        else:
            self.say(f"unknown command {name} (see /help)", True)

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
        for n, peer in enumerate(self.panel(), 1):
            if y >= rows - 2:
                break
            count = self.unread.get(peer)
            label = f"{n:>2} {peer[:12]}..." + (f" ({count})" if count else "")
            self.put(y, 0, fit(label, side - 1), curses.A_REVERSE if peer == self.peer else 0)
            y += 1
        x, pane = side + 2, cols - side - 2
        title = self.peer or "no conversation: paste an onion id, or /peer N"
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
    """Every unread message, peer by peer, as `[HH:MM] PEER: TEXT`."""
    printed = 0
    for _ in range(1000):
        unread, _ = daemon.peers()
        if not unread:
            break
        for peer in unread:
            reply = daemon.update(peer)
            while reply is not None:
                print(f"[{reply.get('date', '')}] {peer}: {reply.get('msg', '')}")
                printed += 1
                reply = daemon.update(peer)
    return 0 if printed else 1


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
