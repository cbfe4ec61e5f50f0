"""SFT data: the loss mask covers the assistant's tokens only, tokenised as the engine sees them,
and packing never lets an example attend to its neighbours."""

import pytest
import torch

from system.data.prompts import encode_chat
from system.training.sft import SFTRow, encode_conversation, make_rows, token_nll

CHAT = [{"role": "user", "content": "Make 7 from [3, 4]"},
        {"role": "assistant", "content": "<answer> 3 + 4 </answer>"}]
TWO_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Make 7 from [3, 4]"},
    {"role": "assistant", "content": "<answer> 3 + 4 </answer>"},
    {"role": "user", "content": "And 12?"},
    {"role": "assistant", "content": "<answer> 3 * 4 </answer>"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def masked_text(tokenizer, ids, mask, value):
    return tokenizer.decode([t for t, m in zip(ids, mask) if m == value])


def test_loss_mask_covers_the_assistant_tokens_only(tokenizer):
    ids, mask = encode_conversation(tokenizer, CHAT)
    assert len(ids) == len(mask)
    # the reply and its end
    assert masked_text(tokenizer, ids, mask, 1) == "<answer> 3 + 4 </answer><|im_end|>"
    prompt = masked_text(tokenizer, ids, mask, 0)
    assert "Make 7 from [3, 4]" in prompt and prompt.endswith("<|im_start|>assistant\n")
    # The prompt is exactly what the rollout engine is given: SFT and GRPO see the same tokens.
    assert ids[:mask.index(1)] == encode_chat(tokenizer, CHAT[:1])


def test_every_assistant_turn_is_trained_and_nothing_else(tokenizer):
    ids, mask = encode_conversation(tokenizer, TWO_TURNS)
    trained = masked_text(tokenizer, ids, mask, 1)
    assert trained == "<answer> 3 + 4 </answer><|im_end|><answer> 3 * 4 </answer><|im_end|>"
    untrained = masked_text(tokenizer, ids, mask, 0)
    assert all(text in untrained for text in ("Be brief.", "Make 7 from [3, 4]", "And 12?"))
    assert "<answer>" not in untrained
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(TWO_TURNS, tokenize=False).rstrip("\n")


def test_chats_without_a_reply_or_with_rewriting_templates_are_refused(tokenizer):
    with pytest.raises(ValueError, match="without an assistant turn"):
        encode_conversation(tokenizer, CHAT[:1])

    class StripsPastReplies:  # like templates that drop earlier turns' reasoning
        eos_token = tokenizer.eos_token

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            last = len(messages) - 1
            text = "".join(f"[{m['role']}] {m['content'] if i == last or m['role'] != 'assistant' else ''}\n"
                           for i, m in enumerate(messages))
            return text + ("[assistant] " if add_generation_prompt else "")

        def __call__(self, text, add_special_tokens):
            return {"input_ids": [ord(c) for c in text]}

    with pytest.raises(ValueError, match="cannot be masked"):
        encode_conversation(StripsPastReplies(), TWO_TURNS)


def test_packing_fills_rows_and_restarts_positions(tokenizer):
    examples = [encode_conversation(tokenizer, chat) for chat in (CHAT, TWO_TURNS, CHAT, CHAT)]
    lengths = [len(ids) for ids, _ in examples]
    limit = lengths[0] + lengths[1]
    rows = make_rows(examples, limit, packing=True)
    assert [len(r.tokens) for r in rows] == [limit, lengths[2] + lengths[3]]
    assert rows[0].positions.tolist() == list(range(lengths[0])) + list(range(lengths[1]))
    assert rows[0].loss_mask.tolist() == examples[0][1] + examples[1][1]
    assert len(make_rows(examples, limit, packing=False)) == 4
    cut = make_rows(examples[:1], 10, packing=False)[0]  # longer examples are cut to max_length
    assert cut.tokens.tolist() == examples[0][0][:10] and cut.positions.tolist() == list(range(10))


@pytest.mark.parametrize("attention", ["varlen_sdpa", "sdpa"])
def test_packed_examples_do_not_attend_to_each_other(tiny_model, tokenizer, attention):
    import system.training.packing  # noqa: F401 (registers varlen_sdpa)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                 attn_implementation=attention)
    examples = [encode_conversation(tokenizer, chat) for chat in (TWO_TURNS, CHAT)]
    packed = make_rows(examples, 4096, packing=True)[0]
    together, mask = token_nll(model, [packed])
    for i, (ids, loss_mask) in enumerate(examples):  # the textbook NLL of each example alone
        ids = torch.tensor(ids)
        logits = model(input_ids=ids[None]).logits[0, :-1]
        alone = torch.nn.functional.pad(torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none"),
                                        (1, 0))
        m = torch.tensor(loss_mask, dtype=torch.float32)
        assert torch.equal(mask[i, :len(ids)], m)
        torch.testing.assert_close(together[i, :len(ids)] * m, alone * m, atol=1e-4, rtol=1e-4)
    # Without restarted positions the second example would see the first: the loss would differ.
    leaky, _ = token_nll(model, [SFTRow(packed.tokens, packed.loss_mask, torch.arange(len(packed.tokens)))])
    second = slice(len(examples[0][0]), len(packed.tokens))
    leaked = (leaky[0, second] - together[1, :second.stop - second.start]) * packed.loss_mask[second]
    assert leaked.abs().max() > 1e-2


def test_an_assistant_turn_of_weight_0_is_context_not_loss(tokenizer):
    failed = [dict(m) for m in TWO_TURNS]
    failed[2]["weight"] = 0  # the first try, followed by feedback
    ids, mask = encode_conversation(tokenizer, failed)
    assert ids == encode_conversation(tokenizer, TWO_TURNS)[0]  # the same tokens: the try is context
    assert masked_text(tokenizer, ids, mask, 1) == "<answer> 3 * 4 </answer><|im_end|>"
    assert "<answer> 3 + 4 </answer>" in masked_text(tokenizer, ids, mask, 0)
    failed[4]["weight"] = None  # a data set with weights on some messages reads None on the others
    assert encode_conversation(tokenizer, failed)[1] == mask
    with pytest.raises(ValueError, match="to train on"):
        encode_conversation(tokenizer, failed[:3])
    failed[4]["weight"] = 0.5
    with pytest.raises(ValueError, match="'weight' must be 0 or 1"):
        encode_conversation(tokenizer, failed)


def test_weights_survive_a_distilled_data_file(tokenizer, tmp_path):
    """distill's data.jsonl mixes episodes (a failed try of weight 0) and single replies: loaded by
    `datasets`, the messages without a weight read None and are trained on."""
    import json

    from system.config.grpo import DataConfig
    from system.training.sft import load_conversations

    episode = [dict(m) for m in TWO_TURNS]
    episode[2]["weight"] = 0
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in (episode, CHAT)))
    chats, _ = load_conversations(DataConfig(source=str(path), num_eval=0))
    assert [m.get("weight") for m in chats[1]] == [None, None]
    assert load_conversations(DataConfig(source=str(path), num_eval=0, skip=1))[0] == chats[1:]  # data.skip
    masks = [encode_conversation(tokenizer, chat)[1] for chat in chats]
    assert masks == [encode_conversation(tokenizer, episode)[1], encode_conversation(tokenizer, CHAT)[1]]
