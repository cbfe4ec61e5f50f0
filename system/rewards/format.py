"""Rewards for the shape of a completion: R1's `<think>...</think><answer>...</answer>` layout.

`format` is all or nothing; `tag_count` gives partial credit per tag, a denser signal for small
models that have not found the layout yet; `reasoning_steps` rewards visibly stepwise reasoning;
`code_format` (open-r1's) is `format` with a fenced code block of the right language in the answer.
The opening `<think>` may be missing: the base prompt template ends with it, so the completion
starts inside the thinking.
"""

from __future__ import annotations

import re

from system.rewards.extract import tag_content
from system.rewards.registry import register_reward


def make_format(think: str = "think", answer: str = "answer"):
    """1.0 for `[<think>] ... </think> <answer> ... </answer>` with each tag once and nothing after."""
    t, a = re.escape(think), re.escape(answer)
    layout = re.compile(rf"\s*(?:<{t}>)?.*?</{t}>\s*<{a}>.*?</{a}>\s*", re.DOTALL)
    once = (f"</{think}>", f"<{answer}>", f"</{answer}>")

    def format_reward(completions: list[str], **kwargs) -> list[float]:
        return [
            1.0
            if c.count(f"<{think}>") <= 1 and all(c.count(tag) == 1 for tag in once) and layout.fullmatch(c)
            else 0.0
            for c in completions
        ]

    return format_reward


def make_code_format(language: str = "python", think: str = "think", answer: str = "answer"):
    """1.0 for `format`'s layout with a ```<language> fenced block inside the answer; a data set's
    `language` column, where it has one, names the language per row (open-r1's mixed-language
    training). The fence must name the language: a bare ``` does not count."""
    layout = make_format(think, answer)

    def code_format(completions: list[str], **columns) -> list[float]:
        languages = columns.get("language") or [language] * len(completions)
        return [
            float(shaped == 1.0 and _fenced_block(tag_content(c, answer), lang or language))
            for c, lang, shaped in zip(completions, languages, layout(completions))
        ]

    return code_format


def _fenced_block(text: str, language: str) -> bool:
    return re.search(rf"```{re.escape(language)}[ \t]*\n.*?```", text, re.DOTALL | re.IGNORECASE) is not None


def make_tag_count(think: str = "think", answer: str = "answer"):
    """0.25 for each of the four tags that appears exactly once."""
    tags = (f"<{think}>", f"</{think}>", f"<{answer}>", f"</{answer}>")

    def tag_count(completions: list[str], **kwargs) -> list[float]:
        return [sum(0.25 for t in tags if c.count(t) == 1) for c in completions]

    return tag_count


_STEP = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", re.MULTILINE)


@register_reward("reasoning_steps")
def reasoning_steps(completions: list[str], **kwargs) -> list[float]:
    """min(1, markers / 3) for step markers ("Step 1:", "1.", bullets, "First,", ...), as open-r1."""
    return [min(1.0, len(_STEP.findall(c)) / 3) for c in completions]


format_reward = register_reward("format")(make_format())
tag_count = register_reward("tag_count")(make_tag_count())
code_format = register_reward("code_format")(make_code_format())
