"""Log-probs over length-sorted micro-batches: every sequence scored, results in the order given."""

import torch

from system.logprobs import micro_batches
from system.training import compute_logprobs


def test_micro_batches_group_similar_lengths():
    seqs = [{"tokens": torch.zeros(n)} for n in (9, 2, 7, 3, 8, 1)]
    groups = micro_batches(seqs, 2)
    assert [[len(s["tokens"]) for s in g] for g in groups] == [[1, 2], [3, 7], [8, 9]]
    assert sum(len(g) for g in groups) == len(seqs)


def test_compute_logprobs_keeps_the_given_order(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [{"tokens": torch.randint(1, 1000, (n,), generator=g)} for n in (12, 5, 9, 17, 6)]
    batched = compute_logprobs(model, seqs, micro_batch=2, pad_id=0, temperature=0.7)
    for seq, logp in zip(seqs, batched):
        [alone] = compute_logprobs(model, [seq], micro_batch=1, pad_id=0, temperature=0.7)
        assert logp.shape == seq["tokens"].shape
        torch.testing.assert_close(logp, alone, atol=1e-4, rtol=0)
