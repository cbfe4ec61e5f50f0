"""Arithmetic with a Python tool (ToRL / SimpleTIR style): compute a value too large to do in one's
head; the model may run code first, and is rewarded for the answer alone (1 right, 0 wrong).

A reply that calls the tool is answered by what the code prints (system/envs/protocol.py runs it in
the sandbox); the first reply without a call is the answer, and ends the episode. Its last number
is read as the answer (a small model does not write answer tags). `max_turns` counts every reply,
tool calls included. By default calls are fenced ```python blocks, which the embedded 135M model
writes unprompted; `tool_parser: hermes` suits a model trained on JSON calls (Qwen, Hermes).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

from system.envs.base import EnvConfig, Feedback, TextEnv
from system.envs.registry import register_env
from system.tools import get_parser

NUMBER = re.compile(r"-?\d[\d,]*")


@dataclass
class PythonArithmeticConfig(EnvConfig):
    max_turns: int = 3  # replies: up to two tool calls, then the answer
    tool_parser: str = "python_block"
    digits: int = 3  # the factors' digits: 3 gives products like 487 * 912 + 35
    invalid_penalty: float = 0.0  # a reply without a number (the model may try again)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.digits <= 9:
            raise ValueError(f"digits must be in 1..9, got {self.digits}")


@register_env("python_arithmetic")
class PythonArithmeticEnv(TextEnv):
    config_cls = PythonArithmeticConfig
    tools = ("python",)

    @property
    def system_prompt(self) -> str:
        check = get_parser(self.tool_parser).example("python", {"code": "print(12 * 34 + 5)"})
        return ("Compute the value you are asked for. You can run Python to compute it: write\n"
                f"{check}\nand you will see what it prints. Then answer with the number, "
                "for example: The answer is 413. Your first answer is final.")

    @property
    def reward_range(self) -> tuple[float, float]:
        return min(0.0, self.config.invalid_penalty), 1.0

    def start(self, rng: random.Random) -> str:
        low, high = 10 ** (self.config.digits - 1), 10 ** self.config.digits - 1
        a, b, c = rng.randint(low, high), rng.randint(low, high), rng.randint(1, 99)
        self.expression, self.value = f"{a} * {b} + {c}", a * b + c
        return f"What is {self.expression}?"

    def parse(self, reply: str) -> Optional[str]:
        """The reply's last number (commas allowed), or None."""
        numbers = NUMBER.findall(reply)
        return numbers[-1].replace(",", "") if numbers else None

    def wrap(self, answer: str) -> str:
        return f"The answer is {answer}."

    def no_move(self) -> str:
        return "No number found. Answer with the number, for example: The answer is 413."

    def respond(self, answer: str) -> Feedback:
        if int(answer) == self.value:
            return Feedback(f"Correct: {self.expression} = {self.value}.", 1.0, done=True, success=True)
        return Feedback(f"Wrong: {self.expression} = {self.value}, not {answer[:40]}.", done=True)

    def sample_action(self, rng: random.Random) -> str:
        """A right or wrong answer, or a call that prints the value: check_env plays every path."""
        choice = rng.random()
        if choice < 0.4:
            return get_parser(self.tool_parser).example("python", {"code": f"print({self.expression})"})
        return self.wrap(str(self.value if choice < 0.7 else rng.randint(0, 10**6)))
