#!/bin/sh
# Start a single-node SLURM cluster on localhost: munged (as the munge user, unless one
# already runs), slurmctld and slurmd. Usage: start.sh STATE_DIR   (as root)
# Writes /etc/slurm/slurm.conf and gres.conf from tests/slurm/ (backing up any existing ones
# into STATE_DIR/backup; stop.sh puts them back). Every daemon started here writes its pid
# into STATE_DIR, so stop.sh ends exactly those. Exit codes: 0 up, 2 usage, 5 a SLURM daemon
# already runs (refuse to touch a real cluster), 6 a daemon failed to start (see its log).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
state=${1:?usage: start.sh STATE_DIR}
marker=repmatch-test-cluster
mkdir -p "$state"
state=$(cd "$state" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "start.sh: must run as root (daemons, /etc/slurm)" >&2
    exit 2
fi
for d in slurmctld slurmd; do
    if pgrep -x "$d" >/dev/null 2>&1; then
        echo "start.sh: a $d is already running on this machine; refusing to replace its configuration" >&2
        exit 5
    fi
done

mkdir -p "$state/ctld" "$state/spool" "$state/backup" /etc/slurm
for f in slurm.conf gres.conf; do
    if [ -e "/etc/slurm/$f" ] && ! grep -q "$marker" "/etc/slurm/$f"; then
        cp -p "/etc/slurm/$f" "$state/backup/$f"
    fi
done

host=$(hostname -s)
render() {
    sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$host|g" -e "s|@CTLD_PORT@|${REPMATCH_SLURMCTLD_PORT:-6817}|g" \
        -e "s|@SLURMD_PORT@|${REPMATCH_SLURMD_PORT:-6818}|g" "$1" > "$2.tmp.$$"
    mv "$2.tmp.$$" "$2"
}
render "$here/slurm.conf" /etc/slurm/slurm.conf
render "$here/gres.conf" /etc/slurm/gres.conf

fail() {
    echo "start.sh: $1" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 20 "$2" >&2
    exit 6
}

# munge: reuse a running munged, else start one as the munge user.
if ! pgrep -x munged >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || fail "no /etc/munge/munge.key (reinstall the munge package)"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    # munged runs as munge and may not reach STATE_DIR (e.g. a 0700 pytest tmp dir): its pid
    # file goes into /run/munge, and STATE_DIR records where (stop.sh reads it).
    munge_pid=/run/munge/munged.repmatch-test.$$.pid
    echo "$munge_pid" > "$state/munged.pidfile"
    runuser -u munge -- /usr/sbin/munged --pid-file="$munge_pid" --force ||
        fail "munged did not start" /var/log/munge/munged.log
fi
i=0
until munge -n </dev/null | unmunge >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 50 ] && fail "munge credentials do not round-trip" /var/log/munge/munged.log
    sleep 0.2
done

slurmctld -c || fail "slurmctld did not start" "$state/slurmctld.log"
slurmd -N localhost || fail "slurmd did not start" "$state/slurmd.log"

# Wait for the node to be schedulable.
i=0
while :; do
    st=$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -n 1 || true)
    case "$st" in
        idle*|mixed*|allocated*) break ;;
    esac
    i=$((i + 1))
    if [ $i -gt 120 ]; then
        echo "start.sh: node never became idle (state: '${st:-none}')" >&2
        scontrol show node localhost >&2 || true
        tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
        exit 6
    fi
    sleep 0.5
done
echo "start.sh: SLURM up (node localhost, partitions cpu and gpu with 2 fake GPUs; state in $state)"
