"""What a user's own package holds, loaded by `module:function` path from the config: rewards,
an advantage estimator and an env, none of them registered in this project.

A random tiny model never writes a correct answer, so the end-to-end tests reward something
it does vary in, to get a learning signal through the real stack."""

import random

import torch

from system.rewards import register_reward


def response_length(completions: list[str], **columns) -> list[float]:
    return [min(len(c), 200) / 200 for c in completions]


@register_reward("user_even_length", correctness=True)
def even_length(completions: list[str], **columns) -> list[float]:
    """Accepts about half of any model's completions: a verifier (distillation tests) and a
    user's correctness reward (eval accuracy and reward/accuracy follow it)."""
    return [float(len(c) % 2 == 0) for c in completions]


def leave_one_out(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each sample's baseline is the mean reward of the other samples of its group."""
    r, v = rewards.view(-1, group_size), valid.view(-1, group_size).float()
    others = (v.sum(1, keepdim=True) - v).clamp(min=1)
    baseline = ((r * v).sum(1, keepdim=True) - r * v) / others
    return ((r - baseline) * v).view(-1)


class ParrotGym:
    """A user's env written the gymnasium way: `reset` and `step` only, subclassing nothing of this
    project's (system/envs/protocol.py), trained by `env.cls: tests.user_plugins:ParrotGym`.

    It never ends an episode on a miss: PlayedEnv ends it after `max_turns` replies. A miss earns
    a little for length, as `response_length` does, so a random model's episodes differ in reward."""

    system_prompt = "Repeat the word you are shown."
    reward_range = (0.0, 1.0)

    def __init__(self, max_turns: int = 2, words: str = "apple pear plum fig"):
        self.max_turns, self.words = max_turns, words.split()

    def reset(self, seed: int) -> str:
        self.word = random.Random(seed).choice(self.words)
        return f"Say {self.word}."

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        said = self.word in action
        reward = 1.0 if said else min(len(action), 200) / 400
        return ("Yes." if said else f"No. Say {self.word}."), reward, said, {"success": said}


def kills_its_worker(completions: list[str], **columns) -> list[float]:
    """A reward whose process dies on every call, as a verifier that segfaults would: each restart of
    the reward worker fails the same way, until the run stops (fault.max_failures_in_a_row)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return [0.0 for _ in completions]


class FragileGym(ParrotGym):
    """ParrotGym whose `step` raises on some tasks (every episode of `fragile_every`-th seed), as a user's
    env with a bug would; fragile_every=1: on every one."""

    def __init__(self, max_turns: int = 2, fragile_every: int = 4):
        super().__init__(max_turns)
        self.fragile_every = fragile_every

    def reset(self, seed: int) -> str:
        self.fragile = seed % self.fragile_every == 0
        return super().reset(seed)

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        if self.fragile:
            raise ZeroDivisionError("the env's own bug")
        return super().step(action)
