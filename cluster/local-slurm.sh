#!/usr/bin/env bash
# A real single-node Slurm cluster on loopback, for dlogdet's tests and demos.
#
#   cluster/local-slurm.sh start    install (Debian slurm-wlm + munge, if missing) and start munged, slurmctld, slurmd
#   cluster/local-slurm.sh stop     stop the daemons this script started (by the pids it recorded), nothing else
#   cluster/local-slurm.sh status   which of them run, and sinfo
#   cluster/local-slurm.sh env      the line to export so that sbatch/squeue/dask-jobqueue find this cluster
#
# Idempotent: start on a running cluster only reports it; stop on a stopped one does nothing. Everything it writes
# (slurm.conf, state, spool, logs, pid files, munge socket) lives under $DLOGDET_SLURM_DIR (default:
# ${TMPDIR:-/tmp}/dlogdet-slurm); the clients find the configuration through SLURM_CONF=$DIR/slurm.conf.
# Settings (no systemd, no cgroups; see the design notes): proctrack/linuxproc, task/none, cons_tres with
# CR_Core_Memory and DefMemPerCPU (otherwise one job takes the whole node), every daemon bound to 127.0.0.1.
# Needs root for the install and for slurmd (it runs jobs as their users); munged runs as user munge.
set -euo pipefail

DIR=${DLOGDET_SLURM_DIR:-${TMPDIR:-/tmp}/dlogdet-slurm}
CONF=$DIR/slurm.conf
CTLD_PORT=${DLOGDET_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${DLOGDET_SLURMD_PORT:-6818}
MUNGE_SOCKET=$DIR/munge/munge.socket
NODE=$(hostname)

die() { echo "local-slurm: $*" >&2; exit 1; }
log() { echo "local-slurm: $*" >&2; }

alive() {  # alive PIDFILE: the pid recorded there runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || die "slurm-wlm and munge are not installed; run this as root to install them (apt-get)"
    log "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; } \
        || die "apt-get could not install slurm-wlm and munge"
}

check_host() {
    local addr
    addr=$(getent hosts "$NODE" | awk '{print $1; exit}')
    [[ $addr == 127.* ]] || die "the host name '$NODE' resolves to '${addr:-nothing}', not to a loopback address; \
slurmd registers under its host name, so add '127.0.0.1 $NODE' to /etc/hosts and run start again"
}

write_conf() {
    local cpus mem
    # at least 4 CPU slots even on a 2-core machine (config_overrides lets slurmd accept the declared count), so
    # that a batch run (scheduler + client + workers, one task each) fits in one allocation
    cpus=$(nproc)
    (( cpus < 4 )) && cpus=4
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$DIR"/{state,spool,log,run,munge}
    chmod 0755 "$DIR"      # munged runs as user munge and must reach its socket folder (mktemp makes 0700)
    cat >"$CONF" <<EOF
# written by dlogdet's cluster/local-slurm.sh: a single-node cluster on loopback
ClusterName=dlogdet-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MailProg=/bin/true
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SchedulerType=sched/backfill
MinJobAge=30
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
    alive "$DIR/run/munged.pid" && return
    chown munge:munge "$DIR/munge"
    chmod 0755 "$DIR/munge"
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing; reinstall munge (it creates the key)"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    cp "$DIR/munge/munged.pid" "$DIR/run/munged.pid"
}

wait_idle() {
    local i
    for i in $(seq 1 60); do
        if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            return 0
        fi
        sleep 0.5
    done
    die "the node did not become idle within 30 s; see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
}

start() {
    install
    check_host
    if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && alive "$DIR/run/munged.pid"; then
        log "already running (SLURM_CONF=$CONF)"
        return
    fi
    [[ $(id -u) == 0 ]] || die "start needs root (slurmd runs jobs as their users)"
    write_conf
    start_munge
    alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF"
    wait_idle
    log "running: munged $(cat "$DIR/run/munged.pid"), slurmctld $(cat "$DIR/run/slurmctld.pid"), slurmd \
$(cat "$DIR/run/slurmd.pid"); export SLURM_CONF=$CONF"
}

stop() {
    local name pidfile pid i
    for name in slurmd slurmctld munged; do
        pidfile=$DIR/run/$name.pid
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid"
            for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            log "stopped $name ($pid)"
        fi
        rm -f "$pidfile"
    done
}

status() {
    local name rc=0
    for name in munged slurmctld slurmd; do
        if alive "$DIR/run/$name.pid"; then
            echo "$name: running ($(cat "$DIR/run/$name.pid"))"
        else
            echo "$name: stopped"
            rc=3
        fi
    done
    [[ $rc == 0 ]] && SLURM_CONF=$CONF sinfo
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
