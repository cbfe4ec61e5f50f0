"""How the engine actor's threads share its one vLLM engine: the stepping and lock protocol.

Three kinds of callers use the engine of an engine actor (actors/vllm_engine.py): its `generate`
calls, the agent episodes' requests served beside them (actors/engine_bridge.py), and weight loads.
Callers with requests take turns: one holds the engine while it has requests in flight and steps it
one decode step at a time. A weight load waits for the engine and, once in, is next:
- partial rollouts: it lands between two decode steps of the turn in flight (the requests are
  recomputed with the new weights and go on), so a sample's tokens can come from two versions;
- otherwise: it waits for the end of the turn, and requests that arrive meanwhile wait for it.
Every step's outputs are stamped with the policy version of the weights that produced them.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator


class EngineTurns:
    def __init__(self, partial_rollout: bool):
        self.partial_rollout = partial_rollout
        self.version = 0  # the policy version of the weights served: updates done when they were sent
        self._step = threading.Lock()  # held for an engine step, or a weight load
        self._turn = threading.Lock()  # held by whoever has requests in the engine
        self._load_waiting = threading.Event()

    def steps(self, engine, admit: Callable[[], None]) -> Iterator[tuple[list, int]]:
        """One turn: the engine stepped until it has no request left; yields each step's outputs with
        the version that produced them. `admit` adds the caller's new requests, before each step."""
        self._let_load_in()
        # partial rollouts: a load may land between two steps; otherwise only between two turns
        each_step = self._step if self.partial_rollout else nullcontext()
        with self._turn, (nullcontext() if self.partial_rollout else self._step):
            while True:
                if self.partial_rollout:
                    self._let_load_in()
                with each_step:
                    admit()
                    if not engine.has_unfinished_requests():
                        return
                    outputs, version = engine.step(), self.version
                yield outputs, version

    def admits_new_requests(self) -> bool:
        """False while a weight load waits for the end of this turn: new requests wait for it too."""
        return self.partial_rollout or not self._load_waiting.is_set()

    @contextmanager
    def weight_load(self, version: int) -> Iterator[None]:
        """Hold the engine for loading the weights of update `version`, served from then on."""
        self._load_waiting.set()
        with self._step:
            self._load_waiting.clear()
            yield
            self.version = version

    def _let_load_in(self) -> None:
        while self._load_waiting.is_set():
            time.sleep(0.001)


class StampedSample:
    """One completion as its decode steps arrive (vLLM's DELTA outputs), each token with its version."""

    def __init__(self):
        self.tokens, self.logprobs, self.versions, self.text, self.finish_reason = [], [], [], "", None

    def add(self, delta, version: int) -> None:
        self.tokens += delta.token_ids
        self.logprobs += [step[token].logprob for step, token in zip(delta.logprobs, delta.token_ids)]
        self.versions += [version] * len(delta.token_ids)
        self.text += delta.text
        self.finish_reason = delta.finish_reason or self.finish_reason

    def result(self) -> dict:
        return {"response": self.tokens, "logprobs": self.logprobs, "versions": self.versions,
                "finish_reason": self.finish_reason, "text": self.text}
