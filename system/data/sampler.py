"""Deterministic prompt batches: a seeded shuffle per epoch and a position that can be saved.

Restoring `state()` continues with the next unseen batch, so a resumed run neither repeats nor
skips data.
"""

from __future__ import annotations

import random

from system.seeds import derive_seed


class PromptSampler:
    def __init__(self, rows: list[dict], batch_size: int, seed: int):
        if len(rows) < batch_size:
            raise ValueError(f"{len(rows)} training rows cannot fill a batch of {batch_size} prompts")
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.epoch, self.position = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.rows)))
        random.Random(derive_seed(self.seed, "shuffle", epoch)).shuffle(order)
        return order

    def next_batch(self) -> list[dict]:
        if self.position + self.batch_size > len(self._order):  # drop the ragged tail, start an epoch
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._shuffled(self.epoch)
        batch = [self.rows[i] for i in self._order[self.position:self.position + self.batch_size]]
        self.position += self.batch_size
        return batch

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._shuffled(self.epoch)
