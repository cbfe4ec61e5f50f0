"""The env protocol, the registry and check_env (on the shipped envs, on broken ones, and on envs
that subclass nothing of ours)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from system.config.grpo import load_config
from system.envs import (
    EnvCheckError,
    EnvConfig,
    EnvProtocolError,
    Feedback,
    PlayedEnv,
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


class NaNEnv(CoinEnv):
    def respond(self, answer: str) -> Feedback:
        return Feedback("Hm.", reward=float("nan"), done=True)


class FragileEnv(CoinEnv):
    def respond(self, answer: str) -> Feedback:
        return Feedback("Noted.", reward=1.0 / int(answer == "heads"), done=True)


class GenerousEnv(CoinEnv):
    def respond(self, answer: str) -> Feedback:
        return Feedback("Have five.", reward=5.0, done=True)


class StringyInfoEnv(CoinEnv):
    def step(self, action: str) -> tuple[str, float, bool, dict]:
        observation, reward, done, info = super().step(action)
        return observation, reward, done, {**info, "success": "no"}


class NumpyDoneEnv(CoinEnv):
    def step(self, action: str) -> tuple:
        observation, reward, done, info = super().step(action)
        return observation, reward, int(done), info


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
    with pytest.raises(EnvCheckError, match="not an env"):
        check_env(lambda: "an env")


@pytest.mark.parametrize(
    "env_cls, rule",
    [
        (UnseededEnv, "same seed, same episode"),
        (SeedIgnoredEnv, "different seeds, different tasks"),
        (FragileEnv, "no exceptions"),
        (GenerousEnv, "rewards within reward_range"),
        (NaNEnv, "types"),
        (StringyInfoEnv, "types"),
        (NumpyDoneEnv, "types"),
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
        ("system.envs.examples.guess_number:GuessConfig", {}, "not an env class (with reset, step)"),
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
    with pytest.raises(TypeError, match="not an env class"):
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


# The protocol: any object with reset and step is an env; PlayedEnv plays it as training does.


class Bare:
    """The least an env can be: reset and step, no attributes, info without success."""

    def reset(self, seed: int) -> str:
        self.seed = seed
        return f"Task {seed}."

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        return "Go on.", float(len(action) % 3), False, {}


class GymStyleTextEnv(TextEnv):
    """The documented base, with gymnasium's two methods overridden instead of start/respond."""

    instructions = "Say a number."

    def reset(self, seed: int) -> str:
        self.target = random.Random(seed).randint(1, 10**6)
        return f"Say {self.target}."

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        won = str(self.target) in action
        return ("Yes." if won else "No."), float(won), won, {"success": won}


def test_an_env_that_subclasses_nothing_is_checked_made_and_played():
    from tests.user_plugins import ParrotGym

    check_env(ParrotGym)
    check_env(lambda: make_env("tests.user_plugins:ParrotGym", max_turns=3, words="kiwi lime"))
    env = make_env("tests.user_plugins:ParrotGym", max_turns=3)  # constructor params, from env.params
    assert isinstance(env, ParrotGym) and env.max_turns == 3
    played = PlayedEnv(env)
    first = played.reset(4)
    word = first.split()[1].rstrip(".")
    assert played.system_prompt == ParrotGym.system_prompt and played.tool_schemas == []
    filled = {"success": False, "invalid_action": False, "tool_calls": 0, "tool_errors": 0, "turn": 1,
              "truncated": False}
    assert played.step("hello")[1:] == (5 / 400, False, filled)
    assert played.step(f"I say {word}")[1:3] == (1.0, True)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"max_turn": 3}, "unknown param 'max_turn' (did you mean 'max_turns'?)"),
        ({"max_turns": "3"}, "param 'max_turns' must be int, got '3'"),
        ({"words": 5}, "param 'words' must be str"),
    ],
)
def test_constructor_params_of_a_plain_class_are_checked(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_env("tests.user_plugins:ParrotGym", **params)


def test_played_env_fills_in_defaults_and_ends_by_max_turns():
    played = PlayedEnv(Bare())
    assert (played.system_prompt, played.max_turns) == ("", 10)
    assert played.reward_range == (float("-inf"), float("inf"))
    played.reset(1)
    infos = [played.step("ab")[3] for _ in range(10)]
    assert [i["truncated"] for i in infos] == [False] * 9 + [True] and played.done
    assert all(i["success"] is False and i["invalid_action"] is False for i in infos)  # absent: not solved
    with pytest.raises(RuntimeError, match="reset"):
        played.step("ab")
    check_env(Bare)


def test_an_endless_text_env_is_ended_by_the_turn_limit():
    played = PlayedEnv(EndlessEnv(EnvConfig(max_turns=3)))
    played.reset(0)
    assert [played.step("x")[2] for _ in range(3)] == [False, False, True]
    check_env(EndlessEnv)  # "ends within max_turns" is kept for every env, not a rule it can break


def test_a_text_env_may_override_reset_and_step_instead():
    check_env(GymStyleTextEnv)
    env = make_env("tests.test_envs:GymStyleTextEnv", max_turns=2)
    assert env.max_turns == 2 and "Say a number." in env.system_prompt
    with pytest.raises(NotImplementedError, match="write start and respond, or reset and step"):
        TextEnv().reset(0)


@pytest.mark.parametrize(
    "env, message",
    [
        (type("NoText", (Bare,), {"reset": lambda self, seed: None}), "reset(0) must return a non-empty str"),
        (type("Turns", (Bare,), {"max_turns": 0}), "max_turns must be an int >= 1"),
        (type("Range", (Bare,), {"reward_range": (1, 0)}), "reward_range must be a (low, high) tuple"),
        (type("Triple", (Bare,), {"step": lambda self, a: ("x", 0.0, True)}), "must return (obs"),
        (type("Inf", (Bare,), {"step": lambda self, a: ("x", float("inf"), True, {})}), "not a finite"),
    ],
)
def test_played_env_names_an_answer_outside_the_protocol(env, message):
    played = PlayedEnv(env())
    with pytest.raises(EnvProtocolError, match=re.escape(message)):
        played.reset(0)
        played.step("a")


def test_the_config_accepts_a_plain_env_class_and_refuses_what_is_not_one():
    from system.config.grpo import ConfigError

    recipe = str(ROOT / "configs" / "grpo_24point_cpu.yaml")
    user_env = "tests.user_plugins:ParrotGym"
    assert load_config(recipe, [f"env.cls={user_env}"]).env.cls == user_env
    with pytest.raises(ConfigError, match=re.escape("not an env class (with reset, step)")):
        load_config(recipe, ["env.cls=tests.user_plugins:response_length"])
    with pytest.raises(ConfigError, match="not an env class"):
        load_config(recipe, ["env.cls=system.envs.examples.guess_number:GuessConfig"])


def test_the_agent_docs_quote_the_trained_gym_env_verbatim():
    import inspect

    from tests.user_plugins import ParrotGym

    doc = (ROOT / "docs" / "training-an-agent.md").read_text()
    assert inspect.getsource(ParrotGym) in re.findall(r"```python\n(.*?)```", doc, re.S)
