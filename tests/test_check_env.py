"""check_env on hidden-information envs: a secret drawn from the seed behind the same first observation
for every seed. Without plausible moves check_env cannot tell such an env from one that ignores its
seed, so it warns instead of failing; given moves (or a TextEnv whose `start` draws nothing from its
rng) it still fails a seed that is ignored."""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import dataclass

import pytest

from system.envs import EnvCheckError, EnvConfig, Feedback, TextEnv, check_env
from system.envs.checker import EnvCheckWarning

RULE = "different seeds, different tasks"


def hint(guess: int, secret: int) -> str:
    return "Correct!" if guess == secret else f"My number is {'higher' if secret > guess else 'lower'}."


class SecretGym:
    """Written from the docs as a plain class: the number is drawn from the seed, the first message is
    the same for every seed, no `sample_action` (optional). A guess is told higher or lower."""

    max_turns = 4
    reward_range = (0.0, 1.0)

    def reset(self, seed: int) -> str:
        self.secret = random.Random(seed).randint(1, 20)
        return "I am thinking of a number from 1 to 20. Guess it."

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        guess = action.strip()
        if not guess.isdigit():
            return "Say a whole number.", 0.0, False, {"invalid_action": True}
        return hint(int(guess), self.secret), float(int(guess) == self.secret), int(guess) == self.secret, {}


@dataclass
class SecretConfig(EnvConfig):
    max_turns: int = 4


class SecretTextEnv(TextEnv):
    """The same game as a TextEnv subclass, with `start` and `respond` and no `sample_answer`."""

    config_cls = SecretConfig
    instructions = "I am thinking of a number from 1 to 20. Guess it."
    example_answer = "a number"

    def start(self, rng: random.Random) -> str:
        self.secret = rng.randint(1, 20)
        return "Guess my number."

    def respond(self, answer: str) -> Feedback:
        if not answer.isdigit():
            return self.invalid("Say a whole number.")
        won = int(answer) == self.secret
        return Feedback(hint(int(answer), self.secret), float(won), done=won, success=won)


class SecretGymWithMoves(SecretGym):
    def sample_action(self, rng: random.Random) -> str:
        return str(rng.randint(1, 20))


class SeedIgnoredGymWithMoves(SecretGymWithMoves):
    def reset(self, seed: int) -> str:
        return super().reset(0)


class SecretTextEnvWithMoves(SecretTextEnv):
    def sample_answer(self, rng: random.Random) -> str:
        return str(rng.randint(1, 20))


class SeedIgnoredTextEnvWithMoves(SecretTextEnvWithMoves):
    def start(self, rng: random.Random) -> str:
        return super().start(random.Random(0))


@pytest.mark.parametrize("env_cls", [SecretGym, SecretTextEnv])
def test_a_hidden_secret_without_moves_is_warned_about_not_failed(env_cls):
    with pytest.warns(EnvCheckWarning, match=re.escape(f"Give {env_cls.__name__} a `sample_action(rng)`")):
        check_env(env_cls)


@pytest.mark.parametrize("env_cls", [SecretGymWithMoves, SecretTextEnvWithMoves])
def test_a_hidden_secret_with_moves_passes_without_a_warning(env_cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvCheckWarning)
        check_env(env_cls)


@pytest.mark.parametrize("env_cls", [SeedIgnoredGymWithMoves, SeedIgnoredTextEnvWithMoves])
def test_a_seed_ignored_with_moves_still_fails(env_cls):
    with pytest.raises(EnvCheckError, match=re.escape(f"{env_cls.__name__} breaks the rule '{RULE}'")):
        check_env(env_cls)


def test_a_text_env_whose_start_ignores_its_rng_fails_even_without_moves():
    class SeedIgnoredTextEnv(SecretTextEnv):
        def start(self, rng: random.Random) -> str:
            return super().start(random.Random(0))

    with pytest.raises(EnvCheckError, match=re.escape(f"SeedIgnoredTextEnv breaks the rule '{RULE}'")):
        check_env(SeedIgnoredTextEnv)
