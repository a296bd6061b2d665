#!/bin/sh
# Install Debian's SLURM (slurmctld + slurmd + client tools) and munge, when missing.
# Needs root and a reachable Debian mirror. Idempotent: does nothing when already installed.
# Used by tests/workflow/test_slurm.py; safe to run by hand.
set -eu

missing=""
for cmd in slurmctld slurmd sbatch squeue scontrol munged; do
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: missing$missing and not root: cannot apt-get install SLURM" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: missing$missing and no apt-get (not a Debian-like system)" >&2
    exit 4
fi

export DEBIAN_FRONTEND=noninteractive
# Keep package scripts from starting daemons: the test starts (and stops) its own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
status=0
{
    apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
} || status=$?
[ "$created_policy" = 1 ] && rm -f "$policy"
exit "$status"
