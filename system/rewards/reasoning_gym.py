"""reasoning-gym's own verifiers as a reward: the task's `score_answer` on the reply's last `<answer>`.

Rows come from system/data/reasoning_gym.py: `task`, `task_config` and `entry` ({seed, size, index}) name
the library's item, which is rebuilt here, exactly as generated, and scored by its task's data set.
Where r1ray departs from the library:

- Binarised (`reasoning_gym`): 1.0 only where `score_answer` gives 1.0, else 0.0. The library pays
  partial credit that a policy can farm: an answer that contains the oracle gets len(oracle) /
  len(answer) ("definitely wrong 12345" earns 0.09 on `products`), `fraction_simplification` pays 0.01
  for any text. `reasoning_gym_partial` keeps the library's scores, for tasks whose partial credit
  measures progress; it is gameable that way.
- Length-capped: an answer longer than twice the oracle (plus slack) scores 0.0 without being
  scored. Several of the library's scorers accept an answer that merely contains the right one
  (`gsm_symbolic`, `knights_knaves`, `sokoban`, ...: "<oracle> 999...9" scores 1.0), so a long
  list of candidates would be paid; the cap bounds that, and the time a scorer spends on huge text.
- A scorer that raises (`prime_factorization` does on text that is not a product) gives None:
  the sample cannot be scored (reward/unscorable_frac), it is neither right nor wrong.

No answer tag: 0.0. Model output only ever reaches `score_answer` as a string; nothing evaluates it.
"""

from __future__ import annotations

import functools
import json

from system.rewards.extract import tag_content
from system.rewards.registry import register_reward

ANSWER_SLACK_CHARS = 16  # over twice the oracle's length: room for spacing and notation, not for lists
UNCAPPED_CHARS = 1000  # the cap of tasks without a single oracle (answer None), which check any answer


@functools.lru_cache(maxsize=64)
def task_dataset(task: str, config_json: str, seed: int, size: int):
    """reasoning-gym's data set `task` (its config as JSON), built once per process: some tasks load files
    when built, some draw all their items' kinds then (so the size is part of an item's address)."""
    import reasoning_gym

    return reasoning_gym.create_dataset(task, seed=seed, size=size, **json.loads(config_json))


@functools.lru_cache(maxsize=4096)
def library_entry(task: str, config_json: str, seed: int, size: int, index: int) -> dict:
    """The item a row names, made once per process (a group's samples score the same row)."""
    return task_dataset(task, config_json, seed, size)[index]


def answer_cap(oracle) -> int:
    return 2 * len(oracle) + ANSWER_SLACK_CHARS if isinstance(oracle, str) else UNCAPPED_CHARS


def score_reply(completion: str, task: str, config: dict, question: str, entry: dict,
                partial: bool = False) -> float | None:
    """One reply's score for the item `entry` ({seed, size, index}) of `task` (see the module's docstring)."""
    address = (task, json.dumps(config or {}, sort_keys=True), entry["seed"], entry["size"])
    item = library_entry(*address, entry["index"])
    if item["question"] != question:
        raise ValueError(f"reasoning-gym's item {entry} of task '{task}' is not the row's question (rows "
                         f"made by another reasoning-gym version?): {item['question'][:80]!r}")
    answer = tag_content(completion)
    if answer is None or len(answer) > answer_cap(item["answer"]):
        return 0.0
    try:
        score = float(task_dataset(*address).score_answer(answer, item))
    except Exception:  # noqa: BLE001 - a scorer choking on model text: this sample cannot be scored
        return None
    return score if partial else float(score >= 1.0)


def make_reasoning_gym(partial: bool = False):
    """The reward over rows of system/data/reasoning_gym.py; `partial`: the library's partial credit."""

    def reasoning_gym(completions: list[str], task=None, task_config=None, question=None, entry=None,
                      **kwargs) -> list[float | None]:
        if task is None or question is None or entry is None:
            raise ValueError("the reasoning_gym reward needs the columns 'task', 'question' and 'entry' of a "
                             "reasoning_gym data source (data.source: reasoning_gym:<task>)")
        configs = task_config or [{}] * len(completions)
        rows = zip(completions, task, configs, question, entry)
        return [score_reply(*row, partial=partial) for row in rows]

    return reasoning_gym


register_reward("reasoning_gym", correctness=True)(make_reasoning_gym())
register_reward("reasoning_gym_partial", correctness=True)(make_reasoning_gym(partial=True))
