"""What peers send, parsed in one place: a group message (PROTOCOL.md §8) and a file
offer (PROTOCOL.md §10) are conventions in a message's text; anything else is text."""
import re

from daemon import onion_id

# A group message: "[#NAME GID] TEXT", NAME 1 to 24 printable ASCII characters but "]",
# GID 12 lower-case hex digits.
GROUP = re.compile(r"\[#([ -\\^-~]{1,24}) ([0-9a-f]{12})\] (.*)", re.S)
# A file offer: "[file TOKEN SIZE SHA256] NAME". `share get` parses it again, strictly,
# and makes the name safe; this one only recognises it, to show it as an offer.
OFFER = re.compile(r"\[file ([0-9a-f]{32}) ([0-9]{1,20}) ([0-9a-f]{64})\] (.+)", re.S)


def group(text):
    """(NAME, GID, BODY) of a group message, or None."""
    match = GROUP.fullmatch(text)
    return match.groups() if match else None


def members_list(body):
    """The ids of a members list (`members: ID ID ...`), or None if `body` is not one."""
    ids = [onion_id(w) for w in body[len("members: "):].split()] if body.startswith("members: ") else []
    return ids if ids and all(ids) else None


def offer(text):
    """{"token", "size", "name", "line"} of a file offer, or None."""
    match = OFFER.fullmatch(text)
    if not match:
        return None
    token, size, _, name = match.groups()
    return {"token": token, "size": int(size), "name": name, "line": text}
