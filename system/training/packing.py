"""Packed micro-batches: no compute on padding.

A micro-batch is a group of sequences, at most `train.max_tokens_per_microbatch` tokens (a dynamic
batch size; a longer sequence goes alone), laid end to end in one row: no padding. Position ids
restart at 0 with each sequence and `cu_seq_lens` says where each starts, so attention never
crosses from one into another. transformers' attentions each find the sequences their own way
(masking_utils.py, modeling_flash_attention_utils.py in transformers 5.19):

  sdpa, eager       a block-diagonal causal mask, found from the position ids (a new sequence where a
                    position is not the previous one + 1) when no attention mask is given: right, but
                    a dense row x row mask, and sdpa's CPU kernel computes all of it: 6x the attention
                    time of one call per sequence here (16 sequences, 2844 tokens)
  flash-attention   its varlen kernel, given `cu_seq_lens_*` and `max_length_*`; from position ids
                    alone it finds packing only in a batch of one row
  VARLEN_SDPA       (below) torch's sdpa once per sequence, given `cu_seq_lens_q`; the only one of
                    them that also computes shared prefixes once (`train.share_prefixes`,
                    system/training/prefix_tree.py)

The trainer's model gets VARLEN_SDPA where prefixes are shared, else flash-attention where it is
installed (system/platform.py). Grouping changes no loss: every token carries its weight within the whole
mini-batch (system/algorithms/losses.py), whatever micro-batch it lands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from system.training.prefix_tree import lay_out, shared_with_previous

VARLEN_SDPA = "varlen_sdpa"


def varlen_sdpa(module, query, key, value, attention_mask, cu_seq_lens_q=None, prefix_context=None, **kwargs):
    """Attention of sequences packed in one row ([1, heads, tokens, dim]), one sdpa call per segment: causal
    in itself, or with shared prefixes (`prefix_context`, see Packed) over its ancestors' keys and its own.
    Without `cu_seq_lens_q`, or in a sliding-window layer (Mistral, Qwen2's option), transformers' sdpa with
    the mask it was given: the dense one, which has both (and no shared prefixes)."""
    if cu_seq_lens_q is None or kwargs.get("sliding_window"):
        if prefix_context is not None:
            raise NotImplementedError("shared prefixes in a sliding-window attention layer: set "
                                      "train.share_prefixes=false for this model")
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    lengths = cu_seq_lens_q.diff().tolist()
    parts = []
    for i, (q, k, v) in enumerate(zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))):
        mask = None
        if prefix_context is not None and prefix_context[i] is not None:
            index, mask = prefix_context[i]
            k, v = key.index_select(2, index), value.index_select(2, index)
        parts.append(sdpa_attention_forward(module, q, k, v, mask, **kwargs)[0])
    return torch.cat(parts, dim=1), None


AttentionInterface.register(VARLEN_SDPA, varlen_sdpa)
AttentionMaskInterface.register(VARLEN_SDPA, sdpa_mask)


def loss_span(seq) -> tuple[int, int]:
    """(first, end): the log-probs needed are those of tokens first..end-1, from the first loss token
    to the last, and the model needs tokens[:end] only (nothing after a token changes its log-prob).
    A sequence without loss tokens: all of them (1..L-1; nothing predicts token 0)."""
    where = torch.nonzero(seq.loss_mask).flatten()
    if len(where) == 0:
        return 1, len(seq.tokens)
    return max(1, int(where[0])), int(where[-1]) + 1


@dataclass
class Packed:
    """One micro-batch's sequences in one row, and where their log-probs go back to."""

    tokens: torch.Tensor  # long [1, T]: each sequence up to its last needed token; shared prefixes once
    positions: torch.Tensor  # long [1, T]: each token's position in its sequence
    cu_seq_lens: torch.Tensor  # int32 [segments + 1]: where each segment starts in the row, then T
    # per segment, with shared prefixes: (row index of the keys it sees, their mask), or None (causal in itself)
    context: list[tuple[torch.Tensor, torch.Tensor] | None]
    keep: torch.Tensor  # long [K]: the row positions whose logits predict a needed token
    targets: torch.Tensor  # long [K]: the token each of them predicts
    rows: torch.Tensor  # long [K]: its sequence
    cols: torch.Tensor  # long [K]: its position in that sequence
    shape: tuple[int, int]  # (n, longest sequence): the padded layout of the other per-token fields
    represented: int  # tokens of the sequences, each counted in every sequence that has it

    @property
    def shares(self) -> bool:
        """Whether a segment attends to a prefix it shares (only VARLEN_SDPA computes that)."""
        return any(c is not None for c in self.context)

    @property
    def computed(self) -> int:
        """Tokens the model computes: `represented` less the repeats of shared prefixes."""
        return self.tokens.shape[1]

    def model_kwargs(self) -> dict:
        """What the model is called with: varlen attentions read `cu_seq_lens_*`, the others the position ids;
        VARLEN_SDPA also `prefix_context`, where prefixes are shared."""
        if self.shares:
            return {"input_ids": self.tokens, "position_ids": self.positions, "cu_seq_lens_q": self.cu_seq_lens,
                    "prefix_context": self.context}
        longest = int(self.cu_seq_lens.diff().max())
        return {"input_ids": self.tokens, "position_ids": self.positions, "cu_seq_lens_q": self.cu_seq_lens,
                "cu_seq_lens_k": self.cu_seq_lens, "max_length_q": longest, "max_length_k": longest}

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        """[K] per needed token -> [n, longest], 0 elsewhere (differentiable)."""
        return values.new_zeros(self.shape).index_put((self.rows, self.cols), values)


def pack(seqs: list, device, share_prefixes: bool = False) -> Packed:
    """`seqs` in one row, each up to its last needed token (loss_span); with `share_prefixes`, the
    prefixes they share once (system/training/prefix_tree.py)."""
    spans = [loss_span(s) for s in seqs]
    layout = lay_out([s.tokens[:end] for s, (_, end) in zip(seqs, spans)], share_prefixes)
    rows = torch.cat([torch.full((end - first,), i) for i, (first, end) in enumerate(spans)])
    cols = torch.cat([torch.arange(first, end) for first, end in spans])
    # the logits at token t - 1's place predict token t
    keep = torch.cat([where[first - 1:end - 1] for where, (first, end) in zip(layout.where, spans)])
    targets = torch.cat([s.tokens[first:end] for s, (first, end) in zip(seqs, spans)])
    starts = [seg.start for seg in layout.segments] + [len(layout.tokens)]
    context = [None if c is None else (c[0].to(device), c[1].to(device))
               for c in (seg.keys() for seg in layout.segments)]
    return Packed(tokens=layout.tokens[None].to(device), positions=layout.positions[None].to(device),
                  cu_seq_lens=torch.tensor(starts, dtype=torch.int32, device=device), context=context,
                  keep=keep.to(device), targets=targets.to(device), rows=rows.to(device), cols=cols.to(device),
                  shape=(len(seqs), max(len(s.tokens) for s in seqs)), represented=sum(end for _, end in spans))


def micro_batches(seqs: list, size: int, length=lambda s: len(s.tokens)) -> list[list]:
    """Groups of `size`, cut from the sequences sorted by length: padded to its own longest, each group
    computes least on padding (SFT's rows); packed, each costs about the same."""
    ordered = sorted(seqs, key=length)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def group_by_tokens(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped first-fit decreasing: each group at most `max_tokens` tokens, a longer one alone."""
    groups: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fit = next((g for g, r in enumerate(room) if lengths[i] <= r), None)
        if fit is None:
            groups.append([])
            room.append(max_tokens)
            fit = len(groups) - 1
        groups[fit].append(i)
        room[fit] -= lengths[i]
    return groups


def to_count(groups: list[list[int]], lengths: list[int], count: int) -> list[list[int]]:
    """Split the largest groups in two (or merge the smallest) until there are `count`."""
    groups = [list(g) for g in groups]
    size = lambda g: sum(lengths[i] for i in g)  # noqa: E731
    while len(groups) < count and any(len(g) > 1 for g in groups):
        big = max((g for g in groups if len(g) > 1), key=size)
        groups.remove(big)
        halves: tuple[list[int], list[int]] = ([], [])
        for i in sorted(big, key=lambda i: -lengths[i]):
            min(halves, key=size).append(i)
        groups += halves
    while len(groups) > count:
        a, b = sorted(groups, key=size)[:2]
        groups.remove(a)
        b += a
    return groups


def agreed_count(count: int, num_seqs: int, device) -> int:
    """The number of micro-batches every data-parallel rank runs: ZeRO-2 reduces gradients in each
    backward and ZeRO-3 gathers parameters in each forward, collectively, so all ranks must run the
    same number. The most any rank needs, unless a rank has fewer sequences than that."""
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return count
    both = torch.tensor([count, -num_seqs], device=device)
    torch.distributed.all_reduce(both, op=torch.distributed.ReduceOp.MAX)
    return max(1, min(int(both[0]), -int(both[1])))


def micro_batch_groups(seqs: list, max_tokens: int, micro_batch: int, device,
                       share_prefixes: bool = False) -> list[list[int]]:
    """Indices of `seqs` per micro-batch: by token budget when max_tokens > 0 (the longest first, so
    few groups), else `micro_batch` sequences of similar length; as many groups as the other ranks.
    With `share_prefixes`, runs of the sequences in token order, so that those sharing a prefix land
    together, and the budget counts each shared prefix once."""
    lengths = [loss_span(s)[1] for s in seqs]
    if share_prefixes:
        groups = prefix_runs([s.tokens[:n] for s, n in zip(seqs, lengths)], max_tokens, micro_batch)
    elif max_tokens > 0:
        groups = group_by_tokens(lengths, max_tokens)
    else:
        groups = micro_batches(list(range(len(seqs))), micro_batch, length=lambda i: lengths[i])
    return to_count(groups, lengths, agreed_count(len(groups), len(seqs), device))


def prefix_runs(seqs: list[torch.Tensor], max_tokens: int, micro_batch: int) -> list[list[int]]:
    """Indices cut from the sequences sorted by their tokens: runs of about `max_tokens` row tokens (shared
    prefixes once; a longer sequence alone), or of `micro_batch` sequences when max_tokens is 0."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i].tolist())
    shared = shared_with_previous([seqs[i] for i in order])
    groups: list[list[int]] = []
    size = 0
    for i, common in zip(order, shared):
        cost = len(seqs[i]) - common
        if groups and (size + cost <= max_tokens if max_tokens > 0 else len(groups[-1]) < micro_batch):
            groups[-1].append(i)
            size += cost
        else:  # a new row holds the whole sequence
            groups.append([i])
            size = len(seqs[i])
    return groups
