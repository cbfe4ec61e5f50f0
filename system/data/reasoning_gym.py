"""reasoning-gym's procedural tasks (about 100 of them: arithmetic, algebra, logic, games, ...) as data rows.

    data.source: reasoning_gym:chain_sum            # one task; data.params is its config
    data.params: {min_terms: 2, max_terms: 2, max_digits: 1}

    data.source: reasoning_gym                      # a mixture; data.params.tasks names each task
    data.params:
      tasks:
        chain_sum: {weight: 2, config: {max_terms: 3}}
        products: {weight: 1}

A row is `question` (the prompt), `answer` (the oracle), `task` (the task's name), `metadata` and
`task_config`: with the question and answer, `metadata` is the entry the task's own `score_answer`
reads, and `task_config` rebuilds the data set that scores it (system/rewards/reasoning_gym.py). The
entries are JSON data (reasoning-gym's metadata is), so rows travel to Ray's reward workers as they are.

Seeds. reasoning-gym's item i of a data set seeded s is drawn from Random(s + i), so the item i + 1 of
seed s is the item i of seed s + 1: two seeds close together share items. Here the items of a split
come from one data set per task with the split's own seed, far from the other split's:
training row i is item i of seed `data.seed * 10**7` (the entry seed `data.seed * 10**7 + i`), held-out
row j is item j of seed `data.seed * 10**7 + 5 * 10**6`. The ranges never meet while training draws
fewer than 5 million items, and in addition a held-out question is never a training question (compared
as text), for tasks whose items repeat.
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, fields

from system.data.rows import DataError, prepare_rows

PREFIX = "reasoning_gym"
SEED_STRIDE = 10**7  # entry seeds of one data.seed: [seed * SEED_STRIDE, (seed + 1) * SEED_STRIDE)
HELD_OUT_OFFSET = SEED_STRIDE // 2  # the held-out split's items start here; training's stay below
DRAWS_PER_ROW = 10  # items drawn per row wanted before a task space counts as too small


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
    if name:
        specs = [TaskSpec(name, 1.0, dict(params))]
    elif set(params) != {"tasks"} or not isinstance(params["tasks"], dict) or not params["tasks"]:
        raise DataError(f"data.source '{PREFIX}' is a mixture: data.params takes one key, tasks, that maps task "
                        f"names to {{weight, config}}; got data.params={params} (one task: '{PREFIX}:<name>')")
    else:
        specs = [_mixture_spec(task, spec) for task, spec in params["tasks"].items()]
    for spec in specs:
        if spec.name not in DATASETS:
            match = difflib.get_close_matches(spec.name, DATASETS, n=1, cutoff=0.5)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise DataError(f"data.source '{source}': reasoning-gym has no task '{spec.name}'{hint}")
        owned = {"seed", "size"} & set(spec.config)
        if owned:
            raise DataError(f"{PREFIX} task '{spec.name}': its config sets {sorted(owned)}; r1ray gives each "
                            "split its own seed (data.seed) and size (data.num_train, data.num_eval)")
    return specs


def _mixture_spec(name: str, spec) -> TaskSpec:
    spec = {} if spec is None else spec
    unknown = set(spec) - {"weight", "config"} if isinstance(spec, dict) else {"(not a mapping)"}
    if unknown:
        raise DataError(f"data.params.tasks.{name}: takes weight and config, got {spec}")
    weight = spec.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight <= 0:
        raise DataError(f"data.params.tasks.{name}.weight must be a number > 0, got {weight!r}")
    return TaskSpec(name, float(weight), dict(spec.get("config") or {}))


def create_task(name: str, config: dict, seed: int, size: int):
    """reasoning-gym's data set `name` with `config`; a config it rejects is a DataError naming its keys."""
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    try:
        return reasoning_gym.create_dataset(name, seed=seed, size=size, **config)
    except (TypeError, ValueError, AssertionError) as e:
        keys = [f.name for f in fields(DATASETS[name][1]) if f.name not in ("seed", "size")]
        raise DataError(f"{PREFIX} task '{name}': config {config} rejected ({type(e).__name__}: {e}); "
                        f"its keys are {keys}") from None


def task_rows(specs: list[TaskSpec], seed: int, limit: int) -> Iterator[dict]:
    """Rows drawn from `specs` by weight: the i-th is item i of its task's data set seeded `seed`."""
    tasks = [create_task(s.name, s.config, seed, limit) for s in specs]
    chooser = random.Random(seed)
    for i in range(limit):
        k = chooser.choices(range(len(specs)), weights=[s.weight for s in specs])[0] if len(specs) > 1 else 0
        entry = tasks[k][i]
        try:
            json.dumps(entry["metadata"])
        except (TypeError, ValueError) as e:
            raise DataError(f"{PREFIX} task '{specs[k].name}': its metadata is not JSON data ({e})") from None
        yield {"question": entry["question"], "answer": entry["answer"], "task": specs[k].name,
               "metadata": entry["metadata"], "task_config": specs[k].config}


def load_reasoning_gym(cfg) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows for a DataConfig whose source is reasoning_gym[:<task>]: num_eval distinct
    held-out questions, then num_train training rows after the first `skip`, none of them a held-out
    question (nor one of the skipped)."""
    if (cfg.skip + cfg.num_train) * DRAWS_PER_ROW > HELD_OUT_OFFSET:
        raise DataError(f"{cfg.source}: data.skip + data.num_train = {cfg.skip + cfg.num_train} rows: at most "
                        f"{HELD_OUT_OFFSET // DRAWS_PER_ROW} keep training's entry seeds below the held-out ones")
    specs = task_specs(cfg.source, cfg.params)
    base = cfg.seed * SEED_STRIDE
    held_out, seen = [], set()
    for row in task_rows(specs, base + HELD_OUT_OFFSET, max(cfg.num_eval, 1) * DRAWS_PER_ROW):
        if len(held_out) == cfg.num_eval:
            break
        if _question(row) not in seen:
            seen.add(_question(row))
            held_out.append(row)
    wanted, train = cfg.skip + cfg.num_train, []
    for row in task_rows(specs, base, wanted * DRAWS_PER_ROW):
        if len(train) == wanted:
            break
        if _question(row) not in seen:
            train.append(row)
            if len(train) <= cfg.skip:  # a skipped question drawn again later is skipped too
                seen.add(_question(row))
    if len(held_out) < cfg.num_eval or len(train) < wanted:
        raise DataError(f"{cfg.source}: the task space is too small: {len(held_out)} distinct held-out questions "
                        f"(num_eval={cfg.num_eval}) and {len(train)} training rows besides them (skip + num_train "
                        f"= {wanted}) in {DRAWS_PER_ROW}x as many draws: widen the task's config (data.params)")
    return (prepare_rows(train[cfg.skip:], cfg, cfg.source),
            prepare_rows(held_out, cfg, cfg.source + " (eval)"))


def _question(row: dict) -> tuple[str, str]:
    return row["task"], row["question"]
