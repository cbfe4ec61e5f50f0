"""Token in, token out (system/agents/replies.py) with the tiny model's real tokenizer and chat template:
a reply sent back goes to the engine as its sampled ids; a rewritten one does not."""

import pytest

from system.agents.episodes import Call, assemble
from system.agents.replies import Rendered, with_replies

FIRST = [{"role": "user", "content": "Hi."}]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from system.models import tiny_model_path

    return AutoTokenizer.from_pretrained(tiny_model_path())


def render(tokenizer, messages: list) -> Rendered:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    return Rendered(messages, ids)


def sampled(index: int, prompt: list[int], tokens: list[int], text: str, finish_reason="length") -> Call:
    return Call(index, prompt, tokens, [-1.0] * len(tokens), [0] * len(tokens), finish_reason, text)


def turn(messages: list, reply: str) -> list:
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Go on."}]


def test_a_reply_cut_mid_word_goes_back_as_its_sampled_ids(tokenizer):
    first = render(tokenizer, FIRST)
    ids = tokenizer.encode("Hel") + tokenizer.encode("lo") + tokenizer.encode(" wor")
    assert tokenizer.encode("Hello wor") != ids  # the same text, other tokens
    call = sampled(0, first.ids, ids, "Hello wor")
    second = render(tokenizer, turn(FIRST, "Hello wor"))
    assert second.ids[:len(first.ids) + len(ids)] != first.ids + ids  # what split such episodes
    prompt = with_replies(second, [(first, call)], tokenizer)
    assert prompt[:len(first.ids) + len(ids)] == first.ids + ids
    assert tokenizer.decode(prompt) == tokenizer.decode(second.ids)  # the same text, the sampled ids
    # The next call sends both replies back: its prompt extends this one, one sample in all.
    call2 = sampled(1, prompt, tokenizer.encode(" yes"), " yes")
    third = render(tokenizer, turn(turn(FIRST, "Hello wor"), " yes"))
    prompt3 = with_replies(third, [(first, call), (second, call2)], tokenizer)
    [sample] = assemble([call, call2, sampled(2, prompt3, [5], "x")])
    assert [t for t, m in zip(sample.tokens, sample.loss_mask) if m] == ids + call2.tokens + [5]


def test_an_eos_ending_a_reply_is_the_templates_end_of_turn(tokenizer):
    first = render(tokenizer, FIRST)
    eos = tokenizer.eos_token_id
    call = sampled(0, first.ids, tokenizer.encode("Hello") + [eos], "Hello", "stop")
    second = render(tokenizer, turn(FIRST, "Hello"))
    prompt = with_replies(second, [(first, call)], tokenizer)
    assert prompt[:len(first.ids) + 2] == call.prompt + call.tokens
    assert prompt == second.ids  # one EOS, not two


def test_a_reply_that_merges_with_the_template_is_still_found(tokenizer):
    first = render(tokenizer, FIRST)
    call = sampled(0, first.ids, tokenizer.encode("\n"), "\n")  # "assistant\n" + "\n": one token rendered
    second = render(tokenizer, turn(FIRST, "\n"))
    assert second.ids[:len(first.ids)] != first.ids
    prompt = with_replies(second, [(first, call)], tokenizer)
    assert prompt[:len(first.ids) + 1] == first.ids + call.tokens
    assert tokenizer.decode(prompt) == tokenizer.decode(second.ids)


@pytest.mark.parametrize("history", [
    turn(FIRST, "Hello world"),  # the reply rewritten
    turn([{"role": "user", "content": "Hello?"}], "Hello wor"),  # the history before it rewritten
    [{"role": "assistant", "content": "Hello wor"}, {"role": "user", "content": "Go on."}],  # trimmed
])
def test_a_rewritten_history_is_left_as_vllm_rendered_it(tokenizer, history):
    first = render(tokenizer, FIRST)
    call = sampled(0, first.ids, tokenizer.encode("Hel") + tokenizer.encode("lo wor"), "Hello wor")
    assert with_replies(render(tokenizer, history), [(first, call)], tokenizer) is None
