"""SkyRL-gym envs as multi-turn envs: `env.cls: skyrl_gym:<id>` (a skyrl_gym registry id, e.g.
`skyrl_gym:gsm8k_multi_turn`) or `skyrl_gym:package.module:Class` (your own `BaseTextEnv` subclass).

    make_env("skyrl_gym:gsm8k_multi_turn", data="problems.jsonl", max_turns=3)

A SkyRL-gym env is made for one data row: its prompt, and its ground truth as `extras`
(`reward_spec`). Our protocol plays tasks by seed, so the env holds the rows of a data file
(`data`, any file or folder `data.source` reads) and plays the row the seed picks. The seeds keep
training and evaluation apart as they do for every env: evaluation plays odd seeds, which pick
among the first `num_eval` rows; training plays even seeds, which pick among the others.

A row is SkyRL's: `prompt` (a chat, or a text as the user's message) and the other columns passed
as the env's `extras` as they are (`reward_spec`, `extra_info`, ...). A row without `reward_spec`
gets `{"method": "rule", "ground_truth": <its ground_truth column, as text>}`, and every row gets
`max_turns` unless it has its own. The env's observations (chat messages) become one user turn;
a step reward of 1 or more counts as solved (SkyRL-gym's envs give 1 for a correct answer).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Callable, ClassVar, Optional

import skyrl_gym

from system.data.sources import read_rows


class SkyRLGymEnv:
    """One SkyRL-gym env per episode, made from the row the seed picks; `env_class` sets `maker` per id."""

    maker: ClassVar[Callable[..., Any]]  # (env_config=..., extras=...) -> a skyrl_gym Env
    name: ClassVar[str] = ""

    def __init__(self, data: str = "", num_eval: int = 16, max_turns: int = 5, prompt_column: str = "prompt",
                 ground_truth: str = "answer", env_config: Optional[dict] = None) -> None:
        if not data:
            raise ValueError(f"env 'skyrl_gym:{self.name}' plays a data file's rows: set env.params.data")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.rows = load_rows(data)
        if not 0 < num_eval < len(self.rows):
            raise ValueError(f"{data}: {len(self.rows)} rows; num_eval={num_eval} must leave rows both sides")
        self.data, self.num_eval, self.max_turns = data, num_eval, max_turns
        self.prompt_column, self.ground_truth = prompt_column, ground_truth
        self.env_config = dict(env_config or {})
        self.system_prompt, self.env = "", None
        try:  # a row the env cannot take fails at start-up
            self.reset(0)
        except Exception as e:  # noqa: BLE001 - the env's own error, whatever it is, named
            problem = f"{type(e).__name__}: {e}"
            raise ValueError(f"env 'skyrl_gym:{self.name}' cannot play {data}: {problem}") from e

    def row(self, seed: int) -> dict:
        """Odd seeds (evaluation) pick among the first num_eval rows, even ones (training) among the rest."""
        held_out, train = self.rows[: self.num_eval], self.rows[self.num_eval:]
        return held_out[seed // 2 % len(held_out)] if seed % 2 else train[seed // 2 % len(train)]

    def extras(self, row: dict) -> dict:
        """The row's columns but its prompt, as SkyRL passes them, with a reward_spec and max_turns."""
        extras = {key: value for key, value in row.items() if key != self.prompt_column}
        if "reward_spec" not in extras and self.ground_truth in row:
            extras["reward_spec"] = {"method": "rule", "ground_truth": str(row[self.ground_truth])}
        extras.setdefault("max_turns", self.max_turns)
        return extras

    def reset(self, seed: int) -> str:
        row = self.row(seed)
        if self.prompt_column not in row:
            raise ValueError(f"{self.data}: a row has no '{self.prompt_column}' column (prompt_column); "
                             f"its columns: {sorted(row)}")
        prompt = row[self.prompt_column]
        chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        self.env = type(self).maker(env_config=self.env_config, extras=self.extras(row))
        chat, _ = self.env.init(chat)
        self.system_prompt = "\n".join(m["content"] for m in chat if m["role"] == "system")
        return "\n".join(m["content"] for m in chat if m["role"] != "system")

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        out = self.env.step(action)
        observation = "\n".join(str(m.get("content", "")) for m in out.get("observations") or [])
        reward = float(out["reward"])
        return observation, reward, bool(out["done"]), {"success": reward >= 1.0}


@lru_cache(maxsize=8)
def load_rows(data: str) -> list[dict]:
    """A data file's rows, read once per process (every env of a worker shares them)."""
    rows = read_rows(data)
    if not rows:
        raise ValueError(f"{data}: no rows")
    return rows


@lru_cache(maxsize=None)
def env_class(name: str) -> type[SkyRLGymEnv]:
    """The env class for a skyrl_gym id, or for a `package.module:Class` BaseTextEnv subclass."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"env 'skyrl_gym:{name}': cannot import {name}: {e}") from e
        if not (isinstance(cls, type) and issubclass(cls, skyrl_gym.Env)):
            raise ValueError(f"env 'skyrl_gym:{name}' is not a skyrl_gym Env subclass (BaseTextEnv)")
        maker = cls
    elif name in skyrl_gym.registry:
        maker = lambda **kwargs: skyrl_gym.make(name, **kwargs)  # noqa: E731
    else:
        raise ValueError(f"env 'skyrl_gym:{name}': skyrl_gym has no env '{name}'; it has "
                         f"{sorted(skyrl_gym.registry)}, or give a 'package.module:Class' path")
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return type(f"SkyRLGym_{safe}", (SkyRLGymEnv,), {"maker": staticmethod(maker), "name": name,
                                                     "__module__": __name__})
