"""Token in, token out for chat agents: a reply the agent sends back is given to the engine as the
ids that were sampled, not as the chat template re-tokenises its text.

An agent that only appends (the model's reply, then its next message) sends the model's text back.
Rendered and tokenised again, that text need not give the sampled ids (a reply cut by `max_tokens`
mid-word, a token the tokenizer would have merged otherwise), and the episode would split into two
samples (system/agents/episodes.py). So where the assistant message that follows an earlier call's
messages is that call's reply, word for word, the new prompt is that call's prompt, its sampled ids,
then the rest as vLLM rendered it (from where the text of the history and the reply ends). The
earlier call's prompt had its own replies put back the same way, so a whole append-only episode is
one sample that holds exactly the sampled tokens.

An agent that rewrote its history (a reply changed, a message dropped) gets vLLM's rendering as it
is, and its episode splits as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from system.agents.episodes import Call


@dataclass
class Rendered:
    """A chat call as vLLM rendered it: its messages and their ids (the template applied)."""

    messages: list
    ids: list[int]


def is_reply(message, text: str) -> bool:
    """Whether `message` is an assistant message of exactly `text` (no tool calls)."""
    return (isinstance(message, dict) and message.get("role") == "assistant"
            and message.get("content") == text and not message.get("tool_calls"))


def with_replies(call: Rendered, earlier: list[tuple[Rendered, Call]], tokenizer) -> Optional[list[int]]:
    """The prompt of `call` with the latest earlier reply it sends back put back as sampled ids, or None
    if it sends none back. `earlier`: the episode's finished chat calls, each as rendered and as
    sampled; `tokenizer`: the engine's (a Hugging Face tokenizer)."""
    for before, sampled in sorted(earlier, key=lambda pair: -len(pair[0].messages)):
        k = len(before.messages)
        if not (len(call.messages) > k and call.messages[:k] == before.messages
                and is_reply(call.messages[k], sampled.text)):
            continue
        near = len(before.ids) + len(tokenizer.encode(sampled.text, add_special_tokens=False))
        end = _end_of(call.ids, _text(tokenizer, before.ids) + sampled.text, near, tokenizer)
        if end is None:  # the template changed the history or the reply (trimmed it, say): not ours to mend
            continue
        rest = call.ids[end:]
        closing = sampled.tokens[-1:]  # an EOS ends the sampled ids, not the text: the template's is the same
        if sampled.finish_reason == "stop" and closing and closing[0] in tokenizer.all_special_ids \
                and rest[:1] == closing:
            rest = rest[1:]
        return sampled.prompt + sampled.tokens + rest
    return None


def _end_of(ids: list[int], text: str, near: int, tokenizer, reach: int = 3) -> Optional[int]:
    """The end of the first tokens of `ids` that spell `text` exactly, looked for `reach` tokens either side
    of `near` (the tokens of the history and of the reply, counted apart; where they meet, the tokenizer
    may merge a token or two)."""
    window = range(max(near - reach, 0), min(near + reach, len(ids)) + 1)
    for end in sorted(window, key=lambda e: abs(e - near)):
        if _text(tokenizer, ids[:end]) == text:
            return end
    return None


def _text(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
