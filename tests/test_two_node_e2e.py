"""The demo as a job on a Ray cluster of several nodes of this machine (scripts/two_node_cluster.sh),
the policy's node lost after a checkpoint (real stack, tiny model): with no node to take its place,
the job stops naming the node and its actors, and a second job on the node started again goes on
from the checkpoint; with a spare node, the one job goes on with the policy placed anew.

Each starts two or three Ray nodes and one or two jobs: minutes on a 2-core machine, more than the
suite's budget for one test, so they run when R1RAY_TWO_NODE_E2E=1 is set."""

import os
import re
import subprocess

import pytest

from system.reporting.metrics import read_metrics
from tests.test_grpo_e2e import ROOT

RUN = ["model.path=tiny", "steps=3", "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8",
       "eval.every=0", "checkpoint.every=1", "logging.progress_bar=false"]
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.environ.get("R1RAY_TWO_NODE_E2E") != "1",
                                                  reason="minutes: set R1RAY_TWO_NODE_E2E=1 to run")]


def two_node_cluster(*args: str) -> str:
    """The script's output; it must succeed."""
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "two_node_cluster.sh"), *args],
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "placement: each on its own node" in out  # engine-0 and policy-0
    print("\n".join(line for line in out.splitlines() if re.search(r"two_node_cluster:|NodeLost|^fault:", line)))
    return out


def test_a_lost_node_stops_the_job_naming_it_and_resume_goes_on_with_the_node_back(tmp_path):
    out = two_node_cluster("--lose-node", *RUN, "fault.lost_node_wait_s=5", f"logging.output_dir={tmp_path}")
    [run_dir] = [os.path.join(tmp_path, d) for d in os.listdir(tmp_path)]
    # the first job: the lost node named, with its actor, and the checkpoint to resume from
    lost = re.search(r"NodeLost: lost node \S+ \(id \w{8}, train_node\) with policy-0 \(phase: \w+\).*"
                     r"its last checkpoint, (\S+), is intact", out)
    assert lost, out[-4000:]
    assert lost.group(1).startswith(os.path.join(run_dir, "checkpoints", "step_"))
    # the second job: from that checkpoint to the end, every step's metrics once
    assert f"resumed from {lost.group(1)}" in out
    assert [m["step"] for m in read_metrics(run_dir)] == [0, 1, 2]


def test_with_a_spare_node_the_job_goes_on_with_the_lost_policy_placed_anew(tmp_path):
    out = two_node_cluster("--lose-node", "--spare-node", *RUN, "fault.lost_node_wait_s=60",
                           f"logging.output_dir={tmp_path}")
    assert "NodeLost" not in out
    assert re.search(r"fault: policy-0 restarted after a failure in phase '\w+'; going on at step \d", out), out[-4000:]
    [run_dir] = [os.path.join(tmp_path, d) for d in os.listdir(tmp_path)]
    assert [m["step"] for m in read_metrics(run_dir)] == [0, 1, 2]
