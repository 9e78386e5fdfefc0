"""Names and groups: what the client keeps for one node, in a file private to the user
(PROTOCOL.md §8), and the offers of files received, numbered for /get."""
import json
import os
import re

import received
from daemon import Refused, Unreachable, onion_id
from text import fit

MAX_MEMBERS = 16
KEPT = 200  # messages kept per group


def group_name(text):
    """A group's name as the convention allows it, or None."""
    return text if 1 <= len(text) <= 24 and all(" " <= c <= "~" and c != "]" for c in text) else None


class Book:
    """What the client keeps for one node, in a file private to the user: the names
    given to peers, the groups with their members and messages, and the peers that
    wrote without being written to (message requests), and the peers the user blocked
    (PROTOCOL.md §12), as the daemon last confirmed them."""

    def __init__(self, me):
        home = os.environ.get("TORCHAT_HOME") or os.path.join(os.path.expanduser("~"), ".config", "torchat")
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.path, self.me = os.path.join(home, me + ".json"), me
        self.names, self.groups, self.requests, self.offers, self.blocked = {}, {}, [], [], []
        self.unread = {}  # messages the client took from the daemon and has not yet shown
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            self.names = {p: fit(str(n), 24) for p, n in data.get("names", {}).items() if onion_id(p) == p}
            self.groups = {g: v for g, v in data.get("groups", {}).items() if re.fullmatch("[0-9a-f]{12}", g)}
            self.requests = [p for p in data.get("requests", []) if onion_id(p) == p]
            self.offers = [o for o in data.get("offers", []) if received.offer(o.get("line", ""))]
            self.blocked = [p for p in data.get("blocked", []) if onion_id(p) == p]
            unread = data.get("unread", {}).items()
            self.unread = {p: n for p, n in unread if onion_id(p) == p and isinstance(n, int) and n > 0}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            raise Unreachable(f"cannot read {self.path}: {e}")

    def save(self):
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            data = {"names": self.names, "groups": self.groups, "requests": self.requests, "offers": self.offers}
            data["blocked"], data["unread"] = self.blocked, self.unread
            json.dump(data, f)
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

    def entries(self, word):
        """The peers and groups the user knows by `word`: an id, a name, or a group's
        name with or without its #."""
        peer = self.resolve(word)
        if peer:
            return [peer]
        named = [p for p, n in self.names.items() if n == word]
        groups = [g for g, group in self.groups.items() if group["name"] == word.removeprefix("#")]
        return named + groups

    def resolve(self, word):
        """An onion id, or the peer the user gave that name; None if neither (or two)."""
        named = [p for p, n in self.names.items() if n == word]
        return onion_id(word) or (named[0] if len(named) == 1 else None)

    def file(self, sender, text, verified, t):
        """A group message (PROTOCOL.md §8) into its group; False if `text` is not one.
        Only a verified member changes the members list, or leaves."""
        parsed = received.group(text)
        if not parsed:
            return False
        name, gid, body = parsed
        group = self.groups.setdefault(gid, {"name": name, "members": [], "log": [], "unread": 0})
        member = verified and sender in group["members"]
        ids = received.members_list(body)
        if ids and len(ids) <= MAX_MEMBERS and (member or (verified and not group["members"])):
            removed = self.me in group["members"] and self.me not in ids
            group["name"], group["members"] = name, list(dict.fromkeys(ids))
            # Out of the list, this client sends the group nothing more until invited again.
            group["removed"] = self.me not in group["members"]
            body = f"{self.label(sender)} removed you from #{name}" if removed else self.shown(body)
        elif body == "left" and member:
            group["members"].remove(sender)
        mark = "unverified" if not verified else "" if member or sender in group["members"] else "non-member"
        self.log(gid, t, sender, body, mark)
        return True

    def shown(self, body):
        """A members list with the user's names for its ids."""
        ids = received.members_list(body)
        return "members: " + ", ".join(self.label(p) for p in ids) if ids else body

    def log(self, gid, t, sender, text, mark):
        group = self.groups[gid]
        group["log"] = (group["log"] + [[t, sender, text, mark]])[-KEPT:]
        group["unread"] += 1

    def send_group(self, daemon, gid, text, to=None):
        """TEXT to every other member (or to `to`), one SEND each, but those the user
        blocked; the members it was not sent to, each with the reason."""
        group, failed = self.groups[gid], []
        for member in to or group["members"]:
            if member in self.blocked:
                failed.append(f"{self.label(member)}: blocked, left out")
            elif member != self.me:
                try:
                    daemon.send(member, f"[#{group['name']} {gid}] {text}")
                    if member in self.requests:  # writing to a peer accepts its request
                        self.requests.remove(member)
                except Refused as e:
                    why = str(e).removeprefix(f"SEND to {member}: ")  # the member is named here
                    failed.append(f"{self.label(member)}: {why}")
        return failed

    def block(self, daemon, peer, blocked=True):
        """BLOCK or UNBLOCK `peer` (PROTOCOL.md §12): a blocked peer is no request."""
        daemon.block(peer, blocked)
        self.blocked = [p for p in self.blocked if p != peer] + ([peer] if blocked else [])
        self.requests = [p for p in self.requests if p != peer]
        self.save()

    def remove(self, daemon, peer):
        """No longer a contact, nor named: BLOCK then UNBLOCK, so that its messages are a
        request again."""
        self.block(daemon, peer)
        self.block(daemon, peer, False)
        self.names.pop(peer, None)
        self.save()

    def confirmed_blocked(self, daemon):
        """The blocked peers, as the daemon says (HISTORY's `blocked`), of those this
        client or --block blocked (the file may have more than this process knows):
        one unblocked elsewhere is dropped."""
        try:
            with open(self.path, encoding="utf-8") as f:
                stored = [p for p in json.load(f).get("blocked", []) if onion_id(p) == p]
        except (OSError, ValueError, AttributeError):
            stored = []
        known = dict.fromkeys(self.blocked + stored)
        kept = [p for p in known if daemon.history(p, 1)[1]]
        if kept != self.blocked:
            self.blocked = kept
            self.save()
        return kept

    def offered(self, peer, where, text):
        """The number of the offer `text` from `peer` (in the conversation `where`, a peer
        or a group), counted from 1 in the order offers arrived; None if it is not one."""
        offer = received.offer(text)
        if not offer:
            return None
        for n, known in enumerate(self.offers, 1):
            if known["token"] == offer["token"] and known["peer"] == peer:
                return n
        self.offers.append(dict(offer, peer=peer, where=where))
        self.save()
        return len(self.offers)
