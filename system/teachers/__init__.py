"""Teachers that are programs, by name: `teacher: countdown_search` in a distill config.

A program teacher is `fn(row, rng, **teacher_args) -> trace or None`: it writes one reasoning
trace (the assistant's whole reply) for a data row, drawing its choices from `rng` only, or None
when it cannot solve the row. It may instead write the chat after the prompt (a list of messages:
failed tries with `"weight": 0` and the env's replies, then the solving reply). A user's own is
named by path (`teacher: my_pkg.teachers:solve`). Its traces are verified by the distill config's
rewards like a model's samples (rejection sampling keeps only the right ones), so a buggy teacher
cannot teach wrong answers.
"""

from __future__ import annotations

from system.registry import Registry
from system.teachers.countdown import countdown_trace
from system.teachers.episodes import twenty_four_episode
from system.teachers.twenty_four import twenty_four_trace

TEACHERS = Registry("teacher")
register_teacher = TEACHERS.register


@register_teacher("countdown_search")
def countdown_search(row: dict, rng):
    """Three-number Countdown (`nums`, `target`): a backwards search trace (teachers/countdown.py)."""
    return countdown_trace(list(row["nums"]), int(row["target"]), rng)


@register_teacher("twenty_four_search")
def twenty_four_search(row: dict, rng):
    """The 24 game (`nums`): a search trace over four numbers (teachers/twenty_four.py)."""
    return twenty_four_trace(list(row["nums"]), int(row.get("target", 24)), rng)


@register_teacher("twenty_four_episodes")
def twenty_four_episodes(row: dict, rng, retry_share: float = 0.5):
    """The multi-turn 24 env (rows of `twenty_four_env`): the teacher plays it, a failed try and the
    env's feedback first in `retry_share` of the episodes (teachers/episodes.py)."""
    return twenty_four_episode(row, rng, retry_share)
