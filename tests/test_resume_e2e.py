"""Checkpoints resume exactly: a run SIGKILLed after a checkpoint continues with the batch and
the optimizer state that the uninterrupted run had (real stack, tiny model)."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from launcher.grpo import train
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from tests.test_grpo_e2e import ROOT, TINY_RUN

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")
RUN = TINY_RUN + ["steps=2", "checkpoint.every=1", "checkpoint.keep_last=5", "algorithm.kl_coef=0"]


def optimizer_state(run_dir: str, step: int) -> dict:
    [path] = glob.glob(os.path.join(run_dir, "checkpoints", f"step_{step:06d}", "deepspeed", "state",
                                    "*optim_states.pt"))
    return torch.load(path, weights_only=False, map_location="cpu")


def flat_tensors(obj) -> list[torch.Tensor]:
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in flat_tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in flat_tensors(v)]
    return []


@pytest.mark.e2e
def test_sigkilled_run_resumes_exactly(ray_job, tiny_model, tmp_path):
    # A: the uninterrupted run, checkpointing every step.
    cfg = load_config(DEMO, RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=A"])
    os.makedirs(tmp_path / "A")
    train(cfg, str(tmp_path / "A")).shutdown()

    # B: the same run as a job of its own on the same cluster, SIGKILLed once step 1's checkpoint exists.
    address = ray_job.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher", "grpo.py"), "--config", DEMO,
                             *RUN, f"logging.output_dir={tmp_path}", "logging.run_name=B",
                             f"ray_address={address}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while not os.path.isdir(tmp_path / "B" / "checkpoints" / "step_000001") and time.time() < deadline:
        assert proc.poll() is None, "run B ended before its checkpoint"
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # let Ray reap the dead job's actors

    # B resumed: continues at step 1 from the checkpoint.
    cfg = load_config(DEMO, RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=B", "resume=true"])
    train(cfg, str(tmp_path / "B")).shutdown()

    a, b = read_metrics(str(tmp_path / "A")), read_metrics(str(tmp_path / "B"))
    assert [m["step"] for m in b] == [0, 1], "a step repeated or skipped"
    assert (b[1]["data/epoch"], b[1]["data/position"]) == (a[1]["data/epoch"], a[1]["data/position"])
    assert b[1]["reward/mean"] == pytest.approx(a[1]["reward/mean"])  # same batch, same samples
    # After the resumed step, the optimizer state equals the uninterrupted run's.
    sa = flat_tensors(optimizer_state(str(tmp_path / "A"), 2))
    sb = flat_tensors(optimizer_state(str(tmp_path / "B"), 2))
    assert len(sa) == len(sb) > 0
    assert all(torch.allclose(x.float(), y.float(), atol=1e-6) for x, y in zip(sa, sb))
    # and a resumed run without the optimizer state would not match: step 2's state depends on step 1's
    s1 = flat_tensors(optimizer_state(str(tmp_path / "A"), 1))
    assert not all(torch.allclose(x.float(), y.float(), atol=1e-6) for x, y in zip(s1, sb))
