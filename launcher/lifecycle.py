"""What every launcher does around its loop: read the command line into a config, make the run
directory, log metrics, save and restore checkpoints. The loops themselves stay in grpo.py,
sft.py, distill.py and pipeline.py, each readable on its own."""

from __future__ import annotations

import argparse
import glob
import os
import time

import ray

from actors.cluster import joins_cluster
from actors.dashboard import dashboard_sink
from system.checkpoint import (CheckpointError, check_checkpoint, complete_checkpoint, latest_checkpoint,
                               load_driver_state, save_driver_state, temp_checkpoint_dir)
from system.config.grpo import ConfigError, load_config, save_config, to_yaml
from system.reporting.metrics import MetricsLogger, next_step
from system.reporting.trackers import open_trackers


def launch(argv: list[str] | None, doc: str, schema: type, check, run) -> str:
    """Every launcher's command line: `--config FILE key.sub=value ...` -> the config in `schema`
    (exit 2 with the message on a config error) -> the run directory with config.yaml
    -> run(cfg, run_dir, config_path). A Ray runtime this process started is stopped at the end."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (configs/...)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. rollout.group_size=8")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, schema=schema, check=check)
    except ConfigError as e:
        parser.exit(2, f"config error: {e}\n")
    run_dir = make_run_dir(cfg, args.config)
    save_config(cfg, os.path.join(run_dir, "config.yaml"))
    print(f"run directory: {run_dir}", flush=True)
    started_here = not ray.is_initialized() and not joins_cluster(cfg.ray_address)
    run(cfg, run_dir, args.config)
    if started_here:
        ray.shutdown()
    return run_dir


def make_run_dir(cfg, config_path: str | None) -> str:
    """runs/<run_name or config-time>; when resuming, the directory of the run being resumed."""
    stem = os.path.splitext(os.path.basename(config_path or "grpo"))[0]
    if _names_a_path(cfg.resume) and not os.path.isdir(cfg.resume):
        raise CheckpointError(f"resume={cfg.resume}: no such checkpoint folder (resume=true for the run's "
                              "newest, or resume=RUN_DIR/checkpoints/step_N)")
    if cfg.resume and os.path.isdir(cfg.resume):  # a checkpoint: RUN_DIR/checkpoints/step_N
        return os.path.dirname(os.path.dirname(os.path.abspath(cfg.resume)))
    if cfg.resume and not cfg.logging.run_name:  # the newest run of this config
        pattern = os.path.join(os.path.abspath(cfg.logging.output_dir), f"{stem}-*")
        runs = sorted(glob.glob(pattern), key=os.path.getmtime)
        if not runs:
            raise FileNotFoundError(f"resume: no run of {stem} under {cfg.logging.output_dir}")
        return runs[-1]
    name = cfg.logging.run_name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = os.path.abspath(os.path.join(cfg.logging.output_dir, name))
    os.makedirs(run_dir, exist_ok=True)
    return run_dir


def make_logger(cfg, run_dir: str) -> MetricsLogger:
    """metrics.jsonl, the trackers of cfg.logging (wandb, TensorBoard), the Ray dashboard's gauges."""
    name = os.path.basename(run_dir)
    trackers = open_trackers(cfg.logging, run_dir, {"yaml": to_yaml(cfg)}, name, next_step(run_dir))
    return MetricsLogger(run_dir, trackers, sinks=[dashboard_sink(name)])


def save_checkpoint(step: int, cfg, trainer, data_state: dict, run_dir: str) -> str:
    """`step` = updates done so far = the step a resumed run starts with. `trainer`: the ranks'
    ActorGroup (all save, collectively); `data_state`: where the task source stands before `step`."""
    tmp = temp_checkpoint_dir(run_dir, step)
    trainer.run("save_checkpoint", tmp, phase="checkpoint")
    save_driver_state(tmp, step, data_state, os.path.join(run_dir, "metrics.jsonl"))
    return complete_checkpoint(tmp, cfg.checkpoint.keep_last)


def _names_a_path(resume: str) -> bool:
    """resume=PATH names one checkpoint; any other value (true, yes, 1) the run's newest."""
    return "/" in resume or os.path.isdir(resume)


def resume_path(cfg, run_dir: str) -> str:
    """The checkpoint that `resume` names: its path, or the newest complete one of the run."""
    checkpoint = cfg.resume if _names_a_path(cfg.resume) else latest_checkpoint(run_dir)
    if checkpoint is None:
        raise CheckpointError(f"resume: no complete checkpoint in {run_dir}/checkpoints")
    return checkpoint


def check_resume(cfg, run_dir: str, model_path: str) -> None:
    """When resuming: the checkpoint is complete, readable and of the run's model, checked before any
    actor starts (system/checkpoint.py: check_checkpoint)."""
    if cfg.resume:
        check_checkpoint(resume_path(cfg, run_dir), model_path)


def restore_checkpoint(checkpoint: str, trainer, data, run_dir: str) -> int:
    """Continue exactly from `checkpoint`: weights, optimizer, data position (`data.load_state`), RNGs,
    metrics so far; returns the next step."""
    state = load_driver_state(checkpoint, os.path.join(run_dir, "metrics.jsonl"))
    data.load_state(state["sampler"])
    trainer.run("load_checkpoint", checkpoint, phase="restore")
    print(f"resumed from {checkpoint} at step {state['step']}", flush=True)
    return state["step"]


def checkpoint_due(cfg, done: int, total: int) -> bool:
    """After `done` of `total` steps: every `checkpoint.every`, and at the end if `save_final`."""
    every = bool(cfg.checkpoint.every and done % cfg.checkpoint.every == 0)
    return every or (done == total and cfg.checkpoint.save_final)
