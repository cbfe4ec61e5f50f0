"""Supervised fine-tuning on chats: token ids with a loss mask on the assistant's tokens, packing,
and the loss, as plain functions of one data-parallel rank (actors/sft.py only holds the engine).

An assistant turn is tokenised as the rollout engine sees it: the prompt is the chat template's
text with the turn opened (as `encode_chat`), the reply its own tokens up to and including the
end-of-turn token. The loss is the mean negative log-likelihood over every assistant token of the
global batch, not of each micro-batch, so micro-batching, packing and data parallelism never
change the objective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from system.data import split_rows
from system.training.logprobs import token_logprobs
from system.training.packing import micro_batches, pack


def load_conversations(cfg) -> tuple[list[list[dict]], list[list[dict]]]:
    """(train, eval) chats of the `messages` column of an SFT data set (cfg: DataConfig): a
    .jsonl/.parquet file, as distill writes it, or a hub dataset id. The first num_eval rows are held out,
    then `skip` rows are passed over."""
    from datasets import load_dataset

    ext = os.path.splitext(cfg.source)[1]
    if ext in (".jsonl", ".json", ".parquet"):
        if not os.path.exists(cfg.source):
            raise FileNotFoundError(f"SFT data file not found: {cfg.source}")
        data = load_dataset("parquet" if ext == ".parquet" else "json", data_files=cfg.source, split="train")
    else:
        data = load_dataset(cfg.source, split="train")
    if "messages" not in data.column_names:
        raise ValueError(f"{cfg.source}: SFT data needs a 'messages' column, has {data.column_names}")
    return split_rows(list(data["messages"]), cfg)


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a chat and a mask that is 1 on the assistant's tokens only.

    Each assistant turn is cut out of the template's text by rendering the chat up to the turn
    (with the generation prompt) and through it; the template's glue after the end-of-turn token
    belongs to the next prompt. Templates that rewrite earlier turns (some strip past reasoning)
    cannot be split this way and raise.

    An assistant message with `"weight": 0` (as in OpenAI's fine-tuning format) stays in the context
    but gets no loss: a failed try before the env's feedback is shown, not taught (teachers/episodes.py)."""
    render = lambda upto, opened: tokenizer.apply_chat_template(  # noqa: E731
        messages[:upto], tokenize=False, add_generation_prompt=opened)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    ids: list[int] = []
    mask: list[int] = []
    seen = ""  # the text tokenised so far
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, through = render(i, True), render(i + 1, False)
        if not (prompt.startswith(seen) and through.startswith(prompt)):
            raise ValueError("the chat template renders earlier turns differently once later ones follow; "
                             "its assistant turns cannot be masked")
        reply = through[len(prompt):]
        end = reply.rfind(tokenizer.eos_token)
        reply = reply[: end + len(tokenizer.eos_token)] if end >= 0 else reply
        prompt_ids, reply_ids = encode(prompt[len(seen):]), encode(reply)
        ids += prompt_ids + reply_ids
        mask += [0] * len(prompt_ids) + [message_weight(message)] * len(reply_ids)
        seen = prompt + reply
    if not any(mask):
        raise ValueError(f"a chat without an assistant turn to train on (weight 1): {messages}")
    return ids, mask


def message_weight(message: dict) -> int:
    """1: the assistant message is trained on, 0: not; a data set that gives some messages a
    weight reads None on the others, which count as 1."""
    weight = message.get("weight")
    if weight not in (None, 0, 1):
        raise ValueError(f"an assistant message's 'weight' must be 0 or 1, got {weight!r}")
    return 0 if weight == 0 else 1


@dataclass
class SFTRow:
    """One row of an SFT batch: one example, or several packed."""

    tokens: torch.Tensor  # long [L]
    loss_mask: torch.Tensor  # float [L]: 1 on the assistant's tokens
    positions: torch.Tensor  # long [L]: position ids, restarting at 0 with each packed example


def make_rows(examples: list[tuple[list[int], list[int]]], max_length: int, packing: bool) -> list[SFTRow]:
    """Training rows, each example cut to max_length.

    Packing puts consecutive examples in one row until the next would overflow max_length.
    Positions restart at 0 with each example; `token_nll` finds the examples again by them, so
    that an example never attends to its neighbours."""
    rows: list[list[tuple[list[int], list[int]]]] = []
    for ids, mask in examples:
        example = (ids[:max_length], mask[:max_length])
        if packing and rows and sum(len(e[0]) for e in rows[-1]) + len(example[0]) <= max_length:
            rows[-1].append(example)
        else:
            rows.append([example])
    return [
        SFTRow(tokens=torch.tensor([t for ids, _ in row for t in ids], dtype=torch.long),
               loss_mask=torch.tensor([m for _, mask in row for m in mask], dtype=torch.float32),
               positions=torch.cat([torch.arange(len(ids)) for ids, _ in row]))
        for row in rows
    ]


def examples_of(row: SFTRow) -> list[SFTRow]:
    """The examples packed in a row, each alone (its positions restart at 0)."""
    starts = torch.nonzero(row.positions == 0).flatten().tolist() + [len(row.tokens)]
    return [SFTRow(row.tokens[a:b], row.loss_mask[a:b], row.positions[a:b]) for a, b in zip(starts, starts[1:])]


def token_nll(model, rows: list[SFTRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log p(token_t | the tokens of its example before t), loss mask), both [examples, longest],
    over the examples of `rows`, laid end to end in one packed row (packing.py: attention stays
    inside each example, no padding is computed, and only the logits of assistant tokens are made)."""
    examples = [e for row in rows for e in examples_of(row)]
    packed = pack(examples, model.device)
    logp, _ = token_logprobs(model, packed)
    mask = torch.nn.utils.rnn.pad_sequence([e.loss_mask for e in examples], batch_first=True).to(logp.device)
    return -logp, mask


def sft_update(engine, rows: list[SFTRow], total_tokens: float, *, micro_batch: int,
               world_size: int) -> dict[str, float]:
    """One optimizer step on this rank's rows; `total_tokens`: loss tokens of the global batch.
    Returns this rank's share of the loss, which the driver sums over ranks."""
    engine.train()
    loss_sum = 0.0
    for mb in micro_batches(rows, micro_batch):
        nll, mask = token_nll(engine, mb)
        loss = (nll * mask).sum() / total_tokens
        # DeepSpeed averages gradients over ranks; the loss already normalises over the global batch.
        engine.backward(loss * world_size, scale_wrt_gas=False)
        engine.step()
        loss_sum += float(loss.detach())
    norm = engine.get_global_grad_norm()
    return {"loss": loss_sum, "grad_norm": float(norm) if norm is not None else 0.0, "lr": engine.get_lr()[0]}


@torch.no_grad()
def nll_sum(engine, rows: list[SFTRow], *, micro_batch: int) -> dict[str, float]:
    """Summed NLL and loss-token count of `rows`, for an eval loss over ranks."""
    engine.eval()
    total = {"nll": 0.0, "tokens": 0.0}
    for mb in micro_batches(rows, micro_batch):
        nll, mask = token_nll(engine, mb)
        total["nll"] += float((nll * mask).sum())
        total["tokens"] += float(mask.sum())
    return total
