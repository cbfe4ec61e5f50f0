#!/usr/bin/env bash
# A Ray cluster of two nodes on this machine, the demo submitted to it as a job with the rollout
# engine and reward workers on one node and the policy on the other (placement.node_resources),
# then torn down. The weight-sync group rendezvouses at policy rank 0's node IP as Ray reports it.
# The run directory is given as an absolute path: both nodes of this machine unpack the job's
# working directory into the same place, and the second one replaces the first's copy.
#
#   bash scripts/two_node_cluster.sh [key=value overrides of the demo, e.g. steps=3]
#
# On several machines, the same three commands: `ray start --head --resources=...` on one,
# `ray start --address=HEAD_IP:6390 --resources=...` on each other, `ray job submit` from anywhere.
# `ray stop` at the end stops every Ray process of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1
PORT=6390 DASHBOARD=8275
trap 'ray stop >/dev/null 2>&1 || true' EXIT

ray start --head --port=$PORT --dashboard-port=$DASHBOARD --num-cpus=2 --resources='{"rollout_node": 8}' \
  --disable-usage-stats >/dev/null
ray start --address=127.0.0.1:$PORT --num-cpus=2 --resources='{"train_node": 8}' --disable-usage-stats >/dev/null
python - <<'PY'
import ray
ray.init(address="127.0.0.1:6390", logging_level="ERROR")
print("nodes:", [(n["NodeID"][:8], n["NodeManagerAddress"], {k: v for k, v in n["Resources"].items()
                 if k.endswith("_node")}) for n in ray.nodes() if n["Alive"]])
PY

python scripts/actor_nodes.py --address 127.0.0.1:$PORT --wait engine-0 policy-0 > /tmp/two_node_actors.txt &
WATCH=$!
ray job submit --address "http://127.0.0.1:$DASHBOARD" --working-dir . -- python launcher/grpo.py \
  --config configs/grpo_countdown_cpu.yaml logging.output_dir="$PWD/runs" logging.run_name=two-node-$$ \
  "placement.node_resources={engine: {rollout_node: 1}, reward: {rollout_node: 1}, policy: {train_node: 1}}" "$@"
wait $WATCH
cat /tmp/two_node_actors.txt
