"""reasoning-gym's procedural tasks (about 100 of them: arithmetic, algebra, logic, games, ...) as data rows.

    data.source: reasoning_gym:chain_sum            # one task; data.params is its config
    data.params: {min_terms: 2, max_terms: 2, max_digits: 1}

    data.source: reasoning_gym                      # a mixture; data.params.tasks names each task
    data.params:
      tasks:
        chain_sum: {weight: 2, config: {max_terms: 3}}
        products: {weight: 1}

The second form is also a table of difficulties: with it, `reasoning_gym:<task>` trains that one task at
its config from the table, or at the library's defaults when the table has no row for it, so a config
can ship the difficulty of each task it was measured on and a user still changes the task by name alone.
A row of weight 0 keeps its difficulty for that use and stays out of the mixture.

A row is `question` (the prompt), `answer` (the oracle), `task` (the task's name), `task_config` and
`entry` ({seed, size, index}: the item's place in reasoning-gym), all plain JSON: the reward rebuilds the
library's entry from them and scores it with the task's own `score_answer`
(system/rewards/reasoning_gym.py), exactly as generated (some entries' metadata holds tuples and
fractions that a JSON copy would change), so rows travel to Ray's reward workers and to JSON files alike.

Seeds. reasoning-gym's item i of a data set seeded s is drawn from Random(s + i), so the item i + 1 of
seed s is the item i of seed s + 1: two seeds close together share items. Here each split draws from
one data set per task with a seed far from the other split's: a task's training items are items
0, 1, 2, ... of seed `data.seed * 10**7` (entry seeds data.seed * 10**7 + i), its held-out items those
of seed `data.seed * 10**7 + 5 * 10**6`. The ranges never meet while a split draws fewer than 5 million
items, and in addition a held-out question is never a training question (compared as text), for tasks
whose items repeat. In a mixture each row picks its task by weight (Random(the split's seed)), then
takes that task's next item.
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, fields

from system.data.rows import DataError, prepare_rows
from system.rewards.reasoning_gym import task_dataset

PREFIX = "reasoning_gym"
SEED_STRIDE = 10**7  # entry seeds of one data.seed: [seed * SEED_STRIDE, (seed + 1) * SEED_STRIDE)
HELD_OUT_OFFSET = SEED_STRIDE // 2  # the held-out split's items start here; training's stay below
DRAWS_PER_ROW = 10  # items drawn per row wanted before a task space counts as too small
# Tasks whose item i of a seed differs between processes (reasoning-gym 0.1.25: they iterate over sets of
# strings, whose order follows the per-process hash seed): a reward worker cannot rebuild a row's item.
PROCESS_DEPENDENT = frozenset({"codeio", "intermediate_integration", "isomorphic_strings", "knight_swap",
                               "polynomial_multiplication", "ransom_note", "word_ladder"})


@dataclass(frozen=True)
class TaskSpec:
    """One task of a mixture: its reasoning-gym name, its share of the rows and its config."""

    name: str
    weight: float
    config: dict


def is_reasoning_gym(source: str) -> bool:
    return source == PREFIX or source.startswith(PREFIX + ":")


def task_specs(source: str, params: dict) -> list[TaskSpec]:
    """The tasks `data.source` and `data.params` name, checked against reasoning-gym's registry."""
    from reasoning_gym.factory import DATASETS

    name = source[len(PREFIX) + 1:] if source != PREFIX else ""
    table = _table(params) if _is_table(params) else None
    if name:  # one task: data.params is its config, or the table's row for it (none: the library's defaults)
        config = dict(params) if table is None else table[name].config if name in table else {}
        specs = [TaskSpec(name, 1.0, config)]
    elif table is None:
        raise DataError(f"data.source '{PREFIX}' is a mixture: data.params takes one key, tasks, that maps "
                        f"task names to {{weight, config}}; got data.params={params} "
                        f"(one task: '{PREFIX}:<name>')")
    else:
        specs = [spec for spec in table.values() if spec.weight > 0]
        if not specs:
            raise DataError(f"data.source '{PREFIX}': every task of data.params.tasks has weight 0")
    for spec in specs + list((table or {}).values()):  # the table's other rows too: a typo is an error
        if spec.name not in DATASETS:
            match = difflib.get_close_matches(spec.name, DATASETS, n=1, cutoff=0.5)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise DataError(f"data.source '{source}': reasoning-gym has no task '{spec.name}'{hint}")
        if spec.name in PROCESS_DEPENDENT:
            raise DataError(f"{PREFIX} task '{spec.name}': its items differ between processes (they follow "
                            "Python's per-process string hashing), so the reward workers cannot rebuild and "
                            "score them")
        owned = {"seed", "size"} & set(spec.config)
        if owned:
            raise DataError(f"{PREFIX} task '{spec.name}': its config sets {sorted(owned)}; r1ray gives each "
                            "split its own seed (data.seed) and size (data.num_train, data.num_eval)")
    return specs


def _is_table(params: dict) -> bool:
    """data.params as {tasks: {<task>: {weight, config}}} rather than one task's config (calendar_arithmetic's
    own `tasks` key is a list)."""
    return set(params) == {"tasks"} and isinstance(params["tasks"], dict)


def _table(params: dict) -> dict[str, TaskSpec]:
    if not params["tasks"]:
        raise DataError("data.params.tasks is empty: name at least one task")
    return {task: _table_row(task, spec) for task, spec in params["tasks"].items()}


def _table_row(name: str, spec) -> TaskSpec:
    spec = {} if spec is None else spec
    unknown = set(spec) - {"weight", "config"} if isinstance(spec, dict) else {"(not a mapping)"}
    if unknown:
        raise DataError(f"data.params.tasks.{name}: takes weight and config, got {spec}")
    weight = spec.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight < 0:
        raise DataError(f"data.params.tasks.{name}.weight must be a number >= 0, got {weight!r}")
    return TaskSpec(name, float(weight), dict(spec.get("config") or {}))


def create_task(name: str, config: dict, seed: int, size: int):
    """reasoning-gym's data set `name` with `config`; a config it rejects is a DataError naming its keys."""
    from reasoning_gym.factory import DATASETS

    try:
        return task_dataset(name, json.dumps(config, sort_keys=True), seed, size)
    except (TypeError, ValueError, AssertionError) as e:
        keys = [f.name for f in fields(DATASETS[name][1]) if f.name not in ("seed", "size")]
        raise DataError(f"{PREFIX} task '{name}': config {config} rejected ({type(e).__name__}: {e}); "
                        f"its keys are {keys}") from None


def task_rows(specs: list[TaskSpec], seed: int, count: int, excluded: set) -> Iterator[dict]:
    """Rows drawn from `specs` by weight: each picks its task, then takes that task's next item (item i
    of its data set seeded `seed`) whose question is not in `excluded` (read at each draw). A task that
    finds none in DRAWS_PER_ROW * count items is an error: its space is too small."""
    size = max(count, 1) * DRAWS_PER_ROW  # reasoning-gym's data sets have at least one item
    tasks = [create_task(s.name, s.config, seed, size) for s in specs]
    chooser, position = random.Random(seed), [0] * len(specs)
    while True:
        k = chooser.choices(range(len(specs)), weights=[s.weight for s in specs])[0] if len(specs) > 1 else 0
        row = None
        while row is None or _question(row) in excluded:
            if position[k] == size:
                raise DataError(f"{PREFIX} task '{specs[k].name}': no new question in {position[k]} draws: "
                                f"its task space is too small for {count} rows besides the held-out ones "
                                "(and data.skip): widen its config (data.params), or lower data.num_eval / "
                                "num_train")
            entry = tasks[k][position[k]]
            row = {"question": entry["question"], "answer": entry["answer"], "task": specs[k].name,
                   "task_config": specs[k].config,
                   "entry": {"seed": seed, "size": size, "index": position[k]}}
            position[k] += 1
        yield row


def load_reasoning_gym(cfg) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows for a DataConfig whose source is reasoning_gym[:<task>]: num_eval distinct
    held-out questions, then num_train training rows after the first `skip`, none of them a held-out
    question (nor one of the skipped)."""
    wanted = cfg.skip + cfg.num_train
    if wanted * DRAWS_PER_ROW > HELD_OUT_OFFSET:
        raise DataError(f"{cfg.source}: data.skip + data.num_train = {wanted} rows: at most "
                        f"{HELD_OUT_OFFSET // DRAWS_PER_ROW} keep training's entry seeds below the held-out "
                        "ones")
    specs = task_specs(cfg.source, cfg.params)
    base, excluded = cfg.seed * SEED_STRIDE, set()
    held_out = _take(task_rows(specs, base + HELD_OUT_OFFSET, cfg.num_eval, excluded), cfg.num_eval, excluded)
    training = task_rows(specs, base, wanted, excluded)
    _take(training, cfg.skip, excluded)  # a skipped question drawn again later is skipped too
    return (prepare_rows(_take(training, cfg.num_train), cfg, cfg.source),
            prepare_rows(held_out, cfg, cfg.source + " (eval)"))


def _take(rows: Iterator[dict], count: int, remember: set | None = None) -> list[dict]:
    """The next `count` rows; each one's question added to `remember`, if given, as it is drawn."""
    taken = []
    for _ in range(count):
        taken.append(next(rows))
        if remember is not None:  # at once: the next draw already skips it
            remember.add(_question(taken[-1]))
    return taken


def _question(row: dict) -> tuple[str, str]:
    return row["task"], row["question"]
