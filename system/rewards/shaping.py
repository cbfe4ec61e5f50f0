"""Length and repetition shaping: rewards that steer how long and how varied completions are.

- `cosine` (Yeo et al., "Demystifying Long CoT"): correct answers earn more when short, wrong
  ones are penalised less when long, so the model keeps thinking when it is unsure.
- `repetition_penalty`: the share of repeated word n-grams, times a negative maximum; words are
  split on spaces, or segmented by jieba for Chinese (`language="zh"`, `repetition_penalty_zh`).
- `length` (Kimi 1.5): within each group, shorter than average is rewarded, longer penalised;
  wrong answers are never rewarded for being short.
- `soft_overlong` (DAPO): 0 up to `max_length - cache`, then a linear ramp to -1 at `max_length`.

Lengths are token counts from the column `completion_tokens` when the caller provides it, else
characters. Correctness comes from another reward (`accuracy` by default): correct means 1.0.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

from system.rewards.registry import get_reward, register_reward


def completion_lengths(completions: list[str], completion_tokens: Optional[list] = None) -> list[int]:
    return list(completion_tokens) if completion_tokens is not None else [len(c) for c in completions]


def _correctness(completions: list[str], reward: str, columns: dict) -> list[Optional[bool]]:
    return [None if s is None else s == 1.0 for s in get_reward(reward)(completions, **columns)]


def make_cosine(
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_length: int = 1000,
    correctness: str = "accuracy",
):
    """Cosine-scaled by length: from max_value_* at length 0 to min_value_* at `max_length`."""

    def cosine(completions: list[str], completion_tokens: Optional[list] = None, **columns) -> list:
        lengths = completion_lengths(completions, completion_tokens)
        scores: list[Optional[float]] = []
        for length, correct in zip(lengths, _correctness(completions, correctness, columns)):
            if correct is None:
                scores.append(None)
                continue
            cos = math.cos(min(length / max_length, 1.0) * math.pi)
            # wrong answers run the other way: the longest is the least penalised
            if correct:
                low, high = min_value_correct, max_value_correct
            else:
                low, high = max_value_wrong, min_value_wrong
            scores.append(low + 0.5 * (high - low) * (1.0 + cos))
        return scores

    return cosine


LANGUAGES = ("en", "zh")


def word_splitter(language: str):
    """Text -> lower-cased words: split on whitespace ("en"), or segmented by jieba ("zh": Chinese puts
    no spaces between words; open-r1's `language` option), whitespace pieces dropped."""
    if language == "en":
        return lambda text: text.lower().split()
    if language == "zh":
        return _chinese_words
    raise ValueError(f"repetition_penalty language must be one of {LANGUAGES}, got {language!r}")


def _chinese_words(text: str) -> list[str]:
    import jieba  # on first use only: it loads its dictionary then (~1 s)

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text.lower()) if w.strip()]


def make_repetition_penalty(ngram_size: int = 3, max_penalty: float = -1.0, language: str = "en"):
    """max_penalty * (1 - distinct n-grams / n-grams), over words (`word_splitter`); 0.0 if too short."""
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    split = word_splitter(language)

    def repetition_penalty(completions: list[str], **kwargs) -> list[float]:
        scores = []
        for c in completions:
            words = split(c)
            ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
            scores.append(max_penalty * (1 - len(set(ngrams)) / len(ngrams)) if ngrams else 0.0)
        return scores

    return repetition_penalty


def make_length(correctness: str = "accuracy"):
    """Kimi 1.5's length reward, per group: lambda = 0.5 - (len - min) / (max - min); wrong: min(0, lambda).

    A group is the samples whose dataset columns are all equal: the samples of one prompt.
    """

    def length(completions: list[str], completion_tokens: Optional[list] = None, **columns) -> list:
        lengths = completion_lengths(completions, completion_tokens)
        correct = _correctness(completions, correctness, columns)
        groups: dict[str, list[int]] = {}
        for i in range(len(completions)):
            groups.setdefault(repr([columns[k][i] for k in sorted(columns)]), []).append(i)
        scores: list[Optional[float]] = [0.0] * len(completions)
        for members in groups.values():
            shortest, longest = min(lengths[i] for i in members), max(lengths[i] for i in members)
            for i in members:
                lam = 0.5 - (lengths[i] - shortest) / (longest - shortest) if longest > shortest else 0.0
                scores[i] = None if correct[i] is None else lam if correct[i] else min(0.0, lam)
        return scores

    return length


def make_soft_overlong(max_length: int = 4096, cache: int = 1024):
    """DAPO's soft overlong punishment: 0, then (max_length - cache - len) / cache, -1 past max_length."""
    if not 0 < cache <= max_length:
        raise ValueError(f"need 0 < cache <= max_length, got cache={cache}, max_length={max_length}")

    def soft_overlong(completions: list[str], completion_tokens: Optional[list] = None, **kwargs) -> list:
        return [
            0.0 if n <= max_length - cache else -1.0 if n > max_length else (max_length - cache - n) / cache
            for n in completion_lengths(completions, completion_tokens)
        ]

    return soft_overlong


cosine = register_reward("cosine")(make_cosine())
repetition_penalty = register_reward("repetition_penalty")(make_repetition_penalty())
repetition_penalty_zh = register_reward("repetition_penalty_zh")(make_repetition_penalty(language="zh"))
length = register_reward("length")(make_length())
soft_overlong = register_reward("soft_overlong")(make_soft_overlong())
