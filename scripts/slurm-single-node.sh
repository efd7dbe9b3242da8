#!/usr/bin/env bash
# A single-node Slurm on this Debian/Ubuntu machine, as root, without systemd or cgroups: installs
# slurm-wlm and munge with apt when they are missing, writes slurm.conf (and gres.conf) into DIR,
# starts munged, slurmctld and slurmd with everything (sockets, state, logs, pid files) under DIR,
# and waits until the node takes jobs. Several such clusters can run side by side (distinct DIR and
# --port). Use it with:  export SLURM_CONF=DIR/slurm.conf
#
#   scripts/slurm-single-node.sh [--dir DIR] [--port P] [--node-name NAME] [--node-addr ADDR]
#                                [--gpus N] [--cpus N] [--max-time MIN] [--kill-wait S] [--min-job-age S]
#   scripts/slurm-single-node.sh --stop [--dir DIR]
#   scripts/slurm-single-node.sh --install-only
#
# --node-name/--node-addr: a NodeName that need not resolve, reached at NodeAddr (default: this
# host's name, reached as itself). --gpus N: N fake GPUs (gres gpu, dummy character devices standing
# in for /dev/nvidia*), so that Slurm's GPU allocation and CUDA_VISIBLE_DEVICES can be exercised without one.
# Configuration keys: https://slurm.schedmd.com/slurm.conf.html and https://slurm.schedmd.com/gres.conf.html
set -euo pipefail

dir=/tmp/llm-launch-slurm
port=6817
node_name=$(hostname -s)
node_addr=
gpus=0
cpus=$(nproc)
max_time=UNLIMITED
kill_wait=30
min_job_age=300
action=start
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --node-name) node_name=$2; shift 2 ;;
    --node-addr) node_addr=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --max-time) max_time=$2; shift 2 ;;
    --kill-wait) kill_wait=$2; shift 2 ;;
    --min-job-age) min_job_age=$2; shift 2 ;;
    --stop) action=stop; shift ;;
    --install-only) action=install; shift ;;
    *) echo "slurm-single-node: unknown option '$1' (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done

stop_daemons() {
  local name pid pids=()
  for name in slurmd slurmctld munged; do
    if [ -s "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null && pids+=("$pid")
      rm -f "$dir/$name.pid"
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-single-node: slurm-wlm and munge are missing; run as root to install them" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
}

if [ "$action" = stop ]; then stop_daemons; exit 0; fi
install_packages
if [ "$action" = install ]; then exit 0; fi

stop_daemons
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir"
host=$(hostname -s)
conf=$dir/slurm.conf
[ -s "$dir/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge.key"; chmod 400 "$dir/munge.key"; }

node_line="NodeName=$node_name CPUs=$cpus State=UNKNOWN"
if [ "$node_name" != "$host" ]; then
  node_line+=" NodeHostname=$host NodeAddr=${node_addr:-127.0.0.1}"
elif [ -n "$node_addr" ]; then
  node_line+=" NodeAddr=$node_addr"
fi
gres_lines=
if [ "$gpus" -gt 0 ]; then
  node_line+=" Gres=gpu:$gpus"
  gres_lines="GresTypes=gpu"
  mkdir -p "$dir/dev"
  for ((i = 0; i < gpus; i++)); do
    # Character devices with NVIDIA's major number; where mknod is refused, links to /dev/null (also a
    # character device, which is all slurmd checks without cgroups).
    rm -f "$dir/dev/nvidia$i"
    mknod "$dir/dev/nvidia$i" c 195 "$i" 2>/dev/null || ln -s /dev/null "$dir/dev/nvidia$i"
  done
  echo "NodeName=$node_name Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]" > "$dir/gres.conf"
fi

cat > "$conf" <<EOF
# Written by llm-launch scripts/slurm-single-node.sh: one node, root, no cgroups, no accounting.
ClusterName=llmlaunch
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=$kill_wait
MinJobAge=$min_job_age
$gres_lines
$node_line
PartitionName=debug Nodes=$node_name Default=YES MaxTime=$max_time State=UP
EOF

munged --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed" --force 2>>"$dir/log/munged.log"
export SLURM_CONF=$conf
slurmctld -f "$conf"
slurmd -f "$conf" -N "$node_name"

for _ in $(seq 300); do
  state=$(sinfo -h -n "$node_name" -o %t 2>/dev/null || true)
  case "$state" in
    idle*) echo "slurm-single-node: node $node_name is up; export SLURM_CONF=$conf"; exit 0 ;;
  esac
  sleep 0.1
done
echo "slurm-single-node: node $node_name did not come up (state '${state:-none}'); see $dir/log/" >&2
tail -n 5 "$dir"/log/*.log >&2 || true
exit 1
