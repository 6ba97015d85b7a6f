#!/usr/bin/env bash
# A one-node SLURM on this machine, for the tests marked `slurm` (tests/execution/test_slurm.py).
#
#   bash .ci/slurm_up.sh [--no-install]     # as root; prints the PIDs it started
#   bash .ci/slurm_down.sh                  # stops them, by PID
#
# Installs Debian's slurm-wlm and munge (apt-get, unless --no-install), writes a slurm.conf
# for this host (all its CPUs, memory a bit under what is free, no cgroups: linuxproc
# process tracking, task/none), starts munged, slurmctld and slurmd, and waits until a job
# runs. The PIDs of the daemons it started go to $MATRIS_FLOWS_SLURM_DIR/pids (default
# /tmp/matris-flows-slurm); a SLURM that already answers is left alone (nothing started).
set -euo pipefail

state=${MATRIS_FLOWS_SLURM_DIR:-/tmp/matris-flows-slurm}
install=1
[[ "${1:-}" == "--no-install" ]] && install=0
start=$(date +%s)

if command -v sinfo >/dev/null && timeout 3 sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    echo "slurm: already running"
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "error: slurm_up.sh runs as root (it installs packages and runs the daemons as root)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [[ $install == 0 ]]; then
        echo "error: slurm-wlm/munge are not installed (run without --no-install)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packages from starting the daemons with the default config
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
echo "slurm: packages ready after $(( $(date +%s) - start )) s"

mkdir -p "$state"/{ctld,d,log} /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
: > "$state/pids"

# munge: a key shared by the daemons and the clients of this one machine
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chmod 0400 /etc/munge/munge.key
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    munged --force   # --force: runs as root, which munge refuses otherwise
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cat /run/munge/munged.pid >> "$state/pids"
fi

host=$(hostname -s)
cpus=$(nproc --all)  # --all: plain nproc honours OMP_NUM_THREADS
free_mb=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
memory=$(( free_mb * 9 / 10 ))
cat > /etc/slurm/slurm.conf <<EOF
# written by .ci/slurm_up.sh: a one-node cluster for tests
ClusterName=matris-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# quick turnaround for tests: a job's end is noticed at once, a killed job is gone in seconds
KillWait=5
MinJobAge=30
SchedulerParameters=sched_interval=1
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

rm -f "$state/slurmctld.pid" "$state/slurmd.pid"
slurmctld -i     # -i: ignore saved state from an earlier run of this script
slurmd
for _ in $(seq 50); do [[ -s "$state/slurmctld.pid" && -s "$state/slurmd.pid" ]] && break; sleep 0.1; done
cat "$state/slurmctld.pid" "$state/slurmd.pid" >> "$state/pids"

# ready when the node is idle and a job runs to the end
for _ in $(seq 60); do
    timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
if ! timeout 30 srun -N1 -n1 -t 1 true; then
    echo "error: SLURM started but a job does not run; see $state/log" >&2
    exit 1
fi
echo "slurm: up on $host ($cpus CPUs, ${memory} MB) in $(( $(date +%s) - start )) s; PIDs $(tr '\n' ' ' < "$state/pids")"
