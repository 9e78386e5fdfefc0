"""Talking to the daemon on 127.0.0.1:PORT (PROTOCOL.md §1-§3): one JSON request a
connection, its one reply read until the daemon closes."""
import base64
import hashlib
import json
import socket

BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")


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
        """The last `n` lines with `peer`, and whether it is blocked (PROTOCOL.md §12)."""
        reply = self.ask("HISTORY", peer, str(n))
        return reply.get("lines", []), reply.get("blocked", False)

    def block(self, peer, blocked=True):
        """BLOCK (or UNBLOCK) `peer`: answered once the daemon has it on disk."""
        self.ask("BLOCK" if blocked else "UNBLOCK", peer)

    def send(self, peer, text):
        return self.ask("SEND", peer, text, 80).get("msg", "")


def onion_id(text):
    """The canonical form of an onion id typed or pasted by the user, or None."""
    return text.strip().lower().removesuffix(".onion") + ".onion" if id_problem(text) is None else None


def id_problem(text):
    """Why `text`, which looks like an onion id (base32, about 56 characters, with or
    without .onion), is not one, in a line that fits the screen; None if it is one, and
    "" if it does not look like one at all (a message, say)."""
    b32 = text.strip().lower().removesuffix(".onion")
    if not 48 <= len(b32) <= 64 or not set(b32) <= BASE32:
        return ""
    if len(b32) != 56:
        return f"not an onion id: {len(b32)} characters, an id has 56 (cut or doubled in the paste?)"
    raw = base64.b32decode(b32.upper())
    digest = hashlib.sha3_256(b".onion checksum" + raw[:32] + b"\x03").digest()
    if raw[34] != 3 or raw[32:34] != digest[:2]:
        return "not an onion id: its checksum is wrong (mistyped?)"
    return None

