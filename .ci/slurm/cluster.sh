#!/usr/bin/env bash
# Single-node SLURM test cluster (Slurm 22.05 / Debian 12, no systemd, root).
#
#   .ci/slurm/cluster.sh install   # apt-get the daemons if missing
#   .ci/slurm/cluster.sh start     # idempotent; prints `export SLURM_CONF=...`
#   .ci/slurm/cluster.sh status    # rc 0 iff every daemon runs and the node answers
#   .ci/slurm/cluster.sh stop      # scancel all jobs, stop only our daemons
#   eval "$(.ci/slurm/cluster.sh env)"
#
# Everything (configs, MariaDB datadir/socket, slurm state/spool, pid files,
# logs, fake GPU device files) lives under $FEWSHOT_SLURM_DIR
# (default /tmp/fewshot-slurm).  Ports: $FEWSHOT_SLURM_PORT_BASE (default
# 16817) = slurmctld, +1 slurmd, +2 slurmdbd, +3 mariadb (127.0.0.1 only).
# Daemons: mariadbd -> slurmdbd (accounting, so sacct works) -> slurmctld -> slurmd.
# Auth is auth/none + cred/none (no munge).  The node "fewshot1" advertises
# $FEWSHOT_SLURM_CPUS (default 8) CPUs and 4 fake GPUs whatever the host has.
# MaxArraySize is $FEWSHOT_SLURM_MAX_ARRAY (default 8, far below SLURM's 1001): big pools split.
# MaxJobCount is $FEWSHOT_SLURM_MAX_JOBS (default 10000, SLURM's own): a private cluster beside the
# shared one (its own dir and port base, as below) with a larger one holds a 10,000-job benchmark.
#
# Several nodes on this one machine: FEWSHOT_SLURM_NODES=2 (or more) runs nodes fewshot1..N, each
# slurmd in its own network namespace "fs<port base>n<i>" (`ip netns`; its own hostname through a
# UTS namespace, its own address <subnet>.1<i> on a veth pair into the bridge "fsbr<port base>",
# whose address <subnet>.1 is slurmctld's), so that srun, the job's steps and Ray talk across nodes
# over real addresses.  Node names resolve on the nodes through $FEWSHOT_SLURM_DIR/etc/hosts, bind-
# mounted over /etc/hosts in each slurmd's private mount namespace (the host's /etc/hosts is
# untouched; `ip netns exec` is not used: it remounts /sys, which hides the cgroup mount slurmd
# needs).  Debian's Slurm is built without --enable-multiple-slurmd, hence the namespaces.  Run it beside the
# single-node cluster with its own dir and port base, e.g.
#   FEWSHOT_SLURM_NODES=2 FEWSHOT_SLURM_DIR=/tmp/fewshot-slurm2 FEWSHOT_SLURM_PORT_BASE=16917 .ci/slurm/cluster.sh start
# (FEWSHOT_SLURM_SUBNET, default 10.<a>.<b> from the port base, is the nodes' /24; stop removes the
# namespaces, veths and bridge again.)
set -euo pipefail

DIR="${FEWSHOT_SLURM_DIR:-/tmp/fewshot-slurm}"
PORT_BASE="${FEWSHOT_SLURM_PORT_BASE:-16817}"
NCPUS="${FEWSHOT_SLURM_CPUS:-8}"
MAX_ARRAY="${FEWSHOT_SLURM_MAX_ARRAY:-8}"   # MaxArraySize, lowered so that tests split pools into several arrays
MAX_JOBS="${FEWSHOT_SLURM_MAX_JOBS:-10000}"  # MaxJobCount (SLURM's default; array tasks count one each): raise it for benchmarks
START_TIMEOUT="${FEWSHOT_SLURM_START_TIMEOUT:-60}"
NNODES="${FEWSHOT_SLURM_NODES:-1}"
SUBNET="${FEWSHOT_SLURM_SUBNET:-10.$((PORT_BASE / 256 % 256)).$((PORT_BASE % 256))}"   # the nodes' /24 (several nodes)
CLUSTER=fewshot
NODE=fewshot1
NODES=()
for ((i = 1; i <= NNODES; i++)); do NODES+=("fewshot$i"); done
MULTI=$([ "$NNODES" -gt 1 ] && echo 1 || true)
BRIDGE="fsbr$PORT_BASE"
HOST_IP="$SUBNET.1"

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
CONF=$ETC/slurm.conf
DB_SOCK=$RUN/mariadb.sock

export SLURM_CONF=$CONF   # daemons find slurmdbd.conf/gres.conf next to it

log() { echo "[cluster.sh] $*" >&2; }

# ---------------------------------------------------------------- install
have_binaries() {
  local b
  for b in slurmctld slurmd slurmdbd sinfo sbatch sacct scancel mariadbd mariadb-install-db; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
  done
}

cmd_install() {
  export PATH=$PATH:/usr/sbin:/sbin
  if have_binaries; then return 0; fi
  if [ "$(id -u)" != 0 ]; then log "install needs root"; return 1; fi
  command -v apt-get >/dev/null || { log "apt-get not available"; return 1; }
  log "installing slurm + mariadb via apt-get (~20 s)"
  local out; out=$(mktemp)
  # flock: one of our apt-get runs at a time (.ci/run starts this and .ci/browser.sh's early, beside pip)
  if ! ( flock 8 && apt-get -o DPkg::Lock::Timeout=120 update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
           --no-install-recommends slurmctld slurmd slurm-client slurmdbd mariadb-server ) 8>/tmp/fewshot-apt.lock >"$out" 2>&1; then
    tail -n 40 "$out" >&2; rm -f "$out"; return 1
  fi
  rm -f "$out"
  have_binaries || { log "binaries still missing after install"; return 1; }
}

# ---------------------------------------------------------------- helpers
pid_of() {  # pid_of NAME [COMM] -> prints pid if the daemon from our pid file $RUN/NAME.pid is alive
  local f=$RUN/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # guard against pid reuse: the process must be the daemon we expect
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${2:-$1}" ] || return 1
  echo "$pid"
}

# ---------------------------------------------------------------- several nodes (FEWSHOT_SLURM_NODES > 1)
node_ip() { echo "$SUBNET.$((11 + $1))"; }   # node_ip INDEX (0-based): fewshot1 -> <subnet>.11
node_ns() { echo "fs${PORT_BASE}n$(($1 + 1))"; }   # its network namespace
node_veth() { echo "fsv${PORT_BASE}n$(($1 + 1))"; }   # the host end of its veth pair

setup_network() {  # idempotent: the bridge (slurmctld's address) and one namespace + veth per node
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge || fail "cannot create bridge $BRIDGE (needs CAP_NET_ADMIN)"
  fi
  ip addr replace "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local i ns veth
  { echo "127.0.0.1 localhost"; for i in "${!NODES[@]}"; do echo "$(node_ip "$i") ${NODES[$i]}"; done; } >"$ETC/hosts"
  for i in "${!NODES[@]}"; do
    mkdir -p "$DIR/spool/slurmd-${NODES[$i]}"
    ns=$(node_ns "$i") veth=$(node_veth "$i")
    ip netns list | grep -qw "^$ns" || ip netns add "$ns" || fail "cannot create network namespace $ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name eth0 netns "$ns" || fail "cannot create veth $veth"
    fi
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$(node_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

teardown_network() {
  local i ns
  for i in "${!NODES[@]}"; do
    ns=$(node_ns "$i")
    ip netns list | grep -qw "^$ns" && ip netns del "$ns" 2>/dev/null || true   # takes its veth pair along
    ip link del "$(node_veth "$i")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

start_node() {  # start_node INDEX: slurmd of one node, in its network namespace, with its own hostname and /etc/hosts
  local i=$1 node=${NODES[$1]} ns
  ns=$(node_ns "$i")
  pid_of "slurmd-$node" slurmd >/dev/null && return 0
  rm -f "$RUN/slurmd-$node.pid"
  if ! setsid nsenter --net="/run/netns/$ns" unshare --mount --propagation private --uts \
      sh -c "mount --bind '$ETC/hosts' /etc/hosts && hostname $node && exec slurmd -f '$CONF' -N $node" \
      </dev/null >"$LOG/slurmd-$node.stderr" 2>&1 9>&-; then
    fail "slurmd of $node exited with an error"
  fi
  wait_for 15 pid_of "slurmd-$node" slurmd || fail "slurmd of $node did not write a live pid file"
  wait_for 15 bash -c "exec 3<>/dev/tcp/$(node_ip "$i")/$SLURMD_PORT" || fail "slurmd of $node is not listening on $(node_ip "$i"):$SLURMD_PORT"
}

wait_for() {  # wait_for SECONDS CMD... ; polls every 0.2 s
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

dump_diagnostics() {
  local f
  log "---- diagnostics ($DIR) ----"
  for f in "$LOG"/*.stderr "$LOG"/*.log; do
    [ -s "$f" ] || continue
    case "$f" in */mariadb-install.stderr) continue ;; esac   # shown by its own failure
    echo "==> $f <==" >&2; tail -n 15 "$f" >&2
  done
  cmd_status >&2 || true
}

fail() { log "ERROR: $*"; dump_diagnostics; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_configs() {
  mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state/ctld" "$DIR/spool/slurmd" "$DIR/dev" "$DIR/mysql"
  local i
  for i in 0 1 2 3; do : >"$DIR/dev/gpu$i"; done   # fake GPU "device" files

  local ctld_host=localhost slurmd_files="SlurmdPidFile=$RUN/slurmd.pid" node_lines nodelist i
  if [ -n "$MULTI" ]; then
    ctld_host="localhost($HOST_IP)"   # the nodes reach slurmctld over the bridge
    # job ids from FEWSHOT_SLURM_FIRST_JOB_ID (default 900000): never the same as the single-node cluster's
    slurmd_files="SlurmdPidFile=$RUN/slurmd-%n.pid"$'\n'"FirstJobId=${FEWSHOT_SLURM_FIRST_JOB_ID:-900000}"
    node_lines=$(for i in "${!NODES[@]}"; do
      echo "NodeName=${NODES[$i]} NodeHostname=${NODES[$i]} NodeAddr=$(node_ip "$i") CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=64000 Gres=gpu:4 State=UNKNOWN"
    done)
    nodelist="fewshot[1-$NNODES]"
  else
    node_lines="NodeName=$NODE NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=64000 Gres=gpu:4 State=UNKNOWN"
    nodelist=$NODE
  fi
  cat >"$CONF" <<EOF
# generated by .ci/slurm/cluster.sh -- do not edit
ClusterName=$CLUSTER
SlurmctldHost=$ctld_host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/spool/slurmd${MULTI:+-%n}
SlurmctldPidFile=$RUN/slurmctld.pid
$slurmd_files
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd${MULTI:+-%n}.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=300
MaxArraySize=$MAX_ARRAY
MaxJobCount=$MAX_JOBS
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
$node_lines
PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$nodelist Default=NO MaxTime=INFINITE State=UP
EOF

  cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$nodelist Name=gpu File=$DIR/dev/gpu[0-3]
EOF

  ( umask 077; cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/none
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  )
  chmod 600 "$ETC/slurmdbd.conf"
}

db() { mariadb --no-defaults --socket="$DB_SOCK" -uroot "$@"; }

start_mariadb() {
  pid_of mariadbd >/dev/null && return 0
  if [ ! -d "$DIR/mysql/mysql" ]; then
    rm -rf "$DIR/mysql"; mkdir -p "$DIR/mysql"
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$LOG/mariadb-install.stderr" 2>&1 ||
      { tail -n 30 "$LOG/mariadb-install.stderr" >&2; fail "mariadb-install-db failed"; }
  fi
  port_free "$DB_PORT" || fail "port $DB_PORT (mariadb) is busy; set FEWSHOT_SLURM_PORT_BASE"
  rm -f "$DB_SOCK"
  setsid nohup mariadbd --no-defaults --user=root --datadir="$DIR/mysql" \
    --socket="$DB_SOCK" --pid-file="$RUN/mariadbd.pid" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$LOG/mariadb.log" \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
    </dev/null >"$LOG/mariadb.stderr" 2>&1 9>&- &
  wait_for 30 mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping || fail "mariadb did not come up"
  db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
         GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';" || fail "could not create db user"
}

start_slurm_daemon() {  # start_slurm_daemon NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  pid_of "$name" >/dev/null && return 0
  port_free "$port" || fail "port $port ($name) is busy; set FEWSHOT_SLURM_PORT_BASE"
  rm -f "$RUN/$name.pid"
  # daemons print fatal config errors to stderr before their log file opens
  if ! setsid "$name" "$@" </dev/null >"$LOG/$name.stderr" 2>&1 9>&-; then
    fail "$name exited with an error"
  fi
  wait_for 15 pid_of "$name" || fail "$name did not write a live pid file"
  wait_for 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || fail "$name is not listening on $port"
}

node_ready() {  # every node answers (idle, mixed, allocated or completing)
  local node st rc=0
  for node in "${NODES[@]}"; do
    st=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1)
    case "$st" in idle*|mixed*|allocated*|completing*) continue ;; esac
    # a node left DOWN/DRAIN by an earlier run gets resumed
    case "$st" in down*|drain*|fail*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;; esac
    rc=1
  done
  return $rc
}

sacct_ready() { sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1; }

# ---------------------------------------------------------------- commands
cmd_start() {
  [ "$(id -u)" = 0 ] || { log "start needs root (SlurmUser=root)"; exit 1; }
  export PATH=$PATH:/usr/sbin:/sbin
  have_binaries || cmd_install
  local t0=$SECONDS
  write_configs
  start_mariadb
  start_slurm_daemon slurmdbd "$DBD_PORT"
  if [ -n "$MULTI" ]; then
    setup_network
    start_slurm_daemon slurmctld "$CTLD_PORT" -f "$CONF"
    local i; for i in "${!NODES[@]}"; do start_node "$i"; done
  else
    start_slurm_daemon slurmctld "$CTLD_PORT" -f "$CONF"
    start_slurm_daemon slurmd "$SLURMD_PORT" -f "$CONF" -N "$NODE"
  fi
  local left=$((START_TIMEOUT - (SECONDS - t0))); [ $left -gt 5 ] || left=5
  wait_for "$left" node_ready || fail "nodes ${NODES[*]} not idle within ${START_TIMEOUT}s"
  wait_for 20 sacct_ready || fail "sacct does not answer"
  log "cluster up in $((SECONDS - t0))s (dir $DIR)"
  cmd_env
}

slurmds() {  # the pid-file names of our slurmd daemons
  if [ -n "$MULTI" ]; then printf 'slurmd-%s\n' "${NODES[@]}"; else echo slurmd; fi
}

cmd_status() {
  local rc=0 d pid
  for d in mariadbd slurmdbd slurmctld $(slurmds); do
    if pid=$(pid_of "$d" "${d%%-*}"); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; rc=1; fi
  done
  if [ $rc = 0 ]; then
    sinfo -N -o "%N %P %T %c %G" || rc=1
    node_ready || rc=1
  fi
  return $rc
}

stop_pid() {  # stop_pid NAME [COMM] : SIGTERM, wait up to 20 s, then SIGKILL
  local name=$1 pid i
  pid=$(pid_of "$name" "${2:-$1}") || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$name ($pid) ignored SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$name.pid"
}

our_stepds() {  # slurmstepd processes spawned by *our* slurmd (inherit our SLURM_CONF)
  local p
  for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF" && echo "$p"
  done
}

cmd_stop() {
  export PATH=$PATH:/usr/sbin:/sbin
  if pid_of slurmctld >/dev/null; then
    local ids; ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${ids// }" ]; then
      log "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      if ! wait_for 10 bash -c '[ -z "$(squeue -h -o %A 2>/dev/null)" ]'; then
        # held / requeue-held array tasks that never started can outlive the array's cancel:
        # release them and cancel every listed task by its own id, then by force
        local left; left=$(squeue -h -r -o %i 2>/dev/null | tr '\n' ' ')
        log "still listed after 10 s, cancelling task by task: $left"
        # shellcheck disable=SC2086
        { scontrol release $left; scancel $left; scancel --signal=KILL --full $left; } >/dev/null 2>&1 || true
        wait_for 20 bash -c '[ -z "$(squeue -h -o %A 2>/dev/null)" ]' || log "jobs still listed: $(squeue -h -o %i | tr '\n' ' ')"
      fi
    fi
  fi
  local d; for d in $(slurmds); do stop_pid "$d" slurmd; done
  local p; for p in $(our_stepds); do log "killing leftover slurmstepd $p"; kill -KILL "$p" 2>/dev/null || true; done
  stop_pid slurmctld
  stop_pid slurmdbd
  stop_pid mariadbd
  if [ -n "$MULTI" ]; then teardown_network; fi
  log "stopped"
}

cmd_env() {
  echo "export SLURM_CONF=$CONF"
  echo "export FEWSHOT_SLURM_DIR=$DIR"
}

lock() {  # serialise start/stop of concurrent callers (fd 9 is closed for the daemons)
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || { log "could not lock $DIR/.lock"; exit 1; }
}

case "${1:-}" in
  start|stop|restart|wipe) lock ;;
esac
case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  restart) cmd_stop; cmd_start ;;
  wipe) cmd_stop; rm -rf "$DIR"; log "removed $DIR" ;;
  *) echo "usage: $0 {install|start|stop|status|env|restart|wipe}" >&2; exit 2 ;;
esac
