"""vLLM's OpenAI serving code on the engine actor's own synchronous engine.

vLLM's OpenAI server classes (vllm.entrypoints.openai) drive an `EngineClient`: an asynchronous
engine whose `generate` yields RequestOutputs. The engine actor (actors/vllm_engine.py) holds a
synchronous LLMEngine and steps it itself, so that weight loads land between decode steps and
every token is stamped with the policy version that sampled it. `EngineBridge` is the part of
`EngineClient` those classes use, over that engine: `generate` (on the server's event loop)
queues a request to a stepping thread, which adds it to the engine, steps the engine while it has
requests, taking turns with the actor's own `generate` calls and weight loads (actors/engine_turns.py),
and hands every output back to the loop with its version.

What it changes of a request, and why: it is always sampled with the log-prob of each sampled
token and streamed in deltas, so that the recorder (`track`) gets every token's log-prob and
version; a caller that asked for the final output only gets the deltas merged into one.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from typing import Callable, Optional

from vllm.sampling_params import RequestOutputKind

from actors.engine_turns import EngineTurns, StampedSample

# Called when a request starts; returns what to call with (prompt ids, the choices' results) when it ends.
Track = Callable[[], Optional[Callable[[list[int], list[dict]], None]]]


class EngineBridge:
    def __init__(self, engine, turns: EngineTurns, on_thread: Callable[[], None]):
        """`engine`: the actor's LLMEngine; `turns`: the actor's, through which its `generate` calls,
        these requests and weight loads share the engine. `on_thread` sets up a thread to step the engine."""
        self.engine, self.turns, self.on_thread = engine, turns, on_thread
        # What vLLM's serving classes read off an EngineClient.
        self.vllm_config, self.model_config = engine.vllm_config, engine.model_config
        self.renderer, self.input_processor = engine.renderer, engine.input_processor
        self.errored, self.dead_error = False, None
        self.track: Track = lambda: None
        # ("add", request id, prompt, params, sink) | ("abort", request id)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._held: list[tuple] = []  # requests not let in while a weight load waits for the engine
        # engine request id -> (event loop, asyncio.Queue); the stepping thread's only
        self._sinks: dict[str, tuple] = {}
        self._wake = threading.Event()
        self._ids = itertools.count()
        threading.Thread(target=self._step_forever, name="engine-bridge", daemon=True).start()

    # --- the EngineClient side, called on the server's event loop ---

    def check_admission(self, n: int = 1, request_id: Optional[str] = None) -> None:
        pass

    async def is_tracing_enabled(self) -> bool:
        return False

    def generate(self, prompt, sampling_params, request_id: str, **_engine_options):
        """RequestOutputs of one request, as vLLM's AsyncLLM yields them for these sampling params."""
        return self._generate(prompt, sampling_params, self.track())

    async def _generate(self, prompt, sampling_params, on_done):
        if self.errored:
            raise self.dead_error
        params = sampling_params.clone()
        final_only = params.output_kind == RequestOutputKind.FINAL_ONLY
        params.output_kind = RequestOutputKind.DELTA
        params.logprobs = 0 if params.logprobs is None else params.logprobs
        rid, outputs = f"served-{next(self._ids)}", asyncio.Queue()
        self._send(("add", rid, prompt, params, (asyncio.get_running_loop(), outputs)))
        merged, choices, prompt_ids, done = None, {}, None, False
        try:
            while not done:
                item = await outputs.get()
                if isinstance(item, BaseException):
                    raise item
                out, version = item
                prompt_ids = prompt_ids or out.prompt_token_ids
                for delta in out.outputs:
                    choices.setdefault(delta.index, StampedSample()).add(delta, version)
                done = out.finished
                if done and on_done is not None:  # recorded before the caller sees the end of it
                    results = [choices[i].result() for i in sorted(choices)]
                    on_done(list(prompt_ids or prompt["prompt_token_ids"]), results)
                if not final_only:
                    yield out
                elif merged is None:
                    merged = out
                else:
                    merged.add(out, aggregate=True)
            if final_only:
                yield merged
        finally:
            if not done:  # the client went away, or the server stopped: free the engine of it
                self._send(("abort", rid))

    def _send(self, message: tuple) -> None:
        self._inbox.put(message)
        self._wake.set()

    # --- the stepping thread ---

    def _step_forever(self) -> None:
        self.on_thread()
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self._busy_period()
            except Exception as e:  # noqa: BLE001 - the engine is broken: every request, now and later, fails
                self._fail(e)
                return

    def _busy_period(self) -> None:
        """One turn: step the engine until it has no request left. Requests held back while a weight
        load waited for the end of the turn start another one."""
        admit = lambda: self._admit(self.turns.admits_new_requests())  # noqa: E731
        for outputs, version in self.turns.steps(self.engine, admit):
            for out in outputs:
                self._deliver(out.request_id, (out, version), out.finished)
        if self._held:
            self._wake.set()

    def _admit(self, new_requests: bool) -> None:
        """Add the requests that arrived (or were held back) to the engine, and abort those asked to."""
        messages, self._held = self._held, []
        while not self._inbox.empty():
            messages.append(self._inbox.get())
        aborted = {message[1] for message in messages if message[0] == "abort"}
        for message in messages:
            if message[0] == "abort":
                if self._sinks.pop(message[1], None) is not None:
                    self.engine.abort_request([message[1]])
            elif message[1] in aborted:  # gone before it was let in
                continue
            elif not new_requests:
                self._held.append(message)
            else:
                _, rid, prompt, params, sink = message
                self._sinks[rid] = sink
                try:
                    self.engine.add_request(rid, prompt, params)
                except Exception as e:  # noqa: BLE001 - a request vLLM refuses fails alone
                    self._deliver(rid, e, True)

    def _deliver(self, rid: str, item, last: bool) -> None:
        sink = self._sinks.pop(rid, None) if last else self._sinks.get(rid)
        if sink is not None:
            loop, outputs = sink
            try:
                loop.call_soon_threadsafe(outputs.put_nowait, item)
            except RuntimeError:  # its event loop has closed: nobody waits for it
                pass

    def _fail(self, error: Exception) -> None:
        self.errored = True
        self.dead_error = RuntimeError(f"the engine failed while serving requests: {error!r}")
        for rid in list(self._sinks):
            self._deliver(rid, self.dead_error, True)
