#!/usr/bin/env bash
# Runs a TORchat node for real: starts a Tor for this node's ports, shows its progress
# until the onion service is up, starts the file server and onion-auth.py, then
# replaces itself with the daemon, whose PID is then this script's.
#
# It is the node's supervisor: tor, the file server and onion-auth.py each run under a
# keeper (below), a process of its own apart from the daemon, which starts the program
# again when it exits while the daemon runs (at once, then after a pause that grows to a
# minute while it keeps failing), says so on this terminal (and with -d in DIR/run.log),
# and ends it when the daemon exits. Nothing outlives the daemon, and nothing is left a
# zombie. Tor is also told to exit with the daemon (__OwningControllerProcess).
#
# Usage: scripts/run.sh [--contacts-only] [main options] PORT
#   clients on 127.0.0.1:PORT, Tor's onion connections to the peer port PORT+1, and
#   onion port 81 to the file server (share serve) on PORT+2, its offers in
#   DIR/shares and what it sent in DIR/shares/sent.log.
#   --contacts-only: only your contacts can reach this node's onion at all (Tor's
#   restricted discovery, PROTOCOL.md §11); without it, anyone who knows its id can.
#   Either way scripts/onion-auth.py keeps Tor's client file for each contact in
#   DIR/auth, so that this node reaches the contacts that run contacts-only; its log
#   is DIR/onion-auth.log.
# Environment:
#   TORCHAT_DIR     this node's Tor folder (default tor/node-PORT: torrc, data, hs, tor.log, shares)
#   TORCHAT_SOCKS   Tor's SOCKS port for this node (default 9250)
#   TORCHAT_TORRC   a file of extra torrc lines (bridges, a test network)
#   TORCHAT_WAIT    seconds to wait for Tor (default 300)
set -euo pipefail
say() { echo "run.sh: $*" >&2; }
port="${*: -1}"
[[ "$port" =~ ^[0-9]+$ && $port -gt 0 && $port -lt 65535 ]] || { say "usage: scripts/run.sh [--contacts-only] [main options] PORT"; exit 2; }
command -v tor >/dev/null || { say "tor is not installed: sudo apt-get install tor"; exit 1; }
command -v python3 >/dev/null || { say "python3 is not installed: sudo apt-get install python3"; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
main=${TORCHAT_MAIN:-$root/target/release/main}
share=${TORCHAT_SHARE:-$(dirname "$main")/share}
dir=${TORCHAT_DIR:-$root/tor/node-$port}
socks=${TORCHAT_SOCKS:-9250}
# --contacts-only is ours; the rest goes to the daemon, whose --logs tells where the
# messages log is (relative to this folder, as the daemon reads it).
detach=false contacts_only=() args=() logs=logs prev=""
for arg in "$@"; do
    case $arg in
        --contacts-only) contacts_only=(--contacts-only); continue ;;
        -d | --daemon) detach=true ;;
        --logs=*) logs=${arg#--logs=} ;;
    esac
    [ "$prev" = --logs ] && logs=$arg
    prev=$arg
    args+=("$arg")
done
[ -x "$main" ] && [ -x "$share" ] || { say "$main or $share is missing: cargo build --release"; exit 1; }
umask 077
mkdir -p "$dir/data" "$dir/hs" "$dir/shares" "$dir/auth"
chmod 700 "$dir" "$dir/data" "$dir/hs" "$dir/shares" "$dir/auth"
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
# A client file for each contact (PROTOCOL.md §11), kept by scripts/onion-auth.py.
ClientOnionAuthDir $dir/auth
TORRC
# Proof of work for introductions under load, where this tor has the module.
if tor --list-modules 2>/dev/null | grep -qx 'pow: yes'; then
    echo "HiddenServicePoWDefensesEnabled 1" >> "$dir/torrc"
else
    say "this tor has no pow module: the onion service runs without proof-of-work defenses"
fi
# exec keeps this PID for the daemon, which Tor then follows out; a detached daemon's
# tor is ended by its keeper.
$detach || echo "__OwningControllerProcess $$" >> "$dir/torrc"
[ -n "${TORCHAT_TORRC:-}" ] && cat "$TORCHAT_TORRC" >> "$dir/torrc"
: > "$dir/tor.log"
: > "$dir/tor.out"
: > "$dir/share.out"
# Who the keepers serve: this script until the daemon takes its PID (exec) or, with
# -d, the detached daemon, once it has one. "up" says that the node has started: a
# program that stops before then is not started again, and this script says why.
echo $$ > "$dir/daemon.pid"
rm -f "$dir/up"

# Returns once the daemon has exited; with -d this script hands over to the detached
# daemon by writing its PID first, and the watch goes on. A zombie has exited too: who
# reaps a detached daemon is not ours to say.
watch_daemon() {
    local pid stat
    while pid=$(cat "$dir/daemon.pid" 2> /dev/null) && [ -n "$pid" ]; do
        while stat=$(cat "/proc/$pid/stat" 2> /dev/null) && [[ ${stat##*) } != Z* ]]; do
            sleep 1
        done
        [ "$(cat "$dir/daemon.pid" 2> /dev/null)" = "$pid" ] && return
    done
}

tell() {
    echo "run.sh: $*" >&2 || true
    if $detach; then echo "$(date -u +%FT%TZ) run.sh: $*" >> "$dir/run.log"; fi
}

# keep NAME COMMAND...: runs COMMAND while the daemon runs, and again each time it
# exits; ends it when the daemon exits.
keep() {
    set +e
    local name=$1 pause=0 started child ended status how again
    shift
    watch_daemon &
    local watcher=$!
    while :; do
        started=$SECONDS
        "$@" &
        child=$!
        # Quiet: bash would print a line of its own for a program killed by a signal.
        wait -n -p ended "$child" "$watcher" 2> /dev/null
        if [ "$ended" = "$watcher" ]; then
            kill "$child" 2> /dev/null
            wait "$child" 2> /dev/null
            return
        fi
        wait "$child" 2> /dev/null
        status=$?
        # Not started again before the node is up (this script says why), nor once the
        # daemon is gone (its tor follows it out).
        [ -e "$dir/up" ] && kill -0 "$watcher" 2> /dev/null && kill -0 "$(cat "$dir/daemon.pid")" 2> /dev/null || { kill "$watcher" 2> /dev/null; return; }
        how="exit status $status"
        ((status > 128)) && how="killed by SIG$(kill -l $((status - 128)))"
        # A run of a minute or more is not "still failing": start it again at once.
        ((SECONDS - started >= 60)) && pause=0
        again=now
        ((pause > 0)) && again="in ${pause}s"
        tell "$name stopped ($how) at $(date +%T); starting it again $again"
        if ((pause > 0)); then
            sleep "$pause" &
            wait -n -p ended $! "$watcher"
            [ "$ended" = "$watcher" ] && return
        fi
        pause=$((pause ? (pause * 2 > 60 ? 60 : pause * 2) : 1))
    done
}

# Started apart from this script (the subshell ends at once), so that the daemon, which
# takes this PID, is never the parent of a program that stopped. Prints the keeper's PID.
kept() {
    (keep "$@" < /dev/null > /dev/null & echo $!)
}

# The contacts as they are now, before Tor starts: a contacts-only node's first
# descriptor is already closed to strangers, and an open node's is open again.
auth=("$root/scripts/onion-auth.py" "${contacts_only[@]}" "$logs/messages.log" "$dir")
python3 "${auth[@]}" --once 2>> "$dir/onion-auth.log" || { say "onion-auth.py failed: $(tail -1 "$dir/onion-auth.log")"; exit 1; }
if [ ${#contacts_only[@]} -gt 0 ]; then
    say "contacts only: only the peers you have written to can reach this node"
else
    say "open: anyone who knows this node's id can reach it (--contacts-only closes it to your contacts)"
fi
# What Tor says before its log file is open (a port in use, say) goes to tor.out.
tor_keeper=$(kept tor sh -c 'exec tor -f "$0/torrc" --RunAsDaemon 0 >> "$0/tor.out" 2>&1' "$dir")
# The file server starts now: a port in use shows by the time Tor is up.
share_keeper=$(kept "the file server" sh -c 'exec "$1" serve --dir "$0/shares" "$2" >> "$0/shares/sent.log" 2>> "$0/share.out"' \
    "$dir" "$share" $((port + 2)))
deadline=$((SECONDS + ${TORCHAT_WAIT:-300})) shown=""
until grep -q 'Bootstrapped 100%' "$dir/tor.log" && [ -s "$dir/hs/hostname" ]; do
    if ! kill -0 "$tor_keeper" 2>/dev/null; then
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
kill -0 "$share_keeper" 2>/dev/null || { say "the file server stopped: $(cat "$dir/share.out")"; exit 1; }
# From now on the files follow the messages log, and Tor re-reads them (SIGHUP).
kept onion-auth.py sh -c 'exec python3 "$@" 2>> "$0/onion-auth.log"' "$dir" "${auth[@]}" > /dev/null
: > "$dir/up"
run=("$main" --hostname "$dir/hs/hostname" --socks "127.0.0.1:$socks" "${args[@]}")
$detach || exec "${run[@]}"
out=$("${run[@]}")
echo "$out"
sed -n 's/^detached: pid //p' <<< "$out" > "$dir/daemon.pid"
