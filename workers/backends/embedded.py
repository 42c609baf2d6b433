"""The embedded backend: the torch engine in-process, with micro-batching across concurrent calls.

Every call carries one window of a document. Calls that arrive within a short window are decoded together
(workers/engine/batching.py): Count calls of windows not seen before are read in one forward (a tree per window,
its label branches sharing it), and each window's prefix cache is kept in a small LRU cache, so the Mention calls
that follow continue what the Count step encoded — the windows of one batch again in one batch. Extract calls
(batch mode) that meet in a batch are decoded as the engine decodes a document's windows: together. All torch
work runs on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from padellm_ner.core import DEFAULT_MAX_COUNT, SCHEMAS, CountResult, MentionResult, template_for
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.validation import check_labels, check_mention_index, check_schema

from ..engine.batching import MicroBatcher
from ..engine.decoder import Generated, decode_forest, decode_on_caches
from ..engine.loading import EngineModel
from ..engine.lookup import DEFAULT_LOOKUP_TOKENS
from ..engine.padellm import COUNT_MAX_NEW_TOKENS, PadellmEngine
from .base import Extracted, Timed

if TYPE_CHECKING:
    from transformers import DynamicCache


@dataclass
class _Sequence:
    """A Count (k None) or Mention call: one branch after its window's prefix."""

    text: str
    language: str
    branch: str
    label: str
    k: int | None


@dataclass
class _Window:
    """An Extract call: both steps for the labels of one window."""

    text: str
    schema: str
    labels: tuple[str, ...]


class EmbeddedBackend(AsyncComponent):
    name = "embedded"

    def __init__(
        self,
        engine_model: EngineModel,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_mention_tokens: int = 48,
        batch_window_ms: float = 2.0,
        max_batch: int = 64,
        prefix_cache_size: int = 64,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
    ):
        self.engine_model = engine_model
        self.model_name = engine_model.info.get("name", "embedded")
        self.model_version = str(engine_model.info.get("version", "base"))
        # a trained model serves the schema it was trained for; the bare base model (tests) any
        trained_for = engine_model.info.get("schema")
        self.schemas: tuple[str, ...] = (trained_for,) if trained_for else tuple(SCHEMAS)
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})
        self._engine = PadellmEngine(
            engine_model, max_count=max_count, max_mention_tokens=max_mention_tokens, lookup_tokens=lookup_tokens
        )
        self._prefixes: OrderedDict[tuple[str, str], tuple[list[int], DynamicCache]] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self._batcher: MicroBatcher[_Sequence | _Window, Timed | Extracted] = MicroBatcher(
            self._decode,
            window_ms=batch_window_ms,
            max_batch=max_batch,
            name="engine",
            on_error=lambda error: PadellmError(f"decoding failed: {error}", code=ErrorCode.INTERNAL),
            on_shutdown=lambda: PadellmError("the worker is not running", code=ErrorCode.UNAVAILABLE),
        )

    @property
    def batches(self) -> int:
        """Decoded batches so far (for tests, benchmarks and metrics)."""
        return self._batcher.batches

    async def _start(self) -> None:
        await self._batcher.start()

    async def _stop(self) -> None:
        await self._batcher.stop()

    async def healthy(self) -> bool:
        return self._batcher.running

    # --- the calls ------------------------------------------------------------------------------------------

    def _word(self, schema_name: str, label: str) -> tuple[str, str]:
        schema = check_schema(schema_name)
        check_labels(schema, [label])
        return schema.language, schema.prompt_word(label)

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed[CountResult]:
        language, word = self._word(schema, label)
        outcome = await self._batcher.submit(
            _Sequence(text, language, template_for(language).label_branch(word), label, None)
        )
        return cast(Timed[CountResult], outcome)

    async def mention(
        self, document_id: str, text: str, schema: str, label: str, count: int, k: int
    ) -> Timed[MentionResult]:
        language, word = self._word(schema, label)
        check_mention_index(count, k, self.max_count)
        template = template_for(language)
        outcome = await self._batcher.submit(
            _Sequence(text, language, template.label_branch(word) + template.mention_suffix(count, k), label, k)
        )
        return cast(Timed[MentionResult], outcome)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        label_schema = check_schema(schema)
        labels = check_labels(label_schema, list(labels))
        return cast(Extracted, await self._batcher.submit(_Window(text, label_schema.name, tuple(labels))))

    # --- decoding (on the engine thread) -----------------------------------------------------------------

    def _remember_prefix(self, text: str, language: str, entry) -> None:
        self._prefixes[(language, text)] = entry
        self._prefixes.move_to_end((language, text))
        while len(self._prefixes) > self._prefix_cache_size:
            self._prefixes.popitem(last=False)

    def _decode(self, batch: list[_Sequence | _Window]) -> list[Timed | Extracted]:
        """Runs on the engine thread: the batch's Extract windows together, then its Count calls together, then
        its Mention calls together."""
        outcomes: dict[int, Timed | Extracted] = {}
        by_labels: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        for i, item in enumerate(batch):
            if isinstance(item, _Window):
                by_labels.setdefault((item.schema, item.labels), []).append(i)
        for (schema, labels), indices in by_labels.items():
            started = time.perf_counter()
            decoded = self._engine.decode_windows([batch[i].text for i in indices], check_schema(schema), labels)
            elapsed = time.perf_counter() - started
            for w, i in enumerate(indices):
                outcomes[i] = Extracted(
                    [Timed(c, elapsed) for c in decoded.counts if c.window == w],
                    [Timed(m, elapsed) for m in decoded.mentions if m.window == w],
                    elapsed,
                )
        for is_count in (True, False):
            indices = [
                i for i, item in enumerate(batch) if isinstance(item, _Sequence) and (item.k is None) == is_count
            ]
            if indices:
                outcomes.update(self._decode_sequences(batch, indices, is_count))
        return [outcomes[i] for i in range(len(batch))]

    def _decode_sequences(self, batch, indices: list[int], is_count: bool) -> dict[int, Timed]:
        """One step's calls, grouped by window: windows read before continue their cached prefix, the others are
        read with their branches (a tree per window); both kinds in as few forwards as the caches allow."""
        started = time.perf_counter()
        groups: dict[tuple[str, str], list[int]] = {}
        for i in indices:
            groups.setdefault((batch[i].language, batch[i].text), []).append(i)
        max_new = COUNT_MAX_NEW_TOKENS if is_count else self.max_mention_tokens
        cached = [key for key in groups if key in self._prefixes]
        fresh = [key for key in groups if key not in self._prefixes]
        entries = [self._prefixes[key] for key in cached]  # taken before the fresh windows may evict them
        generated: dict[int, Generated] = {}
        if fresh:
            prefixes = [
                self.engine_model.encode(template_for(language).shared_prefix(text), special=True)
                for language, text in fresh
            ]
            lookups = None if is_count else [self._engine.lookup_for(p, text) for p, (_, text) in zip(prefixes, fresh)]
            results, forest = decode_forest(
                self.engine_model.model,
                prefixes,
                [[self.engine_model.encode(batch[i].branch) for i in groups[key]] for key in fresh],
                stop_ids=self.stop_ids,
                should_stop=self._batcher.abandoned,
                max_new_tokens=max_new,
                pad_id=self.engine_model.pad_id,
                lookup=lookups,
            )
            for row, (key, prefix) in enumerate(zip(fresh, prefixes)):
                self._remember_prefix(key[1], key[0], (prefix, forest.prefix_cache(row)))
                generated.update(zip(groups[key], results[row]))
        if cached:
            for key in cached:
                if key in self._prefixes:
                    self._prefixes.move_to_end(key)
            lookups = (
                None
                if is_count
                else [self._engine.lookup_for(prefix, text) for (prefix, _), (_, text) in zip(entries, cached)]
            )
            continued = decode_on_caches(
                self.engine_model.model,
                [
                    (len(prefix), cache, [self.engine_model.encode(batch[i].branch) for i in groups[key]])
                    for (prefix, cache), key in zip(entries, cached)
                ],
                stop_ids=self.stop_ids,
                should_stop=self._batcher.abandoned,
                max_new_tokens=max_new,
                pad_id=self.engine_model.pad_id,
                lookup=lookups,
            )
            for key, sequences in zip(cached, continued):
                generated.update(zip(groups[key], sequences))
        elapsed = time.perf_counter() - started
        outcomes: dict[int, Timed] = {}
        for i in indices:
            g, p = generated[i], batch[i]
            raw = self.engine_model.decode(g.token_ids)
            outcomes[i] = (
                Timed(CountResult(p.label, raw, g.logprob, g.generated_tokens, g.finish), elapsed)
                if p.k is None
                else Timed(MentionResult(p.label, p.k, raw, g.logprob, g.generated_tokens, g.finish), elapsed)
            )
        return outcomes
