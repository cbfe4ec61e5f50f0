"""Sequences that share a prefix, laid out as a tree in one row: each shared prefix computed once.

GRPO's n samples of one prompt repeat the prompt n times; the turns of one agent episode repeat its
history; all prompts of a task repeat its system prompt. Laid out as a tree (depth first, each segment
before its children), a segment of the row holds tokens that a set of sequences share; a token's position
is its depth in its sequences, and it attends to its segment's ancestors and to its own segment up to
itself (`Segment.keys`: a lower-right causal mask). Every token then has the hidden states it has in each
of its sequences computed alone, so log-probs, losses and gradients are those of the unshared batch
(up to float rounding); a shared token's gradient is the sum over the branches that read it, as it was
over its copies.

A shared prefix shorter than MIN_SHARED tokens is not worth a segment of its own (one more attention call
per layer): its tokens are repeated in the segments below it instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_SHARED = 16


@dataclass
class Segment:
    start: int  # its first token's place in the row
    length: int
    ancestors: list[tuple[int, int]]  # (start, length) of the segments above it, from the root down

    def keys(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(row index of every key its queries see, mask [1, 1, queries, keys]); None without ancestors
        (then plain causal attention within the segment)."""
        if not self.ancestors:
            return None
        index = torch.cat([torch.arange(s, s + n) for s, n in [*self.ancestors, (self.start, self.length)]])
        above = len(index) - self.length
        mask = torch.arange(len(index))[None, :] <= torch.arange(self.length)[:, None] + above
        return index, mask[None, None]


@dataclass
class Layout:
    tokens: torch.Tensor  # long [T]: the row
    positions: torch.Tensor  # long [T]: each token's depth in its sequences
    segments: list[Segment]  # laid end to end, in row order
    where: list[torch.Tensor]  # per sequence: the row place of each of its tokens [length]


def lay_out(seqs: list[torch.Tensor], share: bool) -> Layout:
    """The row of `seqs` (1-D token tensors): with `share`, prefixes of MIN_SHARED tokens or more once;
    without, each sequence whole, one after the other."""
    tree = _Builder(seqs)
    if share:
        tree.place(list(range(len(seqs))), depth=0, laid=0, above=[])
    else:
        for i in range(len(seqs)):
            tree.emit([i], 0, len(seqs[i]), [])
    return Layout(tokens=torch.cat(tree.row), positions=torch.cat(tree.depths), segments=tree.segments,
                  where=[torch.cat(parts) for parts in tree.where])


class _Builder:
    def __init__(self, seqs: list[torch.Tensor]):
        self.seqs = seqs
        self.row: list[torch.Tensor] = []
        self.depths: list[torch.Tensor] = []
        self.segments: list[Segment] = []
        self.where: list[list[torch.Tensor]] = [[] for _ in seqs]
        self.size = 0

    def emit(self, ids: list[int], first: int, end: int, above: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A segment of tokens first..end-1, shared by `ids`, below `above`; returns the path to it."""
        length = end - first
        self.row.append(self.seqs[ids[0]][first:end])
        self.depths.append(torch.arange(first, end))
        self.segments.append(Segment(self.size, length, above))
        for i in ids:
            self.where[i].append(torch.arange(self.size, self.size + length))
        self.size += length
        return [*above, (self.size - length, length)]

    def place(self, ids: list[int], depth: int, laid: int, above: list[tuple[int, int]]) -> None:
        """`ids` agree on their tokens before `depth`; those before `laid` are in the row already (`above`),
        those from `laid` on are not yet: too few to share so far, they go into each segment below."""
        if len(ids) == 1:
            self.emit(ids, laid, len(self.seqs[ids[0]]), above)
            return
        depth += self.common_length(ids, depth)
        ended = [i for i in ids if len(self.seqs[i]) == depth]
        going_on = [i for i in ids if len(self.seqs[i]) > depth]
        if depth - laid >= MIN_SHARED:
            above, laid = self.emit(ids, laid, depth, above), depth
        else:  # too short to share: a sequence that ends here gets its own copy
            for i in ended:
                self.emit([i], laid, depth, above)
        by_next: dict[int, list[int]] = {}
        for i in going_on:
            by_next.setdefault(int(self.seqs[i][depth]), []).append(i)
        for part in by_next.values():
            self.place(part, depth, laid, above)

    def common_length(self, ids: list[int], depth: int) -> int:
        """How many tokens from `depth` on all of `ids` share."""
        n = min(len(self.seqs[i]) for i in ids) - depth
        rest = torch.stack([self.seqs[i][depth:depth + n] for i in ids])
        differs = (rest != rest[0]).any(0)
        return int(differs.int().argmax()) if differs.any() else n


def shared_with_previous(seqs: list[torch.Tensor]) -> list[int]:
    """For sequences in sorted (lexicographic) order: the tokens each shares with the one before it when
    that is MIN_SHARED or more, else 0. A sorted run's row is about sum(len - shared) tokens long."""
    shared = [0]
    for a, b in zip(seqs, seqs[1:]):
        n = min(len(a), len(b))
        differs = (a[:n] != b[:n]).nonzero()
        common = int(differs[0]) if len(differs) else n
        shared.append(common if common >= MIN_SHARED else 0)
    return shared
