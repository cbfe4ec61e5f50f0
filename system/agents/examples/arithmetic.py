"""An agent written with the `openai` package, as a user writes one: it answers an arithmetic question
and, told that it is wrong, tries again. The worked example of docs/training-an-agent.md, part (c),
trained by configs/grpo_openai_agent_cpu.yaml (`agent.fn: system.agents.examples.arithmetic:run`).

It knows nothing of this project: it gets an OpenAI client and the data row, and returns its reward.
"""

from __future__ import annotations

import re

from openai import OpenAI

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
RETRY = "That is not right. Try again: reply with the number only."


def last_number(text: str) -> str | None:
    found = NUMBER.findall(text.replace(",", ""))
    return found[-1] if found else None


def run(client: OpenAI, task: dict, attempts: int = 2) -> float:
    """1.0 if the first reply's last number is the answer, 0.5 if a retry's is, else 0.0."""
    messages = task["messages"]  # the data set's prompt: "What is 7 - 1? Reply with the number only."
    for attempt in range(attempts):
        reply = client.chat.completions.create(model="policy", messages=messages, max_tokens=16)
        text = reply.choices[0].message.content or ""
        if last_number(text) == task["answer"]:
            return 1.0 / (attempt + 1)
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": RETRY}]
    return 0.0
