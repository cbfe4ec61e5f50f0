"""Packed micro-batches (system/training/packing.py): groups within the token budget, the same
log-probs as each sequence alone, and no attention across the sequences of a row, under every
attention implementation the trainer may get."""

import pytest
import torch

from system.platform import CPU
from system.training.logprobs import compute_logprobs, token_logprobs
from system.training.packing import (group_by_tokens, loss_span, micro_batch_groups, micro_batches, pack,
                                     to_count)
from system.training.samples import TrainingSample

IMPLEMENTATIONS = [CPU.attn_implementation("float32"), "sdpa", "eager"]


def sample(tokens: torch.Tensor, first_loss: int, last_loss: int | None = None) -> TrainingSample:
    mask = torch.zeros(len(tokens))
    mask[first_loss:last_loss] = 1
    return TrainingSample(tokens, mask, torch.zeros(len(tokens)))


def random_samples(lengths, seed=0) -> list[TrainingSample]:
    g = torch.Generator().manual_seed(seed)
    return [sample(torch.randint(1, 1000, (n,), generator=g), n // 2) for n in lengths]


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def model(request, tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                attn_implementation=request.param).eval()


def alone(model, s: TrainingSample, temperature: float) -> torch.Tensor:
    """The unpacked truth: the sequence by itself through the model, the textbook log-softmax."""
    logits = model(s.tokens[None]).logits[0, :-1].float() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, s.tokens[1:, None]).squeeze(-1)
    first, end = loss_span(s)
    return torch.nn.functional.pad(logp, (1, 0)) * ((torch.arange(len(s.tokens)) >= first) &
                                                    (torch.arange(len(s.tokens)) < end))


def test_groups_stay_within_the_budget_and_cover_every_sequence():
    lengths = [9, 2, 7, 3, 8, 1, 12, 5]
    groups = group_by_tokens(lengths, 12)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in g) <= 12 for g in groups)
    assert len(groups) == 4  # 47 tokens in 4 x 12
    assert group_by_tokens([30, 4], 12) == [[0], [1]]  # longer than the budget: alone
    more, fewer = to_count(groups, lengths, 7), to_count(groups, lengths, 3)
    assert len(more) == 7 and len(fewer) == 3
    assert sorted(i for g in more + fewer for i in g) == sorted(2 * list(range(len(lengths))))


def test_count_based_groups_are_the_length_sorted_micro_batches():
    seqs = random_samples([9, 2, 7, 3, 8, 1])
    groups = micro_batch_groups(seqs, 0, 2, "cpu")
    assert [[len(seqs[i].tokens) for i in g] for g in groups] == [[1, 2], [3, 7], [8, 9]]
    assert micro_batches(list(range(6)), 2, length=lambda i: len(seqs[i].tokens)) == groups


def test_a_row_holds_each_sequence_up_to_its_last_loss_token():
    a, b = sample(torch.arange(10, 20), 4, 8), sample(torch.arange(30, 36), 0)  # b: loss from token 0
    p = pack([a, b], "cpu")
    assert p.tokens.tolist() == [list(range(10, 18)) + list(range(30, 36))]
    assert p.positions.tolist() == [list(range(8)) + list(range(6))]
    assert p.cu_seq_lens.tolist() == [0, 8, 14]
    assert p.targets.tolist() == list(range(14, 18)) + list(range(31, 36))  # token 0 has no log-prob
    assert p.shape == (2, 10)


@pytest.mark.parametrize("max_tokens", [1, 40, 10_000])
def test_packed_logprobs_are_each_sequence_alone(model, max_tokens):
    seqs = random_samples([12, 5, 9, 17, 6])
    packed = compute_logprobs(model, seqs, 0.7, max_tokens=max_tokens, micro_batch=2)
    for s, logp in zip(seqs, packed):
        assert logp.shape == s.tokens.shape
        torch.testing.assert_close(logp, alone(model, s, 0.7), atol=1e-5, rtol=0)


def test_no_attention_crosses_sequences(model):
    """Changing one packed sequence's tokens leaves the others' log-probs as they were; the same row
    read as one sequence (what a mask that lets attention cross would compute) does change."""
    a, b, c = random_samples([11, 8, 14], seed=1)
    changed = sample(torch.randint(1, 1000, (8,), generator=torch.Generator().manual_seed(9)), 4)
    before, _ = token_logprobs(model, pack([a, b, c], "cpu"))
    after, _ = token_logprobs(model, pack([a, changed, c], "cpu"))
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.equal(before[1], after[1])

    def as_one_sequence(p):  # the same row, its positions running on
        p.positions = torch.arange(p.tokens.shape[1])[None]
        p.cu_seq_lens = torch.tensor([0, p.tokens.shape[1]], dtype=torch.int32)
        return p

    crossed_before, _ = token_logprobs(model, as_one_sequence(pack([a, b, c], "cpu")))
    crossed_after, _ = token_logprobs(model, as_one_sequence(pack([a, changed, c], "cpu")))
    assert not torch.allclose(crossed_before[2], crossed_after[2])


def test_bf16_packed_logprobs_are_each_sequence_alone(tiny_model):
    """The trainer's dtype: packing changes matmul shapes, so bf16 rounding differs, within bf16 noise."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16,
                                                 attn_implementation=CPU.attn_implementation("bfloat16")).eval()
    seqs = random_samples([12, 5, 9, 17, 6])
    packed = compute_logprobs(model, seqs, 1.0, max_tokens=10_000, micro_batch=2)
    for s, logp in zip(seqs, packed):
        torch.testing.assert_close(logp, alone(model, s, 1.0), atol=0.05, rtol=0)


def test_a_sliding_window_holds_inside_packed_sequences():
    """Mistral-style layers attend to the last few tokens only: packed, each sequence keeps that window."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=4,
                           attn_implementation=CPU.attn_implementation("float32"))
    model = MistralForCausalLM(config).eval()
    assert model.config._attn_implementation == CPU.attn_implementation("float32")
    seqs = random_samples([12, 9])
    for s, logp in zip(seqs, compute_logprobs(model, seqs, 1.0, max_tokens=100, micro_batch=2)):
        torch.testing.assert_close(logp, alone(model, s, 1.0), atol=1e-5, rtol=0)
