#!/usr/bin/env bash
# Stop the SLURM that .ci/slurm_up.sh started: cancel its jobs, then stop the daemons by the
# PIDs the script recorded (slurmd, slurmctld, munged), nothing else.
set -uo pipefail
state=${MATRIS_FLOWS_SLURM_DIR:-/tmp/matris-flows-slurm}
[[ -s "$state/pids" ]] || exit 0
pids=$(cat "$state/pids")

# jobs first, while the controller can still cancel them (their processes belong to slurmd)
if jobs=$(timeout 10 squeue -h -o %i 2>/dev/null) && [[ -n "$jobs" ]]; then
    timeout 10 scancel $jobs 2>/dev/null
    for _ in $(seq 30); do [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
fi

alive() { for pid in $pids; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
for pid in $(echo "$pids" | tac); do kill "$pid" 2>/dev/null; done   # slurmd, slurmctld, then munged
for _ in $(seq 100); do alive || break; sleep 0.2; done
if alive; then
    for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
fi
: > "$state/pids"
