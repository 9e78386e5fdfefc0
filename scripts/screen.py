"""The full-screen chat: the side panel of peers, groups and message requests, the open
conversation, the input line, and the commands typed there."""
import curses
import os
import time

import received
import waiting
from book import MAX_MEMBERS, Book, group_name
from daemon import Refused, Unreachable, id_problem, onion_id
from files import Fetch, Files
from text import fit, hhmm, size, width, wrap

HELP = [
    "Paste an onion id and press Enter: that chat opens.",
    "Tab/Shift-Tab: next/previous; PgUp/PgDn: scroll",
    "/peer N|ID|NAME|#GROUP  open an entry of the panel",
    "/id  your id, whole;  /info  this chat's ids",
    "/name NAME  name this peer",
    "/group NAME ID|NAME ...  a group (16 at most)",
    "/invite ID|NAME, /kick ID|NAME, /leave  (groups)",
    "/send PATH  offer a file;  /get N  fetch offer N",
    "/files  offers made and received",
    "/history N  the last N lines here (50)",
    "/block, /unblock [ID|NAME]  hear a peer no more",
    "/blocked  who is blocked;  /remove [ID|NAME]",
    "/quit  leave (the daemon keeps running)",
    "/exit  stop the daemon and leave;  /help  this",
]
POLL = 0.5  # seconds between polls: incoming messages show within a second
PROBE = 5.0  # seconds between looks at this node's Tor
LATE = 3.0  # seconds after which a message still queued says why it waits
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RETRY = 2.0  # seconds between tries while the daemon cannot be reached
SAID = 5.0  # seconds a line of ours that is not an alarm stays in the status line


class Chat:
    def __init__(self, screen, daemon):
        self.screen, self.daemon = screen, daemon
        self.me, self.book = None, None
        self.unread, self.opened = {}, []  # counts taken but not yet seen; this session's peers
        self.waiting = {}  # message requests' counts, still unread in the daemon
        self.peer, self.group = None, None  # the open conversation: a peer, or a group's id
        self.lines = []  # the conversation: (time, kind, text, mark)
        self.history = []  # the last HISTORY reply for the open conversation
        self.blocked = False  # whether the open conversation's peer is blocked
        self.notices = {}  # per peer, notices HISTORY does not hold (a SEND refused at once)
        self.depth = 50
        self.stale = False  # HISTORY must be asked again
        self.info = list(HELP[:1])  # lines of our own, shown under the conversation
        self.status, self.alarm, self.down = "connecting...", False, True
        self.said_at = time.monotonic()
        self.banner = None  # an id shown alone on a line of the whole width, to copy (/id, /info)
        self.text, self.cursor, self.typed, self.recall = "", 0, [], 0
        self.scroll = 0
        self.next_poll = 0.0
        self.running = True
        self.files, self.fetches = Files(daemon.port), {}  # offers being fetched, by number
        # The daemon's errors log (run.sh's layout: --logs, relative to where it runs),
        # which says why our messages wait; whether this node's Tor answers.
        logs = os.environ.get("TORCHAT_LOGS") or os.path.join(ROOT, "logs")
        self.errors_log = os.path.join(logs, "errors.log")
        self.tor_down, self.next_probe = False, 0.0

    # --- talking to the daemon ------------------------------------------------------

    def poll(self):
        try:
            if self.me is None:
                self.me = self.daemon.host()
                self.book = Book(self.me)
                self.unread = dict(self.book.unread)
            self.take()
            for peer, name in self.files.fetched():
                self.notices.setdefault(peer, []).append((time.time(), "*", f"fetched {name}", ""))
                self.stale = True
            self.refresh()
            self.probe()
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

    def probe(self):
        """Every PROBE seconds: does this node's Tor answer? Said when that changes."""
        if time.monotonic() < self.next_probe:
            return
        self.next_probe = time.monotonic() + PROBE
        down = not waiting.tor_runs(self.files.socks)
        if self.tor_down and not down:
            self.say(f"Tor is running again ({self.files.socks})", False)
        self.tor_down = down

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
            self.book.unread = self.unread
            self.book.save()
            self.stale = True

    def refresh(self):
        """The open conversation. A peer's comes from HISTORY, asked again only when
        something may have changed (a message in or out, or one of ours still queued);
        its group messages are shown in their groups instead."""
        if self.group:
            group = self.book.groups[self.group]
            group["unread"] = 0
            log = [(t, self.book.label(who) + ":", self.offer(who, text), mark) for t, who, text, mark in group["log"]]
            self.lines = sorted(log + self.notices.get(self.group, []), key=lambda line: line[0])
            return
        if not self.peer:
            return
        if self.unread.pop(self.peer, None):  # on the screen now: read, also for the next start
            self.book.unread = self.unread
            self.book.save()
        queued = any(line.get("state") == "queued" for line in self.history)
        if not (self.stale or queued):
            return
        self.stale = False
        self.history, self.blocked = self.daemon.history(self.peer, self.depth)
        lines, late = [], True
        for line in self.history:
            if received.group(line.get("msg", "")):
                self.backfill(line)
                continue
            if line.get("dir") == "in":
                text = self.offer(self.peer, line["msg"])
                lines.append((line["t"], "<", text, "" if line.get("verified") else "unverified"))
            else:
                state = line.get("state", "")
                # The oldest message still queued is the one being tried: say why it waits.
                if state == "queued" and late and line["t"] < time.time() - LATE:
                    state = waiting.waiting(self.errors_log, self.peer, time.time()) or state
                    late = False
                lines.append((line["t"], ">", self.offer(self.me, line["msg"]), state))
        self.lines = sorted(lines + self.notices.get(self.peer, []), key=lambda line: line[0])

    def backfill(self, line):
        """A group message found in HISTORY goes to its group, unless the group has it:
        one read by another client (the 2017 one, say) reaches us only this way."""
        _, gid, body = received.group(line["msg"])
        log = self.book.groups.get(gid, {}).get("log", [])
        texts = (body, self.book.shown(body))
        known = any(who == self.peer and text in texts and abs(t - line["t"]) < 120 for t, who, text, _ in log)
        if line.get("dir") == "in" and not known and self.book.file(self.peer, line["msg"], line.get("verified"), line["t"]):
            log = self.book.groups[gid]["log"]
            log.sort(key=lambda entry: entry[0])
            self.book.save()

    def offer(self, who, text):
        """A file offer as people read it, numbered for /get; any other text as it is."""
        offer = received.offer(text)
        if not offer:
            return text
        what = f"{offer['name']} ({size(offer['size'])})"
        if who == self.me:
            return f"offered {what}"
        n = self.book.offered(who, self.group or self.peer, text)
        return f"offers {what}: /get {n}"

    def say(self, status, alarm):
        self.status, self.alarm, self.said_at = status, alarm, time.monotonic()

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
        blocked = self.book.blocked if self.book else []
        peers = [p for p in dict.fromkeys(peers) if p not in requests and p not in blocked]
        return groups + peers + [p for p in requests if p not in peers and p not in blocked]

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
        # A line that looks like an id is never sent as a message, whatever is open.
        problem = id_problem(line)
        if problem:
            return self.say(problem, True)
        if problem is None:
            return self.open(onion_id(line))
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
        if self.book.groups[self.group].get("removed"):
            return self.say(f"you are no longer a member of {self.book.group_label(self.group)}: nothing sent", True)
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
            found = self.book.entries(arg) if self.book else []
            if arg.isdigit() and 1 <= int(arg) <= len(peers):
                self.open(peers[int(arg) - 1])
            elif len(found) == 1:
                self.open(found[0])
            elif found:
                labels = ", ".join(self.book.group_label(e) if e in self.book.groups else e[:16] + "..." for e in found)
                self.say(f"/peer {arg}: {labels} share that name; use its number", True)
            else:
                self.say(f"/peer: no {arg or 'entry'} here: a number of the panel, an id or a name", True)
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
                self.say(f"{self.book.label(self.peer)}'s id is below, alone on its line, to copy", False)
                self.banner = self.peer
        elif name == "/id":
            self.say("your onion id is below, alone on its line: select it to copy, and give it", False)
            self.banner = self.me
        elif name == "/group":
            self.new_group(arg.split())
        elif name in ("/invite", "/kick", "/leave"):
            self.membership(name, arg)
        elif name == "/send":
            self.send_file(arg)
        elif name == "/get":
            self.get(arg)
        elif name == "/files":
            self.info = self.listing()
        elif name in ("/block", "/unblock", "/remove"):
            self.blocking(name, arg)
        elif name == "/blocked":
            try:
                blocked = self.book.confirmed_blocked(self.daemon)
            except (Unreachable, Refused) as e:
                return self.say(f"/blocked: {e}", True)
            listed = [f"  {self.book.label(p)} {p}" for p in blocked] or ["  nobody"]
            self.info = ["blocked (/unblock ID|NAME):"] + listed
        elif name == "/history":
            if arg.isdigit() and int(arg) > 0:
                self.depth, self.stale, self.next_poll = int(arg), True, 0.0
            else:
                self.say("/history: expected a number of lines", True)
        else:
            self.say(f"unknown command {name} (see /help)", True)

    def blocking(self, command, arg):
        """/block, /unblock, /remove: the peer named, or the open conversation's."""
        peer = self.book.resolve(arg) if arg else self.peer
        if not peer:
            return self.say(f"{command}: who? open a conversation, or {command} ID|NAME", True)
        label = self.book.label(peer)
        try:
            if command == "/remove":
                self.book.remove(self.daemon, peer)
            else:
                self.book.block(self.daemon, peer, command == "/block")
        except (Unreachable, Refused) as e:
            return self.say(f"{command}: {e}", True)
        said = {
            "/block": "blocked: what it sends is dropped, unread",
            "/unblock": "unblocked: a stranger until you write to it",
            "/remove": "removed: no longer a contact; its messages are a request again",
        }
        self.say(f"{label} {said[command]}", False)
        self.stale, self.next_poll = True, 0.0

    def send_file(self, path):
        """Offers the file to the open conversation's peer, or one offer to each other
        member of the open group; the offer line goes as a message (PROTOCOL.md §10)."""
        if not path or not (self.peer or self.group):
            return self.say("/send: open a conversation, then /send PATH", True)
        group = self.book.groups.get(self.group)
        to = [p for p in group["members"] if p != self.me] if group else [self.peer]
        try:
            for peer in to:
                line = self.files.offer(peer, path)
                if group:
                    failed = self.book.send_group(self.daemon, self.group, line, to=[peer])
                    if failed:
                        self.say("not sent to " + "; ".join(failed), True)
                else:
                    self.daemon.send(peer, line)
        except (Unreachable, Refused) as e:
            return self.say(f"/send: {e}", True)
        if group:
            self.book.log(self.group, time.time(), self.me, line, "")
            self.book.save()
        self.stale, self.next_poll = True, 0.0

    def get(self, arg):
        """Fetches offer N in the background, or again: a partial file resumes."""
        if not self.book.offers:
            return self.say("/get: no offers yet; one shows as 'offers NAME: /get N'", True)
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.book.offers):
            return self.say(f"/get: expected an offer's number, 1 to {len(self.book.offers)}", True)
        n = int(arg)
        if n in self.fetches and not self.fetches[n].done:
            return self.say(f"/get {n}: already fetching", True)
        self.fetches[n] = Fetch(self.files, self.book.offers[n - 1])

    def listing(self):
        """/files: the offers made and received, with what became of each."""
        lines = ["offers made:"]
        for peer, name, n, state in self.files.sent():
            lines.append(f"  {name} ({size(n)}) to {self.book.label(peer)}: {state}")
        lines.append("offers received:")
        for n, offer in enumerate(self.book.offers, 1):
            fetch = self.fetches.get(n)
            state = fetch.status if fetch else "not fetched (/get)"
            lines.append(f"  {n}. {offer['name']} ({size(offer['size'])}) from {self.book.label(offer['peer'])}: {state}")
        return lines

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
        self.put(1, 0, fit(f"{self.me[:16]}... (/id)" if self.me else "(no id yet)", side - 1))
        y = 2
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
            # The name is cut, never the count.
            count = f" ({count})" if count else ""
            label = fit(f"{n:>2} {label}", side - 1 - len(count)) + count
            self.put(y, 0, label, curses.A_REVERSE if entry in (self.peer, self.group) else 0)
            y += 1
        x, pane = side + 2, cols - side - 2
        if self.group:
            title = self.book.group_label(self.group) + "  (/info: members)"
        elif self.peer:
            title = f"{self.book.label(self.peer)}  {self.peer}" + ("  [blocked]" if self.blocked else "")
        else:
            title = "no conversation: paste an onion id, or /peer N"
        self.put(0, x, fit(title, pane), curses.A_BOLD)
        body = []
        for t, kind, text, mark in self.lines:
            body += wrap(f"[{hhmm(t)}] {kind} {text}" + (f"  [{mark}]" if mark else ""), pane, 10)
        # Fetches of offers made here, as they go.
        for n, fetch in self.fetches.items():
            offer = self.book.offers[n - 1]
            if offer["where"] in (self.peer, self.group):
                body += wrap(f"/get {n} {offer['name']}: {fetch.status}", pane, 2)
        for text in self.info:
            body += wrap(text, pane, 2)
        height = rows - 3 - (1 if self.banner else 0)
        self.scroll = min(self.scroll, max(0, len(body) - height))
        shown = body[max(0, len(body) - height - self.scroll): len(body) - self.scroll]
        for i, line in enumerate(shown):
            self.put(1 + i, x, line)
        if self.banner:
            self.put(rows - 3, 0, fit(self.banner, cols - 1).ljust(cols - 1))
        status, alarm = self.status, self.alarm
        if self.tor_down:
            status, alarm = "Tor is not running: messages wait; run.sh restarts it" + (f" | {status}" if status else ""), True
        status = status or f"127.0.0.1:{self.daemon.port}  /help for commands"
        self.put(rows - 2, 0, fit(status, cols - 1).ljust(cols - 1), curses.A_REVERSE | (curses.A_BOLD if alarm else 0))
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

    def view(self):
        """What the screen shows, to tell whether it changed."""
        fetches = [fetch.status for fetch in self.fetches.values()]
        counts = (self.unread, self.waiting, [g["unread"] for g in self.book.groups.values()] if self.book else [])
        return repr((self.status, self.alarm, self.tor_down, self.lines, self.panel(), counts, self.info, fetches))

    def run(self):
        """Draws when something changed or a key came, and sleeps until the next key or
        the next poll: idle, the client costs a poll every half second."""
        self.screen.keypad(True)
        shown, key = None, True
        while self.running:
            now = time.monotonic()
            if now >= self.next_poll:
                self.poll()
            if self.status and not self.alarm and now - self.said_at > SAID:
                self.status = ""  # a passing word, not a state
            view = self.view()
            if key or view != shown:
                self.draw()
                shown = view
            self.screen.timeout(max(1, int((self.next_poll - time.monotonic()) * 1000)))
            try:
                k = self.screen.get_wch()
            except curses.error:
                key = False
                continue  # no key before the next poll
            key = True
            if k not in (curses.KEY_RESIZE,):
                self.banner = None if k in ("\n", "\r", curses.KEY_ENTER) else self.banner
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
