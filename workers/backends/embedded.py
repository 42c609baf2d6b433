"""The embedded backend: the torch engine in-process, with micro-batching across concurrent calls.

Count and Mention calls that arrive within a short window are decoded together (workers/engine/batching.py):
calls of one document run as branches of one batch on its encoded prefix. A document's first batch reads the
document and its branches in one forward; its prefix cache is kept in a small LRU cache, so step 2 reuses
what step 1 encoded. All torch work runs on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from padellm_ner.core import CountResult, DEFAULT_MAX_COUNT, MentionResult, template_for
from padellm_ner.validation import InvalidInput, check_labels, check_mention_index, check_schema

from ..engine.batching import MicroBatcher
from ..engine.decoder import decode_tree, greedy_decode
from ..engine.loading import EngineModel
from ..engine.lookup import DEFAULT_LOOKUP_TOKENS
from ..engine.padellm import COUNT_MAX_NEW_TOKENS, PadellmEngine
from .base import BackendError, Extracted, Timed


@dataclass
class _Pending:
    text: str
    language: str
    branch: str
    label: str
    k: int | None  # None for a count


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self, engine_model: EngineModel, *, max_count: int = DEFAULT_MAX_COUNT, max_mention_tokens: int = 48,
        batch_window_ms: float = 2.0, max_batch: int = 64, prefix_cache_size: int = 32,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
    ):
        self.m = engine_model
        self.model_name = engine_model.info.get("name", "embedded")
        self.model_version = str(engine_model.info.get("version", "base"))
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})
        self._engine = PadellmEngine(engine_model, max_count=max_count, max_mention_tokens=max_mention_tokens,
                                     lookup_tokens=lookup_tokens)
        self._prefixes: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self._batcher: MicroBatcher[_Pending, Timed] = MicroBatcher(
            self._decode, window_ms=batch_window_ms, max_batch=max_batch, name="engine",
            on_error=lambda error: BackendError("INTERNAL", f"decoding failed: {error}"),
            on_shutdown=lambda: BackendError("UNAVAILABLE", "the worker is not running"))

    @property
    def batches(self) -> int:
        """Decoded batches so far (for tests, benchmarks and metrics)."""
        return self._batcher.batches

    async def start(self) -> None:
        await self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    async def __aenter__(self) -> "EmbeddedBackend":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- the calls ------------------------------------------------------------------------------------------

    def _word(self, schema_name: str, label: str) -> tuple[str, str]:
        try:
            schema = check_schema(schema_name)
            check_labels(schema, [label])
        except InvalidInput as error:
            raise BackendError("INVALID_ARGUMENT", str(error)) from None
        return schema.language, schema.prompt_word(label)

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed:
        language, word = self._word(schema, label)
        return await self._submit(text, language, template_for(language).label_branch(word), label, None)

    async def mention(self, document_id: str, text: str, schema: str, label: str, count: int, k: int) -> Timed:
        language, word = self._word(schema, label)
        try:
            check_mention_index(count, k, self.max_count)
        except InvalidInput as error:
            raise BackendError("INVALID_ARGUMENT", str(error)) from None
        template = template_for(language)
        return await self._submit(text, language, template.label_branch(word) + template.mention_suffix(count, k), label, k)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        try:
            label_schema = check_schema(schema)
            labels = check_labels(label_schema, list(labels))
        except InvalidInput as error:
            raise BackendError("INVALID_ARGUMENT", str(error)) from None
        result = await self._batcher.run(self._engine.recognize, text, label_schema, labels)
        share = result.latency_s
        return Extracted([Timed(c, share) for c in result.counts], [Timed(m, share) for m in result.mentions],
                         result.latency_s)

    async def _submit(self, text: str, language: str, branch: str, label: str, k: int | None) -> Timed:
        return await self._batcher.submit(_Pending(text, language, branch, label, k))

    # --- decoding (on the engine thread) -----------------------------------------------------------------

    def _cached_prefix(self, text: str, language: str):
        key = (language, text)
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return self._prefixes[key]
        return None

    def _remember_prefix(self, text: str, language: str, entry) -> None:
        self._prefixes[(language, text)] = entry
        if len(self._prefixes) > self._prefix_cache_size:
            self._prefixes.popitem(last=False)

    def _decode(self, batch: list[_Pending]) -> list[Timed]:
        """Runs on the engine thread: one greedy batch per (document, step) group."""
        outcomes: dict[int, Timed] = {}
        groups: dict[tuple[str, str, bool], list[int]] = {}
        for index, pending in enumerate(batch):
            groups.setdefault((pending.language, pending.text, pending.k is None), []).append(index)
        for (language, text, is_count), indices in groups.items():
            started = time.perf_counter()
            branches = [self.m.encode(batch[i].branch) for i in indices]
            max_new = COUNT_MAX_NEW_TOKENS if is_count else self.max_mention_tokens
            entry = self._cached_prefix(text, language)
            prefix_ids = entry[0] if entry else self.m.encode(template_for(language).shared_prefix(text), special=True)
            lookup = None if is_count else self._engine.lookup_for(prefix_ids, text)  # as the engine: mentions only
            if entry is None:  # the document's first batch: read the document with its branches, keep its cache
                generated, cache = decode_tree(self.m.model, prefix_ids, branches, stop_ids=self.stop_ids,
                                               max_new_tokens=max_new, lookup=lookup)
                self._remember_prefix(text, language, (prefix_ids, cache))
            else:
                cache = entry[1]
                generated = greedy_decode(self.m.model, branches, prefix_ids=prefix_ids, prefix_cache=cache,
                                          stop_ids=self.stop_ids, max_new_tokens=max_new, pad_id=self.m.pad_id,
                                          lookup=lookup)
            elapsed = time.perf_counter() - started
            for i, g in zip(indices, generated):
                raw = self.m.decode(g.token_ids)
                p = batch[i]
                result = (CountResult(p.label, raw, g.logprob, g.generated_tokens) if p.k is None
                          else MentionResult(p.label, p.k, raw, g.logprob, g.generated_tokens))
                outcomes[i] = Timed(result, elapsed)
        return [outcomes[i] for i in range(len(batch))]
