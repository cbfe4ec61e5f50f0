"""Rejection sampling for distillation: which sampled traces are kept, and the resumable files
they are kept in.

A teacher samples n traces per problem. A trace is kept when the verifier says it is correct and
it ended by itself: a trace cut at the token limit would teach the student to stop mid-thought.
Identical traces of a problem are kept once; `keep="shortest"` keeps only the shortest correct
one (R1-style traces grow long, and the shortest correct one is the cheapest to learn).

RUN_DIR/
    data.jsonl      the kept traces, one row each: the problem's columns plus `problem_id`, `problem`,
                    `messages` (the prompt chat + the trace as the assistant turn), `answer`, `source`
    progress.jsonl  one line per finished problem: id, source, samples, correct, kept
    stats.json      problems, samples, correct, kept and the kept rate, in total and per source
A chunk's rows are appended before its progress lines. Reopening drops half-written lines and the
rows of problems without a progress line (a run killed in between), so a resumed run neither
repeats nor duplicates a problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from typing import Optional

from system.rewards.extract import final_answer


def problem_id(row: dict) -> str:
    """Stable across runs: a hash of the problem's columns, not its position in the data."""
    columns = {k: v for k, v in row.items() if k != "messages"}
    return hashlib.sha1(json.dumps(columns, sort_keys=True, default=str).encode()).hexdigest()[:16]


def select_traces(texts: list[str], lengths: list[int], accepted: list[bool], n: int, keep: str) -> list[int]:
    """Indices of the kept samples; the n samples of a problem are contiguous."""
    kept: list[int] = []
    for start in range(0, len(texts), n):
        candidates = {}  # text -> first index: duplicates count once
        for i in range(start, start + n):
            if accepted[i]:
                candidates.setdefault(texts[i], i)
        chosen = sorted(candidates.values())
        if keep == "shortest" and chosen:
            chosen = [min(chosen, key=lambda i: lengths[i])]
        kept += chosen
    return kept


def trace_row(row: dict, trace: str, tokens: int, source: str, earlier: list[dict] = ()) -> dict:
    """A data set row in the layout open-r1's distilled sets use; `earlier`: the messages between
    the prompt and the trace (a teacher's failed tries and the env's feedback)."""
    columns = {k: v for k, v in row.items() if k != "messages"}
    return {
        **columns,
        "problem_id": problem_id(row),
        "problem": columns.get("problem", row["messages"][-1]["content"]),
        "messages": row["messages"] + list(earlier) + [{"role": "assistant", "content": trace}],
        # the gold answer where the data has one, else the answer the verifier accepted
        "answer": str(columns.get("answer", final_answer(trace) or "")),
        "source": columns.get("source", source),
        "trace_tokens": tokens,
    }


def rejection_sample(rows: list[dict], texts: list[str], lengths: list[int], correct: list[bool],
                     finished: list[bool], n: int, keep: str, source: str,
                     earlier: Optional[list[list[dict]]] = None) -> tuple[list[dict], list[dict]]:
    """(kept trace rows, one progress record per problem) for n samples per row, contiguous;
    `earlier`: per sample, the messages before its trace (RolloutBatch.earlier)."""
    earlier = earlier or [[] for _ in texts]
    keys = [json.dumps(e) + t for e, t in zip(earlier, texts)]  # the same episode counts once
    kept = select_traces(keys, lengths, [c and f for c, f in zip(correct, finished)], n, keep)
    traces = [trace_row(rows[i // n], texts[i], lengths[i], source, earlier[i]) for i in kept]
    progress = [{"id": problem_id(row), "source": row.get("source", source), "samples": n,
                 "correct": sum(correct[j * n:(j + 1) * n]), "kept": sum(i // n == j for i in kept)}
                for j, row in enumerate(rows)]
    return traces, progress


def summarize(progress: list[dict]) -> dict:
    """Totals and rates, overall and per source."""
    def totals(records: list[dict]) -> dict:
        samples = sum(r["samples"] for r in records)
        out = {"problems": len(records), "solved": sum(r["correct"] > 0 for r in records), "samples": samples,
               "correct": sum(r["correct"] for r in records), "kept": sum(r["kept"] for r in records)}
        return {**out, "kept_rate": out["kept"] / max(samples, 1), "solve_rate": out["solved"] / max(len(records), 1)}

    by_source = defaultdict(list)
    for record in progress:
        by_source[record["source"]].append(record)
    return {**totals(progress), "per_source": {s: totals(records) for s, records in sorted(by_source.items())}}


class TraceStore:
    """The run directory's data.jsonl and progress.jsonl, appended one chunk at a time."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.data_path = os.path.join(run_dir, "data.jsonl")
        self.progress_path = os.path.join(run_dir, "progress.jsonl")
        self.progress = _read_lines(self.progress_path)
        self.done = {p["id"] for p in self.progress}
        _rewrite(self.progress_path, self.progress)
        _rewrite(self.data_path, [r for r in _read_lines(self.data_path) if r["problem_id"] in self.done])

    def append(self, rows: list[dict], progress: list[dict]) -> None:
        _append(self.data_path, rows)
        _append(self.progress_path, progress)  # the problems count as done from here on
        self.progress += progress
        self.done.update(p["id"] for p in progress)

    def finish(self) -> dict:
        """stats.json, and data.parquet where pyarrow is installed; returns the stats."""
        stats = summarize(self.progress)
        with open(os.path.join(self.run_dir, "stats.json"), "w") as f:
            json.dump(stats, f, indent=2)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return stats
        rows = _read_lines(self.data_path)
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), os.path.join(self.run_dir, "data.parquet"))
        return stats


def _read_lines(path: str) -> list[dict]:
    """The complete JSON lines of a file; a line a killed writer left half-written is skipped."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _rewrite(path: str, rows: list[dict]) -> None:
    with open(path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(path + ".tmp", path)


def _append(path: str, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())
