"""Joining (or starting) the Ray cluster and creating every role's actors from the config."""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray

from actors.group import ActorGroup
from actors.placement import Placement
from actors.policy import PolicyTrainer
from actors.reference import ReferenceModel
from actors.reward import RewardPool
from actors.rollout import start_engines
from actors.weight_sync import WeightSync

# Every actor process: no hub access, quiet tokenizers, wandb never prompting.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0"}


def start_ray(address: str, logical_cpus: float) -> None:
    """Join the cluster of `ray job submit` / `ray start`, or start a local one sized for the job."""
    if ray.is_initialized():
        return
    env = {"env_vars": WORKER_ENV}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or None, runtime_env=env)
    else:
        ray.init(num_cpus=max(int(-(-logical_cpus // 1)), os.cpu_count() or 1), runtime_env=env)


@dataclass
class Actors:
    engines: list
    policy: ActorGroup
    reference: ActorGroup | None
    rewards: RewardPool
    sync: WeightSync
    placement: Placement
    envs: object = None  # actors.env.EnvPool when training on environments (cfg.env.cls)

    def shutdown(self) -> None:
        """Kill every actor and release the placement groups (a job can start another run)."""
        workers = self.engines + self.policy.actors + self.rewards.workers
        workers += (self.reference.actors if self.reference else []) + (self.envs.workers if self.envs else [])
        for actor in workers:
            ray.kill(actor)
        self.placement.remove()


def build_actors(cfg, model_path: str, pad_id: int) -> Actors:
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    placement = Placement(cfg, use_gpu)
    engines = start_engines(cfg, placement, model_path)
    policy = ActorGroup(PolicyTrainer, "policy", placement.options("policy"), model_path, cfg, pad_id)
    reference = None
    if cfg.algorithm.kl_coef > 0:
        reference = ActorGroup(ReferenceModel, "reference", placement.options("reference"), model_path, cfg, pad_id)
    rewards = RewardPool(list(cfg.reward.functions), cfg.reward.num_workers, placement.options("reward"))
    envs = None
    if cfg.env.cls:
        from actors.env import EnvPool

        envs = EnvPool(cfg.env, placement.options("env"))
    policy.init()
    if reference is not None:
        reference.init()
    sync = WeightSync(policy, engines, cfg.rollout.tensor_parallel_size, use_gpu)
    return Actors(engines, policy, reference, rewards, sync, placement, envs)
