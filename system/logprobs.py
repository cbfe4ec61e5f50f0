"""Per-token log-probs (and entropy) of sequences under a causal LM, on padded micro-batches.

Sequences travel as dicts of 1-D tensors indexed by token position: `tokens[t]`, and for
per-token values such as `logp[t]` = log pi(tokens[t] | tokens[:t]). Position 0 has no
log-prob (nothing predicts it) and is 0.
"""

from __future__ import annotations

import torch


def pad_sequences(seqs: list[dict], keys: list[str], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-pad each key's 1-D tensors to the longest sequence; adds `attention_mask`."""
    length = max(len(s["tokens"]) for s in seqs)
    out = {}
    for key in keys:
        fill = pad_id if key == "tokens" else 0
        rows = [torch.nn.functional.pad(s[key], (0, length - len(s[key])), value=fill) for s in seqs]
        out[key] = torch.stack(rows).to(device)
    out["attention_mask"] = torch.stack(
        [(torch.arange(length) < len(s["tokens"])).long() for s in seqs]
    ).to(device)
    return out


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
    out = model(input_ids=tokens, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep)
    logits = out.logits[:, :-1].float() / temperature
    log_norm = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, tokens[:, start:].unsqueeze(-1)).squeeze(-1) - log_norm
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = torch.nn.functional.pad(log_norm - (torch.softmax(logits, -1) * logits).sum(-1), (start, 0))
    return torch.nn.functional.pad(logp, (start, 0)), entropy


def first_loss_position(seqs: list[dict]) -> int:
    """The earliest token that carries a log-prob we need (>= 1: nothing predicts token 0)."""
    firsts = [int(torch.nonzero(s["loss_mask"])[0]) for s in seqs if "loss_mask" in s and s["loss_mask"].any()]
    return max(1, min(firsts)) if len(firsts) == len(seqs) else 1


def micro_batches(seqs: list, size: int, length=lambda s: len(s["tokens"])) -> list[list]:
    """Groups of `size`, cut from the sequences sorted by length: each group is padded to its own
    longest, so similar lengths together compute least on padding (19% -> 5% of the train
    tokens in bench/grpo_bench.yaml, docs/benchmarks.md). Losses are sums normalised over the
    whole mini-batch, so the order does not change the gradient."""
    ordered = sorted(seqs, key=length)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]
