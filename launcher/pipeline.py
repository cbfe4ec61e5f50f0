"""The R1 recipe in one file: a list of SFT, GRPO and distillation stages, each stage's model the
next one's start. R1: cold-start SFT -> reasoning RL -> rejection sampling from the RL policy +
SFT -> RL for all scenarios.

    python launcher/pipeline.py --config configs/pipeline_r1_cpu.yaml [key.sub=value ...]

Every stage runs in this process through its launcher's function (one Ray runtime for all), in
its own run directory, with its own config: its YAML file, the pipeline's `overrides`, its own
`overrides`, then the wiring (model.path = the model it starts from, data.source = the traces of
its `data_from` stage, on_policy_distill.teacher_path = the model of its `teacher_from` stage).

With an `eval` section, the starting model and every sft/grpo stage's model are evaluated on the
same held-out problems (launcher/evaluate.py); the report plots accuracy by stage.

PIPELINE_DIR/  config.yaml, pipeline_state.json (the finished stages, their outputs and figures),
               1-<name>/, 2-<name>/, ...  (each stage's run directory), eval-<name>/ (evaluations),
               evals.json, stages.md and pipeline_report.png (the figures of every evaluation)
Running it again (resume=true, or the same logging.run_name) skips the finished stages; an
unfinished one continues from its last checkpoint (GRPO, SFT) or its finished problems (distill).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace

from actors.cluster import start_ray
from actors.placement import Placement
from launcher import distill, grpo, sft
from launcher.evaluate import evaluate_model
from launcher.lifecycle import launch
from system.checkpoint import latest_checkpoint
from system.config.checks import validate
from system.config.grpo import Config, load_config, save_config
from system.reporting.metrics import read_metrics
from system.reporting.pipeline_report import EVALS_FILE, read_evals, stage_table, write_pipeline_report
from system.config.recipe import STAGE_KINDS, PipelineConfig, load_stage_config, validate_pipeline

STATE_FILE = "pipeline_state.json"


def run_stage(kind: str, cfg, run_dir: str) -> str:
    """One stage, in this process; returns its output: a model's HF folder, or a data file."""
    if kind == "distill":
        return distill.distill(cfg, run_dir)
    if kind == "sft":
        return sft.train(cfg, run_dir)
    grpo.train(cfg, run_dir).shutdown()
    return os.path.join(latest_checkpoint(run_dir), "policy")


def wiring(index: int, stages: list, outputs: dict[str, str], resuming: bool) -> list[str]:
    """The overrides that connect stage `index` to the earlier stages' outputs."""
    stage = stages[index]
    models = [s.name for s in stages[:index] if STAGE_KINDS[s.kind][2] == "model"]
    start = models[-1] if stage.model_from == "previous" and models else stage.model_from
    overrides = [] if start in ("previous", "config") else [f"model.path={outputs[start]}"]
    if stage.data_from:
        overrides.append(f"data.source={outputs[stage.data_from]}")
    if stage.teacher_from:
        overrides.append(f"on_policy_distill.teacher_path={outputs[stage.teacher_from]}")
    if stage.kind == "grpo":
        overrides.append("checkpoint.save_final=true")  # its output is the final checkpoint's policy
    return overrides + (["resume=true"] if resuming else [])


def summarize(kind: str, run_dir: str) -> str:
    """The figures a stage is judged by: distillation's kept rate, the losses, the rewards."""
    if kind == "distill":
        with open(os.path.join(run_dir, "stats.json")) as f:
            s = json.load(f)
        return (f"kept {s['kept']} of {s['samples']} traces ({s['kept_rate']:.1%}); "
                f"solved {s['solved']} of {s['problems']} problems")
    keys = (("train/loss", "eval/loss") if kind == "sft"
            else ("reward/mean", "reward/accuracy", "eval/accuracy", "distill/reverse_kl"))
    records = read_metrics(run_dir)
    curves = {key: [r[key] for r in records if key in r] for key in keys}
    return ", ".join(f"{key} {v[0]:.3f} -> {v[-1]:.3f}" for key, v in curves.items() if v)


def evaluate_stage(name: str, model_path: str, eval_cfg: Config, pipe_dir: str) -> None:
    """Evaluate one stage's model (or the starting one) on the held-out problems; kept in evals.json."""
    evals = read_evals(pipe_dir)
    if name in evals:
        return
    run_dir = os.path.join(pipe_dir, f"eval-{name}")
    os.makedirs(run_dir, exist_ok=True)
    cfg = replace(eval_cfg, model=replace(eval_cfg.model, path=model_path))
    print(f"eval after {name}: {model_path}", flush=True)
    start = time.perf_counter()
    evals[name] = {"model": model_path, **evaluate_model(cfg, run_dir)}
    evals[name]["minutes"] = (time.perf_counter() - start) / 60
    write_json(os.path.join(pipe_dir, EVALS_FILE), evals)


def run_new_stage(index: int, stages: list, state: dict, recipe_dir: str, shared: list[str],
                  pipe_dir: str) -> dict:
    """Stage `index` in its run directory (continuing its last checkpoint); its record for the state file."""
    stage = stages[index]
    run_dir = os.path.join(pipe_dir, f"{index + 1}-{stage.name}")
    resuming = stage.kind != "distill" and latest_checkpoint(run_dir) is not None
    if stage.kind != "distill" and not resuming:
        shutil.rmtree(run_dir, ignore_errors=True)  # a stage killed before its first checkpoint starts over
    os.makedirs(run_dir, exist_ok=True)
    outputs = {name: done["output"] for name, done in state.items()}
    overrides = shared + stage.overrides + wiring(index, stages, outputs, resuming)
    stage_cfg = load_stage_config(stage, recipe_dir, overrides)
    save_config(stage_cfg, os.path.join(run_dir, "config.yaml"))
    print(f"stage {index + 1} {stage.name} ({stage.kind}) from {stage_cfg.model.path}: {run_dir}", flush=True)
    start = time.perf_counter()
    output = run_stage(stage.kind, stage_cfg, run_dir)
    return {"kind": stage.kind, "run_dir": run_dir, "output": output,
            "summary": summarize(stage.kind, run_dir), "minutes": (time.perf_counter() - start) / 60}


def write_json(path: str, value) -> None:
    """Written whole or not at all: a run killed mid-write leaves the previous file."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def run(cfg, pipe_dir: str, recipe_path: str | None) -> str:
    """Every stage not yet finished, in order; returns the last stage's output."""
    recipe_dir = os.path.dirname(os.path.abspath(recipe_path)) if recipe_path else os.getcwd()
    log = cfg.logging
    shared = [f"logging.wandb_mode={log.wandb_mode}", f"logging.wandb_project={log.wandb_project}",
              f"logging.progress_bar={log.progress_bar}", f"logging.trackers=[{','.join(log.trackers)}]",
              *cfg.overrides]
    # Every stage's config is checked before the first stage runs.
    configs = [load_stage_config(stage, recipe_dir, shared + stage.overrides) for stage in cfg.stages]
    eval_cfg = None
    if cfg.eval.config:
        eval_cfg = load_config(os.path.join(recipe_dir, cfg.eval.config), shared + cfg.eval.overrides,
                               schema=Config, check=validate)
        configs.append(eval_cfg)
    start_ray(cfg.ray_address, max(Placement.logical_cpus(c.roles(), c.placement) for c in configs))
    if eval_cfg is not None:
        evaluate_stage("start", eval_cfg.model.path, eval_cfg, pipe_dir)

    state_path = os.path.join(pipe_dir, STATE_FILE)
    state = {}
    if os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
    for index, stage in enumerate(cfg.stages):
        if stage.name in state:
            print(f"stage {index + 1} {stage.name}: done before ({state[stage.name]['summary']})", flush=True)
        else:
            state[stage.name] = run_new_stage(index, cfg.stages, state, recipe_dir, shared, pipe_dir)
            write_json(state_path, state)  # the stage counts as finished from here on
            print(f"stage {index + 1} {stage.name}: {state[stage.name]['summary']}", flush=True)
        # a model stage is evaluated, also one that a killed run left unevaluated
        if eval_cfg is not None and STAGE_KINDS[stage.kind][2] == "model":
            evaluate_stage(stage.name, state[stage.name]["output"], eval_cfg, pipe_dir)
    if eval_cfg is not None:
        print("held-out eval by stage:\n" + stage_table(read_evals(pipe_dir)), flush=True)
        print("report:", ", ".join(write_pipeline_report(pipe_dir, state)), flush=True)
    return state[cfg.stages[-1].name]["output"]


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, PipelineConfig, validate_pipeline, run)


if __name__ == "__main__":
    main()
