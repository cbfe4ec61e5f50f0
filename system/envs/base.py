"""The text-environment interface that a multi-turn rollout drives.

Like gymnasium's `Env`, but actions and observations are text: `step` receives the model's raw
reply, pulls the move out of the answer tags and returns the next user message. The parsing and
the turn limit live here, so every env treats an unreadable reply the same way (a penalty and a
hint, never an exception that would kill a rollout) and no env can run past `max_turns`.

A new env subclasses `TextEnv` and writes two methods: `start` (draw a task from a seeded rng and
describe it) and `respond` (apply one parsed move and say what happened). Or it overrides `reset`
and `step` themselves, gymnasium's way; or it subclasses nothing of ours at all: any object with
`reset` and `step` is an env (the protocol: system/envs/protocol.py). This class is a convenience.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from system.tools import get_parser


@dataclass
class EnvConfig:
    """Parameters every env has. Subclass it to add your own; every field needs a default."""

    max_turns: int = 1  # replies the model gets; the episode ends after this many
    answer_tag: str = "answer"  # the move is read from the last <answer>...</answer> of a reply
    invalid_penalty: float = -0.1  # reward for a reply with no readable or no legal move
    tool_parser: str = "hermes"  # how an env with tools reads calls out of a reply (system/tools/parsers.py)

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if not self.answer_tag.isidentifier():
            raise ValueError(f"answer_tag must be a plain tag name like 'answer', got {self.answer_tag!r}")
        get_parser(self.tool_parser)  # an unknown name raises, naming the registered ones


@dataclass(frozen=True)
class Feedback:
    """What an env says back to one move."""

    observation: str  # the next user message
    reward: float = 0.0
    done: bool = False
    success: bool = False  # the task is solved
    invalid: bool = False  # the move could not be read or is not allowed


def shorten(text: str, limit: int = 60) -> str:
    """A model's text, cut to quote back in feedback without echoing a huge reply."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TextEnv:
    """One episode at a time: `reset(seed)`, then `step(reply)` until done."""

    config_cls: ClassVar[type[EnvConfig]] = EnvConfig
    instructions: ClassVar[str] = ""  # the rules of the game, opening the system prompt
    example_answer: ClassVar[str] = ""  # one well-formed move, shown in the system prompt
    tools: ClassVar[tuple] = ()  # tools the model may call: registered names or Tool objects (system/tools)

    def __init__(self, config: EnvConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.turn = 0
        self.done = True  # until the first reset

    @property
    def max_turns(self) -> int:
        return self.config.max_turns

    @property
    def tool_parser(self) -> str:
        return self.config.tool_parser

    @property
    def reward_range(self) -> tuple[float, float]:
        """Bounds of one step's reward; override if yours differ. check_env holds envs to them."""
        return (min(0.0, self.config.invalid_penalty), 1.0)

    @property
    def tags(self) -> tuple[str, str]:
        return f"<{self.config.answer_tag}>", f"</{self.config.answer_tag}>"

    @property
    def system_prompt(self) -> str:
        """What the model is told once, before the first observation."""
        return (
            f"{self.instructions}\nYou may think first, then end each reply with your move inside "
            f"{self.tags[0]} {self.tags[1]} tags, for example: {self.wrap(self.example_answer)}"
        )

    @property
    def turns_left(self) -> int:
        return self.max_turns - self.turn

    def reset(self, seed: int) -> str:
        """Start an episode; the same seed gives the same task. Returns the first user message."""
        self.turn, self.done = 0, False
        return self.start(random.Random(seed))

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        """Apply the model's raw reply: (observation, reward, done, info)."""
        if self.done:
            raise RuntimeError(f"{type(self).__name__}.step() on a finished episode: call reset(seed) first")
        self.turn += 1
        answer = self.parse(action)
        if answer is None:
            feedback = self.invalid(self.no_move())
        else:
            feedback = self.respond(answer)
        truncated = not feedback.done and self.turns_left <= 0
        self.done = feedback.done or truncated
        info = {
            "success": feedback.success,
            "invalid_action": feedback.invalid,
            "turn": self.turn,
            "truncated": truncated,
        }
        return feedback.observation, float(feedback.reward), self.done, info

    def parse(self, reply: str) -> str | None:
        """The stripped text of the last answer tag pair in `reply`; None if there is none or it is empty."""
        opening, closing = self.tags
        begin = reply.rfind(opening)
        end = reply.find(closing, begin) if begin >= 0 else -1
        if end < 0:
            return None
        return reply[begin + len(opening) : end].strip() or None

    def no_move(self) -> str:
        """What a reply without a readable move is told."""
        return f"No move found. End your reply with {self.wrap('your move')}."

    def wrap(self, answer: str) -> str:
        """`answer` as the model should write it: inside the answer tags."""
        return f"{self.tags[0]}{answer}{self.tags[1]}"

    def invalid(self, message: str) -> Feedback:
        """The outcome of a move that cannot be read or is against the rules."""
        return Feedback(message, reward=self.config.invalid_penalty, invalid=True)

    def sample_answer(self, rng: random.Random) -> str:
        """A plausible move for the current state; check_env plays these. Override to explore more."""
        return self.example_answer

    def sample_action(self, rng: random.Random) -> str:
        """A plausible whole reply (the protocol's hook for check_env): a sampled move in the tags."""
        return self.wrap(self.sample_answer(rng))

    def start(self, rng: random.Random) -> str:
        """Draw a new task from `rng` (and only from it: that makes seeding work); describe it."""
        raise NotImplementedError(f"{type(self).__name__}: write start and respond, or reset and step")

    def respond(self, answer: str) -> Feedback:
        """Apply one move (the text inside the answer tags) and say what happened."""
        raise NotImplementedError(f"{type(self).__name__}: write start and respond, or reset and step")
