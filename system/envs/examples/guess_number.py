"""Guess the number: the env thinks of a number, the model guesses, the env says higher or lower.

A complete environment in one file: the worked example of docs/adding-an-environment.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from system.envs import EnvConfig, Feedback, TextEnv, register_env


@dataclass
class GuessConfig(EnvConfig):
    max_turns: int = 7  # enough for a binary search over 1..100
    low: int = 1
    high: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()  # keeps the checks of the common fields
        if self.low >= self.high:
            raise ValueError(f"low must be below high, got {self.low} and {self.high}")


@register_env("guess_number")
class GuessEnv(TextEnv):
    config_cls = GuessConfig
    instructions = (
        "I am thinking of a whole number. Guess it: after each guess I tell you whether "
        "my number is higher or lower."
    )
    example_answer = "50"

    def start(self, rng: random.Random) -> str:
        self.secret = rng.randint(self.config.low, self.config.high)
        low, high = self.config.low, self.config.high
        return f"My number is between {low} and {high}. You have {self.max_turns} guesses."

    def respond(self, answer: str) -> Feedback:
        try:
            guess = int(answer)
        except ValueError:
            return self.invalid(f"'{answer[:30]}' is not a whole number.")
        if guess == self.secret:
            return Feedback("Correct!", reward=1.0, done=True, success=True)
        hint = "higher" if self.secret > guess else "lower"
        return Feedback(f"My number is {hint} than {guess}.")

    def sample_answer(self, rng: random.Random) -> str:
        return str(rng.randint(self.config.low, self.config.high))
