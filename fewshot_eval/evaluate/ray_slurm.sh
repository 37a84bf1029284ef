#!/usr/bin/env bash
# A Ray cluster over the nodes of the current SLURM job, for vLLM across nodes (pipeline parallel).
#
#   bash ray_slurm.sh start   # on the job's first node: Ray head here, one worker per other node (srun);
#                             # waits until every node has joined; prints the address (host:port) last
#   bash ray_slurm.sh stop    # stops the workers (srun) and the head
#
# fewshot-eval's vllm predictor runs `start` itself in rank 0 of a multi-node job (the other ranks
# exit at once) and `stop` when the job's process ends. By hand (an sbatch script of your own):
#   addr=$(bash ray_slurm.sh start | tail -1); RAY_ADDRESS=$addr python my_vllm_job.py; bash ray_slurm.sh stop
#
# Environment: SLURM_JOB_ID, SLURM_JOB_NODELIST (set by SLURM); RAY_PORT (default 6379 + job id % 1000),
# RAY_GPUS_PER_NODE (default SLURM_GPUS_ON_NODE), RAY_JOIN_TIMEOUT_S (default 300), RAY (the ray command),
# PYTHON (a python with ray, to count the nodes that joined).
set -euo pipefail

: "${SLURM_JOB_ID:?not in a SLURM job (SLURM_JOB_ID unset)}"
RAY=${RAY:-ray}
STATE=${RAY_SLURM_STATE:-${TMPDIR:-/tmp}/fewshot-ray-$SLURM_JOB_ID}
PORT=${RAY_PORT:-$((6379 + SLURM_JOB_ID % 1000))}
GPUS=${RAY_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-0}}
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
OTHERS=("${NODES[@]:1}")
HEAD_IP=$(getent ahostsv4 "$HEAD" | awk 'NR==1 {print $1}')
ADDRESS="${HEAD_IP:-$HEAD}:$PORT"

start() {
    mkdir -p "$STATE"
    "$RAY" start --head --node-ip-address="${HEAD_IP:-$HEAD}" --port="$PORT" --num-gpus="$GPUS" --disable-usage-stats >&2
    if ((${#OTHERS[@]})); then
        # one worker per other node, in the job's allocation; --overlap: the job's own step keeps running beside it
        srun --overlap --nodes="${#OTHERS[@]}" --ntasks="${#OTHERS[@]}" --ntasks-per-node=1 --nodelist="$(IFS=,; echo "${OTHERS[*]}")" \
            "$RAY" start --address="$ADDRESS" --num-gpus="$GPUS" --block --disable-usage-stats >"$STATE/workers.log" 2>&1 &
        echo $! >"$STATE/srun.pid"
    fi
    local deadline=$((SECONDS + ${RAY_JOIN_TIMEOUT_S:-300}))
    until [ "$("${PYTHON:-python3}" -c "import ray; ray.init(address='$ADDRESS', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))" 2>/dev/null)" = "${#NODES[@]}" ]; do
        if ((SECONDS > deadline)); then
            echo "ray_slurm.sh: not all ${#NODES[@]} nodes joined the Ray cluster at $ADDRESS within ${RAY_JOIN_TIMEOUT_S:-300}s; workers' log: $STATE/workers.log" >&2
            stop
            exit 1
        fi
        sleep 3
    done
    echo "ray_slurm.sh: ${#NODES[@]} nodes in the Ray cluster at $ADDRESS" >&2
    echo "$ADDRESS"
}

stop() {
    if ((${#OTHERS[@]})); then
        srun --overlap --nodes="${#OTHERS[@]}" --ntasks="${#OTHERS[@]}" --ntasks-per-node=1 --nodelist="$(IFS=,; echo "${OTHERS[*]}")" \
            "$RAY" stop --force >/dev/null 2>&1 || true
    fi
    if [ -f "$STATE/srun.pid" ]; then
        kill "$(cat "$STATE/srun.pid")" 2>/dev/null || true
        rm -f "$STATE/srun.pid"
    fi
    "$RAY" stop --force >/dev/null 2>&1 || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
