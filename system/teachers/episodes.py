"""A program teacher that plays the multi-turn env itself: cold-start chats with a failed first try,
the env's own feedback and a second try that solves the task.

Traces of first turns only never show the student what a retry looks like: after a wrong answer
and the env's reply it has nothing to imitate. Here the teacher's replies go through the env
(rebuilt from the row: `env_seed`, `env_params`, as the `twenty_four_env` generator writes them),
so every observation in the chat is the env's real text for that very episode, and the env must
say the last reply solved the task (the distill verifier then checks it again, like any trace).
A failed reply carries `"weight": 0`: SFT puts no loss on it (system/training/sft.py), so the
student learns the recovery, not the mistake.
"""

from __future__ import annotations

import random
from typing import Optional

from system.envs.registry import make_env
from system.teachers.twenty_four import slipped_trace, twenty_four_trace

# The 24 trace's shape for a 135M student (measured in docs/r1-recipe.md): at most one failed try
# per level, small sub-goals first, so the lines stay short arithmetic; a three-number try fails
# ("... No.") before the solution in about half of the traces (inner_noise), or the student learns
# to say "Yes." after any tries.
TRACE = {"max_failures": 1, "noise": 0.5, "size_weight": 2.0, "inner_noise": 2.5}


def play(env_name: str, row: dict, replies: list[str]) -> Optional[list[dict]]:
    """The chat after the row's prompt when the env plays `replies` in turn: each reply, then the
    env's observation; every reply but the last is a failure (weight 0), the last must solve the
    task. None when the env does not agree (a try that solved early or a last one that failed)."""
    env = make_env(env_name, **row.get("env_params", {}))
    observation = env.reset(row["env_seed"])
    if observation != row["prompt"][-1]["content"]:
        raise ValueError(f"row with env_seed {row['env_seed']} is not this env's task: {observation!r}")
    chat: list[dict] = []
    for turn, reply in enumerate(replies):
        observation, _, done, info = env.step(reply)
        last = turn == len(replies) - 1
        if info["success"] != last or (done and not last):
            return None
        chat.append({"role": "assistant", "content": reply} if last else
                    {"role": "assistant", "content": reply, "weight": 0})
        if not last:
            chat.append({"role": "user", "content": observation})
    return chat


def twenty_four_episode(row: dict, rng: random.Random, retry_share: float = 0.5) -> Optional[list[dict]]:
    """One 24-game episode for a row of `twenty_four_env`: the solving trace, after a failed try
    (a slipped trace, teachers/twenty_four.py) in `retry_share` of them. The solving trace after a
    failed try first rules out the split that try took ("24 / 2 = 12 from 3, 5, 2: no."): a greedy
    student that only redid its search would write the same wrong reply again."""
    numbers, target = list(row["nums"]), int(row.get("target", 24))
    if rng.random() >= retry_share:
        solution = twenty_four_trace(numbers, target, rng, **TRACE)
        return play("twenty_four", row, [solution]) if solution else None
    failed, tried = slipped_trace(numbers, target, rng)
    solution = twenty_four_trace(numbers, target, rng, tried=tried, **TRACE)
    return play("twenty_four", row, [failed, solution]) if solution else None
