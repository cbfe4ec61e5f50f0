"""The run report: one PNG of the curves a GRPO run is judged by, and a page of sample
completions per eval, written into the run directory so that a finished (or crashed) run can be
read without wandb, a dashboard or a notebook.

    write_report(run_dir)  ->  RUN_DIR/report.png, RUN_DIR/samples.md

It reads only files: `metrics.jsonl` (system/reporting/metrics.py) and `eval/step_XXXXXX.jsonl`
(system/reporting/evaluation.py). It draws on matplotlib's Agg canvas directly rather than through pyplot,
so it needs no display and leaves the caller's global backend alone.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from system.reporting.metrics import read_metrics

SAMPLES_PER_EVAL = 3
COMPLETION_CHARS = 600
PROMPT_CHARS = 300  # the end of the prompt: the question, after any shared instructions
COLUMNS = 3

# (title, which keys the panel shows, how it draws them). "line": the raw per-step values, faint,
# under their moving average; "points": sparse eval results, one marker per eval; "stack": the
# phases of a step stacked, so the top edge is the step time and the bands show where it went.
PANELS = [
    ("Reward", lambda k: k == "reward/mean" or re.fullmatch(r"reward/[^/]+/mean", k), "line"),
    ("Accuracy (train samples)", lambda k: k == "reward/accuracy", "line"),
    ("Eval (held-out)", lambda k: k in ("eval/reward_mean", "eval/accuracy") or k.startswith("eval/pass@"),
     "points"),
    # a mixture's tasks (system/reporting/evaluation.py): R1's pass@1 and greedy accuracy of each
    ("Eval per task (held-out)", lambda k: re.fullmatch(r"eval/[^/]+/(pass@1|greedy)", k), "points"),
    ("KL to reference", lambda k: k == "kl/mean", "line"),
    ("Response length (tokens)", lambda k: k in ("response/length_mean", "response/length_max"), "line"),
    ("Step time by phase (s)",
     lambda k: re.fullmatch(r"timing/\w+_s", k) and k not in ("timing/step_s", "timing/wall_s"), "stack"),
    ("Who waited (fraction of each step)", lambda k: k.endswith("_idle_frac"), "line"),
    ("Staleness (policy versions)", lambda k: k in ("async/staleness_mean", "async/staleness_max"), "line"),
    ("Who was busy when (s since the first step)", lambda k: k.startswith("timeline/"), "timeline"),
]
# timeline/<role>_start and timeline/<role>_end of each step: one row of bars per role.
TIMELINE_ROLES = ("rollout", "train")


def write_report(run_dir: str) -> list[str]:
    """Writes report.png and samples.md into `run_dir`; returns their paths."""
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(metrics_path):
        raise FileNotFoundError(f"no metrics at {metrics_path}: is {run_dir} a run directory?")
    # A resumed run logs again the steps after its checkpoint: the last record of a step is the real one.
    records = sorted({r["step"]: r for r in read_metrics(run_dir)}.values(), key=lambda r: r["step"])
    return [_write_curves(run_dir, records), _write_samples(run_dir)]


def _write_curves(run_dir: str, records: list[dict]) -> str:
    present = sorted({key for record in records for key in record if _value(record, key) is not None},
                     key=_natural)
    panels = [(title, keys, kind) for title, wanted, kind in PANELS
              if (keys := [key for key in present if wanted(key)])]
    cols = max(1, min(COLUMNS, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{os.path.basename(os.path.abspath(run_dir))}: {len(records)} logged steps")
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no curves in metrics.jsonl yet", ha="center", va="center")
        ax.set_axis_off()
    for i, (title, keys, kind) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        {"line": _draw_lines, "points": _draw_points, "stack": _draw_stack, "timeline": _draw_timeline}[kind](
            ax, records, keys)
        ax.set_title(title)
        ax.set_xlabel("seconds" if kind == "timeline" else "step")
        ax.grid(alpha=0.3)
        stacked = kind == "stack"
        if kind != "timeline" and (len(keys) > 1 or stacked):  # a lone curve is named by its title; a lone phase is not
            ax.legend(fontsize=8, ncols=3 if stacked else 1, loc="upper center" if stacked else "best")
    path = os.path.join(run_dir, "report.png")
    fig.savefig(path, dpi=100)
    return path


def _draw_lines(ax, records: list[dict], keys: list[str]) -> None:
    for key in keys:
        steps, values = _series(records, key)
        (raw,) = ax.plot(steps, values, alpha=0.3, linewidth=1)
        window = max(1, len(values) // 20)  # light: about 5% of the run, centred so it does not lag
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        start = (window - 1) // 2
        ax.plot(steps[start:start + len(smooth)], smooth, color=raw.get_color(), linewidth=1.8,
                label=_label(key))


def _draw_points(ax, records: list[dict], keys: list[str]) -> None:
    for key in keys:
        ax.plot(*_series(records, key), marker="o", markersize=4, label=_label(key))


def _draw_stack(ax, records: list[dict], keys: list[str]) -> None:
    """Each step spans [step, next logged step), so a single step shows too."""
    timed = [r for r in records if any(_value(r, key) is not None for key in keys)]
    edges = [r["step"] for r in timed] + [timed[-1]["step"] + 1]
    bottom = np.zeros(len(timed))
    for key in keys:
        top = bottom + [_value(r, key) or 0.0 for r in timed]
        ax.stairs(top, edges, baseline=bottom, fill=True, alpha=0.8, label=_label(key))
        bottom = top
    ax.margins(y=0.4)  # headroom, so that the legend sits above the bands, not over them


def _draw_timeline(ax, records: list[dict], keys: list[str]) -> None:
    """The rollouts (engines, reward / env workers) and the updates (reference, train, sync) of
    every step as bars in time: where they overlap, both sides worked at once."""
    for row, role in enumerate(TIMELINE_ROLES):
        spans = [(r[f"timeline/{role}_start"], r[f"timeline/{role}_end"] - r[f"timeline/{role}_start"])
                 for r in records if f"timeline/{role}_start" in r and f"timeline/{role}_end" in r]
        ax.broken_barh(spans, (row - 0.35, 0.7), color=f"C{row}", alpha=0.8)
    ax.set_yticks(range(len(TIMELINE_ROLES)), ["rollouts", "updates"])


def _series(records: list[dict], key: str) -> tuple[list, list]:
    """The (step, value) pairs of the records that have `key` (eval keys exist on eval steps only)."""
    pairs = [(r["step"], v) for r in records if (v := _value(r, key)) is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _value(record: dict, key: str) -> float | None:
    """The number logged under `key`, or None: absent, not a number, or NaN/inf (one bad step
    should leave a gap, not blank a panel)."""
    value = record.get(key)
    ok = isinstance(value, (int, float)) and math.isfinite(value) and key != "step"
    return float(value) if ok else None


def _label(key: str) -> str:
    """`reward/format/mean` -> `format`, `timing/generate_s` -> `generate`: the panel title says the rest."""
    return re.sub(r"(/mean|_s)$", "", key.split("/", 1)[-1])


def _natural(key: str) -> list:
    """Sort order with numbers compared as numbers: pass@2 before pass@16."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key)]


def _write_samples(run_dir: str) -> str:
    files = sorted(glob.glob(os.path.join(run_dir, "eval", "step_*.jsonl")), key=_eval_step, reverse=True)
    lines = [f"# Sample completions: {os.path.basename(os.path.abspath(run_dir))}", ""]
    if files:
        lines += [f"Newest eval first; the first {SAMPLES_PER_EVAL} samples of each, prompts shown by their "
                  f"last {PROMPT_CHARS} characters, completions cut at {COMPLETION_CHARS}.", ""]
    else:
        lines += [f"No eval results in {os.path.join(run_dir, 'eval')} yet.", ""]
    for path in files:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rewards = [r["reward"] for r in rows if r.get("reward") is not None]
        mean = f"{sum(rewards) / len(rewards):.3f}" if rewards else "n/a"
        lines += [f"## Step {_eval_step(path)}", "",
                  f"{len(rows)} samples saved, {sum(bool(r.get('correct')) for r in rows)} correct, "
                  f"mean reward {mean}.", ""]
        for i, row in enumerate(rows[:SAMPLES_PER_EVAL], 1):
            reward = row.get("reward")
            verdict = "correct" if row.get("correct") else "not correct"
            lines += [f"### Sample {i}: reward {'unscorable' if reward is None else f'{reward:.3f}'}, {verdict}",
                      "", "Prompt:", "", *_fenced(_tail(row.get("prompt", ""), PROMPT_CHARS)),
                      "", "Completion:", "", *_fenced(_head(row.get("completion", ""), COMPLETION_CHARS)), ""]
    path = os.path.join(run_dir, "samples.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _eval_step(path: str) -> int:
    return int(re.search(r"step_(\d+)\.jsonl$", path).group(1))


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" […{len(text) - limit} more characters]"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _fenced(text: str) -> list[str]:
    """A code block, so that `<think>` tags and Markdown in completions show as written; the fence
    is longer than any run of backticks inside."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [fence + "text", text, fence]
