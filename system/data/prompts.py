"""Prompt templates and prompt token ids.

A user-message template is a registered name or a literal string with `{column}` fields. The
prompt chat ([system,] user) becomes token ids in one of two formats:
- chat: the tokenizer's chat template with the assistant turn opened (instruct models);
- base: R1-Zero / TinyZero plain text for base models without a chat template, ending inside the
  assistant's thinking ("... Assistant: Let me solve this step by step.\\n<think>").
Every single-turn caller (training rollouts, eval, distillation) encodes through `encode_prompt`,
so they all give the engine the same tokens, and none longer than `prompt_budget` (the engine's
context less a whole reply): `data.overlong_prompts` drops the rows of longer prompts when the data
is loaded (`system.data.drop_overlong`), or keeps their last tokens when they are encoded.
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
    # TinyZero's prompt in fewer tokens (64 fewer to train on per sample, for CPU recipes).
    "countdown_short": (
        "Using the numbers {nums}, make {target} with + - * /, each number once. Think in <think> </think> "
        "tags, then give the equation in <answer> </answer> tags."
    ),
    # For small models: the answer alone, in the tags the reward reads (pairs with response_prefix "<answer>").
    "countdown_answer": (
        "Make {target} from the numbers {nums} using + - * /, each number once. Respond with only the "
        "equation inside answer tags, like <answer> 3 + 4 </answer>."
    ),
    "math": "{question}\nThink step by step in <think> </think> tags, "
            "then give the final answer in <answer> </answer> tags.",
    "plain": "{prompt}",
}

# TinyZero's base-model prompt (R1-Zero's template, with the reply opened inside <think>).
BASE_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer.\nUser: {prompt}\nAssistant: Let me solve this step by step.\n<think>"
)


PROMPT_FORMATS = ("chat", "base")  # data.prompt_format: encode_prompt below
OVERLONG_PROMPTS = ("drop", "truncate_left")  # data.overlong_prompts: see the module's docstring


def template_text(name_or_text: str) -> str:
    return TEMPLATES.get(name_or_text, name_or_text)


def template_fields(text: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(text) if field]


def base_text(messages: list[dict]) -> str:
    """The base-format prompt of a chat of one user turn (the template's first lines play the system's part)."""
    if [m["role"] for m in messages] != ["user"]:
        raise ValueError(f"the base prompt format takes one user turn, got the roles {[m['role'] for m in messages]}")
    return BASE_TEMPLATE.format(prompt=messages[0]["content"])


def encode_chat(tokenizer, messages: list[dict], response_prefix: str = "") -> list[int]:
    """Prompt token ids: the chat template with the assistant turn opened (and started with
    `response_prefix`), tokenised once."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template: "
                         "set data.prompt_format=base for a base model")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text + response_prefix, add_special_tokens=False)["input_ids"]


def encode_prompt(tokenizer, messages: list[dict], response_prefix: str = "", prompt_format: str = "chat") -> list[int]:
    """Prompt token ids of a data row's chat in the configured format (data.prompt_format)."""
    if prompt_format == "chat":
        return encode_chat(tokenizer, messages, response_prefix)
    if prompt_format == "base":  # plain text: the tokenizer adds its BOS token, if it has one, as for any text
        return tokenizer(base_text(messages) + response_prefix)["input_ids"]
    raise ValueError(f"unknown prompt format {prompt_format!r}: chat | base")


def prompt_budget(cfg) -> int:
    """The most prompt tokens the engine takes with room left for a whole reply (cfg: a run config)."""
    return cfg.rollout.max_model_len - cfg.rollout.max_new_tokens
