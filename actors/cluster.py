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
from actors.weight_broadcast import WeightBroadcast
from system.data import drop_overlong, load_splits
from system.algorithms.on_policy_distill import check_same_tokenizer
from system.data.sampler import PromptSampler
from system.models import resolve_model
from system.platform import Platform, platform_for
from system.rollout import Rollout
from system.rollout.multiturn import EpisodeRollout
from system.rollout.single_turn import SingleTurnRollout
from system.teachers.program import ProgramTeacher

# Every actor process: no hub access, quiet tokenizers, no per-checkpoint progress bars, and vLLM at
# warnings (its INFO lines repeat at every weight sync); VLLM_LOGGING_LEVEL=INFO brings them back.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}


def joins_cluster(address: str) -> bool:
    """Whether the job joins a running cluster (`ray_address`, or the RAY_ADDRESS that `ray job submit`
    sets) rather than start a Ray runtime of its own."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def start_ray(address: str, logical_cpus: float) -> None:
    """Join the cluster of `ray job submit` / `ray start`, or start a local one sized for the job."""
    if ray.is_initialized():
        return
    env = {"env_vars": WORKER_ENV}
    if joins_cluster(address):
        ray.init(address=address or None, runtime_env=env)
    else:
        ray.init(num_cpus=max(int(-(-logical_cpus // 1)), os.cpu_count() or 1), runtime_env=env)


def cluster_platform() -> Platform:
    """The platform of the cluster's devices, which the driver's own node may not have."""
    return platform_for(ray.cluster_resources().get("GPU", 0) > 0)


def release(actors: list, placement: Placement) -> None:
    """Kill the actors and free their placement groups, so that a job can start another run."""
    for actor in actors:
        ray.kill(actor)
    placement.remove()


@dataclass
class RolloutActors:
    """What sampling and scoring need: the engines, reward workers, env workers and the rollout over them."""

    engines: EnginePool | None  # None for distillation's program teacher
    rewards: RewardPool
    envs: EnvPool | None  # when training on environments (cfg.env.cls)
    # single-turn over the data set, episodes in the envs, or distillation's teacher (ProgramTeacher alike)
    rollout: Rollout
    placement: Placement

    def named(self) -> list[tuple[str, object]]:
        """Every actor, with its name: what recovery watches, and what `shutdown` kills."""
        named = list(zip(self.engines.names, self.engines.engines)) if self.engines else []
        named += list(zip(self.rewards.names, self.rewards.workers))
        return named + (list(zip(self.envs.names, self.envs.workers)) if self.envs else [])

    def shutdown(self) -> None:
        release([actor for _, actor in self.named()], self.placement)


@dataclass
class Actors(RolloutActors):
    """A GRPO run's actors: the rollout side, the trainer ranks, the frozen scorers and the weight
    broadcast from the policy to the engines."""

    policy: ActorGroup
    reference: ActorGroup | None
    weights: WeightBroadcast
    teacher: ActorGroup | None = None  # on-policy distillation's teacher (on_policy_distill.teacher_path)

    def named(self) -> list[tuple[str, object]]:
        groups = [g for g in (self.policy, self.reference, self.teacher) if g is not None]
        return super().named() + [pair for group in groups for pair in group.named()]


def build_rollout(cfg, model_path: str, tokenizer, placement: Placement) -> RolloutActors:
    # Bad data, and rows whose prompt the engine cannot take, are dealt with before any actor starts.
    data = None if cfg.env.cls else drop_overlong(load_splits(cfg.data), tokenizer, cfg)
    schedule = cfg.schedule
    engines = EnginePool(cfg, placement, model_path, schedule.partial_rollout, schedule.batch_timeout_s)
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


def build_teacher(cfg, model_path: str, tokenizer) -> RolloutActors:
    """Distillation's side (a DistillConfig): its teacher, the model at `model_path` sampled by engines
    or a program (no engine), and the reward workers that verify the traces."""
    placement = Placement(cfg.roles(), cfg.placement, cluster_platform())
    rewards = RewardPool(cfg.reward, placement.options("reward"))
    if cfg.teacher:  # a program writes the traces (system/teachers/)
        teacher = ProgramTeacher(cfg.teacher, rewards, tokenizer, cfg)
        return RolloutActors(None, rewards, None, teacher, placement)
    engines = EnginePool(cfg, placement, model_path)
    teacher = SingleTurnRollout(engines, rewards, tokenizer, cfg)
    return RolloutActors(engines, rewards, None, teacher, placement)


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
        reference = ActorGroup(ReferenceModel, "reference", placement.options("reference"), model_path, cfg,
                               pad_id, timeout_s=fault.call_timeout_s)
    teacher = None
    if roles.teacher:
        teacher = ActorGroup(TeacherModel, "teacher", placement.options("teacher"), teacher_path, cfg, pad_id,
                             timeout_s=fault.call_timeout_s)
    policy.init()
    if reference is not None:
        reference.init()
    if teacher is not None:
        teacher.init()
    weights = WeightBroadcast(policy, sampling.engines, roles.engine_devices, platform, fault.call_timeout_s,
                              fault.collective_timeout_s)
    return Actors(sampling.engines, sampling.rewards, sampling.envs, sampling.rollout, placement, policy,
                  reference, weights, teacher)


def teacher_model(cfg, tokenizer) -> str:
    """The teacher's model folder, checked before any actor starts: it must have the student's tokenizer."""
    from transformers import AutoTokenizer

    path = resolve_model(cfg.on_policy_distill.teacher_path)
    check_same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(path), path)
    return path
