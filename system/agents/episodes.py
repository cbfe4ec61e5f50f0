"""An agent's episode as training samples, assembled from the calls the endpoint recorded.

The endpoint (actors/openai_server.py) records every call of an episode as the engine saw and
sampled it: the prompt's token ids (the chat template already applied), the generated ids, their
sampling log-probs and policy versions. Samples are built from those ids alone, never by
re-tokenising messages, by this rule:

    Calls are taken in the order they arrived. A call whose prompt starts with all the tokens of a
    sample so far continues that sample (the longest, if several): the tokens in between (what the
    agent added: a tool result, the next user turn, the template's turn markers) join it outside
    the loss, the call's generated tokens inside it. A call that continues no sample starts a new
    one, its whole prompt outside the loss.

A new sample starts when the agent rewrote, trimmed or reordered its history, ran calls side by
side (sub-agents, n > 1 choices), or when rendering the model's reply back as a message gave other
tokens than the engine generated. Every generated token is in the loss of exactly one sample. An
episode of several samples is counted in `agent/split_episodes`; its samples share its reward.

GRPO compares the samples of a group, `n` episodes contiguous (system/algorithms/advantages.py),
so `group_aligned` lays a group whose episodes have up to k samples out as k copies of the group:
copy j holds each episode's j-th sample, or a filler (no token in the loss) where an episode has
fewer. Every copy holds the group's rewards, so every sample gets its episode's group advantage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from system.rollout.base import TokenSequence


@dataclass
class Call:
    """One completion of an agent's request (a request with n choices makes n), as the engine sampled it."""

    index: int  # the order in which the episode's requests arrived
    prompt: list[int]
    tokens: list[int]  # generated, EOS included when the model ended its reply
    logprobs: list[float]  # the engine's sampling log-prob of each generated token
    versions: list[int]  # the policy version that sampled each generated token
    finish_reason: str  # "stop" | "length" | "abort"
    text: str


class EpisodeCalls(list):
    """An episode's finished calls (Call), in arrival order, and how many calls on its URL the endpoint
    refused: for want of the episode's key, or beyond its calls in flight (`agent/refused_calls`)."""

    def __init__(self, calls=(), refused: int = 0):
        super().__init__(calls)
        self.refused = refused


@dataclass
class Sample(TokenSequence):
    """One token sequence of an episode: what the trainer takes (system/rollout/base.py, RolloutBatch)."""

    texts: list[str] = field(default_factory=list)  # the model's text of each call in it
    finish_reason: str = "stop"  # of its last call

    def continued_by(self, prompt: list[int]) -> bool:
        return len(prompt) >= len(self.tokens) and prompt[: len(self.tokens)] == self.tokens

    def add(self, call: Call) -> None:
        self.extend(call.prompt[len(self.tokens):], 0)
        self.extend(call.tokens, 1, call.logprobs, call.versions)
        self.texts.append(call.text)
        self.finish_reason = call.finish_reason

    def transcript(self) -> str:
        return "\n".join(f"[call {i + 1}] {text}" for i, text in enumerate(self.texts))


def assemble(calls: list[Call]) -> list[Sample]:
    """The samples of one episode's calls, by the rule above (calls of one request keep their order)."""
    samples: list[Sample] = []
    for call in sorted(calls, key=lambda c: c.index):
        continued = [s for s in samples if s.continued_by(call.prompt)]
        sample = max(continued, key=lambda s: len(s.tokens)) if continued else None
        if sample is None:
            sample = Sample()
            samples.append(sample)
        sample.add(call)
    return samples


def group_aligned(episodes: list[list[Sample]], n: int,
                  multiple: int = 1) -> list[tuple[int, Optional[Sample]]]:
    """(episode index, its sample, or None for a filler) in GRPO order: `n` episodes per group, each
    group repeated once per sample of its longest episode (an episode without samples still takes
    one place). Whole filler copies of the last group are added until the count is a multiple of
    `multiple` (what the trainer cuts the step into: mini-batches x data-parallel ranks)."""
    order: list[tuple[int, Optional[Sample]]] = []
    for first in range(0, len(episodes), n):
        group = range(first, first + n)
        for j in range(max(1, *(len(episodes[i]) for i in group))):
            order += [(i, episodes[i][j] if j < len(episodes[i]) else None) for i in group]
    while len(order) % multiple:
        order += [(i, None) for i in range(len(episodes) - n, len(episodes))]
    return order
