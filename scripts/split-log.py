#!/usr/bin/env python3
"""Split a TORchat messages log into one file per peer.

Usage: split-log.py MESSAGES_LOG OUT_DIR

Each line of the log is "STAMP JSON"; every record that names a peer goes, unchanged, to
OUT_DIR/<peer onion id>.log. Records marked "carried" (the copies a log starts with
after a rotation) are left out: their originals are in the rotated file. Damaged lines (a crash can cut the last one) are counted
and skipped. Prints one line per peer: the file and how many records it got.
"""
import json
import os
import sys


def records(path):
    """Yields (line, record) for every readable line; the count of unreadable ones last."""
    damaged = 0
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                yield line, json.loads(line.split(" ", 1)[1])
            except (IndexError, ValueError):
                damaged += line.strip() != ""
    yield None, damaged


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    os.makedirs(argv[2], exist_ok=True)
    files, counts = {}, {}
    try:
        for line, record in records(argv[1]):
            if line is None:
                damaged = record
                break
            peer = record.get("peer")
            if record.get("carried") or not isinstance(peer, str) or not peer.endswith(".onion") or "/" in peer:
                continue
            if peer not in files:
                files[peer] = open(os.path.join(argv[2], peer + ".log"), "w", encoding="utf-8")
            files[peer].write(line)
            counts[peer] = counts.get(peer, 0) + 1
    finally:
        for f in files.values():
            f.close()
    for peer, n in counts.items():
        print(f"{os.path.join(argv[2], peer + '.log')}: {n} records")
    if damaged:
        print(f"skipped {damaged} damaged lines", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
