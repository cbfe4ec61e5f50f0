"""Per-token log-probs (and entropy) of sequences under a causal LM, on packed micro-batches (packing.py).

Sequences are objects with 1-D tensor fields indexed by token position (samples.TrainingSample,
sft.SFTRow): `tokens[t]`, and per-token values such as `logp[t]` = log pi(tokens[t] | tokens[:t]).
Position 0 has no log-prob (nothing predicts it) and is 0.
"""

from __future__ import annotations

import torch

from system.training.packing import VARLEN_SDPA, Packed, micro_batch_groups, pack


def pad_sequences(seqs: list, keys: list[str], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-pad each field's 1-D tensors to the longest sequence; adds `attention_mask`. (Packed
    micro-batches pad only the per-token fields the loss reads, never the model's input.)"""
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


def token_logprobs(model, packed: Packed, temperature: float = 1.0,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token_t | its sequence before t) at temperature, [sequences, longest], on the needed
    tokens of each sequence (packing.loss_span), 0 elsewhere; and the entropy there if asked.

    Temperature divides the logits exactly as the sampler did, so these match the engine's
    sampling log-probs (vLLM's `processed_logprobs`). Only the positions that predict a needed
    token go through the LM head and the vocabulary-wide softmax: with prompts longer than
    answers, that is most of the work saved."""
    attention = getattr(model, "module", model).config._attn_implementation  # a DeepSpeed engine's module
    if packed.shares and attention != VARLEN_SDPA:
        raise ValueError(f"shared prefixes need the {VARLEN_SDPA} attention, the model has {attention}: load it "
                         "with Platform.attn_implementation(dtype, share_prefixes=True)")
    logits = model(**packed.model_kwargs(), use_cache=False, logits_to_keep=packed.keep).logits[0]
    logp, entropy = SelectedLogprobs.apply(logits, packed.targets, temperature, with_entropy)
    return packed.unpack(logp), packed.unpack(entropy) if with_entropy else None


@torch.no_grad()
def compute_logprobs(engine, seqs: list, temperature: float, *, max_tokens: int, micro_batch: int,
                     share_prefixes: bool = False) -> list[torch.Tensor]:
    """Per-sequence log-prob tensors (length of each sequence), in the order given; micro-batches
    as packing.micro_batch_groups makes them."""
    out: list[torch.Tensor] = [None] * len(seqs)
    for group in micro_batch_groups(seqs, max_tokens, micro_batch, engine.device, share_prefixes):
        logp, _ = token_logprobs(engine, pack([seqs[i] for i in group], engine.device, share_prefixes),
                                 temperature)
        for row, i in enumerate(group):
            out[i] = logp[row, : len(seqs[i].tokens)].float().cpu()
    return out
