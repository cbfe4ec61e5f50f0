"""The env interface, the registry and check_env (on the shipped envs and on broken ones)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from system.config import load_config
from system.envs import (
    EnvCheckError,
    EnvConfig,
    Feedback,
    TextEnv,
    available_envs,
    check_env,
    make_env,
    register_env,
    resolve_env,
)
from system.envs.examples import guess_number

ROOT = Path(__file__).resolve().parents[1]


class CoinEnv(TextEnv):
    """A correct toy env: guess the side of a seeded coin. The broken envs below each change one thing."""

    instructions = "Guess the coin: heads or tails."
    example_answer = "heads"

    def start(self, rng: random.Random) -> str:
        self.side = rng.choice(["heads", "tails"])
        self.flips = rng.randint(0, 10**6)
        return f"Coin number {self.flips} is flipped."

    def respond(self, answer: str) -> Feedback:
        if answer not in ("heads", "tails"):
            return self.invalid("Answer heads or tails.")
        return Feedback("Right!" if answer == self.side else "Wrong.", float(answer == self.side), done=True)


class UnseededEnv(CoinEnv):
    def start(self, rng: random.Random) -> str:
        return super().start(random.Random())


class SeedIgnoredEnv(CoinEnv):
    def start(self, rng: random.Random) -> str:
        return super().start(random.Random(0))


class EndlessEnv(CoinEnv):
    def step(self, action: str) -> tuple[str, float, bool, dict]:
        return "Again.", 0.0, False, {"success": False, "invalid_action": False}


class FragileEnv(CoinEnv):
    def respond(self, answer: str) -> Feedback:
        return Feedback("Noted.", reward=1.0 / int(answer == "heads"), done=True)


class GenerousEnv(CoinEnv):
    def respond(self, answer: str) -> Feedback:
        return Feedback("Have five.", reward=5.0, done=True)


class NoInfoEnv(CoinEnv):
    def step(self, action: str) -> tuple[str, float, bool, dict]:
        observation, reward, done, _ = super().step(action)
        return observation, reward, done, {}


SHIPPED = available_envs()


@pytest.mark.parametrize("name", SHIPPED)
def test_check_env_passes_on_shipped_envs(name):
    check_env(lambda: make_env(name))


ENV_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("configs/**/grpo_*.yaml")
                     if load_config(str(p), check=None).env.cls)


@pytest.mark.parametrize("name", ENV_CONFIGS)
def test_every_env_config_builds_its_env(name):
    """env.params are checked when the env workers start; a recipe's typo must fail here, not on a GPU."""
    env = load_config(str(ROOT / name)).env
    check_env(lambda: make_env(env.cls, **env.params))


def test_env_configs_are_there():
    assert {"configs/grpo_24point_cpu.yaml", "configs/grpo_frozen_lake_cpu.yaml",
            "configs/gpu/grpo_24point_qwen2.5-0.5b-instruct.yaml"} <= set(ENV_CONFIGS)


def test_shipped_envs_and_the_example_are_registered():
    assert {"twenty_four", "countdown", "frozen_lake", "guess_number"} <= set(SHIPPED)


def test_check_env_takes_a_class_a_factory_or_an_instance():
    check_env(CoinEnv)
    check_env(lambda: CoinEnv(EnvConfig(max_turns=2)))
    check_env(CoinEnv())
    with pytest.raises(EnvCheckError, match="not a TextEnv"):
        check_env(lambda: "an env")


@pytest.mark.parametrize(
    "env_cls, rule",
    [
        (UnseededEnv, "same seed, same episode"),
        (SeedIgnoredEnv, "different seeds, different tasks"),
        (EndlessEnv, "ends within max_turns"),
        (FragileEnv, "no exceptions"),
        (GenerousEnv, "rewards within reward_range"),
        (NoInfoEnv, "types"),
    ],
)
def test_check_env_names_the_broken_rule(env_cls, rule):
    with pytest.raises(EnvCheckError, match=re.escape(f"{env_cls.__name__} breaks the rule '{rule}'")):
        check_env(env_cls)


def test_step_reads_the_last_answer_and_penalises_a_missing_one():
    env = CoinEnv(EnvConfig(max_turns=3, invalid_penalty=-0.5))
    env.reset(1)
    observation, reward, done, info = env.step("<answer>maybe</answer>")
    assert observation == "Answer heads or tails."
    assert (reward, done, info["invalid_action"]) == (-0.5, False, True)
    observation, reward, done, info = env.step("I think <answer>tails</answer> no: <answer> </answer>")
    assert observation == "No move found. End your reply with <answer>your move</answer>."
    assert (reward, done, info["invalid_action"]) == (-0.5, False, True)
    assert env.parse("a <answer> tails </answer> b <answer>heads</answer> c") == "heads"
    assert env.parse("<answer>heads") is None and env.parse("</answer>heads<answer>") is None


def test_max_turns_ends_the_episode_and_step_after_done_raises():
    env = CoinEnv(EnvConfig(max_turns=2))
    env.reset(0)
    info = {"success": False, "invalid_action": True}
    assert env.step("no tags")[2:] == (False, {**info, "turn": 1, "truncated": False})
    assert env.step("no tags")[2:] == (True, {**info, "turn": 2, "truncated": True})
    with pytest.raises(RuntimeError, match="reset"):
        env.step("<answer>heads</answer>")


def test_answer_tag_is_configurable_and_shown_in_the_system_prompt():
    env = CoinEnv(EnvConfig(answer_tag="move"))
    assert "<move>heads</move>" in env.system_prompt
    env.reset(0)
    assert env.step("<answer>heads</answer>")[3]["invalid_action"]
    env.reset(0)
    assert not env.step("<move>heads</move>")[3]["invalid_action"]


def test_make_env_by_name_and_by_module_path():
    env = make_env("twenty_four", max_turns=2)
    assert env.max_turns == 2 and type(env).__name__ == "TwentyFourEnv"
    by_path = make_env("system.envs.examples.guess_number:GuessEnv", high=10)
    assert isinstance(by_path, guess_number.GuessEnv) and by_path.config.high == 10


USER_MODULE = """
from system.envs import Feedback, TextEnv


class Parrot(TextEnv):
    instructions = "Repeat the word you are shown."
    example_answer = "plum"

    def start(self, rng):
        self.word = rng.choice(["apple", "pear", "plum"])
        return f"Say {self.word}."

    def respond(self, answer):
        return Feedback("Yes." if answer == self.word else "No.", float(answer == self.word), done=True)
"""


def test_make_env_imports_a_users_module_outside_the_package(tmp_path, monkeypatch):
    (tmp_path / "my_parrot_env.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env("my_parrot_env:Parrot", max_turns=3)
    assert env.max_turns == 3
    check_env(env)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("twenty_four", {"max_turn": 3}, "unknown param 'max_turn' (did you mean 'max_turns'?)"),
        ("frozen_lake", {"slipery": True}, "unknown param 'slipery' (did you mean 'slippery'?)"),
        ("twenty_four", {"max_turns": "3"}, "param 'max_turns' must be int, got '3'"),
        ("twenty_four", {"max_turns": True}, "param 'max_turns' must be int"),
        ("twenty_four", {"max_turns": 0}, "max_turns must be >= 1"),
        ("twenty_fuor", {}, "unknown env 'twenty_fuor' (did you mean 'twenty_four'?)"),
        ("no_such_module_xyz:Env", {}, "cannot import module 'no_such_module_xyz'"),
        ("system.envs.examples.guess_number:Nope", {}, "has no attribute 'Nope'"),
        ("system.envs.examples.guess_number:GuessConfig", {}, "not a TextEnv subclass"),
    ],
)
def test_make_env_errors_name_the_problem(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_env(name, **params)


def test_float_params_accept_ints():
    assert make_env("countdown", turn_discount=1).config.turn_discount == 1


def test_register_env_refuses_a_taken_name_but_allows_re_registering():
    register_env("guess_number")(guess_number.GuessEnv)
    assert resolve_env("guess_number") is guess_number.GuessEnv
    with pytest.raises(ValueError, match="already taken"):
        register_env("guess_number")(CoinEnv)
    with pytest.raises(TypeError, match="not a TextEnv subclass"):
        register_env("thing")(dict)


def test_the_docs_quote_the_tested_example_verbatim():
    doc = (ROOT / "docs" / "adding-an-environment.md").read_text()
    source = (ROOT / "system" / "envs" / "examples" / "guess_number.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert source in blocks, "docs/adding-an-environment.md must show examples/guess_number.py in full"


def test_guess_number_plays_a_binary_search():
    env = make_env("guess_number")
    env.reset(5)
    low, high = 1, 100
    for _ in range(env.max_turns):
        guess = (low + high) // 2
        observation, reward, done, info = env.step(f"<answer>{guess}</answer>")
        if done:
            break
        low, high = (guess + 1, high) if "higher" in observation else (low, guess - 1)
    assert info["success"] and reward == 1.0 and observation == "Correct!"
