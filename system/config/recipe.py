"""Config schemas of the R1 recipe's other steps: SFT, distillation, and the multi-stage pipeline.

They are built from the GRPO config's sections (system/config/grpo.py), so a key means the same thing
in every stage, and they load through the same `load_config` (YAML, `base:`, overrides, errors
that name the key):

    cfg = load_config("configs/sft_arithmetic_cpu.yaml", ["train.lr=1e-5"], schema=SFTConfig, check=validate_sft)
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

from system.config.checks import check_choices, check_lr_schedule, check_registered, check_rewards, validate
from system.config.grpo import (CheckpointConfig, Config, ConfigError, DataConfig, LoggingConfig, ModelConfig,
                                PlacementConfig, RewardConfig, RolloutConfig, TrainConfig, load_config)
from system.config.roles import Roles
from system.teachers import TEACHERS


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    # source: a .jsonl/.parquet file (or a hub dataset id, where a hub is reachable) with a
    # `messages` column; the first num_eval rows are held out for the eval loss, then num_train.
    data: DataConfig = field(default_factory=lambda: DataConfig(source="", num_eval=16))
    # lr, warmup, ZeRO stage, micro-batch, ranks; the PPO-only fields (num_minibatches, ppo_epochs) are unused.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    max_length: int = 1024  # tokens per example (longer ones are cut) and per packed row
    packing: bool = False  # several examples per row, each attending only to itself
    batch_size: int = 16  # rows (examples, or packed rows) per optimizer step, over all ranks
    epochs: int = 1
    steps: int = 0  # 0: as many as `epochs` take
    eval_every: int = 10  # steps between eval losses (also before the first step and after the last); 0 = never
    seed: int = 1
    ray_address: str = ""
    resume: str = ""  # as GRPO's: "true" = the latest checkpoint of this run directory, or one checkpoint's path

    def roles(self) -> Roles:
        return Roles(policy=self.train.num_ranks)  # the trainer ranks take the policy's place


@dataclass
class DistillConfig:
    # The teacher: the model at model.path, sampled by the engines; or, with `teacher` set, a program
    # (a registered name such as countdown_search, or package.module:fn; system/teachers/). The
    # model's tokenizer still tokenises the traces: model.path is the student's model then.
    teacher: str = ""
    teacher_args: dict[str, Any] = field(default_factory=dict)  # a program teacher's keyword arguments
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(num_eval=0))  # the problems (train split)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # group_size = traces sampled per problem
    reward: RewardConfig = field(default_factory=RewardConfig)  # the verifier of each trace
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    keep: str = "all"  # all: every distinct correct trace | shortest: the shortest correct one per problem
    chunk_size: int = 32  # problems per chunk: a chunk's traces are written (and count as done) together
    seed: int = 1
    ray_address: str = ""
    resume: str = ""  # "true": continue the newest run of this config (a run always continues its own directory)

    def roles(self) -> Roles:
        engines = 0 if self.teacher else self.rollout.num_engines  # a program teacher needs no engine
        return Roles(engine=engines, reward=self.reward.num_workers, engine_devices=self.rollout.tensor_parallel_size)


@dataclass
class StageConfig:
    name: str = ""  # unique; the stage's run directory is PIPELINE_DIR/<n>-<name>
    kind: str = "sft"  # sft | grpo | distill
    config: str = ""  # the stage's YAML, relative to the pipeline file
    overrides: list[str] = field(default_factory=list)  # key=value, as on the stage launcher's command line
    # Which model the stage starts from (a distill stage: its teacher): "previous" = the output of
    # the last sft/grpo stage (the config's model.path for the first one); "config" = the stage
    # config's model.path (R1 restarts its second SFT from the base model); or an earlier stage's name.
    model_from: str = "previous"
    data_from: str = ""  # an earlier distill stage: its traces become this stage's data.source
    # A grpo stage: an earlier sft/grpo stage whose model becomes its on_policy_distill.teacher_path.
    teacher_from: str = ""


@dataclass
class PipelineEvalConfig:
    """The held-out evaluation run on the starting model and after every sft/grpo stage."""

    config: str = ""  # a GRPO config (relative to the pipeline file): its data's held-out split, rollout and eval
    overrides: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    stages: list[StageConfig] = field(default_factory=list)
    eval: PipelineEvalConfig = field(default_factory=PipelineEvalConfig)  # config "": no evaluations
    overrides: list[str] = field(default_factory=list)  # key=value for every stage (keys all kinds have)
    # Where the pipeline directory goes; trackers, wandb_mode, wandb_project, progress_bar: every stage's.
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray_address: str = ""
    resume: str = ""  # "true": continue the newest pipeline of this recipe (finished stages are not re-run)


def validate_sft(cfg: SFTConfig) -> None:
    check_choices(cfg, ("model.dtype", "logging.wandb_mode", "train.lr_schedule"))
    check_lr_schedule(cfg.train)
    if cfg.batch_size < 1 or cfg.batch_size % cfg.train.num_ranks:
        raise ConfigError(f"'batch_size'={cfg.batch_size} must be a positive multiple of "
                          f"train.num_ranks={cfg.train.num_ranks}")
    if cfg.max_length < 2:
        raise ConfigError("'max_length' must be >= 2")
    if cfg.epochs < 1 and cfg.steps < 1:
        raise ConfigError("set 'epochs' >= 1 or 'steps' >= 1")


def validate_distill(cfg: DistillConfig) -> None:
    check_choices(cfg, ("model.dtype", "logging.wandb_mode", "reward.mode"))
    if cfg.keep not in ("all", "shortest"):
        raise ConfigError(f"'keep' must be one of ['all', 'shortest'], got '{cfg.keep}'")
    if cfg.rollout.group_size < 1 or cfg.chunk_size < 1:
        raise ConfigError("'rollout.group_size' and 'chunk_size' must be >= 1")
    check_rewards(cfg.reward)
    if cfg.teacher:
        check_registered("teacher", cfg.teacher, TEACHERS.get)
        try:
            inspect.signature(TEACHERS.get(cfg.teacher)).bind({}, None, **cfg.teacher_args)
        except TypeError as e:
            raise ConfigError(f"'teacher_args'={cfg.teacher_args} do not fit teacher '{cfg.teacher}': "
                              f"{e}") from None
    elif cfg.teacher_args:
        raise ConfigError("'teacher_args' are for a program teacher: set 'teacher' too")


# kind -> (schema, validation, output): a stage's output is a model (HF folder) or a data set.
STAGE_KINDS = {"sft": (SFTConfig, validate_sft, "model"), "grpo": (Config, validate, "model"),
               "distill": (DistillConfig, validate_distill, "data")}


def validate_pipeline(cfg: PipelineConfig) -> None:
    """Stages and their references; each stage's own config is checked by `load_stage_config`."""
    check_choices(cfg, ("logging.wandb_mode",))
    if not cfg.stages:
        raise ConfigError("'stages' must list at least one stage")
    outputs: dict[str, str] = {}  # earlier stage name -> "model" | "data"
    for number, stage in enumerate(cfg.stages, 1):
        where = f"stage {number} ({stage.name or 'unnamed'})"
        if not stage.name or stage.name in outputs:
            raise ConfigError(f"{where}: every stage needs a unique 'name'")
        if stage.kind not in STAGE_KINDS:
            raise ConfigError(f"{where}: 'kind' must be one of {list(STAGE_KINDS)}, got '{stage.kind}'")
        if not stage.config:
            raise ConfigError(f"{where}: 'config' must name the stage's YAML file")
        if stage.model_from not in ("previous", "config") and outputs.get(stage.model_from) != "model":
            raise ConfigError(f"{where}: 'model_from' must be previous, config or an earlier sft/grpo stage, "
                              f"got '{stage.model_from}'")
        if stage.data_from and outputs.get(stage.data_from) != "data":
            raise ConfigError(f"{where}: 'data_from' must name an earlier distill stage, got '{stage.data_from}'")
        if stage.teacher_from and (stage.kind != "grpo" or outputs.get(stage.teacher_from) != "model"):
            raise ConfigError(f"{where}: 'teacher_from' (on-policy distillation) is for grpo stages and must name "
                              f"an earlier sft/grpo stage, got '{stage.teacher_from}'")
        outputs[stage.name] = STAGE_KINDS[stage.kind][2]


def load_stage_config(stage: StageConfig, recipe_dir: str, overrides: list[str]):
    """The stage's config file (relative to `recipe_dir`) with `overrides`, in its kind's schema."""
    schema, check, _ = STAGE_KINDS[stage.kind]
    try:
        return load_config(os.path.join(recipe_dir, stage.config), overrides, schema=schema, check=check)
    except ConfigError as e:
        raise ConfigError(f"stage '{stage.name}': {e}") from None

