"""Env workers: a pool of actors, each holding many env instances.

Slow envs (or thousands of them) step in parallel and off the driver. Every call is batched: one
`reset` / `step` per worker per turn, with episode keys deciding which worker holds which env.
The episode loop that drives them is system/rollout/multiturn.py. Each env is played through
`PlayedEnv` (system/envs/protocol.py): the turn limit, and the tool calls, which run here.
"""

from __future__ import annotations

import traceback

import ray

from actors.calls import actor_names, bounded_get
from system.envs import EnvProtocolError, PlayedEnv, make_env


@ray.remote
class EnvWorker:
    def __init__(self, cls: str, params: dict):
        self.cls, self.params = cls, params
        self.envs: dict[int, PlayedEnv] = {}  # episode key -> env, reused across steps

    def reset(self, keys: list[int], seeds: list[int]) -> list[tuple[str, str, list[dict], str]]:
        """(system prompt, first observation, tool schemas, tool format) per key."""
        out = []
        for key, seed in zip(keys, seeds):
            if key not in self.envs:
                self.envs[key] = PlayedEnv(make_env(self.cls, **self.params))
            observation = self.envs[key].reset(seed)
            env = self.envs[key]
            out.append((env.system_prompt, observation, env.tool_schemas, env.tool_parser))
        return out

    def step(self, keys: list[int], actions: list[str]) -> list[tuple]:
        """(observation, reward, done, info) per key; after tool calls the observation is tool messages."""
        return [self._step(self.envs[key], action) for key, action in zip(keys, actions)]

    @staticmethod
    def _step(env: PlayedEnv, action: str) -> tuple:
        """An env whose `step` raises (its own bug, or a reply that breaks it) ends the episode as
        failed, with the traceback in info["env_error"]; the rollout leaves it unscored and counts it.
        An answer outside the protocol (EnvProtocolError) is the env's bug to fix: it stops the run."""
        try:
            return env.step(action)
        except EnvProtocolError:
            raise
        except Exception:  # noqa: BLE001 - any error of user code
            env.done = True
            return "", 0.0, True, {"success": False, "env_error": traceback.format_exc(limit=-4)}


class EnvPool:
    """`len(options)` env workers; the env with key k lives on worker k % len(workers)."""

    def __init__(self, env_cfg, options: list[dict], timeout_s: float = 1800.0):
        if not options:
            raise ValueError("env.num_workers must be >= 1 to train on an environment")
        params = dict(env_cfg.params)
        # A bad name or param fails here with its message, not in an actor.
        self.max_turns = PlayedEnv(make_env(env_cfg.cls, **params)).max_turns
        self.names = actor_names("env", len(options))
        self.workers = [EnvWorker.options(name=name, **opts).remote(env_cfg.cls, params)
                        for name, opts in zip(self.names, options)]
        self.timeout_s = timeout_s  # the longest one batched reset / step may take

    def reset(self, keys: list[int], seeds: list[int]) -> list[tuple[str, str, list[dict], str]]:
        return self._call("reset", keys, seeds)

    def step(self, keys: list[int], actions: list[str]) -> list[tuple]:
        return self._call("step", keys, actions)

    def _call(self, method: str, keys: list[int], values: list) -> list:
        """One call per worker with its share of the keys; answers come back in the order of `keys`."""
        k = len(self.workers)
        shares = [[j for j, key in enumerate(keys) if key % k == w] for w in range(k)]
        calls = [
            (share, (name, getattr(worker, method).remote([keys[j] for j in share],
                                                          [values[j] for j in share])))
            for name, worker, share in zip(self.names, self.workers, shares) if share
        ]
        answers = bounded_get([call for _, call in calls], f"env {method}", self.timeout_s)
        out: list = [None] * len(keys)
        for (share, _), part in zip(calls, answers):
            for j, answer in zip(share, part):
                out[j] = answer
        return out

