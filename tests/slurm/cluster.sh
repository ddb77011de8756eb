#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for the SLURM tests (and for trying slurm/submit.py by hand).
#
#   tests/slurm/cluster.sh start    # start munged, slurmctld, slurmd unless running; wait until the node is idle
#   tests/slurm/cluster.sh env      # print: export SLURM_CONF=...  (eval it to use sbatch/squeue by hand)
#   tests/slurm/cluster.sh stop [PID...]   # stop the daemons this script started (by their pids; with PIDs:
#                                          # only those of them), nothing else
#   tests/slurm/cluster.sh status
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge packages (apt-get install -y slurmctld slurmd
# slurm-client munge). Everything lives in $OMNIGROK_SLURM_DIR (default /tmp/omnigrok-slurm-<uid>):
# slurm.conf, a munge key (created if missing), the daemons' state, logs and pid files. Clients find the
# cluster through SLURM_CONF=<dir>/slurm.conf, so a system SLURM on the same machine is never touched.
# The daemons listen on 127.0.0.1 only (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny with every
# address = 127.0.0.1) and on ports 16817/16818, not SLURM's defaults. Tracking and task plugins are the
# container-friendly ones (proctrack/linuxproc, task/none): no cgroups needed. No accounting database:
# squeue and `scontrol show job` (jobs stay visible 10 min after they end) instead of sacct.
set -euo pipefail

DIR=${OMNIGROK_SLURM_DIR:-/tmp/omnigrok-slurm-$(id -u)}
CONF=$DIR/slurm.conf
SOCK=$DIR/munge/munge.socket
STARTED=$DIR/started.pids   # "name pid" of every daemon this script started
TIMEOUT=${OMNIGROK_SLURM_TIMEOUT:-60}   # seconds to wait for the node to come up idle
export SLURM_CONF=$CONF

die() { echo "cluster.sh: $*" >&2; exit 1; }

need() {
    for cmd in munged munge unmunge slurmctld slurmd sinfo sbatch; do
        command -v "$cmd" >/dev/null || die "$cmd not found; install it: apt-get install -y slurmctld slurmd slurm-client munge"
    done
}

write_conf() {
    local user cpus
    user=$(id -un)
    cpus=$(nproc)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF.tmp" <<CONF
# Written by tests/slurm/cluster.sh: a one-node test cluster on 127.0.0.1.
ClusterName=omnigrok-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=600
SlurmdTimeout=30
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.tmp" "$CONF"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -f "$DIR/$1.pid" ] && cat "$DIR/$1.pid" || true; }

munge_ok() { munge -n -S "$SOCK" 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q "is UP"; }
node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -1; }

start() {
    need
    mkdir -p "$DIR" && chmod 700 "$DIR"
    mkdir -p "$DIR/munge" && chmod 700 "$DIR/munge"
    [ -f "$CONF" ] || write_conf
    touch "$STARTED"
    if ! munge_ok; then
        if [ ! -s "$DIR/munge/munge.key" ]; then   # a fresh random key, readable by this user only
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
            chmod 400 "$DIR/munge/munge.key"
        fi
        # --force: munged refuses to run as root, or with its files in /tmp, unless forced
        munged --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge.pid" \
               --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
        for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
        munge_ok || die "munged did not start; see $DIR/log/munged.log"
        echo "munged $(pid_of munge)" >> "$STARTED"
        echo "started munged $(pid_of munge)"
    fi
    if ! ctld_ok; then
        slurmctld -f "$CONF"   # daemonizes; writes $DIR/slurmctld.pid
        for _ in $(seq $((TIMEOUT * 5))); do ctld_ok && break; sleep 0.2; done
        ctld_ok || die "slurmctld did not answer within ${TIMEOUT}s; see $DIR/log/slurmctld.log"
        echo "slurmctld $(pid_of slurmctld)" >> "$STARTED"
        echo "started slurmctld $(pid_of slurmctld)"
    fi
    if ! alive "$(pid_of slurmd)"; then
        slurmd -f "$CONF" -N localhost
        for _ in $(seq 50); do alive "$(pid_of slurmd)" && break; sleep 0.1; done
        alive "$(pid_of slurmd)" || die "slurmd did not start; see $DIR/log/slurmd.log"
        echo "slurmd $(pid_of slurmd)" >> "$STARTED"
        echo "started slurmd $(pid_of slurmd)"
    fi
    # Ready = the node is idle (or already running jobs); a node left DOWN/DRAIN by an earlier run is resumed.
    local state=""
    for _ in $(seq $((TIMEOUT * 5))); do
        state=$(node_state)
        case "$state" in
            idle*|mix*|alloc*) echo "cluster up: node localhost $state; export SLURM_CONF=$CONF"; return 0 ;;
            down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.2
    done
    die "node localhost is '${state:-unknown}', not idle, after ${TIMEOUT}s; see $DIR/log/"
}

stop() {
    [ -f "$STARTED" ] || { echo "cluster.sh: nothing started by this script"; return 0; }
    # slurmd first, then slurmctld, then munged: reverse start order
    tac "$STARTED" | while read -r name pid; do
        if [ $# -gt 0 ] && [[ " $* " != *" $pid "* ]]; then continue; fi   # not one of the PIDs asked for
        if alive "$pid" && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid"
            echo "stopped $name ($pid)"
        fi
    done
    if [ $# -gt 0 ]; then   # keep the lines of the daemons not stopped
        grep -v -w -F "$(printf '%s\n' "$@")" "$STARTED" > "$STARTED.tmp" || true
        mv "$STARTED.tmp" "$STARTED"
    else
        rm -f "$STARTED"
    fi
}

status() {
    echo "SLURM_CONF=$CONF"
    munge_ok && echo "munge: up" || echo "munge: down"
    ctld_ok && echo "slurmctld: up" || echo "slurmctld: down"
    echo "node localhost: $(node_state)"
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
