"""One reward per sample from several reward functions: a weighted sum, or a sum behind a gate.

`gate` exists because additive format rewards invite reward hacking: a policy can collect the
format points with empty answers. Gating makes the other rewards count only for well-formed
completions, so format is a precondition instead of a prize.
"""

from __future__ import annotations

from typing import Optional

MODES = ("sum", "gate")


def combine_rewards(
    scores: dict[str, list[Optional[float]]],
    weights: dict[str, float],
    mode: str = "sum",
    gate: str = "format",
) -> list[Optional[float]]:
    """Combine per-function scores sample by sample.

    sum:  sum of weight * score over the functions in `weights`.
    gate: the same sum over every function but `gate`, counted only where the gate scored 1.0;
          elsewhere 0.0. The gate's own weight is not used.
    A sample with any None among the scores used is None (cannot be scored), in both modes.
    """
    if mode not in MODES:
        raise ValueError(f"reward mode must be one of {MODES}, got {mode!r}")
    names = list(weights) + ([gate] if mode == "gate" and gate not in weights else [])
    missing = [n for n in names if n not in scores]
    if missing:
        raise KeyError(f"no scores for reward(s) {missing}; scored: {sorted(scores)}")
    lengths = {len(scores[n]) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"reward functions returned different numbers of scores: {sorted(lengths)}")
    summed = [n for n in weights if mode == "sum" or n != gate]

    combined: list[Optional[float]] = []
    for i in range(lengths.pop() if lengths else 0):
        if any(scores[n][i] is None for n in names):
            combined.append(None)
        elif mode == "gate" and scores[gate][i] != 1.0:
            combined.append(0.0)
        else:
            combined.append(sum(weights[n] * scores[n][i] for n in summed))
    return combined
