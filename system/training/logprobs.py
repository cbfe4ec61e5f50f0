"""Per-token log-probs (and entropy) of sequences under a causal LM, on padded micro-batches.

Sequences are objects with 1-D tensor fields indexed by token position (samples.TrainingSample,
sft.SFTRow): `tokens[t]`, and per-token values such as `logp[t]` = log pi(tokens[t] | tokens[:t]).
Position 0 has no log-prob (nothing predicts it) and is 0.
"""

from __future__ import annotations

import torch


def pad_sequences(seqs: list, keys: list[str], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-pad each field's 1-D tensors to the longest sequence; adds `attention_mask`."""
    length = max(len(s.tokens) for s in seqs)
    out = {}
    for key in keys:
        fill = pad_id if key == "tokens" else 0
        rows = [torch.nn.functional.pad(getattr(s, key), (0, length - len(getattr(s, key))), value=fill)
                for s in seqs]
        out[key] = torch.stack(rows).to(device)
    out["attention_mask"] = torch.stack(
        [(torch.arange(length) < len(s.tokens)).long() for s in seqs]
    ).to(device)
    return out


CHUNK_ELEMENTS = 2**23  # fp32 logits per chunk: 32 MiB, under glibc's largest mmap threshold


class SelectedLogprobs(torch.autograd.Function):
    """log softmax(logits / T)[target] and the entropy, row by row, never holding more than one
    chunk of rows in fp32. The textbook way (float, divide, log_softmax, gather; softmax again for
    the entropy) makes ~10 vocabulary-wide fp32 tensors per micro-batch in forward and backward:
    fresh memory whose page faults cost seconds a step on CPU (docs/benchmarks.md). Backward recomputes
    each chunk's softmax from the saved log-normaliser: d logp / d logits = (onehot - softmax) / T, and
    when the loss uses the entropy H (an entropy bonus) d H / d logits = -softmax * (log softmax + H) / T."""

    @staticmethod
    def forward(ctx, logits, targets, temperature: float, with_entropy: bool):
        rows = max(1, CHUNK_ELEMENTS // logits.shape[-1])
        dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16 logits: fp32 math
        logp = torch.empty(logits.shape[0], dtype=dtype, device=logits.device)
        log_norm, entropy = torch.empty_like(logp), torch.zeros_like(logp)
        for s in range(0, logits.shape[0], rows):
            chunk = slice(s, s + rows)
            x = logits[chunk].to(dtype, copy=True).div_(temperature)
            log_norm[chunk] = torch.logsumexp(x, dim=-1)
            x.sub_(log_norm[chunk, None])  # now log-softmax
            logp[chunk] = x.gather(-1, targets[chunk, None]).squeeze(-1)
            if with_entropy:
                entropy[chunk] = -(x.exp() * x).sum(-1)
        ctx.save_for_backward(logits, targets, log_norm, entropy)
        ctx.temperature, ctx.rows, ctx.with_entropy = temperature, rows, with_entropy
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        logits, targets, log_norm, entropy = ctx.saved_tensors
        entropy_used = ctx.with_entropy and bool(grad_entropy.any())  # autograd passes zeros when unused
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], ctx.rows):
            chunk = slice(s, s + ctx.rows)
            g = grad_logp[chunk, None]
            x = logits[chunk].to(log_norm.dtype, copy=True).div_(ctx.temperature).sub_(log_norm[chunk, None])
            if entropy_used:  # -softmax * (g + g_H * (log softmax + H))
                softmax = x.exp()
                x.add_(entropy[chunk, None]).mul_(grad_entropy[chunk, None]).add_(g).mul_(softmax).neg_()
            else:  # -softmax * g
                x = x.exp_().mul_(-g)
            grad[chunk] = x.scatter_add_(-1, targets[chunk, None], g).div_(ctx.temperature)
        return grad, None, None, None


def token_logprobs(
    model, tokens: torch.Tensor, attention_mask: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False,
    start: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token_t | prefix) at temperature, [batch, length]; columns before `start` are 0.

    Temperature divides the logits exactly as the sampler did, so these match the engine's
    sampling log-probs (vLLM's `processed_logprobs`). Only positions from `start` on (the first
    generated token) go through the LM head and the vocabulary-wide softmax: with prompts
    longer than answers, that is most of the work saved."""
    keep = tokens.shape[1] - start + 1  # logits at positions start-1 .. L-1 predict tokens start .. L
    logits = model(input_ids=tokens, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep).logits
    # The last position predicts nothing here: give it a dummy target and drop it (no copy of the logits).
    targets = torch.nn.functional.pad(tokens[:, start:], (0, 1))
    logp, entropy = SelectedLogprobs.apply(logits.flatten(0, 1), targets.flatten(), temperature, with_entropy)
    shape = (tokens.shape[0], keep)
    logp = torch.nn.functional.pad(logp.view(shape)[:, :-1], (start, 0))
    return logp, torch.nn.functional.pad(entropy.view(shape)[:, :-1], (start, 0)) if with_entropy else None


def first_loss_position(seqs: list) -> int:
    """The earliest token that carries a log-prob we need (>= 1: nothing predicts token 0)."""
    firsts = [int(torch.nonzero(s.loss_mask)[0]) for s in seqs if s.loss_mask.any()]
    return max(1, min(firsts)) if len(firsts) == len(seqs) else 1


@torch.no_grad()
def compute_logprobs(engine, seqs: list, micro_batch: int, pad_id: int, temperature: float) -> list[torch.Tensor]:
    """Per-sequence log-prob tensors (length of each sequence), in the order given."""
    out: list[torch.Tensor] = [None] * len(seqs)
    for mb in micro_batches(list(enumerate(seqs)), micro_batch, length=lambda item: len(item[1].tokens)):
        index, mb = zip(*mb)
        batch = pad_sequences(mb, ["tokens"], pad_id, engine.device)
        logp, _ = token_logprobs(engine, batch["tokens"], batch["attention_mask"], temperature,
                                 start=first_loss_position(mb))
        for row, (i, s) in enumerate(zip(index, mb)):
            out[i] = logp[row, : len(s.tokens)].float().cpu()
    return out


def micro_batches(seqs: list, size: int, length=lambda s: len(s.tokens)) -> list[list]:
    """Groups of `size`, cut from the sequences sorted by length: each group is padded to its own
    longest, so similar lengths together compute least on padding (docs/benchmarks.md, table 2).
    Losses are sums normalised over the
    whole mini-batch, so the order does not change the gradient."""
    ordered = sorted(seqs, key=length)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]
