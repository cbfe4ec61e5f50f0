"""Datasets for RL: generated tasks, local files and folders or hub datasets, split into train and a
held-out eval that never enters training.

    train, held_out = load_splits(cfg.data)   # rows: the data set's columns + `messages`, the prompt chat

Where rows come from: sources.py (files, folders, hub) and generators.py (seeded tasks); how they
become training rows (column renames, the boxed gold answer, the prompt chat): rows.py.
"""

from __future__ import annotations

import json

from system.data.generators import DEFAULT_TEMPLATES, GENERATORS, generate
from system.data.rows import DataError, prepare_rows
from system.data.sources import read_rows


def load_splits(cfg) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows for a DataConfig. The eval rows never appear in train."""
    if cfg.source not in GENERATORS.names():
        rows = prepare_rows(read_rows(cfg.source, cfg.split), cfg, cfg.source)
        if len(rows) <= cfg.num_eval:
            raise DataError(f"{cfg.source}: {len(rows)} rows, not enough for num_eval={cfg.num_eval} plus training")
        return rows[cfg.num_eval:][: cfg.num_train], rows[: cfg.num_eval]
    # The held-out rows first (their own seed), then training rows that are none of them.
    held_out = _distinct(generate(cfg.source, cfg.num_eval * 10, cfg.seed + 10_000, cfg))[: cfg.num_eval]
    if len(held_out) < cfg.num_eval:
        raise DataError(f"{cfg.source}: only {len(held_out)} distinct tasks for num_eval={cfg.num_eval}: "
                        "raise data.max_number or the number count")
    excluded = {task_key(r) for r in held_out}
    train = [r for r in generate(cfg.source, cfg.num_train * 2, cfg.seed, cfg) if task_key(r) not in excluded]
    if len(train) < cfg.num_train:
        raise DataError(f"{cfg.source}: the task space is too small for num_train={cfg.num_train} rows besides "
                        f"the held-out ones: raise data.max_number or lower data.num_eval")
    template = DEFAULT_TEMPLATES.get(cfg.source, "")
    return (prepare_rows(train[: cfg.num_train], cfg, cfg.source, template),
            prepare_rows(held_out, cfg, cfg.source + " (eval)", template))


def task_key(row: dict) -> str:
    """What makes two generated rows the same task: their columns, with lists as multisets
    ([3, 8, 8, 3] and [8, 3, 3, 8] are one 24 task)."""
    return json.dumps({k: sorted(v) if isinstance(v, list) else v for k, v in row.items()}, sort_keys=True)


def _distinct(rows: list[dict]) -> list[dict]:
    return list({task_key(r): r for r in rows}.values())
