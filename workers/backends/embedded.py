"""The embedded backend: the torch engine in-process, with continuous batching across concurrent calls.

Every call carries one window of a document. Calls of any documents share the engine's forwards
(workers/engine/batching.py, continuous): Count calls of windows not seen before are read in one forward (a tree
per window, its label branches sharing it), and each window's prefix cache is kept in an LRU cache sized in tokens,
so the Mention calls that follow continue what the Count step encoded (and, where their label's count was decoded
here, that count's own KV). The sequences of all admitted calls decode in
one running batch (workers/engine/decoder.py, `DecodeBatch`): between two of its forwards, calls that arrived
meanwhile are read and join it, and each call is answered when its own sequence ends. The batch holds at most
`max_batch` rows; prompt-lookup drafts are shortened so that one forward feeds at most `max_forward_tokens`
tokens (a large batch is compute-bound, where drafts slow every row). Extract calls (batch mode) are decoded
as the engine decodes a document's windows: together. All torch work runs on one dedicated thread, never on
the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from transformers import DynamicCache

from padellm_ner.core import DEFAULT_MAX_COUNT, SCHEMAS, CountResult, MentionResult, template_for
from padellm_ner.core.aggregate import FinishReason
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.validation import check_labels, check_mention_index, check_schema

from ..engine.batching import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FORWARD_TOKENS,
    DEFAULT_MAX_PREFILL_TOKENS,
    DEFAULT_PREFIX_CACHE_TOKENS,
    Admitted,
    EngineSession,
    MicroBatcher,
)
from ..engine.decoder import DecodeBatch, DecodeStats, Generated, extended, prefill_forest, prefill_on_caches
from ..engine.loading import EngineModel
from ..engine.lookup import DEFAULT_LOOKUP_TOKENS, PromptLookup
from ..engine.padellm import COUNT_MAX_NEW_TOKENS, PadellmEngine
from .base import Extracted, Timed

if TYPE_CHECKING:
    from transformers import PreTrainedConfig


CONTINUATIONS = 2048  # decoded counts kept for their Mention calls (a few tokens each)
PROMPT_TOKENS = 64  # the template, the label word and a mention marker around a window, at most


@dataclass
class _Sequence:
    """A Count (k None) or Mention call: one branch after its window's prefix."""

    text: str
    language: str
    branch: str
    label: str
    k: int | None
    count_branch: str  # the label's Count branch: what a Mention branch continues after the count


@dataclass(eq=False)
class _Running:
    """A Count or Mention call's row in the running batch."""

    call: Admitted  # of a _Sequence
    prefix_len: int  # tokens of its window's prefix
    started: float = 0.0  # when its prefill began: the call's decoding time ends when its row does


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
        max_batch: int = DEFAULT_MAX_BATCH,
        max_forward_tokens: int = DEFAULT_MAX_FORWARD_TOKENS,
        max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS,
        prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS,
        continue_counts: bool = True,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
    ):
        self.engine_model = engine_model
        self.model_name = engine_model.info.get("name", "embedded")
        self.model_version = str(engine_model.info.get("version", "base"))
        # a trained model serves the schema it was trained for; the bare base model (tests) any
        trained_for = engine_model.info.get("schema")
        self.schemas: tuple[str, ...] = (trained_for,) if trained_for else tuple(SCHEMAS)
        # a model with local attention (Gemma 3's sliding window): a prompt of the window, the template and the
        # longest mention must fit in it
        attention = engine_model.attention_window
        self.window_limit = None if attention is None else attention - PROMPT_TOKENS - max_mention_tokens
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.max_batch = max_batch
        self.max_forward_tokens = max_forward_tokens
        self.max_prefill_tokens = max_prefill_tokens
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})
        self._engine = PadellmEngine(
            engine_model, max_count=max_count, max_mention_tokens=max_mention_tokens, lookup_tokens=lookup_tokens
        )
        self._prefixes: OrderedDict[tuple[str, str], tuple[list[int], DynamicCache]] = OrderedDict()
        self._prefix_cache_tokens = prefix_cache_tokens
        self._cached_tokens = 0  # the prefix cache's tokens
        self.continue_counts = continue_counts  # Mention calls continue their count's KV (same tokens, fewer read)
        self.stats = DecodeStats()  # forwards, tokens read and drafted, since the start
        # (language, window, count branch) -> the count's tokens after the prefix and their KV, per layer
        self._continuations: OrderedDict[tuple[str, str, str], tuple[list[int], list]] = OrderedDict()
        self._batcher: MicroBatcher[_Sequence | _Window, Timed | Extracted] = MicroBatcher(
            self._decode,
            window_ms=batch_window_ms,
            max_batch=max_batch,
            name="engine",
            continuous=True,
            on_error=lambda error: PadellmError(f"decoding failed: {error}", code=ErrorCode.INTERNAL),
            on_shutdown=lambda: PadellmError("the worker is not running", code=ErrorCode.UNAVAILABLE),
        )

    @property
    def batches(self) -> int:
        """Admissions so far: the times calls joined the running batch (for tests, benchmarks and metrics)."""
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
            _Sequence(text, language, (branch := template_for(language).label_branch(word)), label, None, branch)
        )
        return cast(Timed[CountResult], outcome)

    async def mention(
        self, document_id: str, text: str, schema: str, label: str, count: int, k: int
    ) -> Timed[MentionResult]:
        language, word = self._word(schema, label)
        check_mention_index(count, k, self.max_count)
        template = template_for(language)
        branch = template.label_branch(word)
        outcome = await self._batcher.submit(
            _Sequence(text, language, branch + template.mention_suffix(count, k), label, k, branch)
        )
        return cast(Timed[MentionResult], outcome)

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted:
        label_schema = check_schema(schema)
        labels = check_labels(label_schema, list(labels))
        return cast(Extracted, await self._batcher.submit(_Window(text, label_schema.name, tuple(labels))))

    # --- decoding (on the engine thread) -----------------------------------------------------------------

    def _remember_prefix(self, text: str, language: str, entry) -> None:
        key = (language, text)
        if key in self._prefixes:
            self._cached_tokens -= len(self._prefixes[key][0])
        self._prefixes[key] = entry
        self._prefixes.move_to_end(key)
        self._cached_tokens += len(entry[0])
        while self._cached_tokens > self._prefix_cache_tokens and len(self._prefixes) > 1:
            _, (evicted, _) = self._prefixes.popitem(last=False)
            self._cached_tokens -= len(evicted)

    @torch.inference_mode()
    def _decode(self, session: EngineSession[_Sequence | _Window, Timed | Extracted]) -> None:
        """Runs on the engine thread while there is work: continuous batching. Between two decode forwards, calls
        that arrived join the running batch (their prefill, within the token budget, then a merge), and a call is
        answered as soon as its sequence ends. Extract calls are decoded whole, as the engine decodes a document's
        windows."""
        stats = self.stats
        running: DecodeBatch[_Running] | None = None
        while not session.stopping:
            admitted = self._admit(session, len(running) if running is not None else 0)
            windows = [call for call in admitted if isinstance(call.item, _Window)]
            if windows:
                self._decode_windows(session, windows)
            sequences = [call for call in admitted if isinstance(call.item, _Sequence)]
            if sequences:
                joining = self._prefill(sequences, stats)
                if running is None:
                    running = joining
                else:
                    running.merge(joining)
            if running is None:
                if not admitted:
                    return  # nothing decoding, nothing queued
                continue
            running.drop(lambda row: session.wanted(row.call))  # callers that gave up free their rows
            for finished in running.choose(keep_kv=self._continued_later) if len(running) else []:
                if finished.kv is not None:
                    self._remember_count(finished.owner, finished.generated, finished.kv)
                session.deliver(finished.owner.call, self._outcome(finished.owner, finished.generated))
            if not len(running):
                running = None
                continue
            running.forward(self.engine_model.model, stats, max_tokens=self.max_forward_tokens)

    def _admit(self, session, rows: int) -> list[Admitted]:
        """Queued calls for the next prefill: as many as the running batch has room for, and as the token budget
        of one prefill allows (at least one call, however long its window); the others stay queued, in order."""
        taken = session.take(self.max_batch - rows) if rows < self.max_batch else []
        tokens = 0
        read: set[tuple[str, str]] = set()  # windows this prefill reads
        for n, call in enumerate(taken):
            item = call.item
            cost = len(item.text) // 3 + 1  # an Extract call: its window, about 3 characters a token
            if isinstance(item, _Sequence):
                window = (item.language, item.text)
                cost = len(item.branch) // 3 + 1
                if window not in self._prefixes and window not in read:
                    cost += len(item.text) // 3 + 8
                read.add(window)
            if n and tokens + cost > self.max_prefill_tokens:
                for later in reversed(taken[n:]):
                    session.put_back(later)
                return taken[:n]
            tokens += cost
        return taken

    def _decode_windows(self, session, calls: list[Admitted]) -> None:
        by_labels: dict[tuple[str, tuple[str, ...]], list[Admitted]] = {}
        for call in calls:
            by_labels.setdefault((call.item.schema, call.item.labels), []).append(call)
        for (schema, labels), group in by_labels.items():
            started = time.perf_counter()
            decoded = self._engine.decode_windows([call.item.text for call in group], check_schema(schema), labels)
            elapsed = time.perf_counter() - started
            for w, call in enumerate(group):
                session.deliver(
                    call,
                    Extracted(
                        [Timed(c, elapsed) for c in decoded.counts if c.window == w],
                        [Timed(m, elapsed) for m in decoded.mentions if m.window == w],
                        elapsed,
                    ),
                )

    def _prefill(self, calls: list[Admitted], stats: DecodeStats) -> DecodeBatch[_Running]:
        """The first forward of newly admitted Count and Mention calls, grouped by window: windows read before
        continue their cached prefix (a Mention call, where its label's count was decoded here, continues that
        count's sequence, so it reads only what follows the count), the others are read with their branches (a
        tree per window), in as few forwards as the caches allow. A row per call, each with its own length limit
        and prompt lookup."""
        started = time.perf_counter()
        model, pad_id = self.engine_model.model, self.engine_model.pad_id
        windows: dict[tuple[str, str], list[Admitted]] = {}
        for call in calls:
            windows.setdefault((call.item.language, call.item.text), []).append(call)
        fresh = [key for key in windows if key not in self._prefixes]
        cached = [key for key in windows if key in self._prefixes]
        entries = {key: self._prefixes[key] for key in cached}  # taken before the fresh windows may evict them
        prefixes: dict[tuple[str, str], list[int]] = {key: entries[key][0] for key in cached}
        batches: list[DecodeBatch[_Running]] = []
        if fresh:
            for key in fresh:
                prefixes[key] = self.engine_model.encode(template_for(key[0]).shared_prefix(key[1]), special=True)
            forest, prefill = prefill_forest(
                model,
                [prefixes[key] for key in fresh],
                [[self.engine_model.encode(call.item.branch) for call in windows[key]] for key in fresh],
                pad_id=pad_id,
                stats=stats,
            )
            for tree, key in enumerate(fresh):
                self._remember_prefix(key[1], key[0], (prefixes[key], forest.prefix_cache(tree)))
            batches.append(self._batch(prefill, [(key, call) for key in fresh for call in windows[key]], prefixes))
        if cached:
            groups: list[tuple[int, DynamicCache, list[list[int]]]] = []
            rows: list[tuple[tuple[str, str], Admitted]] = []
            for key in cached:
                if key in self._prefixes:
                    self._prefixes.move_to_end(key)
                prefix_ids, prefix_cache = entries[key]
                on_prefix: list[Admitted] = []
                prefix_branches: list[list[int]] = []
                # count branch -> (the count's tokens, their KV, the calls continuing it, what each reads after it)
                on_count: dict[str, tuple[list[int], list, list[Admitted], list[list[int]]]] = {}
                for call in windows[key]:
                    branch = self.engine_model.encode(call.item.branch)
                    continued = self._continuations.get((*key, call.item.count_branch)) if call.item.k else None
                    if (
                        continued is not None
                        and branch[: len(continued[0])] == continued[0]
                        and len(branch) > len(continued[0])
                    ):
                        self._continuations.move_to_end((*key, call.item.count_branch))
                        entry = on_count.setdefault(call.item.count_branch, (*continued, [], []))
                        entry[2].append(call)
                        entry[3].append(branch[len(continued[0]) :])
                    else:
                        on_prefix.append(call)
                        prefix_branches.append(branch)
                if on_prefix:
                    groups.append((len(prefix_ids), prefix_cache, prefix_branches))
                    rows += [(key, call) for call in on_prefix]
                for count_ids, kv, count_calls, suffixes in on_count.values():
                    groups.append((len(prefix_ids) + len(count_ids), extended(prefix_cache, kv), suffixes))
                    rows += [(key, call) for call in count_calls]
            batches.append(self._batch(prefill_on_caches(model, groups, pad_id=pad_id, stats=stats), rows, prefixes))
        joined = batches[0]
        for other in batches[1:]:
            joined.merge(other)
        for row in joined.owners:
            row.started = started
        return joined

    def _continued_later(self, row: _Running, generated: Generated) -> bool:
        """Whether Mention calls will continue this Count call's sequence: a count of one or more, decoded to its
        stop token."""
        return (
            self.continue_counts
            and row.call.item.k is None
            and generated.finish is FinishReason.STOP
            and (raw := self.engine_model.decode(generated.token_ids)).isascii()
            and raw.isdigit()
            and int(raw) > 0
        )

    def _remember_count(self, row: _Running, generated: Generated, kv) -> None:
        """A decoded count's KV after its window's prefix: its label branch and count tokens."""
        item: _Sequence = row.call.item
        count_ids = self.engine_model.encode(item.branch) + generated.token_ids
        if kv[0][0].shape[2] != row.prefix_len + len(count_ids):
            return  # not the sequence it should be: never continue what is not known exactly
        key = (item.language, item.text, item.branch)
        self._continuations[key] = (
            count_ids,
            [(k[:, :, row.prefix_len :].clone(), v[:, :, row.prefix_len :].clone()) for k, v in kv],
        )
        self._continuations.move_to_end(key)
        while len(self._continuations) > CONTINUATIONS:
            self._continuations.popitem(last=False)

    def _batch(self, prefill, rows: list[tuple[tuple[str, str], Admitted]], prefixes) -> DecodeBatch[_Running]:
        lookups: dict[tuple[str, str], PromptLookup | None] = {}
        for key, call in rows:
            if call.item.k is not None and key not in lookups:  # mentions copy from the window; counts never do
                lookups[key] = self._engine.lookup_for(prefixes[key], key[1])
        return DecodeBatch(
            prefill,
            [_Running(call, prefix_len=len(prefixes[key])) for key, call in rows],
            [COUNT_MAX_NEW_TOKENS if call.item.k is None else self.max_mention_tokens for _, call in rows],
            self.stop_ids,
            cast("PreTrainedConfig", self.engine_model.model.config),
            [lookups.get(key) if call.item.k is not None else None for key, call in rows],
        )

    def _outcome(self, row: _Running, generated: Generated) -> Timed:
        item: _Sequence = row.call.item
        raw = self.engine_model.decode(generated.token_ids)
        elapsed = time.perf_counter() - row.started
        if item.k is None:
            return Timed(
                CountResult(item.label, raw, generated.logprob, generated.generated_tokens, generated.finish), elapsed
            )
        return Timed(
            MentionResult(item.label, item.k, raw, generated.logprob, generated.generated_tokens, generated.finish),
            elapsed,
        )
