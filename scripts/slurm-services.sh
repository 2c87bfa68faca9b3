#!/usr/bin/env bash
# Install (Debian packages) and start, idempotently, munge and a one-node Slurm cluster on localhost,
# as measured in execution.md §2.4 (no systemd: daemons are started by hand). Toil itself comes from
# the project venv (the `test` / `cluster` extras): toil[cwl] 9.6.0 pins the same cwltool we use.
#
# stdout is appended to .test-env by scripts/test-services.sh, so only `export VAR=...` lines go to
# stdout; every diagnostic goes to stderr. Needs root. Exits non-zero when Slurm cannot be brought up.
set -uo pipefail
cd "$(dirname "$0")/.."
log() { echo "slurm-services: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root to install and start munge/slurm"; exit 1
fi

# --- packages ------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  log "installing slurm-wlm and munge from Debian"
  apt-get update -qq >&2 || { log "apt-get update failed"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { log "apt-get install slurm-wlm munge failed"; exit 1; }
fi

# --- munge ---------------------------------------------------------------------------------------
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create >&2 && chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged >&2 || { log "munged did not start"; exit 1; }
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
fi
munge -n | unmunge >/dev/null 2>&1 || { log "munge is not answering"; exit 1; }

# --- slurm.conf (written once; an existing configuration is kept) ---------------------------------
node=$(hostname -s)
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
if [ ! -f /etc/slurm/slurm.conf ]; then
  log "writing /etc/slurm/slurm.conf for node $node"
  cat > /etc/slurm/slurm.conf <<EOF
ClusterName=localci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=30
NodeName=${node} NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
fi

# --- daemons (skipped when already running) --------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running /run/slurmctld.pid || { log "starting slurmctld"; slurmctld >&2 || { log "slurmctld failed"; exit 1; }; }
running /run/slurmd.pid || { log "starting slurmd"; slurmd >&2 || { log "slurmd failed"; exit 1; }; }

state=""
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$node" -o %t 2>/dev/null | head -1)
  case "$state" in idle|mix|alloc) break ;; esac
  case "$state" in down*|drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 ;; esac
  sleep 0.5
done
case "$state" in
  idle|mix|alloc) log "node $node is $state" ;;
  *) log "node $node not ready (state '$state'); see /var/log/slurm/*.log"; exit 1 ;;
esac

echo "export BRIDGEHEAD_TEST_SLURM=1"
