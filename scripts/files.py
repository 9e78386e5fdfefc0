"""Files (PROTOCOL.md §10): offering one with `share offer`, fetching one in the
background with `share get`, and what became of the offers made, from the records and
the log of `share serve`. The daemon never sees a file's bytes: the file program does.
Where things are follows scripts/run.sh, each overridable by the environment."""
import json
import os
import subprocess
import threading
import time

from daemon import Refused

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Files:
    def __init__(self, port):
        env = os.environ.get
        self.shares = env("TORCHAT_SHARES") or os.path.join(ROOT, "tor", f"node-{port}", "shares")
        socks = env("TORCHAT_SOCKS") or "9250"  # a port, as run.sh takes it, or an address
        self.socks = f"127.0.0.1:{socks}" if socks.isdigit() else socks
        self.downloads = env("TORCHAT_DOWNLOADS") or os.path.join(os.path.expanduser("~"), "Downloads", "torchat")
        self.share = env("TORCHAT_SHARE") or os.path.join(ROOT, "target", "release", "share")
        # How much of share serve's log has been seen: what came before is old news.
        self.read = self.transfers()[1]

    def offer(self, peer, path):
        """The line that offers the file at `path` to `peer`; Refused with the reason."""
        command = [self.share, "offer", "--dir", self.shares, peer, os.path.expanduser(path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, errors="replace")
        except OSError as e:
            raise Refused(f"cannot run {self.share}: {e.strerror}")
        if done.returncode != 0:
            raise Refused(done.stderr.strip().removeprefix("share: ").split("\n")[0])
        return done.stdout.strip()

    def records(self):
        """The offers made: {token: record}, each record as `share offer` wrote it."""
        found = {}
        for name in os.listdir(self.shares) if os.path.isdir(self.shares) else []:
            token = name.removesuffix(".json")
            try:
                with open(os.path.join(self.shares, name), encoding="utf-8") as f:
                    found[token] = json.load(f)
            except (OSError, ValueError, UnicodeDecodeError):
                pass  # not a record (the log, a record being written)
        return found

    def transfers(self, since=0):
        """What `share serve` logged from `since` on: (token, how far, size) a transfer,
        and where the log ends."""
        seen = []
        try:
            with open(os.path.join(self.shares, "sent.log"), encoding="utf-8", errors="replace") as f:
                f.seek(since)
                for line in f:
                    words = line.split()
                    if len(words) == 5 and words[0] == "sent" and line.endswith("\n"):
                        seen.append((words[1], int(words[3]), int(words[4])))
                since = f.tell()
        except (OSError, ValueError):
            pass
        return seen, since

    def fetched(self):
        """The offers fetched to the end since last asked: (peer, file name) each."""
        records = None
        seen, self.read = self.transfers(self.read)
        for token, at, size in seen:
            records = records if records is not None else self.records()
            if at == size and token in records:
                yield records[token]["peer"], os.path.basename(records[token]["path"])

    def sent(self):
        """The offers made, each (peer, name, size, what became of it)."""
        furthest = {}
        for token, at, _ in self.transfers()[0]:
            furthest[token] = max(at, furthest.get(token, 0))
        for token, rec in self.records().items():
            at = furthest.get(token)
            if at == rec["size"]:
                state = "fetched"
            elif rec["expires"] <= time.time():
                state = "expired"
            else:
                state = "offered" + (f", {at} bytes sent" if at else "")
            yield rec["peer"], os.path.basename(rec["path"]), rec["size"], state


class Fetch:
    """`share get` in the background: its last progress line, then where the file was
    saved, or why not (the partial file stays when the fetch can resume)."""

    def __init__(self, files, offer):
        os.makedirs(files.downloads, mode=0o700, exist_ok=True)
        args = ["get", "--socks", files.socks, "--into", files.downloads, offer["peer"], offer["line"]]
        self.status, self.done = "starting", False
        try:
            self.process = subprocess.Popen([files.share] + args, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, errors="replace")
        except OSError as e:
            self.status, self.done = f"failed: cannot run {files.share}: {e.strerror}", True
            return
        threading.Thread(target=self.watch, daemon=True).start()

    def watch(self):
        for line in self.process.stderr:
            self.status = line.strip().removeprefix("share: ")
        saved = self.process.stdout.read().strip()
        if self.process.wait() == 0:
            self.status = f"saved {saved}"
        else:
            self.status = "failed: " + self.status.replace("run again to resume", "/get again resumes")
        self.done = True
