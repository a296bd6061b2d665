#!/bin/sh
# Stop what start.sh started (only the daemons whose pid files are in STATE_DIR) and put
# back any /etc/slurm/{slurm,gres}.conf it replaced. Usage: stop.sh STATE_DIR. Idempotent.
set -u

state=${1:?usage: stop.sh STATE_DIR}
marker=repmatch-test-cluster
[ -d "$state" ] || exit 0

stop_pid_file() {
    pf=$1
    [ -s "$pf" ] || return 0
    pid=$(cat "$pf")
    case "$pid" in ''|*[!0-9]*) return 0 ;; esac
    kill -TERM "$pid" 2>/dev/null || { rm -f "$pf"; return 0; }
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 50 ]; then kill -KILL "$pid" 2>/dev/null; break; fi
        sleep 0.2
    done
    rm -f "$pf"
}

stop_pid_file "$state/slurmd.pid"
stop_pid_file "$state/slurmctld.pid"
if [ -s "$state/munged.pidfile" ]; then
    stop_pid_file "$(cat "$state/munged.pidfile")"
    rm -f "$state/munged.pidfile"
fi

for f in slurm.conf gres.conf; do
    if [ -e "$state/backup/$f" ]; then
        mv "$state/backup/$f" "/etc/slurm/$f"
    elif [ -e "/etc/slurm/$f" ] && grep -q "$marker" "/etc/slurm/$f"; then
        rm -f "/etc/slurm/$f"
    fi
done
exit 0
