"""The R1 recipe as a pipeline, through the real stack: the shipped Countdown pipeline's six stages
(program teacher -> SFT -> GRPO -> rejection sampling by a model -> SFT -> GRPO) at a tiny size, each
stage's output feeding the next, an evaluation after each, and a finished pipeline that is not re-run.
Also: every shipped SFT, distill and pipeline recipe (CPU and GPU) parses and validates."""

import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

from system.config.grpo import ConfigError, load_config
from system.config.recipe import STAGE_KINDS, PipelineConfig, load_stage_config, validate_pipeline
from tests.test_grpo_e2e import ROOT

RECIPES = sorted(os.path.relpath(p, ROOT) for kind in ("sft", "distill", "pipeline")
                 for p in glob.glob(os.path.join(ROOT, "configs", "**", f"{kind}_*.yaml"), recursive=True))


def load_pipeline(path: str, overrides=()):
    return load_config(path, list(overrides), schema=PipelineConfig, check=validate_pipeline)


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_validates(name):
    """GPU recipes cannot run here, but they (and every stage of a pipeline) must parse and validate."""
    path = os.path.join(ROOT, name)
    kind = os.path.basename(name).split("_")[0]
    if kind == "pipeline":
        cfg = load_pipeline(path)
        for stage in cfg.stages:
            load_stage_config(stage, os.path.dirname(path), cfg.overrides + stage.overrides)
    else:
        schema, check, _ = STAGE_KINDS[kind]
        load_config(path, schema=schema, check=check)


def test_the_recipes_are_there():
    assert {"configs/sft_arithmetic_cpu.yaml", "configs/distill_countdown_cpu.yaml",
            "configs/pipeline_r1_cpu.yaml",
            "configs/gpu/distill_numinamath_r1-distill-qwen-32b.yaml",
            "configs/gpu/sft_qwen2.5-1.5b-instruct.yaml",
            "configs/gpu/pipeline_r1_qwen2.5-1.5b.yaml"} <= set(RECIPES)
    r1 = load_pipeline(os.path.join(ROOT, "configs/gpu/pipeline_r1_qwen2.5-1.5b.yaml"))
    # R1's 2 x SFT + 2 x RL
    assert [s.kind for s in r1.stages] == ["distill", "sft", "grpo", "distill", "sft", "grpo"]
    assert r1.stages[4].model_from == "config" and r1.stages[4].data_from == "rejection_sampling"


@pytest.mark.parametrize("stage, message", [
    ({"name": "a", "kind": "dpo", "config": "x.yaml"}, "'kind' must be one of"),
    ({"name": "a", "kind": "sft", "config": "x.yaml", "data_from": "a"},
     "'data_from' must name an earlier distill stage"),
    ({"name": "a", "kind": "sft", "config": "x.yaml", "model_from": "later"},
     "'model_from' must be previous, config"),
    ({"kind": "sft", "config": "x.yaml"}, "every stage needs a unique 'name'"),
])
def test_pipeline_mistakes_name_the_stage(tmp_path, stage, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"stages": [stage]}))
    with pytest.raises(ConfigError, match=message):
        load_pipeline(str(recipe))


def test_a_bad_stage_config_is_found_before_anything_runs(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"stages": [
        {"name": "student", "kind": "sft", "config": os.path.join(ROOT, "configs", "sft_arithmetic_cpu.yaml"),
         "overrides": ["train.lrr=1"]}]}))
    cfg = load_pipeline(str(recipe))
    with pytest.raises(ConfigError,
                       match=r"stage 'student': .*unknown config key 'train.lrr' \(did you mean"):
        load_stage_config(cfg.stages[0], str(tmp_path), cfg.stages[0].overrides)


@pytest.mark.e2e  # a launcher process each (~10 s of imports): out of the quick loop
@pytest.mark.parametrize("launcher, config, override, message", [
    ("sft.py", "sft_arithmetic_cpu.yaml", "train.lrr=1", "did you mean 'train.lr'"),
    ("distill.py", "distill_countdown_cpu.yaml", "keep=best", "'keep' must be one of ['all', 'shortest']"),
    ("pipeline.py", "pipeline_r1_cpu.yaml", "logging.wandb_mod=x", "did you mean 'logging.wandb_mode'"),
])
def test_launchers_exit_with_the_config_error(launcher, config, override, message):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launcher", launcher), "--config",
                          os.path.join(ROOT, "configs", config), override], capture_output=True, text=True,
                          timeout=120)
    assert out.returncode == 2 and message in out.stderr


TINY = {  # per stage kind: the shipped Countdown pipeline at a size CI can run
    "distill": ["data.num_train=6", "rollout.group_size=2", "rollout.max_new_tokens=16",
                "rollout.max_model_len=256", "reward.num_workers=1"],
    "sft": ["steps=2", "batch_size=2", "train.micro_batch_size=2", "max_length=256", "packing=false",
            "data.num_eval=1", "eval_every=0"],
    "grpo": ["steps=1", "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=16",
             "rollout.max_model_len=256", "train.micro_batch_size=4", "reward.num_workers=1",
             "sync.bucket_mb=4"],
}
TINY_EVAL = ["model.path=tiny", "data.num_eval=3", "eval.num_samples=2", "eval.pass_k=[1, 2]",
             "rollout.max_new_tokens=16", "rollout.max_model_len=256", "reward.num_workers=1"]


@pytest.mark.e2e
def test_the_countdown_pipeline_runs_end_to_end_with_a_program_teacher_and_an_eval_per_stage(
        ray_job, tiny_model, smollm2, tmp_path):
    """configs/pipeline_countdown_cpu.yaml's six stages at a tiny size: the program teacher's
    traces (no engine) -> SFT -> GRPO -> rejection sampling from the RL policy -> SFT -> GRPO,
    and the same held-out evaluation of the starting model and of each sft/grpo stage's model."""
    from launcher.pipeline import run

    shipped = yaml.safe_load(open(os.path.join(ROOT, "configs", "pipeline_countdown_cpu.yaml")))
    for stage in shipped["stages"]:
        stage["config"] = os.path.join(ROOT, "configs", stage["config"])
        stage["overrides"] = stage.get("overrides", []) + TINY[stage["kind"]]
    shipped["stages"][0]["overrides"] += ["model.path=tiny"]  # the student's tokenizer measures the traces
    # A random tiny policy never ends a reply by itself, so nothing of its would be kept: here the
    # embedded model plays the RL policy's part in rejection sampling, with a reward that keeps about half.
    shipped["stages"][3].update(model_from="config", overrides=shipped["stages"][3]["overrides"] + [
        "model.path=smollm2-135m", "reward.functions={tests.user_plugins:even_length: 1.0}",
        "data.num_train=8",
        "rollout.group_size=4", "rollout.max_new_tokens=32", "data.prompt_template=countdown_answer",
        "data.response_prefix=<answer>"])
    shipped["eval"] = {"config": os.path.join(ROOT, "configs", shipped["eval"]["config"]),
                       "overrides": TINY_EVAL}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(shipped))
    cfg = load_pipeline(str(recipe), ["logging.wandb_mode=disabled", "logging.progress_bar=false"])
    pipe_dir = str(tmp_path / "pipeline")
    os.makedirs(pipe_dir)
    run(cfg, pipe_dir, str(recipe))

    state = json.load(open(os.path.join(pipe_dir, "pipeline_state.json")))
    assert list(state) == ["cold_start_data", "cold_start_sft", "reasoning_rl", "rejection_sampling", "sft",
                           "all_rl"]
    traces = [json.loads(line) for line in open(state["cold_start_data"]["output"])]
    stats = json.load(open(os.path.join(state["cold_start_data"]["run_dir"], "stats.json")))
    # 2 per problem, distinct
    assert stats["problems"] == stats["solved"] == 6 and stats["kept"] == len(traces) >= 6
    # the program's traces
    assert all(t["messages"][-1]["content"].startswith("<think>\nGoal ") for t in traces)
    stage_cfg = lambda name: yaml.safe_load(open(os.path.join(state[name]["run_dir"], "config.yaml")))  # noqa: E731
    assert stage_cfg("cold_start_sft")["data"]["source"] == state["cold_start_data"]["output"]
    assert state["cold_start_sft"]["output"] == os.path.join(state["cold_start_sft"]["run_dir"], "final")
    # RL from the SFT model
    assert stage_cfg("reasoning_rl")["model"]["path"] == state["cold_start_sft"]["output"]
    # the RL policy learns its kept traces
    assert stage_cfg("sft")["model"]["path"] == state["reasoning_rl"]["output"]
    assert stage_cfg("sft")["data"]["source"] == state["rejection_sampling"]["output"]
    final = state["all_rl"]["output"]
    assert final == os.path.join(state["all_rl"]["run_dir"], "checkpoints", "step_000001", "policy")
    assert all(os.path.exists(os.path.join(final, name)) for name in ("config.json", "tokenizer.json"))
    evals = json.load(open(os.path.join(pipe_dir, "evals.json")))
    assert list(evals) == ["start", "cold_start_sft", "reasoning_rl", "sft", "all_rl"]
    assert evals["all_rl"]["model"] == state["all_rl"]["output"]
    for metrics in evals.values():
        assert {"eval/accuracy", "eval/pass@2", "eval/length_mean", "eval/format_rate"} <= set(metrics)
    table, times = open(os.path.join(pipe_dir, "stages.md")).read().split("\n\n")
    assert table.count("\n") == 1 + len(evals) and "| reasoning_rl |" in table
    # every stage and every eval timed, then the total
    assert times.count("\n") == 2 + len(state) + len(evals) + 1 and "| total |" in times
    assert os.path.getsize(os.path.join(pipe_dir, "pipeline_report.png")) > 10_000

    # Run again: every stage and every evaluation is finished, none runs (their files stay as they are).
    files = [os.path.join(done["run_dir"], "stats.json" if done["kind"] == "distill" else "metrics.jsonl")
             for done in state.values()] + [os.path.join(pipe_dir, "evals.json")]
    before = [os.path.getmtime(f) for f in files]
    assert run(cfg, pipe_dir, str(recipe)) == final
    assert [os.path.getmtime(f) for f in files] == before
