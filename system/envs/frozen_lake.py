"""FrozenLake as text, as RAGEN ships it: walk from the start to the goal without falling in a hole.

Unlike the arithmetic games the state (where the player stands) changes with every move and the
observation is the grid redrawn, so what the env says next depends on every earlier action.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from system.envs.base import EnvConfig, Feedback, TextEnv, shorten
from system.envs.registry import register_env

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
SIDEWAYS = {  # where a slip goes instead
    "up": ("left", "right"),
    "down": ("left", "right"),
    "left": ("up", "down"),
    "right": ("up", "down"),
}
SYMBOLS = {"S": "_", "F": "_", "H": "O", "G": "G"}  # gymnasium's map letters -> what the model sees
PLAYER = {"H": "X", "G": "√"}  # the player on a hole or on the goal; "P" elsewhere


def has_path(rows: list[str]) -> bool:
    """Whether a walk over non-hole cells leads from S to a G."""
    seen = {(r, c) for r, row in enumerate(rows) for c, cell in enumerate(row) if cell == "S"}
    frontier = list(seen)
    while frontier:
        r, c = frontier.pop()
        if rows[r][c] == "G":
            return True
        for dr, dc in MOVES.values():
            nr, nc = r + dr, c + dc
            inside = 0 <= nr < len(rows) and 0 <= nc < len(rows[0])
            if inside and rows[nr][nc] != "H" and (nr, nc) not in seen:
                seen.add((nr, nc))
                frontier.append((nr, nc))
    return False


def random_map(size: int, frozen_prob: float, rng: random.Random) -> list[str]:
    """A size x size map, start top-left and goal bottom-right, redrawn until it has a path."""
    for _ in range(10_000):
        cells = [["F" if rng.random() < frozen_prob else "H" for _ in range(size)] for _ in range(size)]
        cells[0][0], cells[-1][-1] = "S", "G"
        rows = ["".join(row) for row in cells]
        if has_path(rows):
            return rows
    raise ValueError(f"frozen_prob={frozen_prob} almost never leaves a path on a {size}x{size} map: raise it")


@dataclass
class FrozenLakeConfig(EnvConfig):
    max_turns: int = 10
    size: int = 4
    frozen_prob: float = 0.8  # chance that a cell is ice rather than a hole
    slippery: bool = False  # if on, a move goes sideways 2 times in 3, as in gymnasium
    map: str = ""  # a fixed map instead of a random one: rows of S F H G joined by "/"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size < 2 or not 0 < self.frozen_prob <= 1:
            raise ValueError(f"need size >= 2 and 0 < frozen_prob <= 1, got {self.size}, {self.frozen_prob}")
        rows = self.map.split("/")
        if self.map and not (
            len({len(row) for row in rows}) == 1
            and set(self.map) <= set("SFHG/")
            and self.map.count("S") == 1
            and has_path(rows)
        ):
            raise ValueError(f"map {self.map!r} needs equal rows of S F H G, one S and a path from S to a G")


@register_env("frozen_lake")
class FrozenLakeEnv(TextEnv):
    config_cls = FrozenLakeConfig
    instructions = (
        "You are on a frozen lake drawn as a grid: P is you, _ is ice, O is a hole and G is the goal. "
        "Reach the goal without stepping into a hole, one square per move: up, down, left or right."
    )
    example_answer = "right"

    def start(self, rng: random.Random) -> str:
        cfg = self.config
        self.rng = rng  # for slipping: the seed fixes the map and every slip
        self.rows = cfg.map.split("/") if cfg.map else random_map(cfg.size, cfg.frozen_prob, rng)
        self.pos = next((r, row.index("S")) for r, row in enumerate(self.rows) if "S" in row)
        return self.render()

    def respond(self, answer: str) -> Feedback:
        move = answer.lower()
        if move not in MOVES:
            return self.invalid(f"{shorten(answer)!r} is not a move: answer up, down, left or right.")
        direction = move
        if self.config.slippery and self.rng.random() < 2 / 3:
            direction = self.rng.choice(SIDEWAYS[move])
        went = direction if direction == move else f"{direction} (you slipped: you meant {move})"
        r, c = self.pos[0] + MOVES[direction][0], self.pos[1] + MOVES[direction][1]
        if not (0 <= r < len(self.rows) and 0 <= c < len(self.rows[0])):
            return Feedback(f"You cannot move {went}: that is the edge.\n{self.render()}")
        self.pos = (r, c)
        cell = self.rows[r][c]
        if cell == "H":
            return Feedback(f"You moved {went} and fell into a hole.\n{self.render()}", done=True)
        if cell == "G":
            return Feedback(f"You moved {went} and reached the goal!\n{self.render()}", 1.0, True, True)
        return Feedback(f"You moved {went}.\n{self.render()}")

    def render(self) -> str:
        lines = []
        for r, row in enumerate(self.rows):
            symbols = [SYMBOLS[cell] for cell in row]
            if r == self.pos[0]:
                symbols[self.pos[1]] = PLAYER.get(row[self.pos[1]], "P")
            lines.append(" ".join(symbols))
        return "\n".join(lines)

    def sample_answer(self, rng: random.Random) -> str:
        return rng.choice(list(MOVES))
