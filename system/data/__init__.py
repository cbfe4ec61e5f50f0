"""Datasets for RL: generated tasks or jsonl/parquet files, split into train and a held-out eval.

Every row keeps its columns (the rewards read them: `nums`, `target`, `answer`, ...) and gains
`messages`, the chat prompt. A malformed row is an error that names the file, row and column;
rows are never dropped silently.
"""

from __future__ import annotations

import json
import os

from system.data.generators import generate
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
    if os.path.splitext(cfg.source)[1] in (".jsonl", ".json", ".parquet"):
        if not os.path.exists(cfg.source):
            raise DataError(f"data file not found: {cfg.source}")
        rows = _read_file(cfg.source)
        if len(rows) <= cfg.num_eval:
            raise DataError(f"{cfg.source}: {len(rows)} rows, not enough for num_eval={cfg.num_eval} plus training")
        rows = _with_prompts(rows, cfg, cfg.source)
        return rows[cfg.num_eval:][: cfg.num_train], rows[: cfg.num_eval]
    params = dict(min_numbers=cfg.min_numbers, max_numbers=cfg.max_numbers, max_number=cfg.max_number)
    train = generate(cfg.source, cfg.num_train, cfg.seed, **params)
    seen = {json.dumps(r, sort_keys=True) for r in train}
    candidates = generate(cfg.source, cfg.num_eval * 20, cfg.seed + 10_000, **params)
    held_out = [r for r in candidates if json.dumps(r, sort_keys=True) not in seen][: cfg.num_eval]
    return _with_prompts(train, cfg, cfg.source), _with_prompts(held_out, cfg, cfg.source + " (eval)")
