#!/usr/bin/env bash
# Runs a TORchat node for real: starts a Tor for this node's ports, shows its progress
# until the onion service is up, starts the file server, then replaces itself with the
# daemon. Tor is told to exit when the daemon does (__OwningControllerProcess), and a
# watcher stops the file server then, so neither outlives it.
#
# Usage: scripts/run.sh [main options] PORT
#   clients on 127.0.0.1:PORT, Tor's onion connections to the peer port PORT+1, and
#   onion port 81 to the file server (share serve) on PORT+2, its offers in
#   DIR/shares and what it sent in DIR/shares/sent.log.
# Environment:
#   TORCHAT_DIR     this node's Tor folder (default tor/node-PORT: torrc, data, hs, tor.log, shares)
#   TORCHAT_SOCKS   Tor's SOCKS port for this node (default 9250)
#   TORCHAT_TORRC   a file of extra torrc lines (bridges, a test network)
#   TORCHAT_WAIT    seconds to wait for Tor (default 300)
set -euo pipefail
say() { echo "run.sh: $*" >&2; }
port="${*: -1}"
[[ "$port" =~ ^[0-9]+$ && $port -gt 0 && $port -lt 65535 ]] || { say "usage: scripts/run.sh [main options] PORT"; exit 2; }
command -v tor >/dev/null || { say "tor is not installed: sudo apt-get install tor"; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
main=${TORCHAT_MAIN:-$root/target/release/main}
share=${TORCHAT_SHARE:-$(dirname "$main")/share}
dir=${TORCHAT_DIR:-$root/tor/node-$port}
socks=${TORCHAT_SOCKS:-9250}
detach=false
for arg in "$@"; do [[ $arg == -d || $arg == --daemon ]] && detach=true; done
[ -x "$main" ] && [ -x "$share" ] || { say "$main or $share is missing: cargo build --release"; exit 1; }
umask 077
mkdir -p "$dir/data" "$dir/hs" "$dir/shares"
chmod 700 "$dir" "$dir/data" "$dir/hs" "$dir/shares"
cat > "$dir/torrc" <<TORRC
DataDirectory $dir/data
PidFile $dir/tor.pid
Log notice file $dir/tor.log
SocksPort 127.0.0.1:$socks
# Onion connections go to the peer port only: the client port reads your messages.
HiddenServiceDir $dir/hs
HiddenServicePort 80 127.0.0.1:$((port + 1))
# Files are fetched from onion port 81 (PROTOCOL.md §10): the file server, not the daemon.
HiddenServicePort 81 127.0.0.1:$((port + 2))
# Tor's own defenses for onion services (PROTOCOL.md §9): a rate limit at the
# introduction points, and at most 100 streams on one rendezvous circuit, which is then
# closed, so that one client cannot hold the peer port with streams.
HiddenServiceEnableIntroDoSDefense 1
HiddenServiceMaxStreams 100
HiddenServiceMaxStreamsCloseCircuit 1
TORRC
# Proof of work for introductions under load, where this tor has the module.
if tor --list-modules 2>/dev/null | grep -qx 'pow: yes'; then
    echo "HiddenServicePoWDefensesEnabled 1" >> "$dir/torrc"
else
    say "this tor has no pow module: the onion service runs without proof-of-work defenses"
fi
# exec keeps this PID for the daemon; a detached daemon gets a watcher instead (below).
$detach || echo "__OwningControllerProcess $$" >> "$dir/torrc"
[ -n "${TORCHAT_TORRC:-}" ] && cat "$TORCHAT_TORRC" >> "$dir/torrc"
: > "$dir/tor.log"
# What Tor says before its log file is open (a port in use, say) goes to tor.out.
tor -f "$dir/torrc" --RunAsDaemon 0 > "$dir/tor.out" 2>&1 &
tor_pid=$!
# The file server starts now: a port in use shows by the time Tor is up.
"$share" serve --dir "$dir/shares" $((port + 2)) >> "$dir/shares/sent.log" 2> "$dir/share.out" &
share_pid=$!
trap 'kill $tor_pid $share_pid 2>/dev/null' EXIT
deadline=$((SECONDS + ${TORCHAT_WAIT:-300})) shown=""
until grep -q 'Bootstrapped 100%' "$dir/tor.log" && [ -s "$dir/hs/hostname" ]; do
    if ! kill -0 "$tor_pid" 2>/dev/null; then
        say "tor stopped: $(cat "$dir/tor.out" "$dir/tor.log" | grep -E '\[(err|warn)\]' | tail -2 | cut -d' ' -f5- | tr '\n' ' ')"
        grep -q 'Address already in use' "$dir/tor.out" "$dir/tor.log" && say "port $socks is taken: set TORCHAT_SOCKS"
        exit 1
    fi
    progress=$(grep -o 'Bootstrapped [0-9]*%.*' "$dir/tor.log" | tail -1 || true)
    [ "$progress" != "$shown" ] && { echo "tor: $progress"; shown=$progress; }
    if ((SECONDS >= deadline)); then
        say "Tor is not ready after ${TORCHAT_WAIT:-300}s (${progress:-no progress}): check the network, or give bridges in TORCHAT_TORRC"
        exit 1
    fi
    sleep 0.5
done
echo "tor: ready; this node is $(cat "$dir/hs/hostname")"
kill -0 "$share_pid" 2>/dev/null || { say "the file server stopped: $(cat "$dir/share.out")"; exit 1; }
run=("$main" --hostname "$dir/hs/hostname" --socks "127.0.0.1:$socks" "$@")
if ! $detach; then
    # exec keeps this PID for the daemon: the file server goes when it does.
    setsid sh -c "tail --pid=$$ -f /dev/null; kill $share_pid" > /dev/null 2>&1 < /dev/null &
    trap - EXIT
    exec "${run[@]}"
fi
out=$("${run[@]}")
echo "$out"
pid=$(sed -n 's/^detached: pid //p' <<< "$out")
setsid sh -c "tail --pid=$pid -f /dev/null; kill $tor_pid $share_pid" > /dev/null 2>&1 < /dev/null &
trap - EXIT
