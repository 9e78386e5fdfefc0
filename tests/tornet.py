#!/usr/bin/env python3
"""A private Tor network on loopback for end-to-end tests (facts: ../shared/TORNET.md).

Usage: tornet.py DIR BASE_PORT
Starts one directory authority and six relays under DIR, on ports BASE_PORT and up
(four per node), waits until the consensus lists them all, and writes DIR/client.torrc:
the lines a Tor needs to join this network (give it to scripts/run.sh as TORCHAT_TORRC).
Every Tor started writes DIR/<node>/tor.pid; stop them with: tornet.py DIR --stop
Exits non-zero, with the reason, if the network is not up within 90 seconds.
"""
import glob
import os
import signal
import subprocess
import sys
import time

COMMON = """TestingTorNetwork 1
AvoidDiskWrites 1
ShutdownWaitLength 0
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteExit *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
GeoIPFile {empty}
GeoIPv6File {empty}
{dirauthority}
"""


def run(*args, stdin=None):
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=True).stdout


def stop(top):
    for pidfile in glob.glob(os.path.join(top, "*", "tor.pid")):
        try:
            os.kill(int(open(pidfile).read().split()[0]), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def wait(what, seconds, done):
    deadline = time.time() + seconds
    while not done():
        if time.time() > deadline:
            sys.exit(f"tornet: timed out waiting for {what}")
        time.sleep(0.2)


def main(top, base):
    empty = os.path.join(top, "empty")
    os.makedirs(top, exist_ok=True)
    open(empty, "w").close()
    nodes = ["auth"] + [f"relay{i}" for i in range(6)]
    ports = {name: base + 4 * i for i, name in enumerate(nodes)}
    fingerprints = {}
    for name in nodes:
        data = os.path.join(top, name)
        os.makedirs(data, mode=0o700, exist_ok=True)
        run("tor", "--list-fingerprint", "--DataDirectory", data, "--ORPort", "1", "-f", empty)
        fingerprints[name] = open(os.path.join(data, "fingerprint")).read().split()[1]
    keys = os.path.join(top, "auth", "keys")
    os.makedirs(keys, mode=0o700, exist_ok=True)
    auth_dir = ports["auth"] + 1
    subprocess.run(["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"127.0.0.1:{auth_dir}",
                    "--passphrase-fd", "0"], input="\n", cwd=keys, capture_output=True, text=True, check=True)
    cert = open(os.path.join(keys, "authority_certificate")).read()
    v3ident = next(l.split()[1] for l in cert.splitlines() if l.startswith("fingerprint "))
    dirauthority = (f"DirAuthority auth orport={ports['auth']} no-v2 v3ident={v3ident} "
                    f"127.0.0.1:{auth_dir} {fingerprints['auth']}")
    common = COMMON.format(empty=empty, dirauthority=dirauthority)
    # Votes fall on wall-clock multiples of the voting interval: the first one ~9 s on.
    offset = (int(time.time()) + 9) % 10
    for name in nodes:
        data = os.path.join(top, name)
        lines = [f"DataDirectory {data}", f"PidFile {data}/tor.pid", f"Log notice file {data}/tor.log",
                 "RunAsDaemon 1", "Address 127.0.0.1", f"ORPort 127.0.0.1:{ports[name]}", "SocksPort 0",
                 "AssumeReachable 1", "ContactInfo tornet@localhost", "ExitRelay 0", "ExitPolicy reject *:*"]
        if name == "auth":
            lines += ["AuthoritativeDirectory 1", "V3AuthoritativeDirectory 1", f"DirPort 127.0.0.1:{auth_dir}",
                      "TestingV3AuthInitialVotingInterval 10", "TestingV3AuthInitialVoteDelay 2",
                      "TestingV3AuthInitialDistDelay 2", "V3AuthVotingInterval 20", "V3AuthVoteDelay 4",
                      "V3AuthDistDelay 4", f"TestingV3AuthVotingStartOffset {offset}"]
        with open(os.path.join(data, "torrc"), "w") as f:
            f.write("\n".join(lines) + "\n" + common)
        run("tor", "-f", os.path.join(data, "torrc"))
    consensus = os.path.join(top, "auth", "cached-microdesc-consensus")
    listed = lambda: os.path.exists(consensus) and sum(
        1 for l in open(consensus) if l.startswith("r ")) >= len(nodes)
    wait("a consensus listing every relay", 60, listed)
    # Their consensus fetches were backing off after early 404s: fetch now.
    for name in nodes[1:]:
        os.kill(int(open(os.path.join(top, name, "tor.pid")).read().split()[0]), signal.SIGHUP)
    wait("the relays' microdescriptors", 30,
         lambda: all(glob.glob(os.path.join(top, n, "cached-microdescs*")) for n in nodes[1:]))
    with open(os.path.join(top, "client.torrc"), "w") as f:
        # A peer that restarts leaves a stale descriptor behind; the default 2 minutes
        # before Tor gives up on it would dominate the test. Vanguards-lite's layer-2
        # guards, drawn from seven relays, often leave no path for an onion circuit
        # after a restart ("guards excluded by path restriction"): off, on this network.
        f.write(common + "SocksTimeout 20\nVanguardsLiteEnabled 0\n")
    print(os.path.join(top, "client.torrc"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[2] == "--stop":
        stop(sys.argv[1])
    elif len(sys.argv) == 3 and sys.argv[2].isdigit():
        try:
            main(sys.argv[1], int(sys.argv[2]))
        except BaseException:
            stop(sys.argv[1])
            raise
    else:
        sys.exit(__doc__.strip().splitlines()[2])
