"""The pipeline's report: held-out accuracy after every stage, and the RL curves inside its
GRPO stages, in one PNG (PIPELINE_DIR/pipeline_report.png) plus a markdown table (stages.md).

It reads only files: PIPELINE_DIR/evals.json (launcher/pipeline.py: one held-out evaluation of
the starting model and of every stage's model, on the same problems) and the GRPO stages'
metrics.jsonl.
"""

from __future__ import annotations

import json
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from system.reporting.metrics import read_metrics

EVALS_FILE = "evals.json"
TABLE_KEYS = ("eval/accuracy", "eval/pass@1", "eval/pass@4", "eval/length_mean", "eval/format_rate")
CURVE_KEYS = ("reward/mean", "reward/accuracy")


def read_evals(pipe_dir: str) -> dict[str, dict]:
    """{'start' or stage name: its eval metrics}, in the order they were made."""
    path = os.path.join(pipe_dir, EVALS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def stage_table(evals: dict[str, dict]) -> str:
    """A markdown table: one row per evaluated model, the held-out figures as columns."""
    keys = [k for k in TABLE_KEYS if any(k in m for m in evals.values())]
    lines = ["| after | " + " | ".join(k.removeprefix("eval/") for k in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for name, metrics in evals.items():
        cells = [f"{metrics[k]:.3f}" if k in metrics else "" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def time_table(evals: dict[str, dict], state: dict) -> str:
    """Where the wall time went: each stage's run and each evaluation, in minutes, and the total.
    A run resumed after a stop counts only the part of a stage that the last process ran."""
    rows = [(f"{done.get('kind', '')} `{name}`", done["minutes"]) for name, done in state.items() if "minutes" in done]
    rows += [(f"eval after `{name}`", m["minutes"]) for name, m in evals.items() if "minutes" in m]
    if not rows:
        return ""
    lines = ["| part | minutes |", "|---|---|"] + [f"| {part} | {minutes:.1f} |" for part, minutes in rows]
    return "\n".join(lines + [f"| total | {sum(m for _, m in rows):.1f} |"]) + "\n"


def write_pipeline_report(pipe_dir: str, state: dict) -> list[str]:
    """pipeline_report.png and stages.md; `state`: pipeline_state.json's {stage: {kind, run_dir, ...}}."""
    evals = read_evals(pipe_dir)
    table_path = os.path.join(pipe_dir, "stages.md")
    with open(table_path, "w") as f:
        f.write(stage_table(evals) + "\n" + time_table(evals, state))
    fig = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(fig)
    by_stage, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = list(evals)
    for key in ("eval/accuracy", "eval/pass@4", "eval/format_rate"):
        if any(key in m for m in evals.values()):
            by_stage.plot(range(len(names)), [evals[n].get(key, float("nan")) for n in names], marker="o",
                          label=key.removeprefix("eval/"))
    by_stage.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    by_stage.set(title="Held-out eval after each stage", ylim=(0, 1.02))
    by_stage.legend(fontsize=8)
    offset = 0
    for name, done in state.items():
        if done.get("kind") != "grpo":
            continue
        records = sorted({r["step"]: r for r in read_metrics(done["run_dir"]) if "reward/mean" in r}.values(),
                         key=lambda r: r["step"])
        for key, style in zip(CURVE_KEYS, ("-", "--")):
            steps = [offset + r["step"] for r in records if key in r]
            curves.plot(steps, [r[key] for r in records if key in r], style, label=f"{name}: {key}")
        curves.axvline(offset, color="grey", lw=0.5)
        offset += len(records)
    curves.set(title="GRPO stages: training reward and accuracy", xlabel="step (stages one after another)")
    curves.legend(fontsize=7)
    fig.tight_layout()
    png_path = os.path.join(pipe_dir, "pipeline_report.png")
    fig.savefig(png_path, dpi=110)
    return [png_path, table_path]
