"""Pulling the final answer out of a completion: the last tagged answer, boxed value or code block.

The last one counts because models restate and correct themselves; an earlier, abandoned answer
must not be graded.
"""

from __future__ import annotations

import re
from typing import Optional

_CODE_BLOCK = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def tag_content(text: str, tag: str = "answer") -> Optional[str]:
    """The stripped text of the last `<tag>...</tag>`, or None if there is none (linear time)."""
    end = text.rfind(f"</{tag}>")
    start = text.rfind(f"<{tag}>", 0, end)
    return text[start + len(tag) + 2 : end].strip() if end >= 0 and start >= 0 else None


def boxed_content(text: str) -> Optional[str]:
    r"""The text inside the last `\boxed{...}` or `\fbox{...}` (braces balanced), or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    depth, begin = 0, text.index("{", start) + 1
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
    return None


def final_answer(text: str, tag: str = "answer") -> Optional[str]:
    r"""The last `<answer>` content if there is one, else the last `\boxed{}` content."""
    answer = tag_content(text, tag)
    return answer if answer is not None else boxed_content(text)


def code_block(text: str, languages: tuple[str, ...] = ("python", "py", "python3")) -> Optional[str]:
    """The last fenced code block in one of `languages` (or with no language given), or None."""
    blocks = [body for lang, body in _CODE_BLOCK.findall(text) if lang.lower() in languages + ("",)]
    return blocks[-1] if blocks else None
