#!/usr/bin/env python3
"""Print the conversation with one peer from a TORchat messages log.

Usage: conversation.py MESSAGES_LOG PEER_ONION_ID

One line per message, oldest first: the UTC time, "<" for received or ">" for sent, the
text, and for received messages "[unverified]" when the sender did not sign it, for sent
ones their delivery state (queued, delivered, unconfirmed, failed: reason) as the log
tells it.
"""
import json
import sys


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    peer = argv[2].strip().lower()
    if not peer.endswith(".onion"):
        peer += ".onion"
    lines, outgoing = [], {}
    with open(argv[1], encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                stamp, text = line.split(" ", 1)
                record = json.loads(text)
            except ValueError:
                continue
            if record.get("peer") != peer or record.get("carried"):
                continue
            event = record.get("ev")
            if event == "recv":
                lines.append([stamp, "<", record["msg"], None if record.get("verified") else "unverified"])
            elif event == "queued":
                entry = [stamp, ">", record["msg"], "queued"]
                outgoing[record["mid"]] = entry
                lines.append(entry)
            elif event in ("delivered", "unconfirmed", "failed") and record.get("mid") in outgoing:
                state = event + (": " + record["why"] if event == "failed" else "")
                outgoing[record["mid"]][3] = state
    for stamp, direction, text, state in lines:
        print(f"{stamp} {direction} {text}" + (f"  [{state}]" if state else ""))


if __name__ == "__main__":
    main(sys.argv)
