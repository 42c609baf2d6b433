"""The TGI backend: PaDeLLM sequences from a Text Generation Inference server over HTTP.

Prompts are the core's templates (byte-identical to the official ones), so a TGI server running a released
checkpoint (e.g. JinghuiLuAstronaut/PaDeLLM_llama2_7b_conll03) answers correctly. Requests are greedy with
`details` on; a count stops at "\\n" (10 new tokens at most, as the official inference), a mention at "\\n"
or eos. A sequence's log-probability is the sum over `details.tokens` without special tokens (eos) and
without the stop token. TGI's prefix cache only holds a prompt once its request finished, so the first
Count call of a document goes alone and the document's other calls wait for it.

Errors: 429 (overloaded) -> RESOURCE_EXHAUSTED, 422 (validation) -> INVALID_ARGUMENT, timeouts ->
DEADLINE_EXCEEDED, connection failures and 503 -> UNAVAILABLE, anything else -> INTERNAL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Sequence

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    HfHubHTTPError, InferenceTimeoutError, OverloadedError, TextGenerationError, ValidationError,
)

from padellm_ner.core import DEFAULT_MAX_COUNT, CountResult, MentionResult, parse_count, template_for
from padellm_ner.validation import InvalidInput, check_labels, check_mention_index, check_schema

from .base import BackendError, Extracted, Timed

COUNT_MAX_NEW_TOKENS = 10


def _status_of(error: Exception) -> BackendError:
    if isinstance(error, OverloadedError):
        return BackendError("RESOURCE_EXHAUSTED", f"TGI is overloaded: {error}")
    if isinstance(error, ValidationError):
        return BackendError("INVALID_ARGUMENT", f"TGI rejected the request: {error}")
    if isinstance(error, (InferenceTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return BackendError("DEADLINE_EXCEEDED", f"TGI did not answer in time: {error}")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 429:
            return BackendError("RESOURCE_EXHAUSTED", f"TGI is overloaded (429): {error}")
        if status == 422:
            return BackendError("INVALID_ARGUMENT", f"TGI rejected the request (422): {error}")
        if status in (502, 503, 504):
            return BackendError("UNAVAILABLE", f"TGI is unavailable ({status}): {error}")
    if isinstance(error, TextGenerationError):
        return BackendError("INTERNAL", f"TGI generation failed: {error}")
    name = type(error).__name__
    if "Timeout" in name:
        return BackendError("DEADLINE_EXCEEDED", f"TGI did not answer in time: {error}")
    if "Connect" in name or "Network" in name or "Transport" in name or isinstance(error, OSError):
        return BackendError("UNAVAILABLE", f"TGI cannot be reached: {error}")
    return BackendError("INTERNAL", f"TGI call failed: {name}: {error}")


def sequence_logprob(details) -> tuple[float, int]:
    """Sum of log-probabilities of the generated tokens without special tokens and the newline stop token."""
    total, tokens = 0.0, 0
    for token in details.tokens:
        tokens += 1
        if token.special or "\n" in token.text:
            continue
        total += float(token.logprob or 0.0)
    return total, tokens


class TgiBackend:
    name = "tgi"

    def __init__(self, url: str, *, timeout_s: float = 30.0, model_name: str = "tgi", max_count: int = DEFAULT_MAX_COUNT,
                 max_mention_tokens: int = 48, prime_documents: bool = True):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.model_name = model_name
        self.model_version = ""
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.prime_documents = prime_documents
        self.client: AsyncInferenceClient | None = None
        self._primed: OrderedDict[tuple[str, str], asyncio.Future] = OrderedDict()

    async def start(self) -> None:
        # base_url is used as is: TGI's /generate endpoint, no path is added by the client
        self.client = AsyncInferenceClient(base_url=f"{self.url}/generate", timeout=self.timeout_s)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _generate(self, prompt: str, max_new_tokens: int) -> tuple[str, float, int, float]:
        if self.client is None:
            raise BackendError("UNAVAILABLE", "the backend is not started")
        started = time.perf_counter()
        try:
            output = await asyncio.wait_for(
                self.client.text_generation(prompt, details=True, max_new_tokens=max_new_tokens, stop=["\n"],
                                            do_sample=False),
                self.timeout_s)
        except BackendError:
            raise
        except Exception as error:
            raise _status_of(error) from error
        logprob, tokens = sequence_logprob(output.details)
        return output.generated_text, logprob, tokens, time.perf_counter() - started

    def _resolve(self, schema_name: str, labels: Sequence[str]):
        try:
            schema = check_schema(schema_name)
            return schema, check_labels(schema, list(labels))
        except InvalidInput as error:
            raise BackendError("INVALID_ARGUMENT", str(error)) from None

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
        raw, logprob, tokens, latency = await self._generate(prompt, COUNT_MAX_NEW_TOKENS)
        return Timed(CountResult(label, raw, logprob, tokens), latency)

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed:
        label_schema, _ = self._resolve(schema, [label])
        prompt = template_for(label_schema.language).count_prompt(text, label_schema.prompt_word(label))
        return await self._primed_count(document_id, text, prompt, label)

    async def mention(self, document_id: str, text: str, schema: str, label: str, count: int, k: int) -> Timed:
        label_schema, _ = self._resolve(schema, [label])
        try:
            check_mention_index(count, k, self.max_count)
        except InvalidInput as error:
            raise BackendError("INVALID_ARGUMENT", str(error)) from None
        prompt = template_for(label_schema.language).mention_prompt(text, label_schema.prompt_word(label), count, k)
        key = (document_id, text)
        if key in self._primed:
            await asyncio.shield(self._primed[key])
        raw, logprob, tokens, latency = await self._generate(prompt, self.max_mention_tokens)
        return Timed(MentionResult(label, k, raw, logprob, tokens), latency)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        label_schema, labels = self._resolve(schema, labels)
        started = time.perf_counter()
        counts = await asyncio.gather(*(self.count(document_id, text, schema, label) for label in labels))
        parsed = {c.result.label: parse_count(c.result.raw, self.max_count).value for c in counts}
        mentions = await asyncio.gather(*(
            self.mention(document_id, text, schema, label, parsed[label], k)
            for label in labels for k in range(1, parsed[label] + 1)))
        return Extracted(list(counts), list(mentions), time.perf_counter() - started)
