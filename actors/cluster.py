"""Joining (or starting) the Ray cluster and creating every role's actors from the config."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import ray

from actors.env import EnvPool
from actors.group import ActorGroup
from actors.openai_server import agent_rollout
from actors.placement import Placement
from actors.policy import PolicyTrainer
from actors.reference import ReferenceModel, TeacherModel
from actors.reward import RewardPool
from actors.vllm_engine import EnginePool
from actors.weight_sync import WeightSync
from system.data import drop_overlong, load_splits
from system.algorithms.on_policy_distill import check_same_tokenizer
from system.data.sampler import PromptSampler
from system.models import resolve_model
from system.platform import Platform, platform_for
from system.rollout import Rollout
from system.rollout.multiturn import EpisodeRollout
from system.rollout.single_turn import SingleTurnRollout

# Every actor process: no hub access, quiet tokenizers, no per-checkpoint progress bars, and vLLM at
# warnings (its INFO lines repeat at every weight sync); VLLM_LOGGING_LEVEL=INFO brings them back.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}


def start_ray(address: str, logical_cpus: float) -> None:
    """Join the cluster of `ray job submit` / `ray start`, or start a local one sized for the job."""
    if ray.is_initialized():
        return
    env = {"env_vars": WORKER_ENV}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or None, runtime_env=env)
    else:
        ray.init(num_cpus=max(int(-(-logical_cpus // 1)), os.cpu_count() or 1), runtime_env=env)


def cluster_platform() -> Platform:
    """The platform of the cluster's devices, which the driver's own node may not have."""
    return platform_for(ray.cluster_resources().get("GPU", 0) > 0)


@dataclass
class Actors:
    engines: EnginePool
    policy: ActorGroup
    reference: ActorGroup | None
    rewards: RewardPool
    envs: EnvPool | None  # when training on environments (cfg.env.cls)
    rollout: Rollout  # single-turn over the data set, or episodes in the envs
    sync: WeightSync
    placement: Placement
    teacher: ActorGroup | None = None  # on-policy distillation's teacher (on_policy_distill.teacher_path)

    def shutdown(self) -> None:
        workers = self.engines.engines + self.policy.actors + self.rewards.workers
        workers += (self.reference.actors if self.reference else []) + (self.envs.workers if self.envs else [])
        workers += self.teacher.actors if self.teacher else []
        release(workers, self.placement)


def release(actors: list, placement: Placement) -> None:
    """Kill the actors and free their placement groups, so that a job can start another run."""
    for actor in actors:
        ray.kill(actor)
    placement.remove()


@dataclass
class RolloutActors:
    """What sampling and scoring need: the engines, reward workers, env workers and the rollout over them."""

    engines: EnginePool
    rewards: RewardPool
    envs: EnvPool | None  # when training on environments (cfg.env.cls)
    rollout: Rollout  # single-turn over the data set, or episodes in the envs
    placement: Placement

    def shutdown(self) -> None:
        release(self.engines.engines + self.rewards.workers + (self.envs.workers if self.envs else []), self.placement)


def build_rollout(cfg, model_path: str, tokenizer, placement: Placement) -> RolloutActors:
    # Bad data, and rows whose prompt the engine cannot take, are dealt with before any actor starts.
    data = None if cfg.env.cls else drop_overlong(load_splits(cfg.data), tokenizer, cfg)
    engines = EnginePool(cfg, placement, model_path, cfg.schedule.partial_rollout, cfg.schedule.batch_timeout_s)
    timeout = cfg.fault.call_timeout_s
    rewards = RewardPool(cfg.reward, placement.options("reward"), timeout)
    if cfg.env.cls:
        envs = EnvPool(cfg.env, placement.options("env"), timeout)
        rollout = EpisodeRollout(engines, envs, tokenizer, cfg)
    else:
        envs, (train_rows, eval_rows) = None, data
        sampler = PromptSampler(train_rows, cfg.prompts_per_step, cfg.seed)
        rollout = (agent_rollout(engines, rewards, tokenizer, cfg, sampler, eval_rows) if cfg.agent.fn
                   else SingleTurnRollout(engines, rewards, tokenizer, cfg, sampler, eval_rows))
    return RolloutActors(engines, rewards, envs, rollout, placement)


def build_evaluation(cfg, model_path: str, tokenizer) -> RolloutActors:
    """The rollout side of a GRPO config alone (no trainer): to evaluate a model."""
    roles = replace(cfg.roles(), policy=0, reference=0)
    return build_rollout(cfg, model_path, tokenizer, Placement(roles, cfg.placement, cluster_platform()))


def build_actors(cfg, model_path: str, tokenizer) -> Actors:
    platform = cluster_platform()
    roles, fault = cfg.roles(), cfg.fault
    teacher_path = teacher_model(cfg, tokenizer) if roles.teacher else ""
    placement = Placement(roles, cfg.placement, platform, max_restarts=-1 if fault.restart else 0)
    sampling = build_rollout(cfg, model_path, tokenizer, placement)
    pad_id = tokenizer.pad_token_id
    policy = ActorGroup(PolicyTrainer, "policy", placement.options("policy"), model_path, cfg, pad_id,
                        timeout_s=fault.call_timeout_s)
    reference = None
    if roles.reference:
        reference = ActorGroup(ReferenceModel, "reference", placement.options("reference"), model_path, cfg, pad_id,
                               timeout_s=fault.call_timeout_s)
    teacher = None
    if roles.teacher:
        teacher = ActorGroup(TeacherModel, "teacher", placement.options("teacher"), teacher_path, cfg, pad_id,
                             timeout_s=fault.call_timeout_s)
    policy.init()
    if reference is not None:
        reference.init()
    if teacher is not None:
        teacher.init()
    sync = WeightSync(policy, sampling.engines, roles.engine_devices, platform, fault.call_timeout_s,
                      fault.collective_timeout_s)
    return Actors(sampling.engines, policy, reference, sampling.rewards, sampling.envs, sampling.rollout, sync, placement,
                  teacher)


def teacher_model(cfg, tokenizer) -> str:
    """The teacher's model folder, checked before any actor starts: it must have the student's tokenizer."""
    from transformers import AutoTokenizer

    path = resolve_model(cfg.on_policy_distill.teacher_path)
    check_same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(path), path)
    return path
