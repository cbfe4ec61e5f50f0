"""Prompt templates: a dataset row's columns -> the chat the model sees.

A template is a registered name or a literal string with `{column}` fields.
"""

from __future__ import annotations

import string

TEMPLATES = {
    # TinyZero's Countdown prompt, with the answer format spelled out for a small model.
    "countdown": (
        "Using the numbers {nums}, create an equation that equals {target}. You can use basic "
        "arithmetic operations (+, -, *, /) and each number must be used exactly once. Think in "
        "<think> </think> tags, then give only the equation in <answer> </answer> tags, for "
        "example <answer> (1 + 2) * 3 </answer>."
    ),
    # For small models: the answer alone, in the tags the reward reads (pairs with response_prefix "<answer>").
    "countdown_answer": (
        "Make {target} from the numbers {nums} using + - * /, each number once. Respond with only the "
        "equation inside answer tags, like <answer> 3 + 4 </answer>."
    ),
    "math": "{question}\nThink step by step in <think> </think> tags, then give the final answer in <answer> </answer> tags.",
    "plain": "{prompt}",
}


def template_text(name_or_text: str) -> str:
    return TEMPLATES.get(name_or_text, name_or_text)


def template_fields(text: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(text) if field]


def render_messages(row: dict, template: str, system_prompt: str | None) -> list[dict]:
    text = template_text(template)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text.format(**row)})
    return messages


def encode_chat(tokenizer, messages: list[dict], response_prefix: str = "") -> list[int]:
    """Prompt token ids: the chat template with the assistant turn opened (and started with
    `response_prefix`), tokenised once."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text + response_prefix, add_special_tokens=False)["input_ids"]
