"""Datasets for RL: generated tasks, local files and folders or hub datasets, split into train and a
held-out eval that never enters training.

    train, held_out = load_splits(cfg.data)   # rows: the data set's columns + `messages`, the prompt chat
    train, held_out = drop_overlong((train, held_out), tokenizer, cfg)   # prompts the engine can take

Where rows come from: sources.py (files, folders, hub) and generators.py (seeded tasks); how they
become training rows (column renames, the boxed gold answer, the prompt chat): rows.py.
"""

from __future__ import annotations

import json

from system.data.generators import DEFAULT_TEMPLATES, GENERATORS, generate
from system.data.prompts import encode_prompt, prompt_budget
from system.data.reasoning_gym import is_reasoning_gym, load_reasoning_gym
from system.data.rows import BadRows, DataError, prepare_rows
from system.data.sources import read_placed_rows


def load_splits(cfg) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows for a DataConfig. The eval rows never appear in train."""
    if cfg.num_train < 1:
        raise DataError(f"data.num_train={cfg.num_train}: training needs at least one row")
    if is_reasoning_gym(cfg.source):
        check_skip(cfg)
        return load_reasoning_gym(cfg)
    if cfg.source not in GENERATORS.names():
        bad = BadRows(cfg.source, cfg.bad_rows)
        raw, places = read_placed_rows(cfg.source, cfg.split, bad)
        rows = prepare_rows(raw, cfg, cfg.source, places=places, bad=bad)
        bad.report(len(rows))  # the malformed rows data.bad_rows=skip left out: printed; an error if all were
        if not raw:
            raise DataError(f"data.source '{cfg.source}' (split '{cfg.split}') has no rows: point data.source "
                            "(and data.split) at a data set with rows")
        return split_rows(rows, cfg)
    check_skip(cfg)
    # The held-out rows first (their own seed), then training rows that are none of them.
    held_out = held_out_tasks(cfg)
    if len(held_out) < cfg.num_eval:
        raise DataError(f"{cfg.source}: only {len(held_out)} distinct tasks for num_eval={cfg.num_eval}: "
                        "raise data.max_number or the number count")
    excluded = {task_key(r) for r in held_out}
    train = [r for r in training_draw(cfg) if task_key(r) not in excluded]
    excluded |= {task_key(r) for r in train[: cfg.skip]}  # a skipped task drawn again later is skipped too
    train = [r for r in train[cfg.skip:] if task_key(r) not in excluded]
    if len(train) < cfg.num_train:
        raise DataError(f"{cfg.source}: the task space is too small for num_train={cfg.num_train} rows besides "
                        f"the held-out ones (and skip={cfg.skip}): raise data.max_number or lower data.num_eval")
    template = DEFAULT_TEMPLATES.get(cfg.source, "")
    return (prepare_rows(train[: cfg.num_train], cfg, cfg.source, template),
            prepare_rows(held_out, cfg, cfg.source + " (eval)", template))


def split_rows(rows: list, cfg) -> tuple[list, list]:
    """(train, eval) of a data set's rows in their order (a file's, or SFT's chats): the first num_eval
    held out, then `skip` passed over, then up to num_train."""
    check_skip(cfg)
    if len(rows) <= cfg.num_eval:
        raise DataError(f"{cfg.source}: {len(rows)} rows, not enough for num_eval={cfg.num_eval} plus training")
    train = rows[cfg.num_eval:][cfg.skip:][: cfg.num_train]
    if not train:
        raise DataError(f"{cfg.source}: {len(rows)} rows, none left for training after num_eval={cfg.num_eval} "
                        f"and skip={cfg.skip}")
    return train, rows[: cfg.num_eval]


def check_skip(cfg) -> None:
    if cfg.skip < 0:
        raise DataError(f"data.skip={cfg.skip}: the training rows to pass over are 0 or more")


def drop_overlong(splits: tuple[list[dict], list[dict]], tokenizer, cfg) -> tuple[list[dict], list[dict]]:
    """(train, eval) without the rows whose prompt is longer than `prompt_budget(cfg)` when
    data.overlong_prompts is drop (counted and printed), so that no sampler ever draws one; as they
    are for truncate_left, whose prompts are cut when encoded. A split left empty is an error."""
    data, budget = cfg.data, prompt_budget(cfg)
    if budget < 1:
        raise DataError(f"rollout.max_new_tokens={cfg.rollout.max_new_tokens} leaves no room for a prompt in "
                        f"rollout.max_model_len={cfg.rollout.max_model_len}: lower the one or raise the other")
    if data.overlong_prompts != "drop":
        return splits
    kept = []
    for rows, name in zip(splits, ("train", "eval")):
        fit = [row for row in rows
               if len(encode_prompt(tokenizer, row["messages"], data.response_prefix, data.prompt_format)) <= budget]
        if len(fit) < len(rows):
            print(f"data: dropped {len(rows) - len(fit)} of {len(rows)} {name} rows of {data.source}: their prompt "
                  f"is longer than {budget} tokens (rollout.max_model_len - rollout.max_new_tokens; "
                  "data.overlong_prompts=drop)", flush=True)
        if rows and not fit:
            raise DataError(f"{data.source}: no {name} row has a prompt of at most {budget} tokens "
                            f"(rollout.max_model_len={cfg.rollout.max_model_len} - rollout.max_new_tokens="
                            f"{cfg.rollout.max_new_tokens}): raise max_model_len, lower max_new_tokens, or set "
                            "data.overlong_prompts=truncate_left")
        kept.append(fit)
    return kept[0], kept[1]


def task_key(row: dict) -> str:
    """What makes two generated rows the same task: their columns, with lists of numbers as
    multisets ([3, 8, 8, 3] and [8, 3, 3, 8] are one 24 task)."""
    numbers = lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)  # noqa: E731
    return json.dumps({k: sorted(v) if numbers(v) else v for k, v in row.items()}, sort_keys=True)


def distinct_tasks(rows: list[dict]) -> list[dict]:
    """`rows` without repeated tasks (task_key), in the order of their first appearance."""
    return list({task_key(r): r for r in rows}.values())


def held_out_tasks(cfg) -> list[dict]:
    """A generator's held-out tasks (at most num_eval): distinct draws of a seed of their own, data.seed +
    10000, so that they are the same whatever num_train and skip are (tools that add held-out problems,
    bench/heldout.py, start from these)."""
    return distinct_tasks(generate(cfg.source, cfg.num_eval * 10, cfg.seed + 10_000, cfg))[: cfg.num_eval]


def training_draw(cfg) -> list[dict]:
    """The generated rows a generator's training rows are taken from, in order: they are these rows less
    the held-out tasks, then less the first `skip`."""
    return generate(cfg.source, (cfg.skip + cfg.num_train) * 2, cfg.seed, cfg)
