"""Checkpoints that survive, through the real stack (Ray, vLLM, DeepSpeed, the tiny model): a run writes
its checkpoints to `checkpoint.dir`; its newest is cut short; a run elsewhere resumes from that folder,
passes over the damaged checkpoint to the older one, and ends on a really full disk with a clear error,
the checkpoint it resumed from intact."""

import os
import subprocess
import sys

import pytest

from launcher.grpo import train
from system.checkpoint import check_checkpoint, verify_manifest
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from tests.test_grpo_e2e import ROOT, TINY_RUN

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")
# The driver scores (no reward actors to start, twice): the test is about the checkpoints.
RUN = TINY_RUN + ["steps=2", "checkpoint.every=1", "checkpoint.keep_last=5", "algorithm.kl_coef=0",
                  "reward.num_workers=0"]
# A machine of its own with a disk of its own: a mount namespace (its own Ray runtime inside, so that the
# policy rank sees the same mounts), a tmpfs holding a copy of the checkpoint folder, shrunk to 1 MiB more
# than that copy takes: the next checkpoint finds the disk full.
ANOTHER_MACHINE = """
set -e
mount -t tmpfs -o size=1g tmpfs "$DISK" || exit 97
cp -a "$SHARED"/. "$DISK"/
mount -o remount,size=$(( $(df --output=used -k "$DISK" | tail -1) + 1024 ))k "$DISK"
set +e
"$PYTHON" launcher/grpo.py --config "$DEMO" "$@"
status=$?
cp -a "$DISK"/. "$AFTER"/
exit $status
"""


def unshare() -> list[str]:
    """A mount namespace: root makes one directly, another user inside a user namespace of its own."""
    return ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-Urm"]


@pytest.mark.e2e
def test_a_damaged_checkpoint_is_passed_over_and_a_full_disk_ends_the_run_with_the_older_one_intact(
        ray_job, tiny_model, tmp_path):
    shared, disk, after = tmp_path / "shared", tmp_path / "disk", tmp_path / "after"
    disk.mkdir()
    after.mkdir()
    # A: two steps, a checkpoint after each, in checkpoint.dir (a shared file system, say).
    cfg = load_config(DEMO, RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=A", f"checkpoint.dir={shared}"])
    os.makedirs(tmp_path / "A")
    train(cfg, str(tmp_path / "A")).shutdown()
    assert sorted(os.listdir(shared)) == ["step_000001", "step_000002"]
    assert not os.path.exists(tmp_path / "A" / "checkpoints")
    weights = shared / "step_000002" / "policy" / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size - 4096)  # the newest checkpoint, cut short (a copy that stopped half-way)

    # B: another run directory and disk, the same checkpoints: resume=true.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=ROOT, PYTHON=sys.executable, DEMO=DEMO, SHARED=str(shared), DISK=str(disk),
               AFTER=str(after))
    b = subprocess.run([*unshare(), "bash", "-c", ANOTHER_MACHINE, "another-machine", *RUN,
                        f"logging.output_dir={tmp_path}", "logging.run_name=B", f"checkpoint.dir={disk}",
                        "resume=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    if b.returncode == 97:
        pytest.skip(f"no tmpfs in a mount namespace here ({b.stderr.strip()[-200:]}); the unit tests "
                    "(test_checkpoint_survival.py) cover a full disk")
    out = b.stdout + b.stderr
    assert b.returncode != 0, out[-3000:]
    assert (f"checkpoint {disk}/step_000002 is damaged: policy/model.safetensors has {size - 4096} bytes, "
            f"{size} when saved; trying the next older checkpoint") in out, out[-3000:]
    assert f"resumed from {disk}/step_000001 at step 1" in out
    assert (f"CheckpointSaveError: no space left on device while writing checkpoint step 2 to "
            f"{disk}/step_000002 (") in out, out[-3000:]
    assert "The run ends; the older checkpoints are untouched (newest: step_000001)" in out

    # B went on from step 1 (step 0's metrics came with the checkpoint), on A's tasks and samples.
    a, resumed = read_metrics(str(tmp_path / "A")), read_metrics(str(tmp_path / "B"))
    assert [m["step"] for m in resumed] == [0, 1]
    assert (resumed[1]["data/epoch"], resumed[1]["data/position"]) == (a[1]["data/epoch"], a[1]["data/position"])
    assert resumed[1]["reward/mean"] == pytest.approx(a[1]["reward/mean"])
    # The full disk left no partial folder, and the checkpoint B resumed from as it was saved.
    assert sorted(os.listdir(after)) == ["step_000001", "step_000002"]
    assert verify_manifest(str(after / "step_000001"))
    check_checkpoint(str(after / "step_000001"), tiny_model)
