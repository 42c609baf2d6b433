"""The TGI backend: PaDeLLM sequences from a Text Generation Inference server over HTTP.

Prompts are the core's templates (byte-identical to the official ones), so a TGI server running a released
checkpoint (e.g. JinghuiLuAstronaut/PaDeLLM_llama2_7b_conll03) answers correctly. Requests are greedy with
`details` on; a count stops at "\\n" (10 new tokens at most, as the official inference), a mention at "\\n"
or eos. A sequence's log-probability is the sum over `details.tokens` without special tokens (eos) and
without the stop token. TGI's prefix cache only holds a prompt once its request finished, so the first
Count call of a document goes alone and the document's other calls wait for it.

Every call carries one window of a document, so TGI's `--max-input-tokens` bounds a window, not a document. A
sequence TGI cut at `max_new_tokens` (`finish_reason` "length") comes back marked as such: a truncated count is
flagged, a truncated mention is never returned as an entity. The worker serves the schemas it is given, or the
one named by the model id in TGI's `/info` (`..._conll03`); requests for other schemas are refused.

Calls in flight are bounded per worker by TGI's own `max_concurrent_requests` (its `/info`), so that the worker
queues what TGI would refuse with 429. 429 (overloaded), 424 (a shard failed generating), 503 and connection
failures are retried with back-off inside the caller's deadline and for at most 5 s after TGI began failing,
then RESOURCE_EXHAUSTED (429) or UNAVAILABLE (during a longer outage calls fail at once);
422 (validation) is INVALID_ARGUMENT, a timeout DEADLINE_EXCEEDED, anything else INTERNAL.

TGI is in maintenance upstream since December 2025, which recommends vLLM (`--backend vllm`) for new GPU
deployments; this backend stays for the TGI servers that run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

import aiohttp
import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    HfHubHTTPError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)

from padellm_ner.core import DEFAULT_MAX_COUNT, SCHEMAS, CountResult, MentionResult, template_for
from padellm_ner.core.aggregate import FinishReason
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.validation import InvalidInput, check_labels, check_mention_index, check_schema

from .base import Extracted, Timed, extract_by_calls, time_left
from .retry import Backoff, Outage, Slots

log = logging.getLogger(__name__)
COUNT_MAX_NEW_TOKENS = 10


def schema_of_model_id(model_id: str) -> str | None:
    """The label schema a released PaDeLLM checkpoint's id names at its end (`PaDeLLM_llama2_7b_conll03`)."""
    tail = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    for name in sorted(SCHEMAS, key=len, reverse=True):
        if tail.endswith(("_" + name, "-" + name)) or tail == name:
            return name
    return None


def _status_of(error: Exception) -> PadellmError:
    """A failed TGI call as the error the worker's caller sees, by the types of huggingface_hub and of the HTTP
    client it uses (httpx2)."""
    if isinstance(error, OverloadedError):
        return PadellmError(f"TGI is overloaded: {error}", code=ErrorCode.RESOURCE_EXHAUSTED, retry_after_s=1.0)
    if isinstance(error, ValidationError):
        return InvalidInput(f"TGI rejected the request: {error}")
    if isinstance(error, InferenceTimeoutError | asyncio.TimeoutError | httpx2.TimeoutException):
        return PadellmError(f"TGI did not answer in time: {error}", code=ErrorCode.DEADLINE_EXCEEDED)
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 429:
            return PadellmError(
                f"TGI is overloaded (429): {error}", code=ErrorCode.RESOURCE_EXHAUSTED, retry_after_s=1.0
            )
        if status == 422:
            return InvalidInput(f"TGI rejected the request (422): {error}")
        if status in (502, 503, 504):
            return PadellmError(f"TGI is unavailable ({status}): {error}", code=ErrorCode.UNAVAILABLE)
        if status == 424:  # a shard failed during generation (out of memory, a restart): another try may pass
            return PadellmError(f"TGI failed generating (424): {error}", code=ErrorCode.UNAVAILABLE)
    if isinstance(error, TextGenerationError):  # what huggingface_hub makes of a 424
        return PadellmError(f"TGI failed generating: {error}", code=ErrorCode.UNAVAILABLE)
    if isinstance(error, httpx2.TransportError | OSError):
        return PadellmError(f"TGI cannot be reached: {error}", code=ErrorCode.UNAVAILABLE)
    return PadellmError(f"TGI call failed: {type(error).__name__}: {error}", code=ErrorCode.INTERNAL)


RETRIED = (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE)
DEFAULT_MAX_CONCURRENCY = 128  # TGI's own default --max-concurrent-requests, until /info says otherwise


def sequence_logprob(details) -> tuple[float, int]:
    """Sum of log-probabilities of the generated tokens without special tokens and the newline stop token."""
    total, tokens = 0.0, 0
    for token in details.tokens:
        tokens += 1
        if token.special or "\n" in token.text:
            continue
        total += float(token.logprob or 0.0)
    return total, tokens


class TgiBackend(AsyncComponent):
    name = "tgi"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        model_name: str = "tgi",
        max_count: int = DEFAULT_MAX_COUNT,
        max_mention_tokens: int = 48,
        prime_documents: bool = True,
        schemas: Sequence[str] = (),
    ):
        for name in schemas:
            check_schema(name)  # a clear error for a misspelt schema at start
        self.url = url.rstrip("/")
        self.schemas: tuple[str, ...] = tuple(schemas)
        self.timeout_s = timeout_s
        self.model_name = model_name
        self.model_version = ""
        self.window_limit: int | None = None  # TGI enforces its own --max-input-tokens
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.prime_documents = prime_documents
        self.client: AsyncInferenceClient | None = None
        self._primed: OrderedDict[tuple[str, str], asyncio.Future] = OrderedDict()
        self._slots = Slots(DEFAULT_MAX_CONCURRENCY)
        self._outage = Outage()

    async def _start(self) -> None:
        """Reads TGI's /info to check (or, where none were given, learn) the schemas its model serves, and how
        many requests it takes at once."""
        info = await self._info()
        model_id = info.get("model_id")
        if isinstance(info.get("max_concurrent_requests"), int) and info["max_concurrent_requests"] > 0:
            await self._slots.set_limit(info["max_concurrent_requests"])
        named = schema_of_model_id(model_id) if model_id else None
        if self.schemas and named and named not in self.schemas:
            raise ValueError(f"TGI serves {model_id}, a model for schema {named}, not {', '.join(self.schemas)}")
        if not self.schemas:
            if not named:
                raise ValueError(
                    f"cannot tell which label schema TGI's model ({model_id or '/info did not answer'}) "
                    "serves: give the worker --schemas"
                )
            self.schemas = (named,)
        log.info("TGI at %s serves %s (schemas %s)", self.url, model_id or "an unknown model", ", ".join(self.schemas))
        # base_url is used as is: TGI's /generate endpoint, no path is added by the client
        self.client = AsyncInferenceClient(base_url=f"{self.url}/generate", timeout=self.timeout_s)

    async def healthy(self) -> bool:
        """Whether TGI answers its /health (its model loaded and ready)."""
        try:
            timeout = aiohttp.ClientTimeout(total=min(5.0, self.timeout_s))
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{self.url}/health") as reply:
                return reply.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    @property
    def max_concurrency(self) -> int:
        return self._slots.limit

    async def _info(self) -> dict:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=min(10.0, self.timeout_s))) as session:
                async with session.get(f"{self.url}/info") as response:
                    response.raise_for_status()
                    info = await response.json()
                    return info if isinstance(info, dict) else {}
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            log.warning("TGI's /info at %s did not answer (%s)", self.url, error)
            return {}

    async def _stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _generate(self, prompt: str, max_new_tokens: int) -> tuple[str, float, int, FinishReason, float]:
        """One greedy request, at most `max_concurrency` in flight, retried while TGI is overloaded or away and
        the caller's deadline allows."""
        if self.client is None:
            raise PadellmError("the backend is not started", code=ErrorCode.UNAVAILABLE)
        backoff = Backoff()
        deadline = time.monotonic() + time_left(self.timeout_s)
        async with self._slots:
            started = time.perf_counter()
            while True:
                try:
                    output = await asyncio.wait_for(
                        self.client.text_generation(
                            prompt, details=True, max_new_tokens=max_new_tokens, stop=["\n"], do_sample=False
                        ),
                        max(0.001, deadline - time.monotonic()),
                    )
                    self._outage.answered()
                    break
                except Exception as error:
                    failure = _status_of(error)
                    if failure.code not in RETRIED:
                        raise failure from error
                    self._outage.failed()
                    pause = backoff.next_pause()
                    if time.monotonic() + pause >= self._outage.retry_until(deadline):
                        raise failure from error
                    log.debug("retrying a TGI request in %.2f s: %s", pause, failure)
                    await asyncio.sleep(pause)
        if output.details is None:  # asked with details=True: a server that drops them is not TGI-compatible
            raise PadellmError(
                "the TGI server answered without details (token log-probabilities)", code=ErrorCode.INTERNAL
            )
        logprob, tokens = sequence_logprob(output.details)
        finish = FinishReason.LENGTH if output.details.finish_reason == "length" else FinishReason.STOP
        return output.generated_text, logprob, tokens, finish, time.perf_counter() - started

    def _resolve(self, schema_name: str, labels: Sequence[str]):
        schema = check_schema(schema_name)
        return schema, check_labels(schema, list(labels))

    async def _primed_count(self, document_id: str, text: str, prompt: str, label: str) -> Timed:
        """The first count of a document runs alone; later calls of the document wait for it to finish."""
        key = (document_id, text)
        gate = self._primed.get(key)
        if gate is None and self.prime_documents:
            gate = asyncio.get_running_loop().create_future()
            self._primed[key] = gate
            while len(self._primed) > 1024:
                self._primed.popitem(last=False)
            try:
                return await self._count_now(prompt, label)
            finally:
                if not gate.done():
                    gate.set_result(None)
        if gate is not None:
            await asyncio.shield(gate)
        return await self._count_now(prompt, label)

    async def _count_now(self, prompt: str, label: str) -> Timed:
        raw, logprob, tokens, finish, latency = await self._generate(prompt, COUNT_MAX_NEW_TOKENS)
        return Timed(CountResult(label, raw, logprob, tokens, finish), latency)

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed:
        label_schema, _ = self._resolve(schema, [label])
        prompt = template_for(label_schema.language).count_prompt(text, label_schema.prompt_word(label))
        return await self._primed_count(document_id, text, prompt, label)

    async def mention(self, document_id: str, text: str, schema: str, label: str, count: int, k: int) -> Timed:
        label_schema, _ = self._resolve(schema, [label])
        check_mention_index(count, k, self.max_count)
        prompt = template_for(label_schema.language).mention_prompt(text, label_schema.prompt_word(label), count, k)
        key = (document_id, text)
        if key in self._primed:
            await asyncio.shield(self._primed[key])
        raw, logprob, tokens, finish, latency = await self._generate(prompt, self.max_mention_tokens)
        return Timed(MentionResult(label, k, raw, logprob, tokens, finish), latency)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        return await extract_by_calls(self, document_id, text, schema, labels, self.max_count)
