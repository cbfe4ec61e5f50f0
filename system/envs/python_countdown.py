"""Countdown with a Python tool (ToRL / SimpleTIR style): the model may run code to try expressions
before it answers, and is rewarded for the answer alone (graded as countdown grades it).

A reply that calls the tool is answered by the tool's output (system/envs/protocol.py runs it in the
sandbox); the first reply with an answer ends the episode, right or wrong. `max_turns` counts every
reply, tool calls included.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass

from system.envs.base import Feedback
from system.envs.countdown import CountdownConfig, CountdownEnv
from system.envs.registry import register_env


@dataclass
class PythonCountdownConfig(CountdownConfig):
    max_turns: int = 3  # replies: up to two tool calls, then the answer


@register_env("python_countdown")
class PythonCountdownEnv(CountdownEnv):
    config_cls = PythonCountdownConfig
    tools = ("python",)
    instructions = CountdownEnv.instructions + (
        " You can check an expression with the python tool before you answer: write "
        '<tool_call>{"name": "python", "arguments": {"code": "print((1 + 2) * 3)"}}</tool_call> '
        "and you will see what it prints. Answer once you are sure: your first answer is final."
    )

    def respond(self, answer: str) -> Feedback:
        return dataclasses.replace(super().respond(answer), done=True)

    def try_again(self) -> str:
        return ""  # there is no next answer

    def sample_action(self, rng: random.Random) -> str:
        """An answer, or a tool call that prints a candidate: check_env plays both paths."""
        expression = self.sample_answer(rng)
        if rng.random() < 0.5:
            return self.wrap(expression)
        call = {"name": "python", "arguments": {"code": f"print({expression})"}}
        return f"<tool_call>{json.dumps(call)}</tool_call>"
