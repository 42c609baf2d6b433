"""The vLLM backend: PaDeLLM sequences from an OpenAI-compatible completions server (vLLM first) over HTTP.

vLLM is the GPU model server its upstream recommends now that TGI is in maintenance; it serves a plain
transformers folder (`padellm-ner model serve-folder`) and batches whatever is in flight, with automatic prefix
caching: a window's count and mention prompts share the window's prefix, so once the first is read the others
reuse its KV blocks.

- Calls that arrive together are sent together: every Count (and every Mention) call queued within
  `batch_window_ms` goes out in one `POST /v1/completions` with a list of prompts, at most `max_prompts` per
  request; the choices come back by index.
- Requests are greedy (`temperature` 0) with `logprobs: 1`, `stop: ["\\n"]`, and the engine's token limits (10
  for a count, as the official inference; `max_mention_tokens` for a mention). The server lists the stop token
  among the choice's tokens (the newline after a count, eos after a 0 count or a mention): when a sequence
  ended by a stop, its last token is that stop and its log-probability is left out, as the engine and the paper
  leave it out. `finish_reason` "length" is a sequence cut at its limit: a count so cut is `truncated`, a
  mention so cut is never an entity.
- Concurrency is bounded here: at most `max_concurrency` sequences in flight, fewer where the server's KV cache
  (`vllm:cache_config_info` on `/metrics`) holds fewer windows' sequences.
- 429, 503 and connection failures are retried with back-off inside the caller's deadline, for at most 5 s
  after the server began failing; then they are RESOURCE_EXHAUSTED / UNAVAILABLE, and while the server stays
  away calls fail at once (the stream pauses and tries the document again; no document's budget is spent
  waiting). 400 and 422 (a prompt the server refuses) are INVALID_ARGUMENT, a request
  past the deadline DEADLINE_EXCEEDED. Other server errors (500) are tried twice more, then INTERNAL, except
  from a server whose /health no longer answers (one shutting down, or whose engine died): UNAVAILABLE, an
  outage to wait out.
- The backend is healthy while `/health` answers and `/v1/models` lists the expected model: a server still
  loading, or serving another model, leaves the worker NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from padellm_ner.core import DEFAULT_MAX_COUNT, CountResult, MentionResult, template_for
from padellm_ner.core.aggregate import FinishReason
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.validation import InvalidInput, check_labels, check_mention_index, check_schema

from .base import Extracted, Timed, extract_by_calls, time_left
from .retry import Backoff, Outage, Slots

log = logging.getLogger(__name__)

COUNT_MAX_NEW_TOKENS = 10  # as the official inference and the engine
DEFAULT_MAX_CONCURRENCY = 256
DEFAULT_MAX_PROMPTS = 64  # prompts in one /v1/completions request
# what one sequence holds in the server's KV cache, about: a window's prompt (a sentence and the template, 100-150
# tokens; its blocks shared by the window's other prompts through prefix caching) and its new tokens
SEQUENCE_TOKENS = 256


@dataclass(frozen=True)
class ServedModel:
    """What the worker reports about the model it reaches: its name, version and schema, from the model
    folder's `padellm.json` where the worker can read it, else from the server's model id."""

    served_name: str
    name: str
    version: str
    schemas: tuple[str, ...]


def served_model(served_name: str | None, folder: Path | None, schemas: Sequence[str]) -> ServedModel:
    """The model identity from the folder's padellm.json (name, version, schema) and the flags."""
    info: dict[str, Any] = {}
    if folder is not None:
        path = folder / "padellm.json"
        if not path.exists():
            raise ValueError(f"{folder}: not a model folder (no padellm.json)")
        info = json.loads(path.read_text())
    name = str(info.get("name") or (folder.name if folder else served_name or ""))
    if not name:
        raise ValueError("the vLLM backend needs --vllm-model (the served model name) or --model (its folder)")
    trained_for = (info["schema"],) if info.get("schema") else ()
    for schema in schemas:
        check_schema(schema)
    if trained_for and schemas and set(schemas) - set(trained_for):
        raise ValueError(f"{name} was trained for schema {trained_for[0]}, not {', '.join(schemas)}")
    if not (schemas or trained_for):
        raise ValueError(f"cannot tell which label schema {name} serves: give the worker --schemas or --model")
    return ServedModel(served_name or name, name, str(info.get("version", "")), tuple(schemas) or trained_for)


@dataclass
class Completion:
    """One choice of a completions answer, read as the engine reports a sequence."""

    text: str
    logprob: float
    tokens: int
    finish: FinishReason


def read_choice(choice: dict) -> Completion:
    """A choice's text (up to the newline the stop matched), the sum of its tokens' log-probabilities without
    the stop token, how many tokens it generated, and why it ended."""
    logprobs = choice.get("logprobs") or {}
    values = [float(v) for v in logprobs.get("token_logprobs") or [] if v is not None]
    generated = len(values)  # the forward steps it took, the stop token's included (as the engine counts)
    finish = FinishReason.LENGTH if choice.get("finish_reason") == "length" else FinishReason.STOP
    if finish is FinishReason.STOP and values:
        values = values[:-1]  # the stop: the newline token, or eos, is the sequence's last token
    text = str(choice.get("text") or "").split("\n", 1)[0]
    return Completion(text, sum(values), generated, finish)


def _error_of(status: int, body: str) -> PadellmError:
    message = body[:500]
    try:
        message = json.loads(body).get("error", {}).get("message", message) or message
    except (ValueError, AttributeError):
        pass
    if status in (400, 422):
        return InvalidInput(f"the model server refused the request ({status}): {message}")
    if status == 429:
        return PadellmError(
            f"the model server is overloaded (429): {message}", code=ErrorCode.RESOURCE_EXHAUSTED, retry_after_s=1.0
        )
    if status == 404:
        return PadellmError(f"the model server does not serve the model (404): {message}", code=ErrorCode.UNAVAILABLE)
    if status in (502, 503, 504):
        return PadellmError(f"the model server is unavailable ({status}): {message}", code=ErrorCode.UNAVAILABLE)
    return PadellmError(f"the model server failed ({status}): {message}", code=ErrorCode.INTERNAL)


RETRIED = (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE)
SERVER_ERROR_RETRIES = 2  # a 500 is tried again this many times before it is the request's INTERNAL error


@dataclass
class _Pending:
    prompt: str
    deadline: float  # time.monotonic() by which its caller must have the answer
    future: asyncio.Future[Completion] = field(repr=False)


class _Coalescer:
    """Prompts with the same token limit queued within `window_s` go out in one request."""

    def __init__(self, send, max_tokens: int, window_s: float, max_prompts: int):
        self._send = send
        self.max_tokens = max_tokens
        self.window_s = window_s
        self.max_prompts = max_prompts
        self._queue: list[_Pending] = []
        self._flush: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def complete(self, prompt: str, deadline: float) -> Completion:
        loop = asyncio.get_running_loop()
        pending = _Pending(prompt, deadline, loop.create_future())
        self._queue.append(pending)
        if len(self._queue) >= self.max_prompts:
            self._send_queued()
        elif self._flush is None:
            self._flush = loop.call_later(self.window_s, self._send_queued)
        return await pending.future

    def _send_queued(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        batch, self._queue = self._queue, []
        batch = [p for p in batch if not p.future.done()]  # callers that gave up
        if batch:
            task = asyncio.get_running_loop().create_task(self._send_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, batch: list[_Pending]) -> None:
        try:
            # retried for as long as the latest caller of the batch waits
            completions = await self._send([p.prompt for p in batch], self.max_tokens, max(p.deadline for p in batch))
        except BaseException as error:  # every caller of the batch gets the request's error
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(
                        error if isinstance(error, Exception) else PadellmError("stopped", code=ErrorCode.UNAVAILABLE)
                    )
            if not isinstance(error, Exception):
                raise
            return
        for pending, completion in zip(batch, completions):
            if not pending.future.done():
                pending.future.set_result(completion)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(PadellmError("the worker is stopping", code=ErrorCode.UNAVAILABLE))
        self._queue = []
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def kv_capacity_tokens(metrics_text: str) -> int | None:
    """The server's KV cache in tokens (blocks x block size), from vLLM's `vllm:cache_config_info` gauge."""
    for line in metrics_text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("kv_cache_size_tokens", "").isdigit():
                return int(labels["kv_cache_size_tokens"])
            blocks = labels.get("num_gpu_blocks") or labels.get("num_cpu_blocks")
            size = labels.get("block_size")
            if blocks and size and blocks.isdigit() and size.isdigit():
                return int(blocks) * int(size)
    return None


class VllmBackend(AsyncComponent):
    """Any OpenAI-compatible completions server; `name` "vllm"."""

    name = "vllm"

    def __init__(
        self,
        url: str,
        model: ServedModel,
        *,
        timeout_s: float = 30.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_prompts: int = DEFAULT_MAX_PROMPTS,
        batch_window_ms: float = 2.0,
        max_count: int = DEFAULT_MAX_COUNT,
        max_mention_tokens: int = 48,
        api_key: str | None = None,
    ):
        self.url = url.rstrip("/")
        self.served = model
        self.model_name = model.name
        self.model_version = model.version
        self.schemas = model.schemas
        self.window_limit: int | None = None  # the server enforces its own --max-model-len
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._slots = Slots(max_concurrency)
        window_s = batch_window_ms / 1000
        self._counts = _Coalescer(self._complete_batch, COUNT_MAX_NEW_TOKENS, window_s, max_prompts)
        self._mentions = _Coalescer(self._complete_batch, max_mention_tokens, window_s, max_prompts)
        self._sized = False
        self._outage = Outage()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._headers)
        log.info("vLLM at %s: model %s (served as %s)", self.url, self.model_name, self.served.served_name)

    async def _stop(self) -> None:
        await self._counts.close()
        await self._mentions.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def healthy(self) -> bool:
        """Whether the server answers /health and lists the model in /v1/models (and, the first time it does,
        the concurrency bound is fitted to its KV cache)."""
        if self._session is None:
            return False
        try:
            timeout = aiohttp.ClientTimeout(total=min(5.0, self.timeout_s))
            async with self._session.get(f"{self.url}/health", timeout=timeout) as reply:
                if reply.status != 200:
                    self._outage.failed()
                    return False
            async with self._session.get(f"{self.url}/v1/models", timeout=timeout) as reply:
                if reply.status != 200:
                    return False
                served = {card.get("id") for card in (await reply.json()).get("data", [])}
        except (TimeoutError, aiohttp.ClientError, ValueError):
            self._outage.failed()
            return False
        if self.served.served_name not in served:
            log.warning(
                "the server at %s serves %s, not %s",
                self.url,
                ", ".join(sorted(map(str, served))),
                self.served.served_name,
            )
            return False
        self._outage.answered()
        if not self._sized:
            await self._fit_concurrency()
        return True

    async def _fit_concurrency(self) -> None:
        assert self._session is not None
        self._sized = True
        try:
            async with self._session.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=5.0)) as reply:
                capacity = kv_capacity_tokens(await reply.text()) if reply.status == 200 else None
        except (TimeoutError, aiohttp.ClientError):
            capacity = None
        if capacity is None:
            return
        fits = max(1, capacity // SEQUENCE_TOKENS)
        if fits < self.max_concurrency:
            await self._slots.set_limit(fits)
            log.info(
                "vLLM's KV cache holds %d tokens: at most %d sequences in flight (not %d)",
                capacity,
                fits,
                self.max_concurrency,
            )
            self.max_concurrency = fits

    async def _complete_batch(self, prompts: list[str], max_tokens: int, deadline: float) -> list[Completion]:
        """One /v1/completions request for a list of prompts, retried inside the callers' deadline."""
        body = {
            "model": self.served.served_name,
            "prompt": prompts,
            "max_tokens": max_tokens,
            "temperature": 0,
            "logprobs": 1,
            "stop": ["\n"],
        }
        backoff = Backoff()
        server_errors = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PadellmError("the model server did not answer in time", code=ErrorCode.DEADLINE_EXCEEDED)
            try:
                completions = await self._post(body, len(prompts), remaining)
            except PadellmError as error:
                if error.code is ErrorCode.INTERNAL and server_errors < SERVER_ERROR_RETRIES:
                    # a 500 is most often the server going away under the request (its engine shutting down
                    # answers what it had accepted with 500): the next try meets the outage itself
                    server_errors += 1
                    pause = backoff.next_pause()
                    if time.monotonic() + pause < deadline:
                        await asyncio.sleep(pause)
                        continue
                if error.code not in RETRIED:
                    raise
                self._outage.failed()
                pause = backoff.next_pause()
                if time.monotonic() + pause >= self._outage.retry_until(deadline):
                    raise
                log.debug("retrying a completions request in %.2f s: %s", pause, error)
                await asyncio.sleep(pause)
            else:
                self._outage.answered()
                return completions

    async def _post(self, body: dict, expected: int, timeout_s: float) -> list[Completion]:
        if self._session is None:
            raise PadellmError("the backend is not started", code=ErrorCode.UNAVAILABLE)
        try:
            async with self._session.post(
                f"{self.url}/v1/completions", json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as reply:
                text = await reply.text()
                status = reply.status
        except TimeoutError as error:
            raise PadellmError(
                f"the model server did not answer in {timeout_s:.1f} s", code=ErrorCode.DEADLINE_EXCEEDED
            ) from error
        except aiohttp.ClientError as error:
            raise PadellmError(f"the model server cannot be reached: {error}", code=ErrorCode.UNAVAILABLE) from error
        if status != 200:
            failure = _error_of(status, text)
            if failure.code is ErrorCode.INTERNAL and not await self._answers_health():
                # a server that is shutting down or whose engine died answers 500 to what it had accepted: an
                # outage the caller waits out (and tries again), not a fault of the request
                failure = PadellmError(f"the model server is going away: {failure}", code=ErrorCode.UNAVAILABLE)
            raise failure
        try:
            choices = sorted(json.loads(text)["choices"], key=lambda c: c["index"])
        except (ValueError, KeyError, TypeError) as error:
            raise PadellmError(f"the model server answered an unreadable body: {text[:200]}") from error
        if len(choices) != expected:
            raise PadellmError(f"the model server answered {len(choices)} choices for {expected} prompts")
        return [read_choice(choice) for choice in choices]

    async def _answers_health(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/health", timeout=aiohttp.ClientTimeout(total=2.0)) as reply:
                return reply.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def _complete(self, coalescer: _Coalescer, prompt: str) -> tuple[Completion, float]:
        deadline = time.monotonic() + time_left(self.timeout_s)
        async with self._slots:
            started = time.perf_counter()
            completion = await coalescer.complete(prompt, deadline)
            return completion, time.perf_counter() - started

    def _schema(self, schema_name: str, label: str):
        schema = check_schema(schema_name)
        check_labels(schema, [label])
        return schema

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed[CountResult]:
        label_schema = self._schema(schema, label)
        prompt = template_for(label_schema.language).count_prompt(text, label_schema.prompt_word(label))
        done, latency = await self._complete(self._counts, prompt)
        return Timed(CountResult(label, done.text, done.logprob, done.tokens, done.finish), latency)

    async def mention(
        self, document_id: str, text: str, schema: str, label: str, count: int, k: int
    ) -> Timed[MentionResult]:
        label_schema = self._schema(schema, label)
        check_mention_index(count, k, self.max_count)
        prompt = template_for(label_schema.language).mention_prompt(text, label_schema.prompt_word(label), count, k)
        done, latency = await self._complete(self._mentions, prompt)
        return Timed(MentionResult(label, k, done.text, done.logprob, done.tokens, done.finish), latency)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        return await extract_by_calls(self, document_id, text, schema, labels, self.max_count)
