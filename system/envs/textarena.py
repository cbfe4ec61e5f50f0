"""TextArena's single-player games as multi-turn envs, by id: `env.cls: textarena:<id>`.

    make_env("textarena:GuessTheNumber-v0", max_turns=8)
    make_env("textarena:TowerOfHanoi-v0", game_params={"num_disks": 2})

TextArena (textarena on PyPI) ships dozens of text games with their own rules, boards and rewards.
This adapter plays one by our env protocol (system/envs/protocol.py) and bridges what differs:

- seeding: a game's `reset(seed)` seeds the process-wide `random`, and its moves draw from it,
  so two games in one env worker would change each other's episodes. Each env here keeps its own
  generator state and swaps it in around every call into the library: the same seed gives the
  same game whatever else the process runs.
- moves: the game reads a move in square brackets, `[5]`; it gets the reply's last `[...]`, or the
  whole reply if there is none (the game then calls it invalid, in its own words).
- invalid moves: TextArena lets one invalid move pass with a warning and ends the game on a second
  one in a row. Both count as `info["invalid_action"]` and cost `invalid_penalty`.
- reward: the move that ends the game adds the game's own reward from `close()`: 1 for a win (a
  success), else in most games the share of the task done, in [0, 1], even for a game ended by
  invalid moves (hence the penalty on them); other moves 0.
"""

from __future__ import annotations

import difflib
import random
import re
from contextlib import contextmanager
from functools import lru_cache
from typing import ClassVar, Iterator, Optional

import textarena
from textarena.envs.registration import ENV_REGISTRY

MOVE = re.compile(r"\[[^\[\]]*\]")  # a move in brackets, without brackets inside it
SYSTEM_PROMPT = "You are playing a text game. Write your move inside square brackets, as the rules show."
# Moves for check_env to play when a game's rules show none: its common shapes (their numbers redrawn).
FALLBACK_MOVES = ("[1]", "[1 2]", "[1 2 3]", "[up]", "[A C]")


class TextArenaEnv:
    """One TextArena game, one player; `game_id` is set per id by `env_class`."""

    game_id: ClassVar[str] = ""

    def __init__(self, max_turns: int = 10, invalid_penalty: float = -0.1, system_prompt: str = SYSTEM_PROMPT,
                 game_params: Optional[dict] = None) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns, self.invalid_penalty, self.system_prompt = max_turns, invalid_penalty, system_prompt
        self.game_params = dict(game_params or {})
        self.random_state = random.Random(0).getstate()  # this env's own, swapped in around library calls
        self.game, self.examples = None, FALLBACK_MOVES
        try:  # a game that one player cannot play, or that lacks a resource, fails at start-up
            self.reset(0)
        except Exception as e:  # noqa: BLE001 - the library's own error, whatever it is, named
            problem = f"{type(e).__name__}: {e}"
            raise ValueError(f"textarena:{self.game_id} cannot be played here: {problem}") from e

    @property
    def reward_range(self) -> tuple[float, float]:
        return (-1.0 + min(0.0, self.invalid_penalty), 1.0)  # TextArena's outcomes lie in [-1, 1]

    @contextmanager
    def own_random(self) -> Iterator[None]:
        """The process-wide `random` holds this env's state meanwhile; the caller's comes back after."""
        outside = random.getstate()
        random.setstate(self.random_state)
        try:
            yield
        finally:
            self.random_state = random.getstate()
            random.setstate(outside)

    def reset(self, seed: int) -> str:
        with self.own_random():
            random.seed(seed)  # for the games whose reset does not seed it itself
            self.game = unwrapped(textarena.make(self.game_id, **self.game_params))
            self.game.reset(num_players=1, seed=seed)
            _, messages = self.game.get_observation()
        observation = render(messages)
        shown = [move for move in MOVE.findall(observation) if any(ch.isalnum() for ch in move)]
        self.examples = tuple(shown) or FALLBACK_MOVES
        return observation

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        with self.own_random():
            done, _ = self.game.step(parse_move(action))
            _, messages = self.game.get_observation()
            rewards, game_info = self.game.close() if done else (None, {})
        player = game_info.get(0, {})
        # A tolerated invalid move leaves the error count up (a valid one resets it); a second ends the game.
        invalid = bool(player.get("invalid_move")) if done else getattr(self.game.state, "error_count", 0) > 0
        penalty = self.invalid_penalty if invalid else 0.0
        observation = render(messages)
        if not done:
            return observation, penalty, False, {"success": False, "invalid_action": invalid}
        outcome = float((rewards or {}).get(0, 0.0))
        if player.get("reason"):
            observation = f"{observation}\nGame over: {player['reason']}".strip()
        return observation, outcome + penalty, True, {"success": outcome >= 1.0, "invalid_action": invalid}

    def sample_action(self, rng: random.Random) -> str:
        """One of the example moves the game's rules show, its numbers redrawn: for check_env to
        reach the game's states."""
        example = rng.choice(self.examples)
        numbers = re.findall(r"\d+", example)
        if rng.random() < 0.5:
            rng.shuffle(numbers)  # a valid move, often, where the rules show one (a Mastermind code)
        else:
            numbers = [str(rng.randint(0, 9)) for _ in numbers]
        return re.sub(r"\d+", lambda _: numbers.pop(0), example)


def parse_move(reply: str) -> str:
    """The reply's last bracketed move, or the whole reply when it has none (the game rejects it itself)."""
    moves = MOVE.findall(reply)
    return moves[-1] if moves else reply


def render(messages: list) -> str:
    """The game's new messages as one user turn; the echo of the player's own move is left out
    (the reply is already in the conversation)."""
    own_move = textarena.ObservationType.PLAYER_ACTION
    return "\n".join(str(text) for _, text, kind in messages if kind != own_move).strip()


def unwrapped(game):
    """The game without TextArena's wrappers: they re-send the whole history each turn, which a
    multi-turn rollout already keeps as the conversation."""
    while isinstance(game, textarena.Wrapper):
        game = game.env
    return game


@lru_cache(maxsize=None)
def env_class(game_id: str) -> type[TextArenaEnv]:
    """The env class of one TextArena id (one class per id, so that `env.cls` names it)."""
    if game_id not in ENV_REGISTRY:
        match = difflib.get_close_matches(game_id, list(ENV_REGISTRY), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(match)}?)" if match else ""
        raise ValueError(f"env 'textarena:{game_id}': TextArena has no game '{game_id}'{hint}")
    name = "TextArena_" + re.sub(r"\W", "_", game_id)
    return type(name, (TextArenaEnv,), {"game_id": game_id, "__module__": __name__})
