"""The rollout engines as an OpenAI-compatible endpoint, one base URL per agent episode.

    http://<engine node>:<port>/episodes/<episode id>/v1/chat/completions   (and /v1/completions, /v1/models)

The routes, the request and response models, the chat template rendering, tool-call parsing,
`logprobs` and `return_token_ids` are vLLM's own (vllm.entrypoints.openai), run on the engine
actor's engine through actors/engine_bridge.py. What this module adds is the episode: its URL
ties every call of an agent to its episode without the agent passing anything, and fixes how the
call samples (the rollout's temperature and top-p, a seed per call, at most
`rollout.max_new_tokens` new tokens: the trainer's log-probs assume that temperature, whatever
the agent asked for; any model name is taken). Each finished call is recorded under its episode
as the engine saw and sampled it (system/agents/episodes.py: `Call`); the driver opens episodes
before their agents start and closes them afterwards, getting their calls back (`EndpointPool`).
A call on an episode that is not open is answered 404.

Each episode has a key of its own, drawn by the driver and given to its agent's client as `api_key`:
the endpoint listens on the node's address, and anyone who reaches it could otherwise use the engine
and put tokens into a training episode. A call without the key of the episode its URL names is
answered 401 and counted (`agent/refused_calls`, with the 429s below). A reply the agent sends back
as an assistant message reaches the engine as the ids that were sampled (system/agents/replies.py),
so an episode that only appends stays one sample.

An agent is user code and may go wrong: a call's body over MAX_BODY_BYTES is answered 413, and an
episode's calls beyond MAX_CALLS_IN_FLIGHT at once 429 (CallLimits), without reaching the engine,
which goes on serving the other calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hmac
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable

import ray

from actors.calls import bounded_get
from system.agents.episodes import Call, EpisodeCalls
from system.agents.replies import Rendered, with_replies
from system.agents.runner import Endpoint
from system.rollout.agent import AgentRollout

# (episode id, the call's arrival index in it) while vLLM's serving code handles a call
CURRENT_CALL: contextvars.ContextVar = contextvars.ContextVar("r1ray_episode_call", default=None)
START_TIMEOUT_S = 60.0
MAX_BODY_BYTES = 8 << 20  # a call's body: far more than a prompt of any max_model_len, tools included
MAX_CALLS_IN_FLIGHT = 64  # of one episode at once: an agent's parallel tool calls, not a runaway loop's
# A refused body is still read (and dropped) up to this, so that its client reads the 413 rather than a
# connection reset; a longer one is cut off.
DRAIN_BYTES = 256 << 20


@dataclass
class Episode:
    """How an episode's calls sample (one dict per episode from the driver), and its calls so far."""

    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    api_key: str  # what its agent's client sends: `Authorization: Bearer <api_key>`
    requests: int = 0  # calls that arrived
    refused: int = 0  # calls on its URL without its key (401), or beyond its calls in flight (429)
    calls: list[Call] = field(default_factory=list)  # calls that finished, one per choice
    rendered: dict[int, Rendered] = field(default_factory=dict)  # chat calls as vLLM rendered them, by index

    def call_seed(self, index: int) -> int:
        return (self.seed * 1_000_003 + index) % (2**63)

    def limit(self, asked) -> int:
        """New tokens a call may generate: what it asked for, at most `max_tokens`."""
        return min(asked or self.max_tokens, self.max_tokens)


class EpisodeServing:
    """What vLLM's routes call as app.state.openai_serving_chat / _completion: the call's episode
    applied to the request (EpisodeServer.begin_call), then vLLM's serving class, or the 404."""

    def __init__(self, server: "EpisodeServer", serving):
        self.server, self.serving = server, serving

    async def create_chat_completion(self, request, raw_request=None):
        refused = self.server.begin_call(request, raw_request)
        return refused or await self.serving.create_chat_completion(request, raw_request)

    async def create_completion(self, request, raw_request=None):
        refused = self.server.begin_call(request, raw_request)
        return refused or await self.serving.create_completion(request, raw_request)


class EpisodeRenderer:
    """vLLM's OnlineRenderer as the chat serving class calls it, with the replies an agent sends back
    put back as the ids that were sampled (EpisodeServer.put_back_replies)."""

    def __init__(self, server: "EpisodeServer", renderer):
        self.server, self.renderer = server, renderer

    def __getattr__(self, name: str):
        return getattr(self.renderer, name)

    async def render_chat(self, request, **options):
        result = await self.renderer.render_chat(request, **options)
        if isinstance(result, tuple):  # else an ErrorResponse
            _, inputs = result
            self.server.put_back_replies(request.messages, inputs[0])
        return result


class EpisodeGuard:
    """In front of vLLM's app (an ASGI app): a call on an episode's URL gets through only with the key
    of that episode (EpisodeServer.refusal)."""

    def __init__(self, server: "EpisodeServer", app):
        self.server, self.app = server, app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            authorization = dict(scope["headers"]).get(b"authorization", b"")
            refusal = self.server.refusal(scope["path_params"].get("episode"), authorization)
            if refusal is not None:
                return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)


class CallLimits:
    """Behind EpisodeGuard: a call whose body exceeds `max_body` bytes is answered 413 (the body is read
    and dropped, never kept), and one beyond `max_in_flight` calls of its episode at once 429, which
    `refused(episode)` counts. Runs on the server's event loop alone, so its counts need no lock."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES, max_in_flight: int = MAX_CALLS_IN_FLIGHT,
                 refused: Callable[[str], None] = lambda eid: None):
        self.app, self.max_body, self.max_in_flight, self.refused = app, max_body, max_in_flight, refused
        self.in_flight: dict[str, int] = {}  # episode -> its calls being served

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        eid = scope["path_params"].get("episode")
        if self.in_flight.get(eid, 0) >= self.max_in_flight:
            await _read_body(receive, 0)
            self.refused(eid)
            message = f"episode '{eid}' has {self.max_in_flight} calls in flight, as many as it may"
            return await error_response(HTTPStatus.TOO_MANY_REQUESTS, "RateLimitError", message)(scope, receive, send)
        self.in_flight[eid] = self.in_flight.get(eid, 0) + 1
        try:
            body = await _read_body(receive, self.max_body)
            if body is None:
                message = f"a call's body is at most {self.max_body} bytes (episode '{eid}')"
                return await error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "BadRequestError",
                                            message)(scope, receive, send)
            return await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_flight[eid] -= 1
            if not self.in_flight[eid]:
                del self.in_flight[eid]


async def _read_body(receive, limit: int) -> bytes | None:
    """The request's body, or None if it is longer than `limit` (then read on and dropped, up to DRAIN_BYTES)."""
    chunks, size = [], 0
    while size <= limit + DRAIN_BYTES:
        message = await receive()
        size += len(message.get("body", b""))
        if size <= limit:
            chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks) if size <= limit else None


def _replay(body: bytes, receive):
    """A `receive` that gives the app the body read already, then passes on (a disconnect)."""
    given = False

    async def replayed():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def error_response(status: HTTPStatus, kind: str, message: str):
    """An error the way OpenAI's API (and vLLM's) answers it."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "code": status.value}}, status.value)


class EpisodeServer:
    """vLLM's OpenAI app under /episodes/<id>, served by uvicorn on a thread of the engine actor.
    `serving`: {"model_name": listed by /v1/models, "tool_parser": a vLLM tool-call parser or ""}."""

    def __init__(self, bridge, serving: dict):
        from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
        from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
        from vllm.entrypoints.openai.models.protocol import BaseModelPath
        from vllm.entrypoints.openai.models.serving import OpenAIServingModels
        from vllm.renderers.online_renderer import OnlineRenderer

        self.model_name = serving["model_name"]
        self.episodes: dict[str, Episode] = {}
        self._lock = threading.Lock()
        bridge.track = self._tracker
        parser = serving["tool_parser"]
        common = {"request_logger": None, "chat_template": None, "chat_template_content_format": "auto",
                  "enable_auto_tools": bool(parser), "tool_parser": parser or None}
        models = OpenAIServingModels(engine_client=bridge, base_model_paths=[
            BaseModelPath(name=self.model_name, model_path=bridge.model_config.model)])
        renderer = OnlineRenderer(bridge.model_config, bridge.renderer, **common)
        self.tokenizer = bridge.renderer.tokenizer
        chat = OpenAIServingChat(engine_client=bridge, models=models, response_role="assistant",
                                 online_renderer=EpisodeRenderer(self, renderer), **common)
        completion = OpenAIServingCompletion(bridge, models, online_renderer=renderer, request_logger=None)
        self.app = _episode_app(self, models, EpisodeServing(self, chat), EpisodeServing(self, completion))
        self.url = self._start(ray.util.get_node_ip_address())

    def open(self, episodes: dict[str, dict]) -> None:
        with self._lock:
            self.episodes.update({eid: Episode(**spec) for eid, spec in episodes.items()})

    def close(self, ids: list[str]) -> dict[str, EpisodeCalls]:
        """The episodes' finished calls, in arrival order, and their refused ones; their URLs answer 404
        from now on."""
        with self._lock:
            closed = {eid: self.episodes.pop(eid, None) for eid in ids}
        return {eid: EpisodeCalls(sorted(ep.calls, key=lambda c: c.index), ep.refused) if ep
                else EpisodeCalls() for eid, ep in closed.items()}

    def count_refused(self, eid: str) -> None:
        """A call of episode `eid` refused by CallLimits (429): counted as the 401s are."""
        with self._lock:
            if eid in self.episodes:
                self.episodes[eid].refused += 1

    def refusal(self, eid: str, authorization: bytes):
        """None for a call that carries the key of open episode `eid`, else the answer to it: 404 (not
        open) or 401 (no key, or another: counted under the episode)."""
        with self._lock:
            episode = self.episodes.get(eid)
            if episode is None:
                status, kind, message = HTTPStatus.NOT_FOUND, "NotFoundError", "is not open on this engine"
            elif hmac.compare_digest(authorization, b"Bearer " + episode.api_key.encode()):
                return None
            else:
                episode.refused += 1
                status, kind, message = HTTPStatus.UNAUTHORIZED, "AuthenticationError", "needs its API key"
        return error_response(status, kind, f"episode '{eid}' {message}")

    def put_back_replies(self, messages: list, engine_input: dict) -> None:
        """Where the call's messages send back an earlier reply of its episode, give the engine the ids
        that were sampled for it (system/agents/replies.py) instead of vLLM's rendering of its text."""
        call = CURRENT_CALL.get()
        if call is None:
            return
        eid, index = call
        rendered = Rendered(copy.deepcopy(list(messages)), list(engine_input["prompt_token_ids"]))
        with self._lock:
            episode = self.episodes.get(eid)
            if episode is None:
                return
            episode.rendered[index] = rendered
            earlier = [(episode.rendered[c.index], c) for c in episode.calls if c.index in episode.rendered]
        ids = with_replies(rendered, earlier, self.tokenizer)
        if ids is not None:
            engine_input["prompt_token_ids"] = ids
            engine_input.pop("prompt", None)  # the text of the ids it replaces

    def begin_call(self, request, raw_request):
        """Apply the sampling of the call's episode (its URL's) to `request`; a 404 to answer if it is
        not open (closed since EpisodeGuard let the call in)."""
        from vllm.entrypoints.serve import create_error_response

        eid = raw_request.path_params.get("episode") if raw_request is not None else None
        with self._lock:
            episode = self.episodes.get(eid)
            if episode is None:
                return create_error_response(f"episode '{eid}' is not open on this engine", "NotFoundError",
                                             HTTPStatus.NOT_FOUND)
            index, episode.requests = episode.requests, episode.requests + 1
        request.model = self.model_name
        request.temperature, request.top_p = episode.temperature, episode.top_p
        request.seed = episode.call_seed(index)
        if hasattr(request, "max_completion_tokens"):  # chat: max_tokens is its deprecated spelling
            request.max_completion_tokens = episode.limit(request.max_completion_tokens or request.max_tokens)
            request.max_tokens = None
        else:
            request.max_tokens = episode.limit(request.max_tokens)
        CURRENT_CALL.set((eid, index))
        return None

    def _tracker(self):
        """Called as a call reaches the engine: what records its result under the episode."""
        call = CURRENT_CALL.get()
        if call is None:
            return None
        eid, index = call

        def record(prompt: list[int], choices: list[dict]) -> None:
            with self._lock:
                episode = self.episodes.get(eid)  # closed meanwhile: nobody will read it
                if episode is not None:
                    episode.calls += [Call(index, prompt, c["response"], c["logprobs"], c["versions"],
                                           c["finish_reason"] or "stop", c["text"]) for c in choices]

        return record

    def _start(self, host: str) -> str:
        import uvicorn

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])),
                                  name="openai-endpoint", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the OpenAI endpoint on {host} did not start within "
                                   f"{START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        return f"http://{host}:{sock.getsockname()[1]}"


def _episode_app(server: EpisodeServer, models, chat, completion):
    """vLLM's chat, completion and model-list routes and error handlers, mounted under /episodes/<id>
    behind the episode's key and the limits of a call."""
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from vllm.entrypoints.openai.chat_completion.api_router import router as chat_router
    from vllm.entrypoints.openai.completion.api_router import router as completion_router
    from vllm.entrypoints.openai.models.api_router import router as models_router
    from vllm.entrypoints.serve.exception_handling.register import init_exception_handler

    app = FastAPI()
    for router in (chat_router, completion_router, models_router):
        app.include_router(router)
    init_exception_handler(app)
    app.state.openai_serving_models, app.state.openai_serving_chat = models, chat
    app.state.openai_serving_completion = completion
    limited = CallLimits(app, refused=server.count_refused)
    return Starlette(routes=[Mount("/episodes/{episode}", app=EpisodeGuard(server, limited))])


class EndpointPool:
    """The driver's side: episodes dealt round-robin over the engines (actors/vllm_engine.py's pool),
    opened there before their agents run and closed after, each call bounded by `timeout_s`."""

    def __init__(self, engines, serving: dict, timeout_s: float):
        self.engines, self.serving, self.timeout_s = engines, serving, timeout_s

    def open(self, episodes: dict[str, dict]) -> dict[str, Endpoint]:
        """Episode id -> its endpoint (base URL and key, for the OpenAI client), for {id: sampling}."""
        keys = {eid: secrets.token_urlsafe(32) for eid in episodes}
        specs = {eid: {**spec, "api_key": keys[eid]} for eid, spec in episodes.items()}
        shares = self._shares(list(episodes))
        calls = [(name, engine.open_episodes.remote({eid: specs[eid] for eid in share}, self.serving))
                 for name, engine, share in shares]
        roots = bounded_get(calls, "opening agent episodes", self.timeout_s)
        return {eid: Endpoint(f"{root}/episodes/{eid}/v1", keys[eid])
                for root, (*_, share) in zip(roots, shares) for eid in share}

    def close(self, ids: list[str]) -> dict[str, EpisodeCalls]:
        shares = self._shares(ids)
        parts = bounded_get([(name, engine.close_episodes.remote(share)) for name, engine, share in shares],
                            "closing agent episodes", self.timeout_s)
        # an engine restarted since the episodes opened has none: plain empty lists
        return {eid: calls if isinstance(calls, EpisodeCalls) else EpisodeCalls(calls)
                for part in parts for eid, calls in part.items()}

    def _shares(self, ids: list[str]) -> list[tuple]:
        k = len(self.engines.engines)
        return [(self.engines.names[i], self.engines.engines[i], ids[i::k]) for i in range(k) if ids[i::k]]


def agent_rollout(engines, rewards, tokenizer, cfg, sampler, eval_rows) -> AgentRollout:
    """The rollout of `cfg.agent.fn` over the engine pool's endpoints (actors/cluster.py builds it)."""
    serving = {"model_name": cfg.agent.model_name, "tool_parser": cfg.agent.tool_parser}
    endpoints = EndpointPool(engines, serving, cfg.fault.call_timeout_s)
    return AgentRollout(endpoints, rewards, tokenizer, cfg, sampler, eval_rows)
