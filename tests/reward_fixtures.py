"""Rewards for tests, loaded by `module:function` path as a user's own reward would be.

A random tiny model never writes a correct answer, so the end-to-end tests reward something
it does vary in, to get a learning signal through the real stack."""


def response_length(completions: list[str], **columns) -> list[float]:
    return [min(len(c), 200) / 200 for c in completions]


def even_length(completions: list[str], **columns) -> list[float]:
    """Accepts about half of any model's completions, as a verifier for distillation tests."""
    return [float(len(c) % 2 == 0) for c in completions]
