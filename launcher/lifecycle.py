"""What every launcher does around its loop: read the command line into a config, make the run
directory, log metrics, save and restore checkpoints. The loops themselves stay in grpo.py,
sft.py, distill.py and pipeline.py, each readable on its own."""

from __future__ import annotations

import argparse
import glob
import os
import time

import ray

from actors.calls import ActorFailure
from actors.cluster import joins_cluster
from actors.dashboard import dashboard_sink
from system.checkpoint import (CheckpointError, check_checkpoint, checkpoint_root, load_driver_state,
                               newest_complete_checkpoint, save_driver_state, write_checkpoint)
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
    """runs/<run_name or config-time>; when resuming, the directory of the run being resumed: the one
    that holds the checkpoint named (RUN_DIR/checkpoints/step_N), or the newest run of this config.
    Checkpoints in a folder of their own (`checkpoint.dir`, or resume=PATH outside a run directory)
    carry the run: it goes on, on this machine or another, in the directory logging.run_name names or a new one."""
    stem = os.path.splitext(os.path.basename(config_path or "grpo"))[0]
    named = _names_a_path(cfg.resume)
    if named and not os.path.isdir(cfg.resume):
        raise CheckpointError(f"resume={cfg.resume}: no such checkpoint folder (resume=true for the run's "
                              "newest, or resume=CHECKPOINT_DIR/step_N)")
    parent = os.path.dirname(os.path.abspath(cfg.resume))
    if named and os.path.basename(parent) == "checkpoints" and not cfg.checkpoint.dir:
        return os.path.dirname(parent)  # RUN_DIR/checkpoints/step_N
    if cfg.resume and not named and not cfg.checkpoint.dir and not cfg.logging.run_name:
        # the newest run of this config
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


def checkpoint_dir(cfg, run_dir: str) -> str:
    """The run's checkpoints: `checkpoint.dir`, or RUN_DIR/checkpoints."""
    return checkpoint_root(run_dir, cfg.checkpoint.dir)


def save_checkpoint(step: int, cfg, trainer, data_state: dict, run_dir: str) -> str:
    """`step` = updates done so far = the step a resumed run starts with. `trainer`: the ranks'
    ActorGroup (all save, collectively); `data_state`: where the task source stands before `step`.

    A save that fails (a full disk, a quota, a lost mount) ends the run with CheckpointSaveError naming
    the step, the folder and the cause, the partial folder removed and the older checkpoints untouched.
    It is not retried, nor the run continued without it: a full disk does not empty itself, and a run
    going on unsaved would put more steps at risk at every step. A rank that died while saving is an
    ActorFailure, which the run recovers from as in any phase."""
    def write(folder: str) -> None:
        trainer.run("save_checkpoint", folder, phase="checkpoint")
        save_driver_state(folder, step, data_state, os.path.join(run_dir, "metrics.jsonl"))

    return write_checkpoint(checkpoint_dir(cfg, run_dir), step, cfg.checkpoint.keep_last, write,
                            passes=(ActorFailure,))


def _names_a_path(resume: str) -> bool:
    """resume=PATH names one checkpoint; any other value (true, yes, 1) the run's newest."""
    return "/" in resume or os.path.isdir(resume)


def last_checkpoint(cfg, run_dir: str, model_path: str) -> str | None:
    """The run's newest complete checkpoint (a damaged newer one is named in a warning and passed over)."""
    return newest_complete_checkpoint(checkpoint_dir(cfg, run_dir), model_path)


def check_resume(cfg, run_dir: str, model_path: str) -> str | None:
    """The checkpoint to resume from (None when not resuming), checked before any actor starts: complete,
    intact and of the run's model (system/checkpoint.py: check_checkpoint). resume=PATH: that one, or a
    CheckpointError naming what is wrong with it; resume=true: the newest complete one of the run."""
    if not cfg.resume:
        return None
    if _names_a_path(cfg.resume):
        check_checkpoint(cfg.resume, model_path)
        return cfg.resume
    checkpoint = last_checkpoint(cfg, run_dir, model_path)
    if checkpoint is None:
        raise CheckpointError(f"resume: no complete checkpoint in {checkpoint_dir(cfg, run_dir)}")
    return checkpoint


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
