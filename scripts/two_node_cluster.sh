#!/usr/bin/env bash
# A Ray cluster of two nodes on this machine, the demo submitted to it as a job with the rollout
# engine and reward workers on one node and the policy on the other (placement.node_resources),
# then torn down. The weight-sync group rendezvouses at policy rank 0's node IP as Ray reports it.
# Each node has a Ray temp dir of its own, as on two machines: nodes that share one unpack the job's
# working directory into the same folder, and the second one's copy replaces the first's under the
# running driver (FileNotFoundError from os.getcwd()). The run directory is an absolute path.
#
#   bash scripts/two_node_cluster.sh [--lose-node [--spare-node]] [key=value overrides, e.g. steps=3]
#
# --lose-node: once the run has a checkpoint, the policy's node goes away (SIGKILL to its raylet, as a
#   machine that is lost). The job stops with an error naming the node and its actors, the node starts
#   again and a second job goes on with `resume=true`. With --spare-node, a third node that offers the
#   policy's resources joins first, and the one job goes on with the policy placed anew there.
#
# On several machines, the same commands: `ray start --head --resources=...` on one,
# `ray start --address=HEAD_IP:6390 --resources=...` on each other, `ray job submit` from anywhere.
# Only the nodes this script started are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1
PORT=6390 DASHBOARD=8275 LOSE=0 SPARE=0
while [[ ${1:-} == --* ]]; do
  case $1 in --lose-node) LOSE=1 ;; --spare-node) SPARE=1 ;; *) echo "unknown option $1" >&2; exit 2 ;; esac
  shift
done
TMP=$(mktemp -d /tmp/r1ray-nodes.XXXXXX)
declare -A NODE_PID

start_node() {  # NAME RESOURCES [ray start options]: returns once the node runs, or fails within 120 s
  local name=$1 resources=$2
  shift 2
  local agent_port  # the agent's default port (52365) is taken by the first node, or another Ray of the machine
  agent_port=$(python -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
  ray start --block --temp-dir="$TMP/$name" --dashboard-agent-listen-port="$agent_port" --num-cpus=2 \
    --resources="$resources" --disable-usage-stats "$@" >"$TMP/$name.log" 2>&1 &
  NODE_PID[$name]=$!
  for _ in $(seq 120); do
    grep -q "Ray runtime started" "$TMP/$name.log" && return
    kill -0 "${NODE_PID[$name]}" 2>/dev/null || break
    sleep 1
  done
  tail -20 "$TMP/$name.log" >&2
  echo "two_node_cluster: node '$name' did not start within 120 s (its log above)" >&2
  exit 1
}

stop_nodes() {  # SIGTERM to each node's `ray start --block`, which stops that node's processes
  for pid in "${NODE_PID[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait
  rm -rf "$TMP"
}
trap stop_nodes EXIT

submit() {  # the demo as a job, its output also in $TMP/job.log; extra arguments are overrides
  ray job submit --address "http://127.0.0.1:$DASHBOARD" --working-dir . -- python launcher/grpo.py \
    --config configs/grpo_countdown_cpu.yaml logging.output_dir="$PWD/runs" logging.run_name="two-node-$$" \
    "placement.node_resources={engine: {rollout_node: 1}, reward: {rollout_node: 1}, policy: {train_node: 1}}" \
    "$@" 2>&1 | tee "$TMP/job.log"
}

wait_for_checkpoint() {  # until the job's run directory (its log names it) holds a complete checkpoint
  local run_dir
  for _ in $(seq 600); do
    run_dir=$(sed -n 's/^run directory: //p' "$TMP/job.log" | head -1)
    [[ -n $run_dir ]] && compgen -G "$run_dir/checkpoints/step_[0-9][0-9][0-9][0-9][0-9][0-9]" >/dev/null && return  # not step_N.tmp-*
    sleep 1
  done
  echo "two_node_cluster: no checkpoint within 600 s" >&2
  exit 1
}

start_node head '{"rollout_node": 8}' --head --port=$PORT --dashboard-port=$DASHBOARD
start_node train '{"train_node": 8}' --address=127.0.0.1:$PORT
python scripts/actor_nodes.py --address 127.0.0.1:$PORT --wait engine-0 policy-0 >"$TMP/actors.txt" &
WATCH=$!
if [[ $LOSE == 0 ]]; then
  submit "$@"
  wait $WATCH
  cat "$TMP/actors.txt"
  exit 0
fi

submit "$@" &
JOB=$!
wait $WATCH
cat "$TMP/actors.txt"
[[ $SPARE == 1 ]] && start_node spare '{"train_node": 8}' --address=127.0.0.1:$PORT  # policy-0 is placed by now
wait_for_checkpoint
kill -KILL "$(pgrep -P "${NODE_PID[train]}" -x raylet)"
echo "two_node_cluster: node 'train' lost (its raylet killed) at $(date +%T)"
if [[ $SPARE == 1 ]]; then
  wait $JOB || { echo "two_node_cluster: the job did not go on on the spare node" >&2; exit 1; }
  exit 0
fi
if wait $JOB; then
  echo "two_node_cluster: the job went on without the lost node's actors" >&2
  exit 1
fi
echo "two_node_cluster: the job stopped at $(date +%T); node 'train' starts again"
start_node train-again '{"train_node": 8}' --address=127.0.0.1:$PORT
submit "$@" resume=true
