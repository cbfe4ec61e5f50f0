"""The run report: curves PNG and sample completions from a run directory's files alone."""

import json
import math
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from system.reporting.run_report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_EVERY = 20


def fake_run(run_dir, steps=60) -> None:
    """metrics.jsonl as the launcher writes it (eval keys on eval steps only, no KL before step 5)
    and three eval files of five samples each, the first completion of the last one very long."""
    os.makedirs(os.path.join(run_dir, "eval"))
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step in range(steps):
            progress = step / steps
            record = {"step": step, "reward/mean": progress + 0.1 * math.sin(step),
                      "reward/countdown/mean": 0.8 * progress, "reward/format/mean": 0.2 + 0.1 * progress,
                      "reward/accuracy": 0.7 * progress, "response/length_mean": 200 - 50 * progress,
                      "response/length_max": 512, "sync/checksum_ok": 1.0,
                      "timing/generate_s": 3.0, "timing/reward_s": 0.2, "timing/train_s": 2.0,
                      "timing/sync_s": 0.5, "timing/step_s": 5.7, "timing/wall_s": 4.5,
                      "timing/engine_idle_frac": 0.2, "timing/trainer_idle_frac": 0.1,
                      "async/staleness_mean": 0.9, "async/staleness_max": 1,
                      # an asynchronous run: step s's rollouts overlap step s-1's update
                      "timeline/rollout_start": 4.5 * step - 3.0, "timeline/rollout_end": 4.5 * step,
                      "timeline/train_start": 4.5 * step, "timeline/train_end": 4.5 * step + 2.5}
            if step >= 5:
                record |= {"kl/mean": 0.01 * progress, "timing/reference_s": 0.8}
            if step % EVAL_EVERY == 0:
                record |= {"eval/reward_mean": progress, "eval/accuracy": progress / 2,
                           "eval/pass@1": progress / 2, "eval/pass@4": progress, "eval/pass@16": 1.0}
            f.write(json.dumps(record) + "\n")
    for step in range(0, steps, EVAL_EVERY):
        with open(os.path.join(run_dir, "eval", f"step_{step:06d}.jsonl"), "w") as f:
            for i in range(5):
                completion = "x" * 2000 if (step, i) == (40, 0) else f"<think>step {step} sample {i}</think>"
                f.write(json.dumps({"prompt": f"Use 3, 5, 7 to make 22 (#{i})", "completion": completion,
                                    "reward": 1.0 if i == 1 else 0.1, "correct": i == 1}) + "\n")


def check_png(path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 800 <= width <= 4000 and 400 <= height <= 3000, image.size


def test_report_writes_curves_and_samples(tmp_path):
    fake_run(tmp_path)
    paths = write_report(str(tmp_path))
    assert paths == [str(tmp_path / "report.png"), str(tmp_path / "samples.md")]
    check_png(paths[0])

    samples = (tmp_path / "samples.md").read_text()
    headers = [line for line in samples.splitlines() if line.startswith("## Step")]
    assert headers == ["## Step 40", "## Step 20", "## Step 0"]  # newest eval first
    assert "<think>step 20 sample 2</think>" in samples
    assert "sample 3" not in samples  # only the first three of each eval
    assert "x" * 600 + " […1400 more characters]" in samples and "x" * 601 not in samples
    assert "5 samples saved, 1 correct, mean reward 0.280." in samples
    assert "### Sample 2: reward 1.000, correct" in samples


def test_report_with_few_metrics_and_no_evals(tmp_path):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step in range(3):
            f.write(json.dumps({"step": step, "reward/mean": 0.1 * step, "kl/mean": None}) + "\n")
    png, samples = write_report(str(tmp_path))
    with Image.open(png) as image:
        assert image.format == "PNG"
    assert "No eval results" in open(samples).read()


def test_report_needs_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "metrics.jsonl"))):
        write_report(str(tmp_path))


def test_launcher(tmp_path):
    fake_run(tmp_path / "run")
    script = os.path.join(ROOT, "launcher", "report.py")
    done = subprocess.run([sys.executable, script, str(tmp_path / "run")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "run" / "report.png"), str(tmp_path / "run" / "samples.md")]
    check_png(tmp_path / "run" / "report.png")

    failed = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert failed.returncode != 0 and "no metrics at" in failed.stderr and "Traceback" not in failed.stderr


def test_the_pipeline_report_tables_and_plots_every_evaluated_stage(tmp_path):
    from system.reporting.pipeline_report import EVALS_FILE, write_pipeline_report

    pipe = tmp_path / "pipe"
    rl = pipe / "3-rl"
    fake_run(str(rl), steps=10)
    evals = {name: {"model": f"/m/{name}", "eval/accuracy": acc, "eval/pass@4": min(1.0, 2 * acc),
                    "eval/length_mean": 100.0, "eval/format_rate": 0.5 + acc / 2}
             for name, acc in (("start", 0.0), ("sft", 0.3), ("rl", 0.45))}
    evals["rl"]["minutes"] = 1.25
    (pipe / EVALS_FILE).write_text(json.dumps(evals))
    state = {"traces": {"kind": "distill", "run_dir": str(pipe / "1-traces"), "minutes": 0.5},
             "sft": {"kind": "sft", "run_dir": str(pipe / "2-sft"), "minutes": 12.0},
             "rl": {"kind": "grpo", "run_dir": str(rl)}}  # no minutes: a stage finished before they were kept
    png, table = write_pipeline_report(str(pipe), state)
    rows = open(table).read().splitlines()
    assert rows[0] == "| after | accuracy | pass@4 | length_mean | format_rate |"
    assert rows[2:6] == ["| start | 0.000 | 0.000 | 100.000 | 0.500 |",
                         "| sft | 0.300 | 0.600 | 100.000 | 0.650 |",
                         "| rl | 0.450 | 0.900 | 100.000 | 0.725 |", ""]
    assert rows[6:] == ["| part | minutes |", "|---|---|", "| distill `traces` | 0.5 |",
                        "| sft `sft` | 12.0 |", "| eval after `rl` | 1.2 |", "| total | 13.8 |"]
    width, height = Image.open(png).size
    assert width > 1000 and height > 400
