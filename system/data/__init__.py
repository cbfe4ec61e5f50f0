"""Datasets for RL: generated tasks, jsonl/parquet files or hub datasets, split into train and a
held-out eval.

Every row keeps its columns (the rewards read them: `nums`, `target`, `answer`, ...) and gains
`messages`, the chat prompt. A malformed row is an error that names the file, row and column;
rows are never dropped silently.
"""

from __future__ import annotations

import json
import os

from system.data.generators import GENERATORS, generate
from system.data.prompts import render_messages, template_fields, template_text


class DataError(ValueError):
    pass


def _read_file(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _with_prompts(rows: list[dict], cfg, origin: str) -> list[dict]:
    needed = template_fields(template_text(cfg.prompt_template))
    out = []
    for number, row in enumerate(rows, 1):
        missing = [c for c in needed if c not in row]
        if missing:
            raise DataError(f"{origin}, row {number}: missing column(s) {missing} needed by the prompt template")
        out.append({**row, "messages": render_messages(row, cfg.prompt_template, cfg.system_prompt)})
    return out


def load_splits(cfg) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows for a DataConfig. The eval rows never appear in train."""
    if cfg.source not in GENERATORS.names():  # a file, or a hub dataset id where a hub is reachable
        if os.path.splitext(cfg.source)[1] in (".jsonl", ".json", ".parquet"):
            if not os.path.exists(cfg.source):
                raise DataError(f"data file not found: {cfg.source}")
            rows = _read_file(cfg.source)
        else:
            import datasets

            rows = datasets.load_dataset(cfg.source, split="train").to_list()
        if len(rows) <= cfg.num_eval:
            raise DataError(f"{cfg.source}: {len(rows)} rows, not enough for num_eval={cfg.num_eval} plus training")
        rows = _with_prompts(rows, cfg, cfg.source)
        return rows[cfg.num_eval:][: cfg.num_train], rows[: cfg.num_eval]
    # The held-out rows first (their own seed), then training rows that are none of them.
    params = dict(min_numbers=cfg.min_numbers, max_numbers=cfg.max_numbers, max_number=cfg.max_number)
    held_out = _distinct(generate(cfg.source, cfg.num_eval * 10, cfg.seed + 10_000, **params))[: cfg.num_eval]
    if len(held_out) < cfg.num_eval:
        raise DataError(f"{cfg.source}: only {len(held_out)} distinct tasks for num_eval={cfg.num_eval}: "
                        "raise data.max_number or the number count")
    excluded = {_key(r) for r in held_out}
    train = [r for r in generate(cfg.source, cfg.num_train * 2, cfg.seed, **params) if _key(r) not in excluded]
    if len(train) < cfg.num_train:
        raise DataError(f"{cfg.source}: the task space is too small for num_train={cfg.num_train} rows besides "
                        f"the held-out ones: raise data.max_number or lower data.num_eval")
    return _with_prompts(train[: cfg.num_train], cfg, cfg.source), _with_prompts(held_out, cfg, cfg.source + " (eval)")


def _key(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def _distinct(rows: list[dict]) -> list[dict]:
    return list({_key(r): r for r in rows}.values())
