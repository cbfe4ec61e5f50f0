"""The checks of a GRPO run's config that need more than types: fixed choices, registered names and
constraints across fields. `load_config` (system/config/grpo.py) runs `validate`; the other run
schemas (system/config/recipe.py) reuse the parts they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from system.algorithms.advantages import ADVANTAGES
from system.algorithms.kl import KL_ESTIMATORS
from system.algorithms.losses import LOSS_AGGREGATIONS
from system.algorithms.objectives import POLICY_OBJECTIVES
from system.algorithms.off_policy import LEVELS as OFF_POLICY_LEVELS
from system.algorithms.off_policy import OFF_POLICY
from system.algorithms.on_policy_distill import distill_problem
from system.agents.config import agent_problem
from system.config.files import ConfigError
from system.config.roles import ROLES
from system.data.prompts import OVERLONG_PROMPTS, PROMPT_FORMATS
from system.data.rows import BAD_ROWS
from system.envs import resolve_env
from system.rewards import MODES as REWARD_MODES
from system.rewards import get_reward
from system.training.lora import lora_problem
from system.training.lr_schedule import LR_SCHEDULES

if TYPE_CHECKING:
    from system.config.grpo import Config, RewardConfig, TrainConfig


# Keys with a fixed set of values. Pluggable things (advantages, rewards, ...) are checked against
# their registries instead (`check_registered`), so a user's `package.module:fn` passes too.
CHOICES = {
    "reward.mode": REWARD_MODES,
    "logging.wandb_mode": ("offline", "online", "disabled"),
    "model.dtype": ("auto", "bfloat16", "float32", "float16"),
    "env.trajectory_reward": ("sum", "last"),
    "data.prompt_format": PROMPT_FORMATS,
    "data.overlong_prompts": OVERLONG_PROMPTS,
    "data.bad_rows": BAD_ROWS,
    "algorithm.off_policy_level": OFF_POLICY_LEVELS,
    "train.lr_schedule": LR_SCHEDULES,
}


def check_choices(cfg: Any, keys) -> None:
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in CHOICES[key]:
            raise ConfigError(f"'{key}' must be one of {list(CHOICES[key])}, got '{value}'")


def check_registered(key: str, name: str, resolve: Callable[[str], Any]) -> None:
    """`name` resolves in its registry (a registered name, or an importable `package.module:attr`);
    the registry's message says what is registered and which name was probably meant."""
    try:
        resolve(name)
    except ValueError as e:
        raise ConfigError(f"'{key}': {e}") from None


def check_rewards(reward: RewardConfig) -> None:
    """The reward section of any run that scores (GRPO's, distillation's): its functions, gate and workers."""
    if not reward.functions:
        raise ConfigError("'reward.functions' must name at least one reward")
    for name in reward.functions:
        check_registered("reward.functions", name, get_reward)
    if reward.mode == "gate" and reward.gate not in reward.functions:
        raise ConfigError(f"'reward.gate'={reward.gate} must be one of reward.functions")
    if reward.num_workers < 0:
        raise ConfigError("'reward.num_workers' must be >= 0 (0: the driver scores, without reward workers)")


def check_lr_schedule(train: TrainConfig) -> None:
    if not 0 <= train.min_lr_ratio <= 1:
        raise ConfigError(f"'train.min_lr_ratio' must be between 0 and 1 (of train.lr), got {train.min_lr_ratio}")


def validate(cfg: Config) -> None:
    """Checks that need more than types: choices, registered names and cross-field constraints."""
    check_choices(cfg, CHOICES)
    check_lr_schedule(cfg.train)
    check_registered("algorithm.advantage", cfg.algorithm.advantage, ADVANTAGES.get)
    check_registered("algorithm.policy_loss", cfg.algorithm.policy_loss, POLICY_OBJECTIVES.get)
    check_registered("algorithm.loss_agg", cfg.algorithm.loss_agg, LOSS_AGGREGATIONS.get)
    check_registered("algorithm.kl_estimator", cfg.algorithm.kl_estimator, KL_ESTIMATORS.get)
    check_registered("algorithm.off_policy", cfg.algorithm.off_policy, OFF_POLICY.get)
    if cfg.algorithm.off_policy_cap < 1:
        raise ConfigError("'algorithm.off_policy_cap' must be >= 1 (C: tis truncates at C, mis keeps [1/C, C])")
    check_rewards(cfg.reward)
    if agent_problem(cfg):
        raise ConfigError(agent_problem(cfg))
    if distill_problem(cfg):
        raise ConfigError(distill_problem(cfg))
    if lora_problem(cfg.train):
        raise ConfigError(lora_problem(cfg.train))
    if cfg.env.cls:
        check_registered("env.cls", cfg.env.cls, resolve_env)
        if cfg.env.max_context_tokens > cfg.rollout.max_model_len:
            raise ConfigError(f"'env.max_context_tokens'={cfg.env.max_context_tokens} exceeds what the engine "
                              f"holds: rollout.max_model_len={cfg.rollout.max_model_len}")
    sequences = cfg.prompts_per_step * cfg.rollout.group_size
    per_minibatch, rest = divmod(sequences, cfg.train.num_minibatches)
    if rest or per_minibatch % cfg.train.num_ranks:
        raise ConfigError(
            f"prompts_per_step*rollout.group_size = {sequences} sequences must split evenly into "
            f"train.num_minibatches={cfg.train.num_minibatches} x train.num_ranks={cfg.train.num_ranks}"
        )
    if cfg.schedule.max_staleness < 0 or cfg.schedule.batch_timeout_s <= 0:
        raise ConfigError("'schedule.max_staleness' must be >= 0 and 'schedule.batch_timeout_s' > 0")
    if cfg.rollout.group_size < 2:
        raise ConfigError("'rollout.group_size' must be >= 2: GRPO normalises within a group")
    if cfg.algorithm.eps_low < 0 or cfg.algorithm.eps_high < 0:
        raise ConfigError("'algorithm.eps_low' and 'algorithm.eps_high' must be >= 0")
    if cfg.algorithm.clip_ratio_c != 0 and cfg.algorithm.clip_ratio_c <= 1:
        raise ConfigError("'algorithm.clip_ratio_c' must be > 1 (the dual-clip bound), or 0 for none")
    if cfg.algorithm.entropy_coef < 0:
        raise ConfigError("'algorithm.entropy_coef' must be >= 0 (a bonus; 0 = none)")
    if set(cfg.placement.node_resources) - set(ROLES):
        raise ConfigError(f"'placement.node_resources' keys are roles: {', '.join(ROLES)}; "
                          f"got {sorted(cfg.placement.node_resources)}")
    if cfg.fault.max_failures_in_a_row < 1 or min(cfg.fault.call_timeout_s, cfg.fault.collective_timeout_s,
                                                   cfg.fault.restart_timeout_s) <= 0:
        raise ConfigError("'fault.max_failures_in_a_row' must be >= 1 and the fault.*_timeout_s > 0")
    if cfg.train.max_tokens_per_microbatch < 0:
        raise ConfigError("'train.max_tokens_per_microbatch' must be >= 0 (0: train.micro_batch_size sequences)")
    if cfg.train.max_skipped_updates_in_a_row < 1:
        raise ConfigError("'train.max_skipped_updates_in_a_row' must be >= 1")
    if cfg.env.cls and cfg.eval.every > 0 and cfg.env.num_eval_seeds < 1:
        raise ConfigError("'env.num_eval_seeds' must be >= 1 when eval.every > 0")
    if any(k > cfg.eval.num_samples or k < 1 for k in cfg.eval.pass_k):
        raise ConfigError(f"'eval.pass_k' values must be between 1 and eval.num_samples={cfg.eval.num_samples}")
    if cfg.data.prompt_format == "base" and cfg.env.cls:
        raise ConfigError("'data.prompt_format' base is for single-turn data: multi-turn envs need a chat template")
